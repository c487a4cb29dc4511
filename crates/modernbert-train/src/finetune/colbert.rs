//! ColBERT (late-interaction) fine-tuning as PyLate does it: `[Q] `/`[D] ` prefix tokens added to
//! the vocabulary, queries expanded with `[MASK]` to `query_length` (the expansion tokens are not
//! attended to), documents cut to `document_length` with a punctuation skiplist, a token-level
//! Dense projection, per-token L2, MaxSim. Losses: contrastive over in-batch documents (PyLate's
//! `Contrastive`), or KL distillation from teacher scores given in the data (`Distillation`).
//! Evaluated by MaxSim retrieval (nDCG@10); written as a PyLate directory.

use super::data::hold_out;
use super::embedding::pairs_set;
use super::evaluate::Evaluation;
use super::job::{Job, StepContext};
use super::pairs::{read_pairs, PairRow};
use super::{concat, export, FinetuneConfig};
use crate::grads;
use crate::losses::cross_entropy_sum;
use crate::model::{read_params, TrainModel};
use crate::params::{param_specs, HeadKind};
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor, D};
use modernbert::embedding::Dense;
use modernbert::formats::colbert::{self as colbert_format, maxsim, Colbert};
use modernbert::formats::Format;
use modernbert::pipelines::{Output, Prepared, Want};
use modernbert::retrieval::{metrics, top_k, RetrievalSet};
use modernbert::{Config, Tokenizer};
use rayon::prelude::*;
use std::path::Path;

/// The name of the Dense projection among the trainable tensors.
const DENSE: &str = "colbert.dense.weight";

/// A tokenised input: ids, the keys every token sees, the positions that get a vector.
struct Input {
    ids: Vec<u32>,
    keys: usize,
    kept: Vec<usize>,
}

/// One training row: its query and documents (positive first), and teacher scores if distilling.
struct Row {
    query: Input,
    documents: Vec<Input>,
    teacher: Option<Vec<f32>>,
}

/// A ColBERT run.
pub struct ColbertJob {
    rows: Vec<Row>,
    lengths: Vec<usize>,
    distill: bool,
    /// Documents per row (positive + hard negatives).
    per_row: usize,
    colbert: Colbert,
    dim: usize,
    eval: RetrievalSet,
    eval_queries: Vec<Input>,
    eval_corpus: Vec<Input>,
    eval_source: String,
}

fn encode(c: &Colbert, tok: &Tokenizer, text: &str, is_query: bool) -> Result<Input> {
    let e = c.encode(tok, text, is_query, None)?;
    Ok(Input { ids: e.ids, keys: e.keys, kept: e.kept })
}

impl ColbertJob {
    /// Reads and tokenises the pairs (rows with `teacher_scores` everywhere: distillation).
    pub fn new(cfg: &FinetuneConfig, model_dir: &Path) -> Result<Self> {
        let config = Config::from_file(&model_dir.join("config.json"))?;
        let tok = Tokenizer::from_file(&model_dir.join("tokenizer.json"), config.max_position_embeddings)
            .with_context(|| format!("{} has no usable tokenizer.json", model_dir.display()))?;
        // A PyLate model has its prefix tokens already; a plain checkpoint gets them as two new ids.
        let v = config.vocab_size as u32;
        let prefixes = match (tok.token_to_id("[Q] "), tok.token_to_id("[D] ")) {
            (Some(q), Some(d)) => (q, d),
            _ => (v, v + 1),
        };
        let lengths = (cfg.query_length, cfg.document_length.min(config.max_position_embeddings));
        let colbert = Colbert::with_defaults(&tok, prefixes, lengths, Vec::new())?;
        let rows = read_pairs(&cfg.train)?;
        let (rows, eval, eval_source) = match &cfg.validation {
            Some(p) if p.is_dir() => (rows, RetrievalSet::read_dir(p)?, p.display().to_string()),
            Some(p) => (rows, pairs_set(&read_pairs(p)?), p.display().to_string()),
            None => {
                let (train, held) = hold_out(rows, cfg.seed)?;
                (train, pairs_set(&held), format!("10% of {} held out (seed {})", cfg.train.display(), cfg.seed))
            }
        };
        let distill = rows.iter().all(|r| r.teacher.is_some());
        let per_row = 1 + rows.iter().map(|r| r.negatives.len()).min().unwrap_or(0);
        if let Some(r) = rows.iter().find(|r| r.negatives.len() + 1 != per_row) {
            bail!(
                "{}: {} hard negatives; ColBERT training needs the same number in every row",
                r.origin,
                r.negatives.len()
            );
        }
        if distill && per_row < 2 {
            bail!("distillation needs at least one hard negative per row");
        }
        let encoded: Vec<Row> = rows
            .par_iter()
            .map(|r: &PairRow| {
                let documents = std::iter::once(&r.positive)
                    .chain(&r.negatives)
                    .map(|d| encode(&colbert, &tok, d, false))
                    .collect::<Result<_>>()?;
                Ok(Row { query: encode(&colbert, &tok, &r.query, true)?, documents, teacher: r.teacher.clone() })
            })
            .collect::<Result<_>>()?;
        let lengths = encoded
            .iter()
            .map(|r| r.query.ids.len() + r.documents.iter().map(|d| d.ids.len()).sum::<usize>())
            .collect();
        let eval_queries =
            eval.queries.par_iter().map(|(_, t)| encode(&colbert, &tok, t, true)).collect::<Result<_>>()?;
        let eval_corpus =
            eval.corpus.par_iter().map(|(_, t)| encode(&colbert, &tok, t, false)).collect::<Result<_>>()?;
        Ok(Self {
            rows: encoded,
            lengths,
            distill,
            per_row,
            colbert,
            dim: cfg.colbert_dim,
            eval,
            eval_queries,
            eval_corpus,
            eval_source,
        })
    }

