//! Cross-encoder (reranker) fine-tuning: a one-output sequence classifier on
//! `[CLS] query [SEP] document [SEP]`, trained with binary cross-entropy on labelled pairs
//! (`{"query", "document", "label"}`) or listwise — softmax cross-entropy of the positive among
//! itself and its hard negatives (`{"query", "positive", "negatives"}`). Evaluated by reranking
//! each held-out query's candidates (nDCG@10); written as a sentence-transformers CrossEncoder.

use super::classify::start_model;
use super::data::hold_out;
use super::evaluate::{Evaluation, Outputs};
use super::job::{Job, StepContext};
use super::labels::LabelSpace;
use super::objective::bce_with_logits_sum;
use super::pairs::{read_pairs, PairRow};
use super::{concat, export, FinetuneConfig};
use crate::grads;
use crate::losses::cross_entropy_sum;
use crate::model::TrainModel;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use modernbert::pipelines::{Output, Prepared, Want};
use modernbert::retrieval::{metrics, top_k, RetrievalSet};
use modernbert::tokenizer::Truncation;
use modernbert::{Config, Tokenizer};
use rayon::prelude::*;
use std::path::Path;

/// One query's candidates, tokenised as pairs: `(ids, label)`, the positive first for listwise rows.
struct Group {
    pairs: Vec<(Vec<u32>, f32)>,
}

/// A reranker run.
pub struct RerankJob {
    train: Vec<Group>,
    lengths: Vec<usize>,
    listwise: bool,
    eval: Vec<Group>,
    eval_source: String,
    max_length: usize,
}

fn groups(tok: &Tokenizer, rows: &[PairRow], listwise: bool, max_length: usize) -> Result<Vec<Group>> {
    rows.par_iter()
        .map(|r| {
            let pair = |d: &str| -> Result<Vec<u32>> {
                Ok(tok.encode(&r.query, Some(d), true, Some(Truncation::right(max_length)))?.ids)
            };
            let pairs = if listwise {
                if r.negatives.is_empty() {
                    bail!("{}: listwise training needs hard negatives (or give every row a `label`)", r.origin);
                }
                std::iter::once((pair(&r.positive)?, 1.0))
                    .chain(r.negatives.iter().map(|n| Ok((pair(n)?, 0.0))).collect::<Result<Vec<_>>>()?)
                    .collect()
            } else {
                let label =
                    r.label.with_context(|| format!("{}: no `label` (every row needs one, or none)", r.origin))?;
                if !(0.0..=1.0).contains(&label) {
                    bail!("{}: label {label} is outside [0, 1]", r.origin);
                }
                vec![(pair(&r.positive)?, label)]
            };
            Ok(Group { pairs })
        })
        .collect()
}

impl RerankJob {
    /// Reads and tokenises the pairs; rows with `label`s train with BCE, rows with negatives listwise.
    pub fn new(cfg: &FinetuneConfig, model_dir: &Path) -> Result<Self> {
        let config = Config::from_file(&model_dir.join("config.json"))?;
        let tok = Tokenizer::from_file(&model_dir.join("tokenizer.json"), config.max_position_embeddings)
            .with_context(|| format!("{} has no usable tokenizer.json", model_dir.display()))?;
        let max_length = cfg.max_length.min(config.max_position_embeddings);
        let rows = read_pairs(&cfg.train)?;
        let listwise = rows[0].label.is_none();
        let (rows, held, eval_source) = match &cfg.validation {
            Some(p) => (rows, read_pairs(p)?, p.display().to_string()),
            None => {
                let (t, v) = hold_out(rows, cfg.seed)?;
                (t, v, format!("10% of {} held out (seed {})", cfg.train.display(), cfg.seed))
            }
        };
        let train = groups(&tok, &rows, listwise, max_length)?;
        // Evaluation ranks each held-out query's candidates: its positive(s) and negatives.
        let eval = held
            .iter()
            .map(|r| {
                let label = r.label.unwrap_or(1.0);
                let mut pairs = vec![(
                    tok.encode(&r.query, Some(&r.positive), true, Some(Truncation::right(max_length)))?.ids,
                    label,
                )];
                for n in &r.negatives {
                    pairs.push((tok.encode(&r.query, Some(n), true, Some(Truncation::right(max_length)))?.ids, 0.0));
                }
                Ok(Group { pairs })
            })
            .collect::<Result<Vec<_>>>()?;
        let lengths = train.iter().map(|g| g.pairs.iter().map(|(p, _)| p.len()).sum()).collect();
        Ok(Self { train, lengths, listwise, eval, eval_source, max_length })
    }
}

impl Job for RerankJob {
    fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    fn start_model(&self, cfg: &FinetuneConfig, dir: &Path) -> Result<(TrainModel, String)> {
        start_model(cfg, dir, &Outputs::Sequence(LabelSpace::Classes(vec!["LABEL_0".into()]))).map(|(mut m, note)| {
            m.set_problem_type(None);
            (m, note)
        })
    }

