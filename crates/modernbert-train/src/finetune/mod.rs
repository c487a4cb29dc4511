//! Fine-tuning a ModernBERT checkpoint into a classifier or tagger, as one visible loop:
//!
//! 1. read and encode the data ([`data`], [`labels`], [`encode`]); hold out a seeded 10% when
//!    there is no validation file;
//! 2. build the model ([`setup`]): the checkpoint's backbone, its head where it fits, else a fresh
//!    head initialised as HF does;
//! 3. per epoch, per step ([`batches`]): forward/backward on unpadded micro-batches
//!    ([`objective`]), clip the gradient norm, AdamW at the scheduled LR (linear warmup, linear
//!    decay to 0);
//! 4. evaluate every `eval_every` steps or each epoch ([`evaluate`]), keep the best model by the
//!    task's metric, checkpoint for exact resume, stop early when the metric stops improving;
//! 5. export the best model as an HF directory with `metrics.jsonl`, a training curve and a
//!    model card ([`export`]).

pub mod batches;
pub mod classify;
pub mod colbert;
pub mod data;
pub mod embedding;
pub mod encode;
pub mod evaluate;
mod export;
pub mod job;
pub mod labels;
pub mod metrics;
pub mod objective;
pub mod pairs;
pub mod rerank;

use crate::checkpoint::{self, MetricsLog};
use crate::grads::{self, Gradients};
use crate::model::{Arithmetic, DropoutConfig, TrainModel};
use crate::optim::{self, AdamW, OptimizerConfig};
use anyhow::{bail, Context, Result};
use batches::Batching;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use job::{Job, StepContext};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use classify::TaskData;
pub use data::Format;

/// What the fine-tuned model does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    /// Sequence (or pair) classification or regression: `ModernBertForSequenceClassification`.
    Classification,
    /// Word tagging (NER, POS): `ModernBertForTokenClassification`.
    TokenClassification,
    /// Sentence embeddings (a sentence-transformers bi-encoder) from query/document pairs.
    Embedding,
    /// A cross-encoder reranker from labelled pairs or a positive with hard negatives.
    Reranker,
    /// A PyLate ColBERT model (late interaction) from pairs, or distilled from teacher scores.
    Colbert,
}

impl std::str::FromStr for Task {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "classification" => Task::Classification,
            "token-classification" => Task::TokenClassification,
            "embedding" => Task::Embedding,
            "reranker" => Task::Reranker,
            "colbert" => Task::Colbert,
            other => {
                bail!("unknown task {other:?} (classification, token-classification, embedding, reranker, colbert)")
            }
        })
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Classification => "classification",
            Task::TokenClassification => "token-classification",
            Task::Embedding => "embedding",
            Task::Reranker => "reranker",
            Task::Colbert => "colbert",
        })
    }
}

