//! Sequence classification / regression and token classification: the data (encoded rows with
//! targets), the model a run starts from, the step (unpadded micro-batches through the library's
//! classifier head and HF's loss) and the evaluation.

use super::batches::micro_batches;
use super::data::{hold_out, read_text_rows, read_token_rows};
use super::encode::Example;
use super::encode::{encode_text_rows, encode_token_rows, Encoded};
use super::evaluate::Outputs;
use super::evaluate::{evaluate, Evaluation};
use super::job::{Job, StepContext};
use super::labels::{tag_set, LabelSpace};
use super::{concat, export, objective, FinetuneConfig, Task};
use crate::grads;
use crate::init::{init_specs, InitConfig};
use crate::model::TrainModel;
use crate::params::{param_specs, HeadKind, ParamKind, Params};
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
        _ => {
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
    let head = match outputs {
        Outputs::Sequence(_) => HeadKind::SequenceClassification,
        Outputs::Tokens(_) => HeadKind::TokenClassification,
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

/// A classification or tagging run.
pub struct ClassifyJob {
    pub data: TaskData,
    lengths: Vec<usize>,
    max_length: usize,
    task: Task,
}

impl ClassifyJob {
    /// Reads and encodes the run's data.
    pub fn new(cfg: &FinetuneConfig, model_dir: &Path) -> Result<Self> {
        let data = load_data(cfg, model_dir)?;
        let lengths = data.train.examples.iter().map(|e| e.ids.len()).collect();
        Ok(Self { data, lengths, max_length: cfg.max_length, task: cfg.task })
    }
}

impl Job for ClassifyJob {
    fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    fn start_model(&self, cfg: &FinetuneConfig, dir: &Path) -> Result<(TrainModel, String)> {
        start_model(cfg, dir, &self.data.outputs)
    }

    fn step(&self, model: &TrainModel, items: &[usize], ctx: &mut StepContext) -> Result<f64> {
        let examples = &self.data.train.examples;
        let total_units = objective::units(&items.iter().map(|&i| &examples[i]).collect::<Vec<_>>());
        let mut loss = 0f64;
        for (k, micro) in micro_batches(items, &self.lengths, ctx.cfg.micro_batch_tokens).iter().enumerate() {
            let batch: Vec<&Example> = micro.iter().map(|&i| &examples[i]).collect();
            let (ids, cu) = concat(batch.iter().map(|e| e.ids.as_slice()));
            let logits = model.classifier_logits(&ids, &cu, ctx.key(k as u64))?;
            let part = objective::loss_sum(&logits, &batch)?;
            if part.units == 0 {
                continue;
            }
            let scaled = (part.sum / total_units as f64)?;
            loss += scaled.to_scalar::<f32>()? as f64;
            grads::accumulate(ctx.grads, model, &scaled.backward()?)?;
        }
        Ok(loss)
    }

    fn evaluate(&self, model: &TrainModel) -> Result<Evaluation> {
        evaluate(&model.to_inference()?, &self.data.validation.examples, &self.data.outputs)
    }

    fn main_metric(&self) -> &'static str {
        self.data.outputs.main_metric()
    }

    fn write_model(&self, dir: &Path, model: &TrainModel, source: &Path) -> Result<()> {
        export::write_model(dir, model, source)
    }

    fn describe(&self) -> String {
        let data = &self.data;
        let outputs = match &data.outputs {
            Outputs::Sequence(space) => format!("{space}: {:?}", space.names()),
            Outputs::Tokens(tags) => format!("{} tags: {tags:?}", tags.len()),
        };
        let mut s = format!(
            "data: {} training examples, {} validation examples ({}); {outputs}",
            data.train.examples.len(),
            data.validation.examples.len(),
            data.validation_source
        );
        for (name, e) in [("training", &data.train), ("validation", &data.validation)] {
            if e.truncated > 0 {
                s += &format!(
                    "\nwarning: {} {name} examples were longer than {} tokens and were cut{}",
                    e.truncated,
                    self.max_length,
                    if e.lost_words > 0 { format!(" ({} tagged words lost)", e.lost_words) } else { String::new() }
                );
            }
        }
        s
    }

    fn usage(&self, output: &Path) -> String {
        let auto = match self.task {
            Task::TokenClassification => "AutoModelForTokenClassification",
            _ => "AutoModelForSequenceClassification",
        };
        let o = output.display();
        format!(
            "```bash\nmodernbert classify --model {o} \"some text\"\n```\n\n```python\nfrom transformers import {auto}\n\
             model = {auto}.from_pretrained(\"{o}\")\n```"
        )
    }
}
