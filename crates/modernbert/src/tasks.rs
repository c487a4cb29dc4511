//! User-level jobs on a [`Model`]: fill-mask, embeddings, classification, tokenization.
//!
//! Inputs are tokenized, sorted by length and grouped into unpadded batches of at most
//! [`MAX_BATCH_TOKENS`] tokens; results come back in input order.

use crate::batch::Batch;
use crate::config::ProblemType;
use crate::error::{Error, Result};
use crate::heads::Head;
use crate::tokenizer::{Encoding, Truncation};
use crate::Model;
use candle_core::Tensor;
use serde::Serialize;

/// Token budget of one forward pass.
pub const MAX_BATCH_TOKENS: usize = 16_384;

/// One candidate for a `[MASK]` position.
#[derive(Debug, Clone, Serialize)]
pub struct MaskPrediction {
    pub token_id: u32,
    /// The decoded token, as HF's fill-mask pipeline reports `token_str`.
    pub token: String,
    /// Softmax probability over the vocabulary.
    pub score: f32,
    /// The raw MLM logit.
    pub logit: f32,
}

/// The candidates for one `[MASK]` of an input.
#[derive(Debug, Clone, Serialize)]
pub struct MaskResult {
    /// Token index of the mask in the encoded input (specials included).
    pub position: usize,
    pub predictions: Vec<MaskPrediction>,
}

/// The masked-LM prediction at one labelled position (see [`Model::score_masked`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaskedScore {
    /// The label (the original token id).
    pub label: u32,
    /// The arg-max prediction.
    pub predicted: u32,
    /// Negative log-likelihood of the label (natural log).
    pub nll: f32,
}

/// An embedding: one pooled vector, or one vector per token.
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum Embedding {
    Pooled(Vec<f32>),
    Tokens(Vec<Vec<f32>>),
}

/// A sequence-classification result.
#[derive(Debug, Clone, Serialize)]
pub struct Classification {
    pub logits: Vec<f32>,
    /// The best label.
    pub label: String,
    /// Probability of `label` (softmax; sigmoid per label for multi-label and single-logit
    /// models); the predicted value for regression.
    pub score: f32,
    /// Multi-label models: every label whose sigmoid probability is above 0.5, best first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<LabelScore>>,
}

/// A label and its probability.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelScore {
    pub label: String,
    pub score: f32,
}

/// A named entity: consecutive tokens of one type (HF's `aggregation_strategy="simple"`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Entity {
    /// The type, without its `B-`/`I-` prefix.
    pub entity_group: String,
    /// Mean score of the entity's tokens.
    pub score: f32,
    /// The entity's text.
    pub word: String,
    /// Character offsets into the input text.
    pub start: usize,
    pub end: usize,
}

/// Groups the tokens of one input into entities: `B-X` starts one, `I-X` (or a bare `X`)
/// continues an entity of type X or starts one, `O` ends it. Spans skip leading whitespace.
pub fn group_entities(text: &str, tokens: &[TokenLabel]) -> Vec<Entity> {
    let chars: Vec<char> = text.chars().collect();
    let mut out: Vec<Entity> = Vec::new();
    let mut open: Option<(Entity, usize)> = None; // entity and its token count
    let mut close = |open: &mut Option<(Entity, usize)>| {
        if let Some((mut e, n)) = open.take() {
            e.score /= n as f32;
            while e.start < e.end && chars[e.start].is_whitespace() {
                e.start += 1;
            }
            e.word = chars[e.start..e.end].iter().collect();
            out.push(e);
        }
    };
    for t in tokens {
        let (begin, kind) = match t.label.split_once('-') {
            Some(("B", k)) => (true, k),
            Some(("I", k)) => (false, k),
            _ if t.label == "O" => {
                close(&mut open);
                continue;
            }
            _ => (false, t.label.as_str()),
        };
        match &mut open {
            Some((e, n)) if !begin && e.entity_group == kind => {
                e.end = t.end.min(chars.len());
                e.score += t.score;
                *n += 1;
            }
            _ => {
                close(&mut open);
                let (start, end) = (t.start.min(chars.len()), t.end.min(chars.len()));
                let e = Entity { entity_group: kind.to_string(), score: t.score, word: String::new(), start, end };
                open = Some((e, 1));
            }
        }
    }
    close(&mut open);
    out
}

