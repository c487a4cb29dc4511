//! What users ask a model for — sentence embeddings, token vectors, classifier logits, pair
//! scores — finished by the model's format ([`Format`]): the sentence-transformers chain, the
//! cross-encoder activation, PyLate's ColBERT rules. Plain vectors in and out.
//!
//! Two steps, so that a server can batch inputs of many requests: [`Model::prepare`] tokenises an
//! input as its format says (prompts, lengths, prefixes), and [`Model::run`] runs prepared inputs
//! through the encoder in unpadded, token-budgeted batches. [`Model::embed`] and
//! [`Model::score_pairs`] do both for the CLI and the Python package.

use crate::batch::Batch;
use crate::embedding::{finish, Chain, PoolingMode, Tokens};
use crate::error::{Error, Result};
use crate::formats::colbert::maxsim;
use crate::formats::Format;
use crate::heads::Head;
use crate::tasks::{Embedding, MAX_BATCH_TOKENS};
use crate::tokenizer::Truncation;
use crate::Model;

/// How to embed: sentence-transformers' `encode` arguments plus TEI's truncation and pooling.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EmbedOptions {
    /// A prompt of the model's `prompts` by name.
    pub prompt_name: Option<String>,
    /// A prompt string (wins over `prompt_name`; `""` means none).
    pub prompt: Option<String>,
    /// Keep the first `k` dimensions (Matryoshka); default: the model's saved `truncate_dim`.
    pub truncate_dim: Option<usize>,
    /// L2-normalise the final vector (after truncation).
    pub normalize: bool,
    /// Cut inputs to at most this (on top of the model's own limit); without it, an input longer
    /// than the model's maximum is an error.
    pub truncation: Option<Truncation>,
    /// ColBERT: encode queries (else documents).
    pub is_query: bool,
    /// Replace the model's pooling modes (TEI's `--pooling`).
    pub pooling: Option<PoolingMode>,
}

/// An input tokenised for this model, with what its pipeline needs to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    /// Token ids with the special tokens.
    pub ids: Vec<u32>,
    /// Leading tokens counted as the prompt (`[CLS]` + the prompt tokenised alone), which
    /// pooling leaves out when the model says `include_prompt: false`; 0 without a prompt.
    pub prompt_len: usize,
    /// ColBERT: tokens attend only to the first `keys` tokens.
    pub keys: Option<usize>,
    /// ColBERT: the positions that get a vector.
    pub kept: Option<Vec<usize>>,
}

impl Prepared {
    /// Token ids as they are (no prompt, nothing excluded).
    pub fn from_ids(ids: Vec<u32>) -> Self {
        Self { ids, prompt_len: 0, keys: None, kept: None }
    }
}

/// What to compute for a prepared input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The model's embedding: the chain's vector, or ColBERT's token vectors (unfinished:
    /// [`Model::finish`] applies truncation and normalisation).
    Embedding,
    /// Every token's final hidden state (ColBERT: its token vectors).
    TokenStates,
    /// Sequence-classification logits.
    Logits,
}

/// A computed output.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    Vector(Vec<f32>),
    Vectors(Vec<Vec<f32>>),
    Logits(Vec<f32>),
}

impl Model {
    /// The embedding chain of a non-ColBERT model (mean pooling for a plain checkpoint).
    fn chain(&self, pooling: Option<PoolingMode>) -> Chain {
        let chain = match &self.format {
            Format::SentenceTransformer(st) => st.chain.clone(),
            _ => Chain::mean(),
        };
        match pooling {
            Some(p) => chain.with_pooling(p),
            None => chain,
        }
    }

