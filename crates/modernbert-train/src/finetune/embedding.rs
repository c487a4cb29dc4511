//! Sentence-embedding fine-tuning (sentence-transformers' recipe): InfoNCE over in-batch negatives
//! plus given hard negatives on cosine similarities × `scale` (MultipleNegativesRankingLoss),
//! optionally summed over Matryoshka dimensions, with gradient caching (GradCache, ST's
//! CachedMultipleNegativesRankingLoss) so that a large batch fits in memory; steps never hold
//! the same text twice. Rows that carry a teacher's embeddings add their distillation: the mean
//! squared error between the normalised embeddings and the teacher's (sentence-transformers'
//! MSELoss), × `distill_weight`. Evaluated by retrieval (nDCG@10) on held-out data; written as a
//! sentence-transformers directory.

use super::batches::Batching;
use super::data::hold_out;
use super::evaluate::Evaluation;
use super::job::{Job, StepContext};
use super::pairs::{no_duplicate_steps, one_group_steps, read_pairs, text_hash, PairRow};
use super::{concat, export, FinetuneConfig};
use crate::grads;
use crate::losses::cross_entropy_sum;
use crate::model::TrainModel;
use crate::params::{param_specs, HeadKind};
use anyhow::{bail, Context, Result};
use candle_core::{Tensor, Var, D};
use modernbert::embedding::{l2_normalize, PoolingMode};
use modernbert::formats::sentence_transformers::{self as st, BiEncoderFiles};
use modernbert::pipelines::{Output, Prepared, Want};
use modernbert::retrieval::{dot_scores, metrics, top_k, RetrievalSet};
use modernbert::tokenizer::Truncation;
use modernbert::{Config, Pooling, Tokenizer};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::path::Path;

/// One training row, tokenised: the query, then its documents (positive first), and the
/// teacher's embeddings of those texts when distilling.
struct Encoded {
    query: Vec<u32>,
    documents: Vec<Vec<u32>>,
    teacher: Option<Vec<Vec<f32>>>,
}

/// An embedding run.
pub struct EmbeddingJob {
    train: Vec<Encoded>,
    lengths: Vec<usize>,
    hashes: Vec<Vec<u64>>,
    /// Each row's source (index), when steps hold one source each.
    groups: Option<Vec<usize>>,
    /// Hard negatives used per row.
    negatives: usize,
    eval: RetrievalSet,
    eval_queries: Vec<Vec<u32>>,
    eval_corpus: Vec<Vec<u32>>,
    eval_source: String,
    pooling: PoolingMode,
    scale: f64,
    /// Weight of the distillation term (rows with teacher embeddings).
    distill_weight: f64,
    dims: Vec<Option<usize>>,
    mini_batch: Option<usize>,
    prompts: BTreeMap<String, String>,
    max_length: usize,
    hidden_size: usize,
}

fn prompted(prompt: &Option<String>, text: &str) -> String {
    match prompt {
        Some(p) => format!("{p}{text}"),
        None => text.to_string(),
    }
}

/// Distillation needs teacher vectors on every row, as wide as the model's embeddings.
fn check_teacher_vectors(rows: &[PairRow], hidden_size: usize) -> Result<()> {
    for r in rows {
        let Some(vectors) = &r.teacher_vectors else {
            bail!("{}: no `teacher_vectors` (other rows have them: give them on every row)", r.origin)
        };
        let width = vectors[0].len();
        if width != hidden_size {
            bail!(
                "{}: teacher vectors are {width} wide, the model's embeddings {hidden_size} (project them to that \
                 width, e.g. scripts/retrieval_baselines.py --vectors --vector-dim {hidden_size})",
                r.origin
            );
        }
    }
    Ok(())
}

fn encode_all(tok: &Tokenizer, texts: &[String], max_length: usize) -> Result<Vec<Vec<u32>>> {
    texts.par_iter().map(|t| Ok(tok.encode(t, None, true, Some(Truncation::right(max_length)))?.ids)).collect()
}

