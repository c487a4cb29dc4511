//! The end of a run: the best model's files in the output directory, the training curve, the
//! model card; and the HF model directory a classifier is written as (`config.json` with its
//! architecture, labels and `problem_type`; `model.safetensors`; the tokenizer files).

use super::job::Job;
use super::{FinetuneConfig, FinetuneState};
use crate::checkpoint;
use crate::model::{DropoutConfig, TrainModel};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// Writes `model` as an HF model directory into `dir` (tokenizer files from `source`).
pub fn write_model(dir: &Path, model: &TrainModel, source: &Path) -> Result<()> {
    checkpoint::save_hf_model(dir, model, 0.02, 2.0, &DropoutConfig::from_config(model.config()))?;
    checkpoint::copy_tokenizer(&source.join("tokenizer.json"), dir)
}

/// Ends a run: the best model's files into the output directory itself, the training curve, the
/// model card.
pub fn finish(cfg: &FinetuneConfig, job: &dyn Job, state: &FinetuneState) -> Result<()> {
    let out = &cfg.output;
    let best = out.join("best");
    if best.is_dir() {
        copy_tree(&best, out)?;
        std::fs::remove_dir_all(&best).with_context(|| format!("cannot remove {}", best.display()))?;
    }
    let curve = out.join("training_curve.png");
    if let Err(e) = crate::plot::plot_metrics(&out.join("metrics.jsonl"), &curve) {
        eprintln!("warning: could not plot {}: {e:#}", curve.display());
    }
    checkpoint::write_atomic(&out.join("README.md"), model_card(cfg, job, state)?.as_bytes())
}

/// Copies every file of `from` (and of its sub-directories, e.g. `1_Pooling/`) into `to`, each
/// replaced atomically.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))? {
        let src = entry?.path();
        let dst = to.join(src.file_name().expect("a directory entry has a name"));
        if src.is_dir() {
            std::fs::create_dir_all(&dst).with_context(|| format!("cannot create {}", dst.display()))?;
            copy_tree(&src, &dst)?;
        } else {
            let bytes = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
            checkpoint::write_atomic(&dst, &bytes).with_context(|| format!("cannot write {}", dst.display()))?;
        }
    }
    Ok(())
}

fn model_card(cfg: &FinetuneConfig, job: &dyn Job, state: &FinetuneState) -> Result<String> {
    let name = cfg.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut s = String::new();
    writeln!(s, "---\nlibrary_name: modernbert-rs\ntags: [modernbert]\n---\n")?;
    writeln!(s, "# {name}\n")?;
    writeln!(s, "Fine-tuned from `{}` with `modernbert finetune --task {}` (modernbert.rs).\n", cfg.model, cfg.task)?;
    writeln!(s, "## Data\n\nTraining file `{}`.\n\n{}\n", cfg.train.display(), job.describe())?;
    writeln!(s, "## Results\n")?;
    match &state.best {
        Some(b) => {
            let metric = job.main_metric();
            writeln!(
                s,
                "Best validation {metric} at step {} (kept): **{:.4}**, loss {:.4}.\n",
                b.step, b.metric, b.loss
            )?;
            writeln!(s, "| metric | value |\n|---|---|")?;
            if let Some(m) = b.metrics.as_object() {
                for (k, v) in m {
                    match v.as_f64() {
                        Some(x) if !v.is_u64() => writeln!(s, "| {k} | {x:.4} |")?,
                        _ => writeln!(s, "| {k} | {v} |")?,
                    }
                }
            }
        }
        None => writeln!(s, "No evaluation was run.")?,
    }
    writeln!(
        s,
        "\n## Training\n\n{} optimizer steps, {} training items seen in {:.1} s of training ({:.1} items/s). \
         The curve is `training_curve.png`, every step and evaluation is in `metrics.jsonl`.\n",
        state.step,
        state.samples,
        state.train_secs,
        state.samples as f64 / state.train_secs.max(1e-9)
    )?;
    writeln!(s, "Settings:\n\n```toml\n{}```\n", toml::to_string(cfg)?)?;
    writeln!(s, "## Use\n\n{}", job.usage(&cfg.output))?;
    Ok(s)
}