    /// The pooling modes of the model's embedding chain (`[]` for ColBERT's token vectors).
    pub fn pooling_names(&self, pooling: Option<PoolingMode>) -> Vec<&'static str> {
        if matches!(self.format, Format::Colbert(_)) {
            return Vec::new();
        }
        self.chain(pooling)
            .modules
            .iter()
            .flat_map(|m| match m {
                crate::embedding::Module::Pooling { modes, .. } => modes.iter().map(|p| p.name()).collect(),
                _ => Vec::new(),
            })
            .collect()
    }

    /// The width of the vectors `embed` returns by default: [`Model::dimension`] cut to the
    /// model's saved `truncate_dim` (sentence-transformers' `get_sentence_embedding_dimension`).
    pub fn output_dimension(&self) -> usize {
        match &self.format {
            Format::SentenceTransformer(st) => st.truncate_dim.map_or(self.dimension(), |k| k.min(self.dimension())),
            _ => self.dimension(),
        }
    }

    /// The width of the model's embeddings (before Matryoshka truncation).
    pub fn dimension(&self) -> usize {
        match &self.format {
            Format::Colbert(c) => c.dense.last().map_or(self.config.hidden_size, |d| d.out_features()),
            _ => self.chain(None).dimension(self.config.hidden_size),
        }
    }

    /// The prompt text the options select (sentence-transformers' resolution rule).
    pub fn resolve_prompt<'a>(&'a self, opts: &'a EmbedOptions) -> Result<Option<&'a str>> {
        let prompts = match &self.format {
            Format::SentenceTransformer(st) => Some(&st.prompts),
            Format::Colbert(c) => Some(&c.prompts),
            _ => None,
        };
        match prompts {
            Some(p) => p.resolve(opts.prompt_name.as_deref(), opts.prompt.as_deref()),
            None => match (&opts.prompt_name, &opts.prompt) {
                (_, Some(p)) => Ok(Some(p.as_str()).filter(|p| !p.is_empty())),
                (Some(name), None) => {
                    Err(Error::Input(format!("prompt name {name:?} given, but the model has no prompts")))
                }
                (None, None) => Ok(None),
            },
        }
    }

    /// The truncation an input gets: the caller's, capped by the format's maximum length.
    pub(crate) fn truncation(&self, requested: Option<Truncation>) -> Option<Truncation> {
        let own = match &self.format {
            Format::SentenceTransformer(st) => st.max_seq_length,
            Format::CrossEncoder(ce) => ce.max_length,
            _ => None,
        };
        match (requested, own) {
            (Some(t), Some(n)) => Some(Truncation { max_length: t.max_length.min(n), side: t.side }),
            (None, Some(n)) => Some(Truncation::right(n)),
            (t, None) => t,
        }
    }

    /// Tokenises `text` for an embedding as the model's format says.
    pub fn prepare(&self, text: &str, opts: &EmbedOptions) -> Result<Prepared> {
        let tokenizer = self.tokenizer()?;
        if text.trim().is_empty() {
            return Err(Error::Input("empty text".into()));
        }
        let prompt = self.resolve_prompt(opts)?;
        if let Format::Colbert(c) = &self.format {
            let input = c.encode(tokenizer, text, opts.is_query, prompt)?;
            return Ok(Prepared { ids: input.ids, prompt_len: 0, keys: Some(input.keys), kept: Some(input.kept) });
        }
        let lower = matches!(&self.format, Format::SentenceTransformer(st) if st.lower_case);
        let mut full = match prompt {
            Some(p) => format!("{p}{text}"),
            None => text.to_string(),
        };
        if lower {
            full = full.to_lowercase();
        }
        let enc = tokenizer.encode(&full, None, true, self.truncation(opts.truncation))?;
        self.check_length(enc.ids.len())?;
        let prompt_len = match prompt {
            Some(p) => {
                // sentence-transformers tokenises the prompt alone and drops a closing special.
                let alone = tokenizer.encode(p, None, true, None)?;
                alone.ids.len() - usize::from(alone.special_tokens_mask.last() == Some(&1))
            }
            _ => 0,
        };
        Ok(Prepared { ids: enc.ids, prompt_len, keys: None, kept: None })
    }

    /// Tokenises a (query, document) pair for a cross-encoder.
    pub fn prepare_pair(&self, query: &str, document: &str, truncation: Option<Truncation>) -> Result<Prepared> {
        if query.trim().is_empty() || document.trim().is_empty() {
            return Err(Error::Input("the query and every document must be non-empty".into()));
        }
        let enc = self.tokenizer()?.encode(query, Some(document), true, self.truncation(truncation))?;
        self.check_length(enc.ids.len())?;
        Ok(Prepared::from_ids(enc.ids))
    }

    fn check_length(&self, n: usize) -> Result<()> {
        let max = self.config.max_position_embeddings;
        if n > max {
            return Err(Error::TooLong { tokens: n, max });
        }
        Ok(())
    }

    /// Runs prepared inputs through the encoder (unpadded, length-sorted batches of at most
    /// [`MAX_BATCH_TOKENS`] tokens) and computes what each one wants; outputs in input order.
    pub fn run(&self, inputs: &[(&Prepared, Want)], pooling: Option<PoolingMode>) -> Result<Vec<Output>> {
        let chain = self.chain(pooling);
        let colbert = match &self.format {
            Format::Colbert(c) => Some(c.as_ref()),
            _ => None,
        };
        if let Some(bad) = inputs.iter().find(|(p, _)| p.ids.is_empty()) {
            return Err(Error::Input(format!("an input of {} tokens", bad.0.ids.len())));
        }
        // Sequences whose keys are a prefix run apart (a dense kernel for short sequences).
        let limited = |p: &Prepared| p.keys.is_some_and(|k| k < p.ids.len());
        let mut results: Vec<Option<Output>> = (0..inputs.len()).map(|_| None).collect();
        for group in [false, true] {
            let mut order: Vec<usize> = (0..inputs.len()).filter(|&i| limited(inputs[i].0) == group).collect();
            order.sort_by_key(|&i| std::cmp::Reverse(inputs[i].0.ids.len()));
            let mut start = 0;
            while start < order.len() {
                let (mut end, mut tokens) = (start, 0);
                while end < order.len() && (end == start || tokens + inputs[order[end]].0.ids.len() <= MAX_BATCH_TOKENS)
                {
                    tokens += inputs[order[end]].0.ids.len();
                    end += 1;
                }
                let members = &order[start..end];
                let mut batch = Batch::new(&members.iter().map(|&i| inputs[i].0.ids.as_slice()).collect::<Vec<_>>())?;
                if group {
                    batch = batch
                        .with_key_limits(members.iter().map(|&i| inputs[i].0.keys.unwrap_or(0) as u32).collect())?;
                }
                let outputs = self.run_batch(&batch, members.iter().map(|&i| inputs[i]).collect(), &chain, colbert)?;
                for (&i, out) in members.iter().zip(outputs) {
                    results[i] = Some(out);
                }
                start = end;
            }
        }
        Ok(results.into_iter().map(|r| r.expect("every input belongs to one batch")).collect())
    }

    fn run_batch(
        &self,
        batch: &Batch,
        inputs: Vec<(&Prepared, Want)>,
        chain: &Chain,
        colbert: Option<&crate::formats::Colbert>,
    ) -> Result<Vec<Output>> {
        let hidden = self.backbone.forward(batch)?;
        let d = self.config.hidden_size;
        let logits = if inputs.iter().any(|(_, w)| *w == Want::Logits) {
            let Head::SequenceClassification(head) = &self.head else {
                return Err(Error::Input(format!("{} has no sequence-classification head", self.head.name())));
            };
            Some(head.sequence_logits(&hidden, &batch.cu_seqlens)?.to_vec2::<f32>()?)
        } else {
            None
        };
        let states = hidden.flatten_all()?.to_vec1::<f32>()?;
        let seq = |b: usize| &states[batch.range(b).start * d..batch.range(b).end * d];
        // The chain runs once over every sequence that wants a pooled embedding.
        let pooled_members: Vec<usize> =
            (0..inputs.len()).filter(|&b| inputs[b].1 == Want::Embedding && colbert.is_none()).collect();
        let tokens: Vec<Tokens> = pooled_members
            .iter()
            .map(|&b| Tokens { states: seq(b), dim: d, prompt_len: inputs[b].0.prompt_len })
            .collect();
        let mut pooled = if tokens.is_empty() { Vec::new() } else { chain.forward(&tokens)? }.into_iter();
        let mut logits = logits.map(Vec::into_iter);
        let rows = |b: usize| -> Vec<Vec<f32>> { seq(b).chunks(d).map(<[f32]>::to_vec).collect() };
        inputs
            .iter()
            .enumerate()
            .map(|(b, (p, want))| {
                Ok(match (want, colbert) {
                    (Want::Logits, _) => Output::Logits(logits.as_mut().and_then(Iterator::next).unwrap_or_default()),
                    (_, Some(c)) => {
                        let all = rows(b);
                        let kept = match &p.kept {
                            Some(k) => k.iter().map(|&i| all[i].clone()).collect(),
                            None => all,
                        };
                        Output::Vectors(c.vectors(kept)?)
                    }
                    (Want::Embedding, None) => Output::Vector(pooled.next().expect("one pooled row per member")),
                    (Want::TokenStates, None) => Output::Vectors(rows(b)),
                })
            })
            .collect()
    }

    /// Matryoshka truncation (the call's, else the model's saved `truncate_dim`) and optional L2,
    /// as sentence-transformers' `encode` applies them.
    pub fn finish(&self, v: Vec<f32>, opts: &EmbedOptions) -> Vec<f32> {
        let saved = match &self.format {
            Format::SentenceTransformer(st) => st.truncate_dim,
            _ => None,
        };
        finish(v, opts.truncate_dim.or(saved), opts.normalize)
    }

    /// Embeds texts: one vector each, or one vector per token for a ColBERT model.
    pub fn embed(&self, texts: &[&str], opts: &EmbedOptions) -> Result<Vec<Embedding>> {
        let prepared = texts
            .iter()
            .enumerate()
            .map(|(i, t)| self.prepare(t, opts).map_err(|e| with_index(i, e)))
            .collect::<Result<Vec<_>>>()?;
        let inputs: Vec<(&Prepared, Want)> = prepared.iter().map(|p| (p, Want::Embedding)).collect();
        Ok(self
            .run(&inputs, opts.pooling)?
            .into_iter()
            .map(|o| match o {
                Output::Vector(v) => Embedding::Pooled(self.finish(v, opts)),
                Output::Vectors(v) => Embedding::Tokens(v),
                Output::Logits(l) => Embedding::Pooled(l),
            })
            .collect())
    }

    /// Relevance of each document to `query`: a cross-encoder's activated (or, with `raw`, raw)
    /// logit, or a ColBERT model's MaxSim score.
    pub fn score_pairs(
        &self,
        query: &str,
        documents: &[&str],
        raw: bool,
        truncation: Option<Truncation>,
    ) -> Result<Vec<f32>> {
        match &self.format {
            Format::CrossEncoder(ce) => {
                if self.config.num_labels != 1 {
                    return Err(Error::Input(format!(
                        "reranking needs a cross-encoder with one output; this model has {} labels",
                        self.config.num_labels
                    )));
                }
                let prepared = documents
                    .iter()
                    .enumerate()
                    .map(|(i, d)| self.prepare_pair(query, d, truncation).map_err(|e| with_index(i, e)))
                    .collect::<Result<Vec<_>>>()?;
                let inputs: Vec<(&Prepared, Want)> = prepared.iter().map(|p| (p, Want::Logits)).collect();
                self.run(&inputs, None)?
                    .into_iter()
                    .map(|o| match o {
                        Output::Logits(l) if raw => Ok(l[0]),
                        Output::Logits(l) => Ok(ce.scores(&l)[0]),
                        _ => Err(Error::Input("expected logits".into())),
                    })
                    .collect()
            }
            Format::Colbert(_) => {
                let q = EmbedOptions { is_query: true, truncation, ..Default::default() };
                let d = EmbedOptions { is_query: false, truncation, ..Default::default() };
                let query_vectors = match self.embed(&[query], &q)?.pop() {
                    Some(Embedding::Tokens(v)) => v,
                    _ => return Err(Error::Input("a ColBERT query gave no token vectors".into())),
                };
                Ok(self
                    .embed(documents, &d)?
                    .iter()
                    .map(|e| match e {
                        Embedding::Tokens(v) => maxsim(&query_vectors, v),
                        Embedding::Pooled(_) => f32::NAN,
                    })
                    .collect())
            }
            other => Err(Error::Input(format!(
                "reranking needs a cross-encoder or a ColBERT model; this is a {} model ({})",
                other.name(),
                self.head.name()
            ))),
        }
    }
}

fn with_index(i: usize, e: Error) -> Error {
    match e {
        Error::TooLong { tokens, max } => {
            Error::Input(format!("input {i} has {tokens} tokens, more than the model's maximum of {max}; truncate it"))
        }
        Error::Input(m) => Error::Input(format!("input {i}: {m}")),
        Error::Tokenizer(m) => Error::Tokenizer(format!("input {i}: {m}")),
        other => other,
    }
}
