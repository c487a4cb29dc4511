//! PyLate ColBERT models (docs/formats.md §3): `[Q] `/`[D] ` prefix tokens inserted after
//! `[CLS]`, fixed query and document lengths, `[MASK]` query expansion with PyLate's attention
//! semantics, a document skiplist, a token-level Dense, per-token L2, MaxSim.

use super::read_json;
use super::sentence_transformers::{read_dense, Prompts};
use super::ModuleEntry;
use crate::config::Config;
use crate::embedding::{l2_normalize, Dense};
use crate::error::{Error, Result};
use crate::tokenizer::{Tokenizer, Truncation};
use serde_json::Value;
use std::path::Path;

/// A ColBERT model's input and output rules.
#[derive(Debug, Clone)]
pub struct Colbert {
    pub query_prefix_id: u32,
    pub document_prefix_id: u32,
    /// Queries are cut (and, with expansion, padded) to this many tokens.
    pub query_length: usize,
    /// Documents are cut to this many tokens.
    pub document_length: usize,
    /// Pad queries with `[MASK]` to `query_length`; those positions get vectors too.
    pub do_query_expansion: bool,
    /// Whether real tokens attend to the expansion tokens (PyLate's default: no).
    pub attend_to_expansion_tokens: bool,
    /// Document token ids that get no vector (punctuation by default), sorted.
    pub skiplist: Vec<u32>,
    /// Token-level projections, in order (usually one `1_Dense`, no bias, no activation).
    pub dense: Vec<Dense>,
    pub prompts: Prompts,
    /// The expansion (and padding) token.
    pub mask_id: u32,
}

/// One ColBERT input, ready for the encoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColbertInput {
    /// `[CLS] [Q]|[D] text… [SEP]`, then `[MASK]`s for an expanded query.
    pub ids: Vec<u32>,
    /// Every token attends only to the first `keys` tokens (fewer than `ids.len()` for an
    /// expanded query whose real tokens do not attend to the expansion tokens).
    pub keys: usize,
    /// Positions that get a vector.
    pub kept: Vec<usize>,
}

const DEFAULT_SKIPLIST: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

