//! The fine-tuned model as an HF directory (`config.json` with its architecture, labels and
//! `problem_type`; `model.safetensors`; the tokenizer files) that `modernbert classify` and HF
//! `AutoModelFor{Sequence,Token}Classification` load, plus the run's curve and model card.

use super::evaluate::Outputs;
use super::{FinetuneConfig, FinetuneState, Task, TaskData};
use crate::checkpoint;
use crate::model::{DropoutConfig, TrainModel};
use anyhow::{Context, Result};
use std::fmt::Write as _;
use std::path::Path;

/// The files of an HF model directory that [`write_model`] writes.
const MODEL_FILES: [&str; 5] =
    ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"];

/// Writes `model` as an HF model directory into `dir` (tokenizer files from `source`).
pub fn write_model(dir: &Path, model: &TrainModel, source: &Path) -> Result<()> {
    checkpoint::save_hf_model(dir, model, 0.02, 2.0, &DropoutConfig::from_config(model.config()))?;
    checkpoint::copy_tokenizer(&source.join("tokenizer.json"), dir)
}

/// Writes `model` atomically as `root/name`.
pub fn save_model(root: &Path, name: &str, model: &TrainModel, source: &Path) -> Result<()> {
    checkpoint::save_dir(root, name, |dir| write_model(dir, model, source)).map(|_| ())
}

/// Ends a run: the best model's files into the output directory itself, the training curve, the
/// model card.
pub fn finish(cfg: &FinetuneConfig, data: &TaskData, state: &FinetuneState) -> Result<()> {
    let out = &cfg.output;
    let best = out.join("best");
    if best.is_dir() {
        for name in MODEL_FILES {
            let src = best.join(name);
            if src.is_file() {
                let bytes = std::fs::read(&src).with_context(|| format!("cannot read {}", src.display()))?;
                checkpoint::write_atomic(&out.join(name), &bytes)
                    .with_context(|| format!("cannot write {}", out.join(name).display()))?;
            }
        }
        std::fs::remove_dir_all(&best).with_context(|| format!("cannot remove {}", best.display()))?;
    }
    let curve = out.join("training_curve.png");
    if let Err(e) = crate::plot::plot_metrics(&out.join("metrics.jsonl"), &curve) {
        eprintln!("warning: could not plot {}: {e:#}", curve.display());
    }
    checkpoint::write_atomic(&out.join("README.md"), model_card(cfg, data, state)?.as_bytes())
}

fn model_card(cfg: &FinetuneConfig, data: &TaskData, state: &FinetuneState) -> Result<String> {
    let (pipeline, auto) = match cfg.task {
        Task::Classification => ("text-classification", "AutoModelForSequenceClassification"),
        Task::TokenClassification => ("token-classification", "AutoModelForTokenClassification"),
    };
    let name = cfg.output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into());
    let mut s = String::new();
    writeln!(s, "---\nlibrary_name: transformers\npipeline_tag: {pipeline}\ntags: [modernbert, modernbert-rs]\n---\n")?;
    writeln!(s, "# {name}\n")?;
    writeln!(s, "Fine-tuned from `{}` with `modernbert finetune` (modernbert.rs) for {pipeline}.\n", cfg.model)?;
    writeln!(s, "## Data\n\n| split | source | examples | cut to max_length |\n|---|---|---|---|")?;
    writeln!(s, "| train | {} | {} | {} |", cfg.train.display(), data.train.examples.len(), data.train.truncated)?;
    writeln!(
        s,
        "| validation | {} | {} | {} |\n",
        data.validation_source,
        data.validation.examples.len(),
        data.validation.truncated
    )?;
    let labels = match &data.outputs {
        Outputs::Sequence(space) => format!("{space}: {}", space.names().join(", ")),
        Outputs::Tokens(tags) => format!("{} tags: {}", tags.len(), tags.join(", ")),
    };
    writeln!(s, "Labels — {labels}\n")?;
    writeln!(s, "## Results\n")?;
    match &state.best {
        Some(b) => {
            writeln!(
                s,
                "Best validation {} at step {} (kept): **{:.4}**, loss {:.4}.\n",
                data.outputs.main_metric(),
                b.step,
                b.metric,
                b.loss
            )?;
            writeln!(s, "| metric | value |\n|---|---|")?;
            if let Some(m) = b.metrics.as_object() {
                for (k, v) in m {
                    match v.as_f64() {
                        Some(x) if k != "examples" => writeln!(s, "| {k} | {x:.4} |")?,
                        _ => writeln!(s, "| {k} | {v} |")?,
                    }
                }
            }
        }
        None => writeln!(s, "No evaluation was run.")?,
    }
    writeln!(
        s,
        "\n## Training\n\n{} optimizer steps, {} training examples seen in {:.1} s of training ({:.1} examples/s). \
         The curve is `training_curve.png`, every step and evaluation is in `metrics.jsonl`.\n",
        state.step,
        state.samples,
        state.train_secs,
        state.samples as f64 / state.train_secs.max(1e-9)
    )?;
    writeln!(s, "Settings:\n\n```toml\n{}```\n", toml::to_string(cfg)?)?;
    writeln!(s, "## Use\n\n```bash\nmodernbert classify --model {} \"some text\"\n```\n", cfg.output.display())?;
    writeln!(
        s,
        "```python\nfrom transformers import AutoTokenizer, {auto}\nmodel = {auto}.from_pretrained(\"{}\")\n```",
        cfg.output.display()
    )?;
    Ok(s)
}