    fn step(&self, model: &TrainModel, items: &[usize], ctx: &mut StepContext) -> Result<f64> {
        let pairs: Vec<&(Vec<u32>, f32)> = items.iter().flat_map(|&i| &self.train[i].pairs).collect();
        let (ids, cu) = concat(pairs.iter().map(|(p, _)| p.as_slice()));
        let logits = model.classifier_logits(&ids, &cu, ctx.key(0))?.flatten_all()?;
        let loss = if self.listwise {
            let k = self.train[items[0]].pairs.len();
            if items.iter().any(|&i| self.train[i].pairs.len() != k) {
                bail!("listwise rows of one step must have the same number of negatives");
            }
            let scores = logits.reshape((items.len(), k))?;
            (cross_entropy_sum(&scores, &vec![0u32; items.len()])? / items.len() as f64)?
        } else {
            let labels: Vec<f32> = pairs.iter().map(|(_, l)| *l).collect();
            let n = labels.len();
            (bce_with_logits_sum(&logits, &Tensor::from_vec(labels, n, &Device::Cpu)?)? / n as f64)?
        };
        let value = loss.to_scalar::<f32>()? as f64;
        grads::accumulate(ctx.grads, model, &loss.backward()?)?;
        Ok(value)
    }

    fn evaluate(&self, model: &TrainModel) -> Result<Evaluation> {
        let inference = model.to_inference()?;
        let prepared: Vec<Vec<Prepared>> =
            self.eval.iter().map(|g| g.pairs.iter().map(|(p, _)| Prepared::from_ids(p.clone())).collect()).collect();
        let inputs: Vec<(&Prepared, Want)> = prepared.iter().flatten().map(|p| (p, Want::Logits)).collect();
        let logits: Vec<f32> = inference
            .run(&inputs, None)?
            .into_iter()
            .map(|o| match o {
                Output::Logits(l) => Ok(l[0]),
                _ => bail!("expected logits"),
            })
            .collect::<Result<_>>()?;
        // One retrieval query per group over its own candidates.
        let mut set = RetrievalSet::default();
        let (mut rankings, mut start, mut loss, mut n) = (Vec::new(), 0, 0f64, 0usize);
        let mut ids: Vec<Vec<String>> = Vec::new();
        for (g, group) in self.eval.iter().enumerate() {
            let scores = &logits[start..start + group.pairs.len()];
            start += group.pairs.len();
            let names: Vec<String> = (0..group.pairs.len()).map(|c| format!("{g}-{c}")).collect();
            let relevant: std::collections::HashSet<String> =
                group.pairs.iter().zip(&names).filter(|((_, l), _)| *l > 0.5).map(|(_, id)| id.clone()).collect();
            for (&x, (_, y)) in scores.iter().zip(&group.pairs) {
                let x = x as f64;
                loss += x.max(0.0) - x * *y as f64 + (-x.abs()).exp().ln_1p();
                n += 1;
            }
            if relevant.is_empty() {
                continue;
            }
            set.queries.push((format!("q{g}"), String::new()));
            set.qrels.insert(format!("q{g}"), relevant);
            rankings.push(top_k(scores, 100));
            ids.push(names);
        }
        let rankings: Vec<Vec<&str>> =
            rankings.iter().zip(&ids).map(|(r, names)| r.iter().map(|&i| names[i].as_str()).collect()).collect();
        let m = metrics(&set, &rankings);
        Ok(Evaluation {
            loss: loss / n.max(1) as f64,
            metric_name: "ndcg_at_10",
            metric: m.ndcg_at_10,
            metrics: serde_json::to_value(m)?,
        })
    }

    fn main_metric(&self) -> &'static str {
        "ndcg_at_10"
    }

    fn write_model(&self, dir: &Path, model: &TrainModel, source: &Path) -> Result<()> {
        export::write_model(dir, model, source)?;
        modernbert::formats::cross_encoder::write(dir, self.max_length)?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "data: {} training {} ({}); validation: {} queries with their candidates ({})",
            self.train.len(),
            if self.listwise { "queries with a positive and hard negatives" } else { "labelled pairs" },
            if self.listwise { "listwise softmax cross-entropy" } else { "binary cross-entropy" },
            self.eval.len(),
            self.eval_source
        )
    }

    fn usage(&self, output: &Path) -> String {
        let o = output.display();
        format!(
            "```bash\nmodernbert rerank --model {o} --query \"a question\" \"a passage\" \"another passage\"\n```\n\n\
             ```python\nfrom sentence_transformers import CrossEncoder\nmodel = CrossEncoder(\"{o}\")\n```"
        )
    }
}