/// The skiplist ids of `words` (PyLate: `convert_tokens_to_ids(word)` per word; unknown words
/// skip nothing), sorted.
fn skiplist_ids(tokenizer: &Tokenizer, words: &[String]) -> Vec<u32> {
    let mut ids: Vec<u32> = words.iter().filter_map(|w| tokenizer.token_to_id(w)).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Reads a PyLate directory (`modules.json` with a `pylate.models.Dense.Dense`).
pub fn read(dir: &Path, modules: &[ModuleEntry], config: &Config, tokenizer: &Tokenizer) -> Result<Colbert> {
    let path = dir.join("config_sentence_transformers.json");
    let cfg = if path.is_file() { read_json(&path)? } else { Value::Null };
    let at = path.display();
    let string = |k: &str, default: &str| cfg.get(k).and_then(Value::as_str).unwrap_or(default).to_string();
    let number = |k: &str, default: usize| cfg.get(k).and_then(Value::as_u64).map_or(default, |v| v as usize);
    let flag = |k: &str, default: bool| cfg.get(k).and_then(Value::as_bool).unwrap_or(default);
    let token = |text: &str, what: &str| {
        tokenizer.token_to_id(text).ok_or_else(|| {
            Error::Tokenizer(format!("{at}: the {what} {text:?} is not a token of the model's tokenizer.json"))
        })
    };
    let query_prefix_id = token(&string("query_prefix", "[Q] "), "query prefix")?;
    let document_prefix_id = token(&string("document_prefix", "[D] "), "document prefix")?;
    let mask_id = token("[MASK]", "expansion token")?;
    let (query_length, document_length) = (number("query_length", 32), number("document_length", 180));
    if query_length < 4 || document_length < 4 {
        return Err(Error::Input(format!("{at}: query_length and document_length must be at least 4")));
    }
    let do_query_expansion = flag("do_query_expansion", true);
    let attend_to_expansion_tokens = do_query_expansion && flag("attend_to_expansion_tokens", false);
    let words: Vec<String> = match cfg.get("skiplist_words") {
        Some(Value::Array(items)) => items.iter().filter_map(|w| w.as_str().map(str::to_string)).collect(),
        _ => DEFAULT_SKIPLIST.chars().map(|c| c.to_string()).collect(),
    };
    let skiplist = skiplist_ids(tokenizer, &words);
    let mut dense = Vec::new();
    let mut dim = config.hidden_size;
    for m in modules.iter().skip(1) {
        if m.kind() != "Dense" {
            return Err(m.unsupported());
        }
        let d = read_dense(&dir.join(&m.path), dim)?;
        dim = d.out_features();
        dense.push(d);
    }
    Ok(Colbert {
        query_prefix_id,
        document_prefix_id,
        query_length,
        document_length,
        do_query_expansion,
        attend_to_expansion_tokens,
        skiplist,
        dense,
        prompts: Prompts::read(dir)?,
        mask_id,
    })
}

impl Colbert {
    /// PyLate's defaults (`[MASK]` expansion not attended to, the punctuation skiplist, no prompts)
    /// for prefix tokens with ids `query_prefix_id` / `document_prefix_id` (they need not be in
    /// `tokenizer` yet: a model being trained adds them).
    pub fn with_defaults(
        tokenizer: &Tokenizer,
        (query_prefix_id, document_prefix_id): (u32, u32),
        (query_length, document_length): (usize, usize),
        dense: Vec<Dense>,
    ) -> Result<Self> {
        let mask_id = tokenizer
            .token_to_id("[MASK]")
            .ok_or_else(|| Error::Tokenizer("the tokenizer has no [MASK] token".into()))?;
        let words: Vec<String> = DEFAULT_SKIPLIST.chars().map(|c| c.to_string()).collect();
        Ok(Self {
            query_prefix_id,
            document_prefix_id,
            query_length,
            document_length,
            do_query_expansion: true,
            attend_to_expansion_tokens: false,
            skiplist: skiplist_ids(tokenizer, &words),
            dense,
            prompts: Prompts::default(),
            mask_id,
        })
    }

    /// Tokenises a query or document as PyLate does: the text stripped, `[CLS] text [SEP]` cut to
    /// `length − 1` tokens, the prefix inserted after `[CLS]`; queries padded with `[MASK]` to
    /// `query_length` when expanding.
    pub fn encode(
        &self,
        tokenizer: &Tokenizer,
        text: &str,
        is_query: bool,
        prompt: Option<&str>,
    ) -> Result<ColbertInput> {
        // PyLate tokenises with sentence-transformers 5.3, which strips the prompted text.
        let text = match prompt {
            Some(p) => format!("{p}{text}").trim().to_string(),
            None => text.trim().to_string(),
        };
        let length = if is_query { self.query_length } else { self.document_length };
        let mut ids = tokenizer.encode(&text, None, true, Some(Truncation::right(length - 1)))?.ids;
        ids.insert(1.min(ids.len()), if is_query { self.query_prefix_id } else { self.document_prefix_id });
        let real = ids.len();
        if is_query && self.do_query_expansion {
            ids.resize(length, self.mask_id);
        }
        let keys = if self.attend_to_expansion_tokens { ids.len() } else { real };
        let kept = if is_query {
            (0..ids.len()).collect()
        } else {
            (0..ids.len()).filter(|&i| self.skiplist.binary_search(&ids[i]).is_err()).collect()
        };
        Ok(ColbertInput { ids, keys, kept })
    }

    /// The output vectors of the kept tokens' states: Dense layers, then L2.
    pub fn vectors(&self, states: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let mut rows = states;
        for d in &self.dense {
            rows = d.forward_rows(&rows)?;
        }
        rows.iter_mut().for_each(|r| l2_normalize(r));
        Ok(rows)
    }
}

/// MaxSim: the sum over query vectors of their best dot product with a document vector.
pub fn maxsim(query: &[Vec<f32>], document: &[Vec<f32>]) -> f32 {
    query
        .iter()
        .map(|q| {
            document.iter().map(|d| q.iter().zip(d).map(|(a, b)| a * b).sum::<f32>()).fold(f32::NEG_INFINITY, f32::max)
        })
        .filter(|m| m.is_finite())
        .sum()
}

/// Writes the PyLate files of a ColBERT model whose transformer files (`config.json` with the
/// grown vocabulary, weights) are already in `dir`: `tokenizer.json` from `source_tokenizer` with
/// the `[Q] `/`[D] ` tokens added (they must get the ids `c` uses), `modules.json`, `1_Dense/`,
/// `config_sentence_transformers.json`, `sentence_bert_config.json`, `tokenizer_config.json`.
pub fn write(dir: &Path, c: &Colbert, source_tokenizer: &Path) -> Result<()> {
    use serde_json::json;
    let mut tok = tokenizers::Tokenizer::from_file(source_tokenizer)
        .map_err(|e| Error::Tokenizer(format!("{}: {e}", source_tokenizer.display())))?;
    tok.add_tokens(&[tokenizers::AddedToken::from("[Q] ", false), tokenizers::AddedToken::from("[D] ", false)]);
    for (text, id) in [("[Q] ", c.query_prefix_id), ("[D] ", c.document_prefix_id)] {
        if tok.token_to_id(text) != Some(id) {
            return Err(Error::Tokenizer(format!(
                "{text:?} would get id {:?}, the model uses {id}",
                tok.token_to_id(text)
            )));
        }
    }
    let tok_path = dir.join("tokenizer.json");
    tok.save(&tok_path, false).map_err(|e| Error::Tokenizer(format!("{}: {e}", tok_path.display())))?;
    let [dense] = c.dense.as_slice() else {
        return Err(Error::Input("a ColBERT model to write needs exactly one Dense layer".into()));
    };
    let dense_dir = dir.join("1_Dense");
    super::write_json(
        &dense_dir,
        "config.json",
        &json!({"in_features": dense.in_features(), "out_features": dense.out_features(), "bias": dense.bias.is_some(),
                "activation_function": "torch.nn.modules.linear.Identity", "use_residual": false}),
    )?;
    let mut tensors = std::collections::HashMap::from([("linear.weight".to_string(), dense.weight.clone())]);
    if let Some(b) = &dense.bias {
        tensors.insert("linear.bias".to_string(), b.clone());
    }
    candle_core::safetensors::save(&tensors, dense_dir.join("model.safetensors"))?;
    super::write_json(
        dir,
        "modules.json",
        &json!([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
                {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"}]),
    )?;
    super::write_json(
        dir,
        "sentence_bert_config.json",
        &json!({"max_seq_length": c.document_length.max(c.query_length), "do_lower_case": false}),
    )?;
    super::write_json(
        dir,
        "config_sentence_transformers.json",
        &json!({"model_type": "ColBERT", "__version__": {"sentence_transformers": "5.3.0", "pylate": "1.6.0"},
                "prompts": {"query": "", "document": ""}, "default_prompt_name": null, "similarity_fn_name": "MaxSim",
                "query_prefix": "[Q] ", "document_prefix": "[D] ", "query_length": c.query_length,
                "document_length": c.document_length, "attend_to_expansion_tokens": c.attend_to_expansion_tokens,
                "skiplist_words": DEFAULT_SKIPLIST.chars().map(|ch| ch.to_string()).collect::<Vec<_>>(),
                "do_query_expansion": c.do_query_expansion}),
    )?;
    let path = dir.join("tokenizer_config.json");
    let mut cfg = if path.is_file() { read_json(&path)? } else { json!({}) };
    cfg["pad_token"] = json!("[MASK]");
    super::write_json(dir, "tokenizer_config.json", &cfg)
}