/// A token-classification result for one (non-special) token.
#[derive(Debug, Clone, Serialize)]
pub struct TokenLabel {
    pub token: String,
    /// Character offsets into the input text.
    pub start: usize,
    pub end: usize,
    pub label: String,
    pub score: f32,
    pub logits: Vec<f32>,
}

/// Output of [`Model::classify`].
#[derive(Debug, Clone, Serialize)]
#[serde(untagged)]
pub enum ClassifyOutput {
    Sequence(Classification),
    Tokens(Vec<TokenLabel>),
}

impl Model {
    /// Tokenizes inputs with special tokens; empty texts are an error.
    pub fn encode(&self, inputs: &[(&str, Option<&str>)], truncate_to: Option<usize>) -> Result<Vec<Encoding>> {
        for (i, (text, pair)) in inputs.iter().enumerate() {
            if text.trim().is_empty() || pair.is_some_and(|p| p.trim().is_empty()) {
                return Err(Error::Input(format!("input {i} is empty")));
            }
        }
        self.tokenizer()?.encode_batch(inputs, self.truncation(truncate_to.map(Truncation::right)))
    }

    /// Runs the backbone over `sequences` in length-sorted batches and maps each batch's output
    /// with `f` (which returns one item per sequence of the batch); items return in input order.
    pub fn map_batches<T>(
        &self,
        sequences: &[&[u32]],
        mut f: impl FnMut(&Batch, &Tensor) -> Result<Vec<T>>,
    ) -> Result<Vec<T>> {
        let mut order: Vec<usize> = (0..sequences.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(sequences[i].len()));
        let mut results: Vec<Option<T>> = (0..sequences.len()).map(|_| None).collect();
        let mut start = 0;
        while start < order.len() {
            let mut end = start;
            let mut tokens = 0;
            while end < order.len() && (end == start || tokens + sequences[order[end]].len() <= MAX_BATCH_TOKENS) {
                tokens += sequences[order[end]].len();
                end += 1;
            }
            let members = &order[start..end];
            let batch = Batch::new(&members.iter().map(|&i| sequences[i]).collect::<Vec<_>>())?;
            let hidden = self.backbone.forward(&batch)?;
            let items = f(&batch, &hidden)?;
            for (&i, item) in members.iter().zip(items) {
                results[i] = Some(item);
            }
            start = end;
        }
        Ok(results.into_iter().map(|r| r.expect("every sequence belongs to one batch")).collect())
    }