    /// Normalised token vectors `[tokens, dim]` of the inputs' kept positions, and each input's
    /// number of kept positions.
    fn vectors(
        &self,
        model: &TrainModel,
        inputs: &[&Input],
        ctx: &StepContext,
        micro: u64,
    ) -> Result<(Tensor, Vec<usize>)> {
        let (ids, cu) = concat(inputs.iter().map(|i| i.ids.as_slice()));
        let limited = inputs.iter().any(|i| i.keys < i.ids.len());
        let hidden = if limited {
            let keys: Vec<u32> = inputs.iter().map(|i| i.keys as u32).collect();
            model.forward_hidden_with_key_limits(&ids, &cu, &keys, ctx.key(micro))?
        } else {
            model.forward_hidden(&ids, &cu, ctx.key(micro))?
        };
        let kept: Vec<u32> = inputs
            .iter()
            .zip(cu.iter())
            .flat_map(|(i, &start)| i.kept.iter().map(move |&k| start + k as u32))
            .collect();
        let n = kept.len();
        let picked = hidden.index_select(&Tensor::from_vec(kept, n, &Device::Cpu)?, 0)?;
        let projected = picked.matmul(&model.var(DENSE)?.as_tensor().t()?)?;
        let norm = projected.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::INFINITY)?;
        Ok((projected.broadcast_div(&norm)?, inputs.iter().map(|i| i.kept.len()).collect()))
    }

    /// MaxSim scores `[queries, documents]` as PyLate's training computes them: every query
    /// token's best dot product over the document's kept tokens, where a document with fewer
    /// kept tokens than `document_length` also offers 0 (its masked slots).
    fn scores(&self, q: &Tensor, q_lens: &[usize], d: &Tensor, d_lens: &[usize]) -> Result<Tensor> {
        let lq = q_lens[0];
        if q_lens.iter().any(|&l| l != lq) {
            bail!("queries of one step must have the same length");
        }
        let (nq, nd) = (q_lens.len(), d_lens.len());
        let slots = d_lens.iter().max().copied().unwrap_or(0) + 1;
        // Documents gathered into `slots` rows each by one `index_select` (its backward is one
        // scatter), slots past a document's end reading an appended zero row; padding that
        // PyLate would not see is masked.
        let zero_row = d.dim(0)? as u32;
        let mut index = Vec::with_capacity(nd * slots);
        let mut mask = vec![0f32; nd * slots];
        let mut start = 0;
        for (j, &len) in d_lens.iter().enumerate() {
            index.extend((0..slots).map(|s| if s < len { (start + s) as u32 } else { zero_row }));
            start += len;
            if len >= self.colbert.document_length {
                mask[j * slots + len..(j + 1) * slots].fill(-1e4);
            }
        }
        let padded = Tensor::cat(&[d, &Tensor::zeros((1, self.dim), candle_core::DType::F32, &Device::Cpu)?], 0)?;
        let docs = padded.index_select(&Tensor::new(index, &Device::Cpu)?, 0)?; // [nd·slots, dim]
        let sim = q.matmul(&docs.t()?)?.reshape((nq, lq, nd, slots))?;
        let sim = sim.broadcast_add(&Tensor::from_vec(mask, (1, 1, nd, slots), &Device::Cpu)?)?;
        Ok(sim.max(D::Minus1)?.sum(1)?)
    }
}