/// Every setting of a fine-tuning run (CLI flags and `--config` TOML keys, snake_case or kebab-case).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default, rename_all = "snake_case")]
pub struct FinetuneConfig {
    pub task: Task,
    /// Start checkpoint: a model directory or Hugging Face Hub id.
    pub model: String,
    pub train: PathBuf,
    /// Without it, a seeded 10% of the training file is held out.
    pub validation: Option<PathBuf>,
    /// File format; by default from the extension.
    pub format: Option<Format>,
    pub output: PathBuf,
    pub epochs: usize,
    #[serde(alias = "learning-rate", alias = "lr")]
    pub learning_rate: f64,
    /// Sequences per optimizer step.
    #[serde(alias = "batch-size")]
    pub batch_size: usize,
    /// Fill steps by an unpadded token budget instead of `batch_size` sequences.
    #[serde(alias = "max-batch-tokens")]
    pub max_batch_tokens: Option<usize>,
    /// Longer inputs are cut to this many tokens (counted and reported).
    #[serde(alias = "max-length")]
    pub max_length: usize,
    /// Fully decoupled: each step multiplies decayed weights by `1 − (lr_t / lr) · weight_decay`.
    #[serde(alias = "weight-decay")]
    pub weight_decay: f64,
    /// Share of the steps with a linear warmup.
    #[serde(alias = "warmup-ratio")]
    pub warmup_ratio: f64,
    /// Maximum global gradient norm (0: no clipping).
    #[serde(alias = "gradient-clip")]
    pub gradient_clip: f64,
    pub seed: u64,
    /// Evaluate every this many steps (0: at the end of each epoch).
    #[serde(alias = "eval-every")]
    pub eval_every: u64,
    /// Stop after this many evaluations without improvement.
    #[serde(alias = "early-stopping-patience")]
    pub early_stopping_patience: Option<usize>,
    /// `classifier_pooling` of the fine-tuned model (`cls` or `mean`); default: the checkpoint's.
    #[serde(alias = "classifier-pooling")]
    pub classifier_pooling: Option<String>,
    /// Largest forward pass in tokens; bigger steps are split and their gradients added.
    #[serde(alias = "micro-batch-tokens")]
    pub micro_batch_tokens: usize,
    /// Stop after this many optimizer steps in total (a checkpoint is written there).
    #[serde(alias = "max-steps")]
    pub max_steps: Option<u64>,
    /// Embedding: pooling of the sentence vector (`mean` or `cls`; default mean).
    pub pooling: Option<String>,
    /// Embedding: the cosine similarities' scale in the InfoNCE loss (sentence-transformers: 20).
    pub scale: f64,
    /// Embedding: also train truncated vectors of these widths (MatryoshkaLoss, weights 1).
    #[serde(alias = "matryoshka-dims")]
    pub matryoshka_dims: Option<Vec<usize>>,
    /// Embedding: weight of the distillation loss (mean squared error to the rows'
    /// `teacher_vectors`, sentence-transformers' MSELoss) added to the InfoNCE loss.
    #[serde(alias = "distill-weight")]
    pub distill_weight: f64,
    /// Embedding: texts per forward pass with gradient caching (CachedMNRL); none: one pass.
    #[serde(alias = "mini-batch-size")]
    pub mini_batch_size: Option<usize>,
    /// Embedding: hard negatives used per row (default: as many as every row has).
    #[serde(alias = "hard-negatives")]
    pub hard_negatives: Option<usize>,
    /// Embedding: every step from one `source` of the data (sentence-transformers' multi-dataset
    /// batches), so that in-batch negatives are not told apart by their source alone.
    #[serde(alias = "batch-by-source")]
    pub batch_by_source: bool,
    /// Embedding: prompt prepended to queries (saved as the model's `query` prompt).
    #[serde(alias = "query-prompt")]
    pub query_prompt: Option<String>,
    /// Embedding: prompt prepended to documents (saved as the model's `document` prompt).
    #[serde(alias = "document-prompt")]
    pub document_prompt: Option<String>,
    /// ColBERT: queries are cut, or expanded with `[MASK]`, to this many tokens (PyLate: 32).
    #[serde(alias = "query-length")]
    pub query_length: usize,
    /// ColBERT: documents are cut to this many tokens (PyLate: 180).
    #[serde(alias = "document-length")]
    pub document_length: usize,
    /// ColBERT: width of the token vectors (the Dense projection; 128 as GTE-ModernColBERT).
    #[serde(alias = "colbert-dim")]
    pub colbert_dim: usize,
    /// Arithmetic of the encoder's linear layers in training: `f32` (default, as HF Trainer), or
    /// `bf16` (operands rounded to bf16, sums and master weights `f32`: mixed precision, as
    /// `TrainingArguments(bf16=True)`; faster on CPUs with AVX512-BF16).
    pub precision: modernbert::Precision,
}

impl Default for FinetuneConfig {
    fn default() -> Self {
        Self {
            task: Task::Classification,
            model: String::new(),
            train: PathBuf::new(),
            validation: None,
            format: None,
            output: PathBuf::new(),
            epochs: 3,
            learning_rate: 8e-5,
            batch_size: 32,
            max_batch_tokens: None,
            max_length: 512,
            weight_decay: 1e-5,
            warmup_ratio: 0.1,
            gradient_clip: 1.0,
            seed: 42,
            eval_every: 0,
            early_stopping_patience: None,
            classifier_pooling: None,
            micro_batch_tokens: 16_384,
            max_steps: None,
            pooling: None,
            scale: 20.0,
            matryoshka_dims: None,
            distill_weight: 1.0,
            mini_batch_size: None,
            hard_negatives: None,
            batch_by_source: false,
            query_prompt: None,
            document_prompt: None,
            query_length: 32,
            document_length: 180,
            colbert_dim: 128,
            precision: modernbert::Precision::F32,
        }
    }
}