    /// Top-`top_k` predictions for every `[MASK]` of every text.
    pub fn fill_mask(&self, texts: &[&str], top_k: usize, truncate_to: Option<usize>) -> Result<Vec<Vec<MaskResult>>> {
        if top_k == 0 {
            return Err(Error::Input("top_k must be at least 1".into()));
        }
        let Head::MaskedLm(mlm) = &self.head else {
            return Err(Error::Input(format!("fill-mask needs a masked-LM model, this is {}", self.head.name())));
        };
        let tokenizer = self.tokenizer()?;
        let mask_id = tokenizer
            .token_to_id("[MASK]")
            .ok_or_else(|| Error::Tokenizer("the tokenizer has no [MASK] token".into()))?;
        let inputs: Vec<_> = texts.iter().map(|t| (*t, None)).collect();
        let encodings = self.encode(&inputs, truncate_to)?;
        for (i, e) in encodings.iter().enumerate() {
            if !e.ids.contains(&mask_id) {
                return Err(Error::Input(format!("input {i} has no [MASK] token")));
            }
        }
        let sequences: Vec<&[u32]> = encodings.iter().map(|e| e.ids.as_slice()).collect();
        self.map_batches(&sequences, |batch, hidden| {
            // Run the head only on mask positions.
            let mut rows = Vec::new();
            let mut owners = Vec::new();
            for b in 0..batch.num_sequences() {
                for (offset, pos) in batch.range(b).enumerate() {
                    if batch.input_ids[pos] == mask_id {
                        rows.push(pos as u32);
                        owners.push((b, offset));
                    }
                }
            }
            let index = Tensor::new(rows.as_slice(), hidden.device())?;
            let logits = mlm.forward(&hidden.index_select(&index, 0)?)?.to_vec2::<f32>()?;
            let mut out: Vec<Vec<MaskResult>> = (0..batch.num_sequences()).map(|_| Vec::new()).collect();
            for ((b, position), l) in owners.into_iter().zip(&logits) {
                let p = softmax(l);
                let predictions = top_k_indices(&p, top_k)
                    .into_iter()
                    .map(|id| {
                        Ok(MaskPrediction {
                            token_id: id as u32,
                            token: tokenizer.decode(&[id as u32], false)?,
                            score: p[id],
                            logit: l[id],
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out[b].push(MaskResult { position, predictions });
            }
            Ok(out)
        })
    }

    /// Scores masked-LM predictions on one unpadded batch whose masked positions are given by
    /// `labels` (one per token: the original id, or a negative value for "not predicted", as in
    /// HF's `-100`). Returns one [`MaskedScore`] per labelled position, in token order.
    pub fn score_masked(&self, batch: &Batch, labels: &[i64]) -> Result<Vec<MaskedScore>> {
        let Head::MaskedLm(mlm) = &self.head else {
            return Err(Error::Input(format!("scoring masks needs a masked-LM model, this is {}", self.head.name())));
        };
        if labels.len() != batch.num_tokens() {
            return Err(Error::Input(format!("{} labels for {} tokens", labels.len(), batch.num_tokens())));
        }
        let (rows, targets): (Vec<u32>, Vec<u32>) =
            labels.iter().enumerate().filter(|(_, &l)| l >= 0).map(|(i, &l)| (i as u32, l as u32)).unzip();
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let vocab = self.config.vocab_size;
        if let Some(&bad) = targets.iter().find(|&&t| t as usize >= vocab) {
            return Err(Error::Input(format!("label {bad} is outside the vocabulary ({vocab})")));
        }
        let hidden = self.backbone.forward(batch)?;
        let mut scores = Vec::with_capacity(rows.len());
        // The head in chunks of rows: a chunk's logits are 512 × vocab floats (~100 MB at 50k).
        for (rows, targets) in rows.chunks(512).zip(targets.chunks(512)) {
            let index = Tensor::new(rows, hidden.device())?;
            let logits = mlm.forward(&hidden.index_select(&index, 0)?)?.to_vec2::<f32>()?;
            scores.extend(logits.iter().zip(targets).map(|(l, &label)| {
                let (best, max) =
                    l.iter().enumerate().fold(
                        (0, f32::NEG_INFINITY),
                        |acc, (i, &v)| {
                            if v > acc.1 {
                                (i, v)
                            } else {
                                acc
                            }
                        },
                    );
                let log_sum = l.iter().map(|v| (v - max).exp()).sum::<f32>().ln() + max;
                MaskedScore { label, predicted: best as u32, nll: log_sum - l[label as usize] }
            }));
        }
        Ok(scores)
    }

    /// Classifier logits for token-id sequences that already carry [CLS]/[SEP]: per sequence, one
    /// row for a sequence classifier, one row per token for a token classifier.
    pub fn classifier_logits(&self, sequences: &[&[u32]]) -> Result<Vec<Vec<Vec<f32>>>> {
        match &self.head {
            Head::SequenceClassification(head) => self.map_batches(sequences, |batch, hidden| {
                let logits = head.sequence_logits(hidden, &batch.cu_seqlens)?.to_vec2::<f32>()?;
                Ok(logits.into_iter().map(|l| vec![l]).collect())
            }),
            Head::TokenClassification(head) => self.map_batches(sequences, |batch, hidden| {
                let logits = head.token_logits(hidden)?;
                (0..batch.num_sequences())
                    .map(|b| {
                        let r = batch.range(b);
                        Ok(logits.narrow(0, r.start, r.len())?.to_vec2::<f32>()?)
                    })
                    .collect()
            }),
            other => Err(Error::Input(format!("classify needs a classification model, this is {}", other.name()))),
        }
    }

    /// Classifies texts (or text pairs) with a sequence- or token-classification head.
    pub fn classify(&self, inputs: &[(&str, Option<&str>)], truncate_to: Option<usize>) -> Result<Vec<ClassifyOutput>> {
        let encodings = self.encode(inputs, truncate_to)?;
        let sequences: Vec<&[u32]> = encodings.iter().map(|e| e.ids.as_slice()).collect();
        let logits = self.classifier_logits(&sequences)?;
        Ok(logits
            .into_iter()
            .zip(&encodings)
            .map(|(rows, enc)| match self.head {
                Head::TokenClassification(_) => ClassifyOutput::Tokens(
                    rows.into_iter()
                        .enumerate()
                        .filter(|(t, _)| enc.special_tokens_mask[*t] == 0)
                        .map(|(t, l)| {
                            let c = self.label_logits(l);
                            TokenLabel {
                                token: enc.tokens[t].clone(),
                                start: enc.offsets[t].0,
                                end: enc.offsets[t].1,
                                label: c.label,
                                score: c.score,
                                logits: c.logits,
                            }
                        })
                        .collect(),
                ),
                _ => ClassifyOutput::Sequence(self.label_logits(rows.into_iter().next().unwrap_or_default())),
            })
            .collect())
    }

    /// The label and score of one row of logits, by HF's text-classification rule: identity for
    /// regression, sigmoid for multi-label or single-output models, else softmax.
    fn label_logits(&self, logits: Vec<f32>) -> Classification {
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        let (index, score) = match (self.config.problem_type, logits.len()) {
            (Some(ProblemType::Regression), _) => (0, logits[0]),
            (Some(ProblemType::MultiLabel), _) | (None, 1) => {
                let best = top_k_indices(&logits, 1)[0];
                (best, sigmoid(logits[best]))
            }
            _ => {
                let p = softmax(&logits);
                let best = top_k_indices(&p, 1)[0];
                (best, p[best])
            }
        };
        let labels = (self.config.problem_type == Some(ProblemType::MultiLabel)).then(|| {
            top_k_indices(&logits, logits.len())
                .into_iter()
                .map(|i| LabelScore { label: self.config.label(i), score: sigmoid(logits[i]) })
                .filter(|l| l.score > 0.5)
                .collect()
        });
        Classification { label: self.config.label(index), score, logits, labels }
    }
}

fn softmax(x: &[f32]) -> Vec<f32> {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let e: Vec<f32> = x.iter().map(|v| (v - max).exp()).collect();
    let sum: f32 = e.iter().sum();
    e.into_iter().map(|v| v / sum).collect()
}

/// Indices of the `k` largest values, largest first (a partial selection, not a full sort).
fn top_k_indices(x: &[f32], k: usize) -> Vec<usize> {
    crate::retrieval::top_k(x, k)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tok(label: &str, start: usize, end: usize, score: f32) -> TokenLabel {
        TokenLabel { token: String::new(), start, end, label: label.into(), score, logits: Vec::new() }
    }

    #[test]
    fn entities_group_bio_tokens_like_the_simple_strategy() {
        let text = "Hugging Face Inc. is in New York";
        let tokens = [
            tok("B-ORG", 0, 3, 0.9),
            tok("I-ORG", 3, 7, 0.7),
            tok("I-ORG", 7, 12, 0.8),
            tok("I-ORG", 12, 16, 0.6),
            tok("O", 16, 17, 0.9),
            tok("O", 17, 20, 0.9),
            tok("O", 20, 23, 0.9),
            tok("B-LOC", 23, 27, 0.5),
            tok("I-LOC", 27, 32, 0.7),
        ];
        let e = group_entities(text, &tokens);
        assert_eq!(e.len(), 2);
        assert_eq!(
            (e[0].entity_group.as_str(), e[0].word.as_str(), e[0].start, e[0].end),
            ("ORG", "Hugging Face Inc", 0, 16)
        );
        assert!((e[0].score - 0.75).abs() < 1e-6);
        assert_eq!((e[1].entity_group.as_str(), e[1].word.as_str(), e[1].start), ("LOC", "New York", 24));
        // A B- right after an entity of the same type starts a new one; I- of another type too.
        let e = group_entities("a b c", &[tok("B-X", 0, 1, 1.0), tok("B-X", 1, 3, 1.0), tok("I-Y", 3, 5, 1.0)]);
        assert_eq!(e.iter().map(|e| e.word.as_str()).collect::<Vec<_>>(), vec!["a", "b", "c"]);
    }
}
