//! The ModernBERT tokenizer (byte-level BPE from `tokenizer.json`) with length limits.

use crate::error::{Error, Result};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokenizers::{TruncationDirection, TruncationParams, TruncationStrategy};

/// One encoded input, special tokens included, exactly as the model sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoding {
    pub ids: Vec<u32>,
    pub tokens: Vec<String>,
    /// Character (Unicode scalar) offsets `(start, end)` into the text each token came from,
    /// as Python's `tokenizers` reports them; `(0, 0)` for specials.
    pub offsets: Vec<(usize, usize)>,
    /// 0 for the first text, 1 for the pair text; specials take the sequence they close.
    pub sequence_ids: Vec<Option<usize>>,
    /// 1 for added special tokens ([CLS], [SEP]).
    pub special_tokens_mask: Vec<u32>,
}

/// Which end of an over-long input is cut.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum TruncationSide {
    /// Keep the beginning (the usual choice).
    #[default]
    Right,
    /// Keep the end.
    Left,
}

/// Cut each input to at most `max_length` tokens, special tokens included (capped at the
/// model's maximum). Pairs are cut longest-first, as HF `tokenizers` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Truncation {
    pub max_length: usize,
    pub side: TruncationSide,
}

impl Truncation {
    /// Truncation to `max_length` tokens from the right.
    pub fn right(max_length: usize) -> Self {
        Self { max_length, side: TruncationSide::Right }
    }
}

/// Truncating copies of the tokenizer kept for reuse (cloning one costs milliseconds).
const MAX_CACHED_TRUNCATIONS: usize = 8;

/// A `tokenizer.json` plus the model's maximum length.
pub struct Tokenizer {
    inner: Arc<tokenizers::Tokenizer>,
    max_length: usize,
    truncating: Mutex<HashMap<(usize, TruncationSide), Arc<tokenizers::Tokenizer>>>,
}

impl Clone for Tokenizer {
    fn clone(&self) -> Self {
        Self { inner: self.inner.clone(), max_length: self.max_length, truncating: Mutex::default() }
    }
}

impl Tokenizer {
    /// Loads `tokenizer.json`; inputs longer than `max_length` tokens are refused unless truncated.
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::Tokenizer(format!("{} does not exist", path.display())));
        }
        let mut inner =
            tokenizers::Tokenizer::from_file(path).map_err(|e| Error::Tokenizer(format!("{}: {e}", path.display())))?;
        inner.with_truncation(None).map_err(|e| Error::Tokenizer(e.to_string()))?;
        inner.with_padding(None);
        Ok(Self { inner: Arc::new(inner), max_length, truncating: Mutex::default() })
    }

    /// The model's maximum sequence length in tokens (specials included).
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The id of a token such as `[MASK]`.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The string of a token id.
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Decodes ids to text (special tokens skipped if asked).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> Result<String> {
        self.inner.decode(ids, skip_special_tokens).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// Encodes texts (optionally pairs) with special tokens, as the model sees them.
    ///
    /// With `truncation`, each input is cut to `min(truncation.max_length, max_length)` tokens;
    /// without, an input longer than `max_length` is an error.
    pub fn encode_batch(
        &self,
        inputs: &[(&str, Option<&str>)],
        truncation: Option<Truncation>,
    ) -> Result<Vec<Encoding>> {
        let encoder = self.encoder(truncation)?;
        inputs
            .iter()
            .enumerate()
            .map(|(i, &(text, pair))| {
                let enc =
                    encode_one(&encoder, text, pair, true).map_err(|e| Error::Tokenizer(format!("input {i}: {e}")))?;
                if enc.ids.len() > self.max_length {
                    return Err(Error::Input(format!(
                        "input {i} has {} tokens, more than the model's maximum of {}; truncate it (--max-length)",
                        enc.ids.len(),
                        self.max_length
                    )));
                }
                Ok(enc)
            })
            .collect()
    }

    /// Encodes one input exactly like HF `tokenizers` (`add_special_tokens` as given), with no
    /// maximum-length check; `truncation` cuts like [`Tokenizer::encode_batch`].
    pub fn encode(
        &self,
        text: &str,
        pair: Option<&str>,
        add_special_tokens: bool,
        truncation: Option<Truncation>,
    ) -> Result<Encoding> {
        let encoder = self.encoder(truncation)?;
        encode_one(&encoder, text, pair, add_special_tokens).map_err(|e| Error::Tokenizer(e.to_string()))
    }

    /// The inner tokenizer, set up for `truncation` (cached per limit and side).
    fn encoder(&self, truncation: Option<Truncation>) -> Result<Arc<tokenizers::Tokenizer>> {
        let Some(Truncation { max_length, side }) = truncation else { return Ok(self.inner.clone()) };
        let limit = max_length.min(self.max_length);
        if limit < 3 {
            return Err(Error::Input(format!("max length {max_length} leaves no room for text and [CLS]/[SEP]")));
        }
        let mut cache = self.truncating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(t) = cache.get(&(limit, side)) {
            return Ok(t.clone());
        }
        let mut t = self.inner.as_ref().clone();
        t.with_truncation(Some(TruncationParams {
            max_length: limit,
            strategy: TruncationStrategy::LongestFirst,
            stride: 0,
            direction: match side {
                TruncationSide::Right => TruncationDirection::Right,
                TruncationSide::Left => TruncationDirection::Left,
            },
        }))
        .map_err(|e| Error::Tokenizer(e.to_string()))?;
        if cache.len() >= MAX_CACHED_TRUNCATIONS {
            cache.clear();
        }
        let t = Arc::new(t);
        cache.insert((limit, side), t.clone());
        Ok(t)
    }
}

fn encode_one(
    t: &tokenizers::Tokenizer,
    text: &str,
    pair: Option<&str>,
    add_special_tokens: bool,
) -> tokenizers::Result<Encoding> {
    let enc = match pair {
        None => t.encode_char_offsets(text, add_special_tokens)?,
        Some(p) => t.encode_char_offsets((text, p), add_special_tokens)?,
    };
    Ok(Encoding {
        ids: enc.get_ids().to_vec(),
        tokens: enc.get_tokens().to_vec(),
        offsets: enc.get_offsets().to_vec(),
        sequence_ids: enc.get_sequence_ids(),
        special_tokens_mask: enc.get_special_tokens_mask().to_vec(),
    })
}