impl FinetuneConfig {
    /// Reads a TOML file of settings.
    pub fn from_toml(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("{}: invalid fine-tuning config", path.display()))
    }

    /// Refuses settings that make no sense, naming the field.
    pub fn validate(&self) -> Result<()> {
        let check = |ok: bool, field: &str, why: &str| if ok { Ok(()) } else { Err(anyhow::anyhow!("{field}: {why}")) };
        check(!self.model.is_empty(), "model", "no start checkpoint given (--model)")?;
        check(!self.train.as_os_str().is_empty(), "train", "no training file given (--train)")?;
        check(!self.output.as_os_str().is_empty(), "output", "no output directory given (--output)")?;
        check(self.epochs > 0, "epochs", "must be at least 1")?;
        check(
            self.learning_rate.is_finite() && self.learning_rate > 0.0,
            "learning_rate",
            "must be a positive number",
        )?;
        check(self.batch_size > 0, "batch_size", "must be at least 1")?;
        check(self.max_batch_tokens != Some(0), "max_batch_tokens", "must be at least 1")?;
        check(self.max_length >= 3, "max_length", "must leave room for [CLS], a token and [SEP] (≥ 3)")?;
        check((0.0..1.0).contains(&self.weight_decay), "weight_decay", "must be in [0, 1)")?;
        check((0.0..=1.0).contains(&self.warmup_ratio), "warmup_ratio", "must be in [0, 1]")?;
        check(self.gradient_clip >= 0.0 && self.gradient_clip.is_finite(), "gradient_clip", "must be ≥ 0")?;
        check(self.micro_batch_tokens > 0, "micro_batch_tokens", "must be at least 1")?;
        check(self.early_stopping_patience != Some(0), "early_stopping_patience", "must be at least 1")?;
        check(self.scale.is_finite() && self.scale > 0.0, "scale", "must be a positive number")?;
        check(self.distill_weight.is_finite() && self.distill_weight >= 0.0, "distill_weight", "must be ≥ 0")?;
        check(self.mini_batch_size != Some(0), "mini_batch_size", "must be at least 1")?;
        check(self.query_length >= 4 && self.document_length >= 4, "query_length", "lengths must be at least 4")?;
        check(self.colbert_dim > 0, "colbert_dim", "must be at least 1")?;
        check(
            self.precision != modernbert::Precision::Int8,
            "precision",
            "must be f32 or bf16 (int8 is for inference)",
        )?;
        if let Some(dims) = &self.matryoshka_dims {
            check(!dims.is_empty() && !dims.contains(&0), "matryoshka_dims", "must be positive widths")?;
        }
        if let Some(p) = &self.classifier_pooling {
            check(modernbert::Pooling::parse(p).is_some(), "classifier_pooling", "must be \"cls\" or \"mean\"")?;
        }
        Ok(())
    }

    fn batching(&self) -> Batching {
        match self.max_batch_tokens {
            Some(t) => Batching::Tokens(t),
            None => Batching::Sequences(self.batch_size),
        }
    }
}

/// The best evaluation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub step: u64,
    pub metric: f64,
    pub loss: f64,
    pub metrics: Value,
}

/// Where a fine-tuning run stands (`trainer_state.json` of its checkpoints).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneState {
    /// Current epoch (0-based).
    pub epoch: usize,
    /// Steps done in the current epoch.
    pub step_in_epoch: usize,
    /// Optimizer steps done.
    pub step: u64,
    /// Training examples processed.
    pub samples: u64,
    pub best: Option<Best>,
    /// Evaluations since the best one.
    pub evals_without_improvement: usize,
    /// Seconds spent in training steps (not evaluation).
    pub train_secs: f64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Summary {
    pub output: PathBuf,
    pub steps: u64,
    pub best: Option<Best>,
    pub metric_name: &'static str,
    /// Training examples per second over this invocation's steps.
    pub samples_per_sec: f64,
    pub stopped_early: bool,
}

/// The learning rate of step `t` (0-based): linear warmup over `warmup` steps, then linear decay
/// to 0 at `total` (HF's `get_linear_schedule_with_warmup`).
pub fn lr_at(lr: f64, t: u64, warmup: u64, total: u64) -> f64 {
    if t < warmup {
        lr * t as f64 / warmup as f64
    } else {
        lr * (total.saturating_sub(t) as f64 / total.saturating_sub(warmup).max(1) as f64)
    }
}

/// Prints a line above the progress bar (or to stderr when there is none).
fn say(bar: &ProgressBar, line: String) {
    if bar.is_hidden() {
        eprintln!("{line}");
    } else {
        bar.println(line);
    }
}

