//! Tokenization for the server: text (or token ids) → the ids the model sees, with TEI's
//! `truncate` / `truncation_direction` / `prompt_name` options. Runs on the blocking pool,
//! never on the model thread. The tokenizer is the model's own ([`modernbert::Tokenizer`]).

use crate::error::ApiError;
use crate::types::{Direction, EncodeOptions, Input, SimpleToken};
use anyhow::{Context, Result};
use modernbert::{Truncation, TruncationSide};
use std::collections::HashMap;
use std::path::Path;

/// Tokenizer and prompts of the served model.
pub struct Encoder {
    tokenizer: modernbert::Tokenizer,
    vocab: usize,
    auto_truncate: bool,
    prompts: HashMap<String, String>,
    default_prompt: Option<String>,
}

/// One text or text pair to encode.
pub type Sequence = (Input, Option<String>);

impl Encoder {
    /// Uses the model's tokenizer and reads the sentence-transformers prompts of `dir`
    /// (`config_sentence_transformers.json`, if any). Inputs may have `tokenizer.max_length()`
    /// tokens; token ids must be below `vocab`.
    pub fn new(tokenizer: modernbert::Tokenizer, dir: &Path, vocab: usize, auto_truncate: bool) -> Result<Self> {
        let (prompts, default_prompt) = read_prompts(dir)?;
        Ok(Self { tokenizer, vocab, auto_truncate, prompts, default_prompt })
    }

    /// The longest input, in tokens, that the model accepts.
    pub fn max_input(&self) -> usize {
        self.tokenizer.max_length()
    }

    /// Whether `truncate` defaults to true (`--auto-truncate`).
    pub fn auto_truncate(&self) -> bool {
        self.auto_truncate
    }

    /// The prompt text for `name` (or the default prompt when `name` is `None`).
    pub fn prompt(&self, name: Option<&str>) -> Result<Option<&str>, ApiError> {
        match name {
            None => Ok(self.default_prompt.as_deref().and_then(|d| self.prompts.get(d)).map(String::as_str)),
            Some(n) => match self.prompts.get(n) {
                Some(p) => Ok(Some(p)),
                None if self.prompts.is_empty() => Err(ApiError::tokenizer(format!(
                    "prompt_name {n:?} given, but the model has no prompts (config_sentence_transformers.json)"
                ))),
                None => {
                    let mut known: Vec<&str> = self.prompts.keys().map(String::as_str).collect();
                    known.sort_unstable();
                    Err(ApiError::tokenizer(format!("prompt_name {n:?} is not one of the model's prompts {known:?}")))
                }
            },
        }
    }

    /// Encodes every sequence with special tokens; errors name the input's index.
    pub fn encode_all(&self, sequences: &[Sequence], options: &EncodeOptions) -> Result<Vec<Vec<u32>>, ApiError> {
        let prompt = self.prompt(options.prompt_name.as_deref())?;
        let truncate = options.truncate.unwrap_or(self.auto_truncate);
        sequences
            .iter()
            .enumerate()
            .map(|(i, (input, pair))| {
                if matches!(input, Input::Ids(_)) && options.prompt_name.is_some() {
                    return Err(ApiError::tokenizer(format!("input {i}: prompt_name cannot apply to token ids")));
                }
                self.encode(i, input, pair.as_deref(), prompt, truncate, options.truncation_direction)
            })
            .collect()
    }

    fn encode(
        &self,
        index: usize,
        input: &Input,
        pair: Option<&str>,
        prompt: Option<&str>,
        truncate: bool,
        direction: Direction,
    ) -> Result<Vec<u32>, ApiError> {
        let ids = match input {
            Input::Ids(ids) => {
                if ids.is_empty() {
                    return Err(ApiError::empty(format!("input {index} has no token ids")));
                }
                if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.vocab) {
                    return Err(ApiError::tokenizer(format!(
                        "input {index}: token id {bad} is outside the vocabulary of {}",
                        self.vocab
                    )));
                }
                let mut ids = ids.clone();
                if truncate && ids.len() > self.max_input() {
                    match direction {
                        Direction::Right => ids.truncate(self.max_input()),
                        Direction::Left => {
                            ids.drain(..ids.len() - self.max_input());
                        }
                    }
                }
                ids
            }
            Input::Text(text) => {
                if text.trim().is_empty() || pair.is_some_and(|p| p.trim().is_empty()) {
                    return Err(ApiError::empty(format!("input {index} is empty")));
                }
                let prompted;
                let text = match prompt {
                    Some(p) => {
                        prompted = format!("{p}{text}");
                        prompted.as_str()
                    }
                    None => text.as_str(),
                };
                let side = match direction {
                    Direction::Right => TruncationSide::Right,
                    Direction::Left => TruncationSide::Left,
                };
                let truncation = truncate.then_some(Truncation { max_length: self.max_input(), side });
                self.tokenizer
                    .encode(text, pair, true, truncation)
                    .map_err(|e| ApiError::tokenizer(format!("input {index}: {e}")))?
                    .ids
            }
        };
        if ids.len() > self.max_input() {
            return Err(ApiError::validation(format!(
                "input {index} has {} tokens, more than the model's maximum of {}; send \"truncate\": true to cut it",
                ids.len(),
                self.max_input()
            )));
        }
        Ok(ids)
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
        let enc = self.tokenizer.encode(&text, None, add_special_tokens, None).map_err(ApiError::from)?;
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
        self.tokenizer.decode(ids, skip_special_tokens).map_err(ApiError::from)
    }
}

/// `prompts` and `default_prompt_name` of `config_sentence_transformers.json`.
fn read_prompts(dir: &Path) -> Result<(HashMap<String, String>, Option<String>)> {
    let path = dir.join("config_sentence_transformers.json");
    if !path.is_file() {
        return Ok((HashMap::new(), None));
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let prompts = json["prompts"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    let default = json["default_prompt_name"].as_str().map(str::to_string);
    Ok((prompts, default))
}