/// A retrieval set from held-out pairs: each query's positive is its relevant document; every
/// positive and negative is in the corpus.
pub(crate) fn pairs_set(rows: &[PairRow]) -> RetrievalSet {
    let mut set = RetrievalSet::default();
    let mut ids: std::collections::HashMap<String, String> = Default::default();
    let mut doc_id = |text: &str, set: &mut RetrievalSet| -> String {
        ids.entry(text.to_string())
            .or_insert_with(|| {
                let id = format!("d{}", set.corpus.len());
                set.corpus.push((id.clone(), text.to_string()));
                id
            })
            .clone()
    };
    for (i, r) in rows.iter().enumerate() {
        let qid = format!("q{i}");
        let d = doc_id(&r.positive, &mut set);
        for n in &r.negatives {
            doc_id(n, &mut set);
        }
        set.qrels.entry(qid.clone()).or_default().insert(d);
        set.queries.push((qid, r.query.clone()));
    }
    set
}

impl EmbeddingJob {
    /// Reads and tokenises the pairs (and the validation set: a BEIR directory, a pairs file, or
    /// a seeded 10% of the training pairs).
    pub fn new(cfg: &FinetuneConfig, model_dir: &Path) -> Result<Self> {
        let config = Config::from_file(&model_dir.join("config.json"))?;
        let tok = Tokenizer::from_file(&model_dir.join("tokenizer.json"), config.max_position_embeddings)
            .with_context(|| format!("{} has no usable tokenizer.json", model_dir.display()))?;
        let max_length = cfg.max_length.min(config.max_position_embeddings);
        let rows = read_pairs(&cfg.train)?;
        let (rows, eval, eval_source) = match &cfg.validation {
            Some(p) if p.is_dir() => (rows, RetrievalSet::read_dir(p)?, p.display().to_string()),
            Some(p) => (rows, pairs_set(&read_pairs(p)?), p.display().to_string()),
            None => {
                let (train, held) = hold_out(rows, cfg.seed)?;
                (train, pairs_set(&held), format!("10% of {} held out (seed {})", cfg.train.display(), cfg.seed))
            }
        };
        let negatives = match cfg.hard_negatives {
            Some(k) => {
                if let Some(r) = rows.iter().find(|r| r.negatives.len() < k) {
                    bail!("{}: {} hard negatives, fewer than --hard-negatives {k}", r.origin, r.negatives.len());
                }
                k
            }
            None => rows.iter().map(|r| r.negatives.len()).min().unwrap_or(0),
        };
        let pooling = PoolingMode::parse(cfg.pooling.as_deref().unwrap_or("mean"))
            .filter(|p| matches!(p, PoolingMode::Mean | PoolingMode::Cls))
            .context("pooling: embedding training supports `mean` and `cls`")?;
        let (qp, dp) = (&cfg.query_prompt, &cfg.document_prompt);
        let queries: Vec<String> = rows.iter().map(|r| prompted(qp, &r.query)).collect();
        let docs: Vec<String> = rows
            .iter()
            .flat_map(|r| std::iter::once(&r.positive).chain(r.negatives.iter().take(negatives)))
            .map(|t| prompted(dp, t))
            .collect();
        if rows.iter().any(|r| r.teacher_vectors.is_some()) {
            check_teacher_vectors(&rows, config.hidden_size)?;
        }
        let q_ids = encode_all(&tok, &queries, max_length)?;
        let mut d_ids = encode_all(&tok, &docs, max_length)?.into_iter();
        let train: Vec<Encoded> = q_ids
            .into_iter()
            .zip(&rows)
            .map(|(query, r)| Encoded {
                query,
                documents: (0..=negatives).filter_map(|_| d_ids.next()).collect(),
                teacher: r.teacher_vectors.as_ref().map(|v| v[..2 + negatives].to_vec()),
            })
            .collect();
        let lengths = train.iter().map(|e| e.query.len() + e.documents.iter().map(Vec::len).sum::<usize>()).collect();
        let hashes = rows
            .iter()
            .map(|r| {
                std::iter::once(&r.query)
                    .chain(std::iter::once(&r.positive))
                    .chain(r.negatives.iter().take(negatives))
                    .map(|t| text_hash(t))
                    .collect()
            })
            .collect();
        let groups = if cfg.batch_by_source {
            let mut names: Vec<&str> = Vec::new();
            let mut groups = Vec::with_capacity(rows.len());
            for r in &rows {
                let name = r.source.as_deref().with_context(|| {
                    format!("{}: batch_by_source needs a \"source\" (or \"dataset\") on every row", r.origin)
                })?;
                groups.push(names.iter().position(|n| *n == name).unwrap_or_else(|| {
                    names.push(name);
                    names.len() - 1
                }));
            }
            Some(groups)
        } else {
            None
        };
        let eval_queries =
            encode_all(&tok, &eval.queries.iter().map(|(_, t)| prompted(qp, t)).collect::<Vec<_>>(), max_length)?;
        let eval_corpus =
            encode_all(&tok, &eval.corpus.iter().map(|(_, t)| prompted(dp, t)).collect::<Vec<_>>(), max_length)?;
        let mut prompts = BTreeMap::new();
        if let Some(p) = qp {
            prompts.insert("query".to_string(), p.clone());
        }
        if let Some(p) = dp {
            prompts.insert("document".to_string(), p.clone());
        }
        let dims: Vec<Option<usize>> = match &cfg.matryoshka_dims {
            Some(d) => {
                if let Some(&k) = d.iter().find(|&&k| k > config.hidden_size) {
                    bail!("matryoshka_dims: {k} is wider than the model's {} dimensions", config.hidden_size);
                }
                let mut d = d.clone();
                d.sort_unstable_by(|a, b| b.cmp(a));
                d.dedup();
                d.into_iter().map(|k| Some(k).filter(|&k| k < config.hidden_size)).collect()
            }
            None => vec![None],
        };
        Ok(Self {
            train,
            lengths,
            hashes,
            groups,
            negatives,
            eval,
            eval_queries,
            eval_corpus,
            eval_source,
            pooling,
            scale: cfg.scale,
            distill_weight: cfg.distill_weight,
            dims,
            mini_batch: cfg.mini_batch_size,
            prompts,
            max_length,
            hidden_size: config.hidden_size,
        })
    }