impl Job for ColbertJob {
    fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    fn start_model(&self, cfg: &FinetuneConfig, dir: &Path) -> Result<(TrainModel, String)> {
        if dir.join("1_Dense/model.safetensors").is_file() {
            let model = self.load_model(dir)?;
            let dim = model.var(DENSE)?.dims()[0];
            if dim != self.dim {
                bail!("{} projects to {dim} dimensions, not --colbert-dim {}", dir.display(), self.dim);
            }
            return Ok((model, format!("model: the ColBERT model {} (continued)", dir.display())));
        }
        let mut config = Config::from_file(&dir.join("config.json"))?;
        let w = modernbert::weights::Weights::from_dir(dir, &Device::Cpu)?;
        let mut specs = param_specs(&config, HeadKind::None);
        let mut tensors = read_params(&w, &specs)?;
        // Two new token rows for `[Q] ` and `[D] `: the mean of the existing rows.
        let name = "model.embeddings.tok_embeddings.weight";
        let emb = &tensors[name];
        let mean = emb.mean_keepdim(0)?;
        tensors.insert(name.into(), Tensor::cat(&[emb, &mean, &mean], 0)?);
        config.vocab_size += 2;
        config.architecture = Some(HeadKind::None.architecture().into());
        specs = param_specs(&config, HeadKind::None);
        debug_assert_eq!(specs.len(), tensors.len());
        let mut model = TrainModel::from_tensors(config, &tensors)?;
        // torch.nn.Linear's default init: U(−1/√in, 1/√in), seeded.
        let h = model.config().hidden_size;
        let bound = 1.0 / (h as f64).sqrt();
        let mut rng = Rng::keyed(cfg.seed, &[0xC01B]);
        let values: Vec<f32> = (0..self.dim * h).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32).collect();
        model.add_param(DENSE, &Tensor::from_vec(values, (self.dim, h), &Device::Cpu)?)?;
        let note = format!(
            "model: the backbone of {} + [Q]/[D] token rows + a Dense {h}→{} ({})",
            dir.display(),
            self.dim,
            if self.distill { "KL distillation from teacher scores" } else { "contrastive over in-batch documents" }
        );
        Ok((model, note))
    }

    fn load_model(&self, dir: &Path) -> Result<TrainModel> {
        let mut model = TrainModel::load(dir)?;
        let dense = candle_core::safetensors::load(dir.join("1_Dense/model.safetensors"), &Device::Cpu)?;
        model.add_param(DENSE, dense.get("linear.weight").context("1_Dense has no linear.weight")?)?;
        Ok(model)
    }

    fn step(&self, model: &TrainModel, items: &[usize], ctx: &mut StepContext) -> Result<f64> {
        let queries: Vec<&Input> = items.iter().map(|&i| &self.rows[i].query).collect();
        let documents: Vec<&Input> = items.iter().flat_map(|&i| &self.rows[i].documents).collect();
        let (q, q_lens) = self.vectors(model, &queries, ctx, 0)?;
        let (d, d_lens) = self.vectors(model, &documents, ctx, 1)?;
        let b = items.len();
        let loss = if self.distill {
            // Each query against its own documents; student scores min–max normalised per row,
            // KL(teacher ‖ student) on log-softmaxes, averaged over rows (PyLate's Distillation).
            let mut total: Option<Tensor> = None;
            let n = self.per_row;
            for (r, &i) in items.iter().enumerate() {
                let s = self.scores(
                    &q.narrow(0, r * q_lens[0], q_lens[0])?,
                    &q_lens[r..=r],
                    &{
                        let start: usize = d_lens[..r * n].iter().sum();
                        let len: usize = d_lens[r * n..(r + 1) * n].iter().sum();
                        d.narrow(0, start, len)?
                    },
                    &d_lens[r * n..(r + 1) * n],
                )?;
                let (max, min) = (s.max_keepdim(D::Minus1)?, s.min_keepdim(D::Minus1)?);
                let s = s.broadcast_sub(&min)?.broadcast_div(&((max - &min)? + 1e-8)?)?;
                let log_s = log_softmax(&s)?;
                let teacher = self.rows[i].teacher.as_ref().context("teacher scores")?;
                let t = log_softmax(&Tensor::from_slice(teacher, (1, n), &Device::Cpu)?)?;
                let kl = (t.exp()? * (t - log_s)?)?.sum_all()?;
                total = Some(match total {
                    Some(x) => (x + kl)?,
                    None => kl,
                });
            }
            (total.context("an empty step")? / b as f64)?
        } else {
            // Every query against every document of the step; the target is its own positive.
            let s = self.scores(&q, &q_lens, &d, &d_lens)?;
            let targets: Vec<u32> = (0..b).map(|i| (i * self.per_row) as u32).collect();
            (cross_entropy_sum(&s, &targets)? / b as f64)?
        };
        let value = loss.to_scalar::<f32>()? as f64;
        grads::accumulate(ctx.grads, model, &loss.backward()?)?;
        Ok(value)
    }

    fn evaluate(&self, model: &TrainModel) -> Result<Evaluation> {
        let mut inference = model.to_inference()?;
        inference.format = Format::Colbert(Box::new(self.with_dense(model)?));
        let vectors = |inputs: &[Input]| -> Result<Vec<Vec<Vec<f32>>>> {
            let prepared: Vec<Prepared> = inputs
                .iter()
                .map(|i| Prepared { ids: i.ids.clone(), prompt_len: 0, keys: Some(i.keys), kept: Some(i.kept.clone()) })
                .collect();
            let wanted: Vec<(&Prepared, Want)> = prepared.iter().map(|p| (p, Want::Embedding)).collect();
            inference
                .run(&wanted, None)?
                .into_iter()
                .map(|o| match o {
                    Output::Vectors(v) => Ok(v),
                    _ => bail!("expected token vectors"),
                })
                .collect()
        };
        let (queries, corpus) = (vectors(&self.eval_queries)?, vectors(&self.eval_corpus)?);
        let rankings: Vec<Vec<&str>> = queries
            .par_iter()
            .map(|q| {
                let s: Vec<f32> = corpus.iter().map(|d| maxsim(q, d)).collect();
                top_k(&s, 100).into_iter().map(|i| self.eval.corpus[i].0.as_str()).collect()
            })
            .collect();
        let m = metrics(&self.eval, &rankings);
        Ok(Evaluation {
            loss: 1.0 - m.ndcg_at_10,
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
        colbert_format::write(dir, &self.with_dense(model)?, &source.join("tokenizer.json"))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "data: {} training queries with {} documents each ({}); query length {}, document length {}, \
             vectors of {} dimensions; validation: {} queries over {} documents ({})",
            self.rows.len(),
            self.per_row,
            if self.distill { "KL distillation from teacher scores" } else { "contrastive over in-batch documents" },
            self.colbert.query_length,
            self.colbert.document_length,
            self.dim,
            self.eval.queries.len(),
            self.eval.corpus.len(),
            self.eval_source
        )
    }

    fn usage(&self, output: &Path) -> String {
        let o = output.display();
        format!(
            "```bash\nmodernbert rerank --model {o} --query \"a question\" \"a passage\" \"another passage\"\n```\n\n\
             ```python\nfrom pylate import models\nmodel = models.ColBERT(model_name_or_path=\"{o}\")\n```"
        )
    }
}

impl ColbertJob {
    /// The model's ColBERT rules with its current Dense weight.
    fn with_dense(&self, model: &TrainModel) -> Result<Colbert> {
        let weight = model.var(DENSE)?.as_tensor().copy()?.detach();
        Ok(Colbert { dense: vec![Dense { weight, bias: None, activation: None }], ..self.colbert.clone() })
    }
}

/// Log-softmax over the last dimension (composed: exact gradient).
fn log_softmax(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?.detach();
    let shifted = x.broadcast_sub(&max)?;
    Ok(shifted.broadcast_sub(&shifted.exp()?.sum_keepdim(D::Minus1)?.log()?)?)
}