/// Runs a fine-tuning, or continues one from a checkpoint (`resume`: a checkpoint directory or the
/// run's output directory) with the settings it was started with.
pub fn finetune(cfg: FinetuneConfig, resume: Option<&Path>, progress: bool) -> Result<Summary> {
    let (cfg, resumed) = match resume {
        Some(path) => {
            let dir = checkpoint::resolve_resume(path)?;
            let mut saved: FinetuneConfig = serde_json::from_str(
                &std::fs::read_to_string(dir.join("finetune_config.json"))
                    .with_context(|| format!("{} is not a fine-tuning checkpoint", dir.display()))?,
            )
            .context("invalid finetune_config.json")?;
            // The run lives where the checkpoint is (copies of a run resume into themselves).
            saved.output = dir.parent().and_then(Path::parent).context("checkpoint outside a run directory")?.into();
            saved.max_steps = cfg.max_steps;
            let state: FinetuneState = serde_json::from_str(&std::fs::read_to_string(dir.join("trainer_state.json"))?)
                .with_context(|| format!("{}: invalid trainer_state.json", dir.display()))?;
            (saved, Some((dir, state)))
        }
        None => (cfg, None),
    };
    cfg.validate()?;
    let model_dir = modernbert::hub::resolve(&cfg.model)?;
    let job = make_job(&cfg, &model_dir)?;
    let job = job.as_ref();
    let ckpt_root = cfg.output.join("checkpoints");
    if resumed.is_none() && ckpt_root.exists() {
        bail!(
            "{} already holds a fine-tuning run; continue it with --resume {}, or choose another --output",
            cfg.output.display(),
            cfg.output.display()
        );
    }
    std::fs::create_dir_all(&cfg.output).with_context(|| format!("cannot create {}", cfg.output.display()))?;
    checkpoint::remove_leftovers(&ckpt_root)?;
    checkpoint::remove_leftovers(&cfg.output)?;
    let (model, mut opt, mut state) = match &resumed {
        Some((dir, state)) => {
            let model = job.load_model(dir)?;
            let mut opt = AdamW::new(OptimizerConfig::adamw(), &model);
            opt.load(&dir.join("optimizer.safetensors"))?;
            eprintln!("resuming from {} (step {}, epoch {})", dir.display(), state.step, state.epoch + 1);
            (model, opt, state.clone())
        }
        None => {
            let (model, head_note) = job.start_model(&cfg, &model_dir)?;
            eprintln!("{head_note}");
            let opt = AdamW::new(OptimizerConfig::adamw(), &model);
            let state = FinetuneState {
                epoch: 0,
                step_in_epoch: 0,
                step: 0,
                samples: 0,
                best: None,
                evals_without_improvement: 0,
                train_secs: 0.0,
            };
            (model, opt, state)
        }
    };
    let model = model.with_row_sparse_embedding().with_arithmetic(match cfg.precision {
        modernbert::Precision::Bf16 => Arithmetic::Bf16,
        _ => Arithmetic::F32,
    });
    let dropout = DropoutConfig::from_config(model.config());
    let plan: Vec<Vec<Vec<usize>>> =
        (0..cfg.epochs).map(|e| job.epoch_steps(cfg.seed, e as u64, cfg.batching())).collect();
    let total_steps: u64 = plan.iter().map(|p| p.len() as u64).sum();
    let warmup = (cfg.warmup_ratio * total_steps as f64).ceil() as u64;
    eprintln!("settings:\n{}", indent(&toml::to_string(&cfg)?));
    eprintln!("{}", job.describe());
    eprintln!("schedule: {total_steps} steps, {warmup} warmup steps, main metric {}", job.main_metric());

    let mut log = MetricsLog::open(&cfg.output.join("metrics.jsonl"), resumed.as_ref().map(|(_, s)| s.step))?;
    let bar = ProgressBar::with_draw_target(
        Some(total_steps),
        if progress { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} steps ETA {eta} | {msg}")
            .expect("valid template"),
    );
    bar.set_position(state.step);
    let (mut run_samples, mut run_secs) = (0u64, 0f64);
    let mut stopped_early = false;
    let mut last_eval_step = resumed.as_ref().map(|(_, s)| s.step);
    let max_steps = cfg.max_steps.unwrap_or(u64::MAX);
    let timing = crate::trainer::step_timing();

    'epochs: while state.epoch < cfg.epochs {
        let steps = &plan[state.epoch];
        while state.step_in_epoch < steps.len() {
            if state.step >= max_steps {
                break 'epochs;
            }
            // One optimizer step over the step's items.
            let t0 = Instant::now();
            let items = &steps[state.step_in_epoch];
            let mut grads = Gradients::new();
            let mut ctx = StepContext { cfg: &cfg, dropout, step: state.step, grads: &mut grads };
            let loss = modernbert_kernels::with_pool_awake(|| job.step(&model, items, &mut ctx))?;
            let to = Instant::now();
            model.forget_row_lookups();
            let grad_norm = grads::grad_norm(&grads)?;
            if !loss.is_finite() || !grad_norm.is_finite() {
                bar.abandon();
                bail!(
                    "step {}: the loss is {loss} and the gradient norm {grad_norm}; stopping without updating the \
                     weights (lower --learning-rate, or check the data)",
                    state.step + 1
                );
            }
            let lr = lr_at(cfg.learning_rate, state.step, warmup, total_steps);
            let clip = optim::clip_factor(grad_norm, cfg.gradient_clip);
            modernbert_kernels::with_pool_awake(|| {
                opt.step_scaled(&model, &grads, clip, lr, cfg.learning_rate, cfg.weight_decay)
            })?;
            let secs = t0.elapsed().as_secs_f64();
            if timing {
                eprintln!(
                    "step {}: {} items, forward + backward {:.0} ms, clip + optimizer {:.0} ms",
                    state.step + 1,
                    items.len(),
                    (to - t0).as_secs_f64() * 1e3,
                    to.elapsed().as_secs_f64() * 1e3,
                );
            }
            state.step += 1;
            state.step_in_epoch += 1;
            state.samples += items.len() as u64;
            state.train_secs += secs;
            run_samples += items.len() as u64;
            run_secs += secs;
            let rate = run_samples as f64 / run_secs.max(1e-9);
            log.log(json!({
                "type": "train", "step": state.step, "epoch": state.epoch + 1, "loss": loss, "lr": lr,
                "grad_norm": grad_norm, "samples": items.len(), "samples_per_sec": items.len() as f64 / secs,
            }))?;
            bar.set_position(state.step);
            bar.set_message(format!("epoch {} loss {loss:.4} lr {lr:.2e} {rate:.1} samples/s", state.epoch + 1));

            let end_of_epoch = state.step_in_epoch == steps.len();
            let due = if cfg.eval_every > 0 { state.step % cfg.eval_every == 0 } else { end_of_epoch };
            if due || state.step >= max_steps || (end_of_epoch && state.epoch + 1 == cfg.epochs) {
                if end_of_epoch {
                    state.epoch += 1;
                    state.step_in_epoch = 0;
                }
                evaluate_and_keep(job, &model, &model_dir, &cfg, &mut state, &mut log, &bar)?;
                save_checkpoint(job, &ckpt_root, &model, &model_dir, &opt, &state, &cfg)?;
                last_eval_step = Some(state.step);
                if cfg.early_stopping_patience.is_some_and(|p| state.evals_without_improvement >= p) {
                    say(
                        &bar,
                        format!("early stopping: no improvement in {} evaluations", state.evals_without_improvement),
                    );
                    stopped_early = true;
                    break 'epochs;
                }
                if end_of_epoch {
                    continue 'epochs;
                }
            }
        }
        state.epoch += 1;
        state.step_in_epoch = 0;
    }
    bar.finish_and_clear();
    if last_eval_step != Some(state.step) {
        evaluate_and_keep(job, &model, &model_dir, &cfg, &mut state, &mut log, &bar)?;
        save_checkpoint(job, &ckpt_root, &model, &model_dir, &opt, &state, &cfg)?;
    }
    export::finish(&cfg, job, &state)?;
    Ok(Summary {
        output: cfg.output.clone(),
        steps: state.step,
        best: state.best.clone(),
        metric_name: job.main_metric(),
        samples_per_sec: if run_secs > 0.0 { run_samples as f64 / run_secs } else { 0.0 },
        stopped_early,
    })
}