    fn pooling(&self) -> Pooling {
        if self.pooling == PoolingMode::Cls {
            Pooling::Cls
        } else {
            Pooling::Mean
        }
    }

    /// The teacher's embeddings of a step's texts in the order of [`Self::loss`], if distilling.
    fn teacher(&self, items: &[usize]) -> Result<Option<Tensor>> {
        if items.first().is_none_or(|&i| self.train[i].teacher.is_none()) {
            return Ok(None);
        }
        let width = self.hidden_size;
        let mut flat = Vec::with_capacity(items.len() * (2 + self.negatives) * width);
        for column in 0..2 + self.negatives {
            for &i in items {
                flat.extend_from_slice(&self.train[i].teacher.as_ref().context("teacher embeddings")?[column]);
            }
        }
        Ok(Some(Tensor::from_vec(flat, (items.len() * (2 + self.negatives), width), &candle_core::Device::Cpu)?))
    }

    /// The step's loss from all its embeddings: rows `0..b` are the queries, then the positives,
    /// then the first hard negatives of every row, and so on (sentence-transformers' column order);
    /// `teacher` holds the teacher's embeddings of the same texts when distilling.
    fn loss(&self, embeddings: &Tensor, b: usize, teacher: Option<&Tensor>) -> Result<Tensor> {
        let (q, docs) = (embeddings.narrow(0, 0, b)?, embeddings.narrow(0, b, embeddings.dim(0)? - b)?);
        let targets: Vec<u32> = (0..b as u32).collect();
        let mut total: Option<Tensor> = None;
        for dim in &self.dims {
            let (q, d) = match dim {
                Some(k) => (q.narrow(1, 0, *k)?, docs.narrow(1, 0, *k)?),
                None => (q.clone(), docs.clone()),
            };
            let scores = (normalize(&q)?.matmul(&normalize(&d)?.t()?)? * self.scale)?;
            let l = (cross_entropy_sum(&scores, &targets)? / b as f64)?;
            total = Some(match total {
                Some(t) => (t + l)?,
                None => l,
            });
        }
        let total = total.context("no Matryoshka dimension")?;
        match teacher {
            Some(t) => Ok((total + ((normalize(embeddings)? - t)?.sqr()?.mean_all()? * self.distill_weight)?)?),
            None => Ok(total),
        }
    }
}

