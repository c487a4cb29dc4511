//! Before the loop: the encoded data of a run and the model it starts from.

use super::data::{read_text_rows, read_token_rows};
use super::encode::{encode_text_rows, encode_token_rows, Encoded};
use super::evaluate::Outputs;
use super::labels::{tag_set, LabelSpace};
use super::{FinetuneConfig, Task};
use crate::init::{init_specs, InitConfig};
use crate::model::TrainModel;
use crate::params::{param_specs, HeadKind, ParamKind, Params};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use modernbert::{Config, Tokenizer};
use std::collections::BTreeMap;
use std::path::Path;

/// A run's data, encoded.
pub struct TaskData {
    pub outputs: Outputs,
    pub train: Encoded,
    pub validation: Encoded,
    /// Where the validation examples came from (a file, or the held-out share).
    pub validation_source: String,
}

/// Splits off a seeded 10% (at least one row) for validation.
fn hold_out<T>(rows: Vec<T>, seed: u64) -> Result<(Vec<T>, Vec<T>)> {
    if rows.len() < 2 {
        bail!("the training file has {} row(s): too few to hold out a validation share", rows.len());
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    Rng::keyed(seed, &[0x401D]).shuffle(&mut order);
    let n_val = rows.len().div_ceil(10);
    let mut held = vec![false; rows.len()];
    for &i in &order[..n_val] {
        held[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (r, h) in rows.into_iter().zip(held) {
        if h {
            val.push(r);
        } else {
            train.push(r);
        }
    }
    Ok((train, val))
}

/// Reads, checks and encodes the training and validation data with the model's tokenizer.
pub fn load_data(cfg: &FinetuneConfig, model_dir: &Path) -> Result<TaskData> {
    let tok_path = model_dir.join("tokenizer.json");
    if !tok_path.is_file() {
        bail!("{} has no tokenizer.json", model_dir.display());
    }
    let config = Config::from_file(&model_dir.join("config.json"))?;
    let tok = Tokenizer::from_file(&tok_path, config.max_position_embeddings)?;
    let max_length = cfg.max_length.min(config.max_position_embeddings);
    let source = |held: bool| match &cfg.validation {
        Some(p) if !held => p.display().to_string(),
        _ => format!("10% of {} held out (seed {})", cfg.train.display(), cfg.seed),
    };
    Ok(match cfg.task {
        Task::Classification => {
            let rows = read_text_rows(&cfg.train, cfg.format)?;
            let (train, val) = match &cfg.validation {
                Some(p) => (rows, read_text_rows(p, cfg.format)?),
                None => hold_out(rows, cfg.seed)?,
            };
            let space = LabelSpace::from_rows(&train)?;
            space.check(&cfg.train)?;
            TaskData {
                train: encode_text_rows(&tok, &train, &space, max_length)?,
                validation: encode_text_rows(&tok, &val, &space, max_length)?,
                outputs: Outputs::Sequence(space),
                validation_source: source(cfg.validation.is_none()),
            }
        }
        Task::TokenClassification => {
            let rows = read_token_rows(&cfg.train, cfg.format)?;
            let (train, val) = match &cfg.validation {
                Some(p) => (rows, read_token_rows(p, cfg.format)?),
                None => hold_out(rows, cfg.seed)?,
            };
            let tags = tag_set(&train);
            if tags.len() < 2 {
                bail!(
                    "{}: every word has the tag {:?}; a tagger needs at least two tags",
                    cfg.train.display(),
                    tags[0]
                );
            }
            TaskData {
                train: encode_token_rows(&tok, &train, &tags, max_length)?,
                validation: encode_token_rows(&tok, &val, &tags, max_length)?,
                outputs: Outputs::Tokens(tags),
                validation_source: source(cfg.validation.is_none()),
            }
        }
    })
}

/// The model a fresh run starts from: the checkpoint's backbone, its `head.*` where present, its
/// `classifier.*` when it is the same kind of head with the same labels; everything else freshly
/// initialised as HF does (truncated normal: `head.dense` σ = `initializer_range/√(2L)`,
/// `classifier` σ = `hidden_size^-½`, biases 0). Returns the model and a line saying what was reused.
pub fn start_model(cfg: &FinetuneConfig, dir: &Path, outputs: &Outputs) -> Result<(TrainModel, String)> {
    let mut config = Config::from_file(&dir.join("config.json"))?;
    let weights = modernbert::weights::Weights::from_dir(dir, &Device::Cpu)?;
    let source_head = HeadKind::of(&config, |n| weights.contains(n))?;
    let head = match cfg.task {
        Task::Classification => HeadKind::SequenceClassification,
        Task::TokenClassification => HeadKind::TokenClassification,
    };
    let names = outputs.names();
    let same_labels = source_head == head
        && config.num_labels == names.len()
        && (0..names.len()).all(|i| config.label(i) == names[i] || config.label(i) == format!("LABEL_{i}"));
    config.architecture = Some(head.architecture().into());
    config.num_labels = names.len();
    config.id2label = names.iter().cloned().enumerate().collect();
    config.problem_type = match outputs {
        Outputs::Sequence(space) => Some(space.problem_type()),
        Outputs::Tokens(_) => None,
    };
    if let Some(p) = &cfg.classifier_pooling {
        config.classifier_pooling = modernbert::Pooling::parse(p).context("classifier_pooling")?;
    }
    let mut specs = param_specs(&config, head);
    for s in &mut specs {
        if s.name == "head.dense.weight" {
            s.kind = ParamKind::Out; // HF's _init_weights for ModernBertPredictionHead
        }
    }
    let reuse = |name: &str| weights.has(name) && (same_labels || !name.starts_with("classifier."));
    let (kept, new): (Vec<_>, Vec<_>) = specs.into_iter().partition(|s| reuse(&s.name));
    let mut tensors: BTreeMap<String, Tensor> =
        kept.iter().map(|s| Ok((s.name.clone(), weights.tensor(&s.name, &s.shape)?))).collect::<Result<_>>()?;
    for (name, h) in init_specs(&config, &new, &InitConfig::default(), cfg.seed) {
        tensors.insert(name, Tensor::from_vec(h.data, h.shape, &Device::Cpu)?);
    }
    let mut initialised: Vec<&str> = new.iter().map(|s| s.name.split('.').next().unwrap_or(&s.name)).collect();
    initialised.dedup();
    let note = if initialised.is_empty() {
        format!("model: {} with its {} head ({} labels)", dir.display(), head.architecture(), names.len())
    } else {
        format!(
            "model: the backbone of {} ({}); fresh {} ({} labels)",
            dir.display(),
            source_head.architecture(),
            initialised.join(", "),
            names.len()
        )
    };
    Ok((TrainModel::from_tensors(config, &tensors)?, note))
}

/// The resolved settings and data, printed at the start of a run.
pub fn describe(cfg: &FinetuneConfig, data: &TaskData, total_steps: u64, warmup: u64) -> Result<String> {
    let mut s = String::from("settings:\n");
    for line in toml::to_string(cfg)?.lines() {
        s += &format!("  {line}\n");
    }
    let outputs = match &data.outputs {
        Outputs::Sequence(space) => format!("{space}: {:?}", space.names()),
        Outputs::Tokens(tags) => format!("{} tags: {tags:?}", tags.len()),
    };
    s += &format!(
        "data: {} training examples, {} validation examples ({}); {outputs}\n",
        data.train.examples.len(),
        data.validation.examples.len(),
        data.validation_source
    );
    for (name, e) in [("training", &data.train), ("validation", &data.validation)] {
        if e.truncated > 0 {
            s += &format!(
                "warning: {} {name} examples were longer than {} tokens and were cut{}\n",
                e.truncated,
                cfg.max_length,
                if e.lost_words > 0 { format!(" ({} tagged words lost)", e.lost_words) } else { String::new() }
            );
        }
    }
    s += &format!("schedule: {total_steps} steps, {warmup} warmup steps, main metric {}", data.outputs.main_metric());
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_out_is_a_seeded_tenth() {
        let (t, v) = hold_out((0..95).collect::<Vec<_>>(), 7).unwrap();
        assert_eq!((t.len(), v.len()), (85, 10));
        assert_eq!(hold_out((0..95).collect::<Vec<_>>(), 7).unwrap().1, v);
        assert_ne!(hold_out((0..95).collect::<Vec<_>>(), 8).unwrap().1, v);
        assert!(hold_out(vec![1], 7).is_err());
    }
}