/// The job of a task.
fn make_job(cfg: &FinetuneConfig, model_dir: &Path) -> Result<Box<dyn Job>> {
    Ok(match cfg.task {
        Task::Classification | Task::TokenClassification => Box::new(classify::ClassifyJob::new(cfg, model_dir)?),
        Task::Embedding => Box::new(embedding::EmbeddingJob::new(cfg, model_dir)?),
        Task::Reranker => Box::new(rerank::RerankJob::new(cfg, model_dir)?),
        Task::Colbert => Box::new(colbert::ColbertJob::new(cfg, model_dir)?),
    })
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("  {l}")).collect::<Vec<_>>().join("\n")
}

/// Concatenates token sequences into an unpadded batch: ids and `cu_seqlens`.
pub(crate) fn concat<'a>(sequences: impl Iterator<Item = &'a [u32]>) -> (Vec<u32>, Vec<u32>) {
    let mut ids = Vec::new();
    let mut cu = vec![0u32];
    for s in sequences {
        ids.extend_from_slice(s);
        cu.push(ids.len() as u32);
    }
    (ids, cu)
}

/// Evaluates on the validation examples, logs it, and keeps the model if it is the best so far
/// (written to `output/best`, atomically).
fn evaluate_and_keep(
    job: &dyn Job,
    model: &TrainModel,
    source: &Path,
    cfg: &FinetuneConfig,
    state: &mut FinetuneState,
    log: &mut MetricsLog,
    bar: &ProgressBar,
) -> Result<()> {
    let eval = job.evaluate(model)?;
    log.log(json!({
        "type": "eval", "step": state.step, "epoch": state.epoch, "loss": eval.loss,
        "metric": eval.metric_name, eval.metric_name: eval.metric, "metrics": eval.metrics,
    }))?;
    let improved = match &state.best {
        None => true,
        Some(b) => eval.metric > b.metric || (b.metric.is_nan() && !eval.metric.is_nan()),
    };
    say(
        bar,
        format!(
            "step {}: validation loss {:.4}, {} {:.4}{}",
            state.step,
            eval.loss,
            eval.metric_name,
            eval.metric,
            if improved { " (best)" } else { "" }
        ),
    );
    if improved {
        state.best =
            Some(Best { step: state.step, metric: eval.metric, loss: eval.loss, metrics: eval.metrics.clone() });
        state.evals_without_improvement = 0;
        checkpoint::save_dir(&cfg.output, "best", |dir| job.write_model(dir, model, source))?;
    } else {
        state.evals_without_improvement += 1;
    }
    Ok(())
}