/// Rows scaled to unit L2 norm (`F.normalize`: norm clamped at 1e-12).
fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}

impl Job for EmbeddingJob {
    fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    fn epoch_steps(&self, seed: u64, epoch: u64, batching: Batching) -> Vec<Vec<usize>> {
        let size = match batching {
            Batching::Sequences(n) => n,
            Batching::Tokens(t) => (t / (self.lengths.iter().sum::<usize>() / self.lengths.len().max(1)).max(1)).max(1),
        };
        match &self.groups {
            Some(groups) => one_group_steps(&self.hashes, groups, seed, epoch, size),
            None => no_duplicate_steps(&self.hashes, seed, epoch, size),
        }
    }

    fn start_model(&self, _cfg: &FinetuneConfig, dir: &Path) -> Result<(TrainModel, String)> {
        let mut config = Config::from_file(&dir.join("config.json"))?;
        let w = modernbert::weights::Weights::from_dir(dir, &candle_core::Device::Cpu)?;
        config.architecture = Some(HeadKind::None.architecture().into());
        let tensors = crate::model::read_params(&w, &param_specs(&config, HeadKind::None))?;
        let note = format!("model: the backbone of {} ({} pooling)", dir.display(), self.pooling.name());
        Ok((TrainModel::from_tensors(config, &tensors)?, note))
    }

    fn step(&self, model: &TrainModel, items: &[usize], ctx: &mut StepContext) -> Result<f64> {
        let b = items.len();
        // Texts in sentence-transformers' column order: queries, positives, negatives by column.
        let mut texts: Vec<&[u32]> = items.iter().map(|&i| self.train[i].query.as_slice()).collect();
        for c in 0..=self.negatives {
            texts.extend(items.iter().map(|&i| self.train[i].documents[c].as_slice()));
        }
        let chunks: Vec<std::ops::Range<usize>> = match self.mini_batch {
            Some(m) => (0..texts.len()).step_by(m.max(1)).map(|s| s..(s + m.max(1)).min(texts.len())).collect(),
            None => std::iter::once(0..texts.len()).collect(),
        };
        let keys: Vec<_> = (0..chunks.len()).map(|k| ctx.key(k as u64)).collect();
        let teacher = self.teacher(items)?;
        let embed = |k: usize, r: &std::ops::Range<usize>| -> Result<Tensor> {
            let (ids, cu) = concat(texts[r.clone()].iter().copied());
            model.pooled(&ids, &cu, keys[k], self.pooling())
        };
        if chunks.len() == 1 {
            let loss = self.loss(&embed(0, &chunks[0])?, b, teacher.as_ref())?;
            let value = loss.to_scalar::<f32>()? as f64;
            grads::accumulate(ctx.grads, model, &loss.backward()?)?;
            return Ok(value);
        }
        // GradCache: embeddings without a graph, the loss's gradient with respect to them, then
        // each chunk again with its graph, backpropagating that gradient (same dropout masks).
        let cached = chunks.iter().enumerate().map(|(k, r)| Ok(embed(k, r)?.detach())).collect::<Result<Vec<_>>>()?;
        let all = Var::from_tensor(&Tensor::cat(&cached, 0)?)?;
        let loss = self.loss(all.as_tensor(), b, teacher.as_ref())?;
        let value = loss.to_scalar::<f32>()? as f64;
        let grad = loss.backward()?.get(all.as_tensor()).context("no gradient for the cached embeddings")?.clone();
        for (k, r) in chunks.iter().enumerate() {
            let e = embed(k, r)?;
            let surrogate = (e * grad.narrow(0, r.start, r.len())?)?.sum_all()?;
            grads::accumulate(ctx.grads, model, &surrogate.backward()?)?;
        }
        Ok(value)
    }

