//! Tokenisation for the server: text (or token ids) → [`Prepared`] inputs, through the library's
//! [`Model::prepare`] / [`Model::prepare_pair`], so that every format rule (prompts,
//! sentence-transformers' `max_seq_length`, cross-encoder lengths, ColBERT prefixes, expansion and
//! skiplist) is the library's. The server adds only TEI's request options (`truncate`,
//! `truncation_direction`, `prompt_name`) and its error codes. Runs on the blocking pool, never
//! on the model thread.

use crate::error::ApiError;
use crate::types::{Direction, EncodeOptions, Input, SimpleToken};
use anyhow::{Context, Result};
use modernbert::pipelines::{EmbedOptions, Prepared};
use modernbert::{Model, Truncation, TruncationSide};
use std::sync::Arc;

/// Tokenises requests for the served model.
pub struct Encoder {
    model: Arc<Model>,
    vocab: usize,
    max_input: usize,
    auto_truncate: bool,
}

/// One input of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sequence {
    /// Text or token ids (for a ColBERT model: a document).
    Input(Input),
    /// A ColBERT query.
    Query(String),
    /// A (first, second) text pair: a cross-encoder's (query, document), a classifier's pair.
    Pair(String, String),
}

impl Encoder {
    /// Tokenises for `model` (which must have a tokenizer). Inputs may have
    /// `tokenizer.max_length()` tokens; token ids must be below the model's vocabulary size.
    pub fn new(model: Arc<Model>, auto_truncate: bool) -> Result<Self> {
        let max_input = model.tokenizer().context("the server needs the model's tokenizer.json")?.max_length();
        Ok(Self { vocab: model.config.vocab_size, max_input, auto_truncate, model })
    }

    /// The longest input, in tokens, that the model accepts.
    pub fn max_input(&self) -> usize {
        self.max_input
    }

    /// Whether `truncate` defaults to true (`--auto-truncate`).
    pub fn auto_truncate(&self) -> bool {
        self.auto_truncate
    }

    fn tokenizer(&self) -> &modernbert::Tokenizer {
        self.model.tokenizer().expect("checked in Encoder::new")
    }

    /// The prompt text `prompt_name` selects (the model's default prompt when it is `None`), by
    /// the library's resolution rule; an unknown name (or any name for a model without prompts)
    /// is a 422.
    pub fn prompt(&self, name: Option<&str>) -> Result<Option<String>, ApiError> {
        let opts = EmbedOptions { prompt_name: name.map(str::to_string), ..Default::default() };
        self.model.resolve_prompt(&opts).map(|p| p.map(str::to_string)).map_err(|e| ApiError::tokenizer(message(e)))
    }

    /// Prepares every sequence; errors name the input's index.
    pub fn encode_all(&self, sequences: &[Sequence], options: &EncodeOptions) -> Result<Vec<Prepared>, ApiError> {
        // Checked once per request, with the library's rule, for a clear error.
        self.prompt(options.prompt_name.as_deref())?;
        let truncate = options.truncate.unwrap_or(self.auto_truncate);
        let side = match options.truncation_direction {
            Direction::Right => TruncationSide::Right,
            Direction::Left => TruncationSide::Left,
        };
        let cut = Truncation { max_length: self.max_input, side };
        sequences
            .iter()
            .enumerate()
            .map(|(i, sequence)| {
                let prepare = |truncation: Option<Truncation>| {
                    let opts = EmbedOptions {
                        prompt_name: options.prompt_name.clone(),
                        truncation,
                        is_query: matches!(sequence, Sequence::Query(_)),
                        ..Default::default()
                    };
                    match sequence {
                        Sequence::Input(Input::Text(text)) | Sequence::Query(text) => self.model.prepare(text, &opts),
                        Sequence::Pair(a, b) => self.model.prepare_pair(a, b, truncation),
                        Sequence::Input(Input::Ids(_)) => unreachable!("token ids are not tokenised"),
                    }
                };
                match sequence {
                    Sequence::Input(Input::Ids(ids)) => {
                        if options.prompt_name.is_some() {
                            return Err(ApiError::tokenizer(format!(
                                "input {i}: prompt_name cannot apply to token ids"
                            )));
                        }
                        self.ids(i, ids, truncate.then_some(cut))
                    }
                    Sequence::Input(Input::Text(t)) | Sequence::Query(t) if t.trim().is_empty() => {
                        Err(ApiError::empty(format!("input {i} is empty")))
                    }
                    Sequence::Pair(a, b) if a.trim().is_empty() || b.trim().is_empty() => {
                        Err(ApiError::empty(format!("input {i} is empty")))
                    }
                    _ if truncate => prepare(Some(cut)).map_err(|e| input_error(i, e)),
                    // Without `truncate`, an input over the model's maximum is refused (413).
                    _ => prepare(None).map_err(|e| input_error(i, e)),
                }
            })
            .collect()
    }

