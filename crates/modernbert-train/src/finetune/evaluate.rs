//! Evaluating a classifier or tagger on encoded examples: the validation loss and the task's
//! metrics, from the library's inference path — used by the fine-tuning loop at every evaluation
//! and by `modernbert evaluate` for any checkpoint, ours or HF's.

use super::encode::Example;
use super::labels::{is_bio, LabelSpace, Target};
use super::metrics;
use anyhow::{bail, Result};
use serde_json::{json, Value};

/// What the classifier's outputs mean.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outputs {
    /// A sequence classifier's label space.
    Sequence(LabelSpace),
    /// A token classifier's tag names by id.
    Tokens(Vec<String>),
}

impl Outputs {
    /// Output names by id (`id2label`).
    pub fn names(&self) -> Vec<String> {
        match self {
            Outputs::Sequence(s) => s.names(),
            Outputs::Tokens(t) => t.clone(),
        }
    }

    /// The name of the metric that picks the best checkpoint.
    pub fn main_metric(&self) -> &'static str {
        match self {
            Outputs::Sequence(LabelSpace::Classes(_)) => "accuracy",
            Outputs::Sequence(LabelSpace::MultiLabel(_)) => "macro_f1",
            Outputs::Sequence(LabelSpace::Regression) => "pearson",
            Outputs::Tokens(t) if is_bio(t) => "f1",
            Outputs::Tokens(_) => "token_accuracy",
        }
    }
}

/// Validation loss and metrics.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Evaluation {
    /// Mean loss over the task's units (HF's loss).
    pub loss: f64,
    /// The metric that picks the best checkpoint, and its value.
    pub metric_name: &'static str,
    pub metric: f64,
    /// Every metric by name (and `examples`).
    pub metrics: Value,
}

fn log_softmax(l: &[f32]) -> Vec<f64> {
    let max = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = l.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    l.iter().map(|&v| v as f64 - lse).collect()
}

fn argmax(l: &[f32]) -> usize {
    l.iter().enumerate().fold((0, f32::NEG_INFINITY), |b, (i, &v)| if v > b.1 { (i, v) } else { b }).0
}

/// Scores `examples` with `model` (a classifier whose outputs are `outputs`).
pub fn evaluate(model: &modernbert::Model, examples: &[Example], outputs: &Outputs) -> Result<Evaluation> {
    if examples.is_empty() {
        bail!("nothing to evaluate");
    }
    let sequences: Vec<&[u32]> = examples.iter().map(|e| e.ids.as_slice()).collect();
    let logits = model.classifier_logits(&sequences)?;
    let n_out = outputs.names().len();
    if logits[0].first().map_or(0, Vec::len) != n_out {
        bail!("the model has {} outputs, the labels {n_out}", logits[0].first().map_or(0, Vec::len));
    }
    let (mut loss, mut units) = (0f64, 0usize);
    let metrics = match outputs {
        Outputs::Sequence(LabelSpace::Classes(classes)) => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (e, l) in examples.iter().zip(&logits) {
                let Target::Class(c) = e.target else { bail!("a target is not a class") };
                loss -= log_softmax(&l[0])[c as usize];
                units += 1;
                pred.push(argmax(&l[0]));
                gold.push(c as usize);
            }
            serde_json::to_value(metrics::classification(&pred, &gold, classes.len()))?
        }
        Outputs::Sequence(LabelSpace::MultiLabel(_)) => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (e, l) in examples.iter().zip(&logits) {
                let Target::MultiHot(h) = &e.target else { bail!("a target is not multi-hot") };
                for (&x, &y) in l[0].iter().zip(h) {
                    let x = x as f64;
                    loss += x.max(0.0) - x * y as f64 + (-x.abs()).exp().ln_1p();
                    units += 1;
                }
                pred.push(l[0].iter().map(|&x| x > 0.0).collect());
                gold.push(h.iter().map(|&y| y > 0.5).collect());
            }
            serde_json::to_value(metrics::multi_label(&pred, &gold))?
        }
        Outputs::Sequence(LabelSpace::Regression) => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (e, l) in examples.iter().zip(&logits) {
                let Target::Value(v) = e.target else { bail!("a target is not a value") };
                let p = l[0][0] as f64;
                loss += (p - v as f64).powi(2);
                units += 1;
                pred.push(p);
                gold.push(v as f64);
            }
            serde_json::to_value(metrics::regression(&pred, &gold))?
        }
        Outputs::Tokens(tags) => {
            let (mut pred, mut gold) = (Vec::new(), Vec::new());
            for (e, rows) in examples.iter().zip(&logits) {
                let Target::Tokens(labels) = &e.target else { bail!("a target is not a tag sequence") };
                let (mut p, mut g) = (Vec::new(), Vec::new());
                for (row, &label) in rows.iter().zip(labels) {
                    if label >= 0 {
                        loss -= log_softmax(row)[label as usize];
                        units += 1;
                        p.push(tags[argmax(row)].as_str());
                        g.push(tags[label as usize].as_str());
                    }
                }
                pred.push(p);
                gold.push(g);
            }
            serde_json::to_value(metrics::tagging(&pred, &gold))?
        }
    };
    let metric_name = outputs.main_metric();
    let metric = metrics[metric_name].as_f64().unwrap_or(f64::NAN);
    let mut metrics = metrics;
    metrics["examples"] = json!(examples.len());
    Ok(Evaluation { loss: loss / units.max(1) as f64, metric_name, metric, metrics })
}

/// The outputs a classifier checkpoint declares (`problem_type`, `id2label`).
pub fn outputs_of(model: &modernbert::Model) -> Result<Outputs> {
    Ok(match model.head.kind() {
        modernbert::HeadKind::SequenceClassification => Outputs::Sequence(LabelSpace::from_config(&model.config)),
        modernbert::HeadKind::TokenClassification => {
            Outputs::Tokens((0..model.config.num_labels).map(|i| model.config.label(i)).collect())
        }
        other => bail!("evaluate needs a classifier or tagger, this is {}", other.architecture()),
    })
}

/// A data file scored with a classifier checkpoint, and what encoding had to cut.
pub struct FileEvaluation {
    pub evaluation: Evaluation,
    pub encoded: super::encode::Encoded,
}

/// Reads `path` (rows of the model's task), encodes it like fine-tuning does and evaluates.
pub fn evaluate_file(
    model: &modernbert::Model,
    path: &std::path::Path,
    format: Option<super::Format>,
    max_length: usize,
) -> Result<FileEvaluation> {
    let outputs = outputs_of(model)?;
    let tok = model.tokenizer()?;
    let max_length = max_length.min(model.config.max_position_embeddings);
    let encoded = match &outputs {
        Outputs::Sequence(space) => {
            super::encode::encode_text_rows(tok, &super::data::read_text_rows(path, format)?, space, max_length)?
        }
        Outputs::Tokens(tags) => {
            super::encode::encode_token_rows(tok, &super::data::read_token_rows(path, format)?, tags, max_length)?
        }
    };
    let evaluation = evaluate(model, &encoded.examples, &outputs)?;
    Ok(FileEvaluation { evaluation, encoded })
}
