//! What differs between fine-tuning tasks, behind one trait: the loop in `mod.rs` (epochs, steps,
//! optimizer, evaluation schedule, best model, checkpoints, resume, early stopping, export) is the
//! same for classifiers, taggers, embedders, rerankers and ColBERT models.

use super::batches::{epoch_steps, Batching};
use super::evaluate::Evaluation;
use super::FinetuneConfig;
use crate::grads::Gradients;
use crate::model::{DropoutConfig, DropoutKey, TrainModel};
use anyhow::Result;
use std::path::Path;

/// What a step needs besides its items.
pub struct StepContext<'a> {
    pub cfg: &'a FinetuneConfig,
    pub dropout: DropoutConfig,
    /// The optimizer step being computed (dropout masks are keyed by it).
    pub step: u64,
    /// Gradients are added here, by parameter name.
    pub grads: &'a mut Gradients,
}

impl StepContext<'_> {
    /// The dropout stream of micro-batch (or chunk) `micro` of this step.
    pub fn key(&self, micro: u64) -> Option<(DropoutConfig, DropoutKey)> {
        Some((self.dropout, DropoutKey { seed: self.cfg.seed, step: self.step, micro }))
    }
}

/// One fine-tuning task.
pub trait Job: Sync {
    /// Each training item's length in tokens (for batching by token budget).
    fn lengths(&self) -> &[usize];

    /// The steps of one epoch, as item indices: a seeded shuffle, then `batching`.
    fn epoch_steps(&self, seed: u64, epoch: u64, batching: Batching) -> Vec<Vec<usize>> {
        epoch_steps(self.lengths(), seed, epoch, batching)
    }

    /// The model a fresh run starts from (from the checkpoint in `dir`), and a line saying what
    /// was reused and what is new.
    fn start_model(&self, cfg: &FinetuneConfig, dir: &Path) -> Result<(TrainModel, String)>;

    /// The model of a checkpoint written by [`Job::write_model`] (for resuming).
    fn load_model(&self, dir: &Path) -> Result<TrainModel> {
        TrainModel::load(dir)
    }

    /// Forward and backward over one step's items; returns the step's loss (the mean the
    /// gradients are of) and adds the gradients into `ctx.grads`.
    fn step(&self, model: &TrainModel, items: &[usize], ctx: &mut StepContext) -> Result<f64>;

    /// Scores the validation data with the current model.
    fn evaluate(&self, model: &TrainModel) -> Result<Evaluation>;

    /// The metric that picks the best model.
    fn main_metric(&self) -> &'static str;

    /// Writes `model` as the task's deployable directory (tokenizer files from `source`).
    fn write_model(&self, dir: &Path, model: &TrainModel, source: &Path) -> Result<()>;

    /// Lines describing the data (sizes, labels, what was cut), printed at the start and kept in
    /// the model card.
    fn describe(&self) -> String;

    /// The pipeline tag and the code that loads the result, for the model card.
    fn usage(&self, output: &Path) -> String;
}