    /// Token ids as given (no [CLS]/[SEP] added, no format rules), checked against the vocabulary.
    fn ids(&self, index: usize, ids: &[u32], truncation: Option<Truncation>) -> Result<Prepared, ApiError> {
        if ids.is_empty() {
            return Err(ApiError::empty(format!("input {index} has no token ids")));
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(ApiError::tokenizer(format!(
                "input {index}: token id {bad} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        let mut ids = ids.to_vec();
        match truncation {
            Some(Truncation { max_length, side }) if ids.len() > max_length => match side {
                TruncationSide::Right => ids.truncate(max_length),
                TruncationSide::Left => {
                    ids.drain(..ids.len() - max_length);
                }
            },
            _ => {}
        }
        if ids.len() > self.max_input {
            return Err(self.too_long(index));
        }
        Ok(Prepared::from_ids(ids))
    }

    fn too_long(&self, index: usize) -> ApiError {
        ApiError::validation(format!(
            "input {index} is longer than the model's maximum of {} tokens; send \"truncate\": true to cut it",
            self.max_input
        ))
    }

    /// Tokens of `text` as TEI's `/tokenize` reports them (byte offsets; specials without offsets).
    pub fn tokenize(
        &self,
        text: &str,
        add_special_tokens: bool,
        prompt: Option<&str>,
    ) -> Result<Vec<SimpleToken>, ApiError> {
        let text = match prompt {
            Some(p) => format!("{p}{text}"),
            None => text.to_string(),
        };
        let enc = self.tokenizer().encode(&text, None, add_special_tokens, None).map_err(ApiError::from)?;
        // The library reports character offsets; TEI reports byte offsets.
        let byte_at: Vec<usize> = text.char_indices().map(|(b, _)| b).chain(std::iter::once(text.len())).collect();
        Ok(enc
            .ids
            .iter()
            .zip(&enc.special_tokens_mask)
            .zip(&enc.offsets)
            .zip(enc.tokens)
            .map(|(((&id, &special), &(start, stop)), token)| {
                if special == 1 {
                    SimpleToken { id, text: token, special: true, start: None, stop: None }
                } else {
                    let (start, stop) = (byte_at[start], byte_at[stop]);
                    SimpleToken {
                        id,
                        text: text[start..stop].to_string(),
                        special: false,
                        start: Some(start),
                        stop: Some(stop),
                    }
                }
            })
            .collect())
    }

    /// Decodes ids to text.
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String, ApiError> {
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
            return Err(ApiError::tokenizer(format!("token id {bad} is outside the vocabulary of {}", self.vocab)));
        }
        self.tokenizer().decode(ids, skip_special_tokens).map_err(ApiError::from)
    }
}

/// The message of a library error, without its kind prefix.
fn message(e: modernbert::Error) -> String {
    match e {
        modernbert::Error::Input(m) | modernbert::Error::Tokenizer(m) => m,
        other => other.to_string(),
    }
}

/// A library error while preparing input `index`: the client's (422) unless it is internal.
fn input_error(index: usize, e: modernbert::Error) -> ApiError {
    match e {
        modernbert::Error::TooLong { tokens, max } => ApiError::validation(format!(
            "input {index} has {tokens} tokens, more than the model's maximum of {max}; send \"truncate\": true to cut it"
        )),
        modernbert::Error::Input(m) => ApiError::invalid(format!("input {index}: {m}")),
        modernbert::Error::Tokenizer(m) => ApiError::tokenizer(format!("input {index}: {m}")),
        other => ApiError::backend(format!("input {index}: {other}")),
    }
}