/// Writes a resume checkpoint `output/checkpoints/step-N` (model, optimizer, state, settings),
/// points `latest` at it and keeps the newest two.
fn save_checkpoint(
    job: &dyn Job,
    root: &Path,
    model: &TrainModel,
    source: &Path,
    opt: &AdamW,
    state: &FinetuneState,
    cfg: &FinetuneConfig,
) -> Result<()> {
    let name = checkpoint::step_name(state.step);
    checkpoint::save_dir(root, &name, |dir| {
        job.write_model(dir, model, source)?;
        opt.save(&dir.join("optimizer.safetensors"))?;
        std::fs::write(dir.join("trainer_state.json"), serde_json::to_string_pretty(state)? + "\n")?;
        std::fs::write(dir.join("finetune_config.json"), serde_json::to_string_pretty(cfg)? + "\n")?;
        Ok(())
    })?;
    checkpoint::point_latest(root, &name)?;
    checkpoint::prune(root, 2, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_schedule_like_hf() {
        // warmup 2 of 10 steps: 0, 0.5, then (10 − t) / 8.
        let lrs: Vec<f64> = (0..10).map(|t| lr_at(1.0, t, 2, 10)).collect();
        assert_eq!(lrs[..3], [0.0, 0.5, 1.0]);
        assert_eq!(lrs[9], 1.0 / 8.0);
        assert_eq!(lr_at(1.0, 0, 0, 4), 1.0);
    }

    #[test]
    fn config_keys_and_validation() {
        let cfg: FinetuneConfig =
            toml::from_str("task = \"token-classification\"\nlearning-rate = 3e-4\nbatch_size = 8\nmodel = \"m\"")
                .unwrap();
        assert_eq!((cfg.task, cfg.learning_rate, cfg.batch_size), (Task::TokenClassification, 3e-4, 8));
        assert!(toml::from_str::<FinetuneConfig>("learning_rat = 1").unwrap_err().to_string().contains("learning_rat"));
        let bad = FinetuneConfig {
            model: "m".into(),
            train: "t".into(),
            output: "o".into(),
            warmup_ratio: 2.0,
            ..Default::default()
        };
        assert!(bad.validate().unwrap_err().to_string().starts_with("warmup_ratio"));
    }
}