    fn evaluate(&self, model: &TrainModel) -> Result<Evaluation> {
        let inference = model.to_inference()?;
        let embed = |seqs: &[Vec<u32>]| -> Result<Vec<Vec<f32>>> {
            let prepared: Vec<Prepared> = seqs.iter().map(|s| Prepared::from_ids(s.clone())).collect();
            let inputs: Vec<(&Prepared, Want)> = prepared.iter().map(|p| (p, Want::Embedding)).collect();
            inference
                .run(&inputs, Some(self.pooling))?
                .into_iter()
                .map(|o| match o {
                    Output::Vector(mut v) => {
                        l2_normalize(&mut v);
                        Ok(v)
                    }
                    _ => bail!("expected pooled vectors"),
                })
                .collect()
        };
        let (queries, corpus) = (embed(&self.eval_queries)?, embed(&self.eval_corpus)?);
        let index: std::collections::HashMap<&str, usize> =
            self.eval.corpus.iter().enumerate().map(|(i, (id, _))| (id.as_str(), i)).collect();
        // Per query: the ranking, and InfoNCE over the whole corpus (scale · cosine) of its best
        // relevant document — the validation loss.
        let scored: Vec<(Vec<&str>, f64)> = queries
            .par_iter()
            .zip(&self.eval.queries)
            .map(|(q, (qid, _))| {
                let scores = dot_scores(q, &corpus);
                let s: Vec<f64> = scores.iter().map(|&x| x as f64 * self.scale).collect();
                let max = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let lse = s.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
                let best = self.eval.qrels[qid]
                    .iter()
                    .filter_map(|d| index.get(d.as_str()).map(|&i| s[i]))
                    .fold(f64::NEG_INFINITY, f64::max);
                let ranking = top_k(&scores, 100).into_iter().map(|i| self.eval.corpus[i].0.as_str()).collect();
                (ranking, if best.is_finite() { lse - best } else { 0.0 })
            })
            .collect();
        let loss = scored.iter().map(|(_, l)| l).sum::<f64>() / scored.len().max(1) as f64;
        let rankings: Vec<Vec<&str>> = scored.into_iter().map(|(r, _)| r).collect();
        let m = metrics(&self.eval, &rankings);
        Ok(Evaluation { loss, metric_name: "ndcg_at_10", metric: m.ndcg_at_10, metrics: serde_json::to_value(m)? })
    }

    fn main_metric(&self) -> &'static str {
        "ndcg_at_10"
    }

    fn write_model(&self, dir: &Path, model: &TrainModel, source: &Path) -> Result<()> {
        export::write_model(dir, model, source)?;
        st::write(
            dir,
            &BiEncoderFiles {
                pooling: self.pooling,
                normalize: true,
                prompts: self.prompts.clone(),
                max_seq_length: self.max_length,
                hidden_size: self.hidden_size,
            },
        )?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!(
            "data: {} training pairs with {} hard negatives each{}; validation: {} queries over {} documents \
             ({}); pooling {}, scale {}, Matryoshka dimensions {:?}, GradCache chunks {:?}",
            self.train.len(),
            self.negatives,
            match self.train.first().and_then(|e| e.teacher.as_ref()) {
                Some(_) => format!(", distilled from teacher embeddings (MSE × {})", self.distill_weight),
                None => String::new(),
            },
            self.eval.queries.len(),
            self.eval.corpus.len(),
            self.eval_source,
            self.pooling.name(),
            self.scale,
            self.dims.iter().map(|d| d.unwrap_or(self.hidden_size)).collect::<Vec<_>>(),
            self.mini_batch,
        )
    }

    fn usage(&self, output: &Path) -> String {
        let o = output.display();
        format!(
            "```bash\nmodernbert embed --model {o} \"some text\"\n```\n\n```python\nfrom sentence_transformers import \
             SentenceTransformer\nmodel = SentenceTransformer(\"{o}\")\n```"
        )
    }
}
