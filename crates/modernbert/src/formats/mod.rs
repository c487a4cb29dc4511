//! The one home of the model-directory formats people deploy: plain transformers checkpoints,
//! sentence-transformers bi-encoders (both file generations), cross-encoders and PyLate ColBERT
//! models (docs/formats.md has the exact rules, read off the libraries' sources). [`read`] tells
//! what a directory is and reads its output pipeline; [`crate::Model::load`] calls it, so the CLI,
//! the server and the Python package all see the same model.

pub mod colbert;
pub mod cross_encoder;
pub mod sentence_transformers;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::params::HeadKind;
use crate::tokenizer::Tokenizer;
use serde_json::Value;
use std::path::Path;

pub use colbert::Colbert;
pub use cross_encoder::CrossEncoder;
pub use sentence_transformers::SentenceTransformer;

/// What a model directory is, with the pipeline its outputs go through.
#[derive(Debug, Clone)]
pub enum Format {
    /// A transformers checkpoint without sentence-transformers files: embeddings are mean-pooled,
    /// as sentence-transformers does for such a directory.
    Transformers,
    /// A sentence-transformers bi-encoder.
    SentenceTransformer(Box<SentenceTransformer>),
    /// A sequence classifier used as a cross-encoder (reranker): logits through an activation.
    CrossEncoder(CrossEncoder),
    /// A PyLate ColBERT model: one vector per token, scored by MaxSim.
    Colbert(Box<Colbert>),
}

impl Format {
    /// A short name for messages and `/info`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Transformers => "transformers",
            Format::SentenceTransformer(_) => "sentence-transformers",
            Format::CrossEncoder(_) => "cross-encoder",
            Format::Colbert(_) => "colbert",
        }
    }
}

/// One entry of `modules.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Folder relative to the model directory (`""` for the Transformer).
    pub path: String,
    /// The dotted class path, e.g. `sentence_transformers.models.Pooling`.
    pub class: String,
}

impl ModuleEntry {
    /// The class name without its module path (`Pooling`, `Dense`, …); PyLate's token-level
    /// Dense is `pylate.models.Dense.Dense`, also `Dense`.
    pub fn kind(&self) -> &str {
        self.class.rsplit('.').next().unwrap_or(&self.class)
    }

    /// Whether the class comes from sentence-transformers or PyLate (anything else is remote code).
    fn is_known_library(&self) -> bool {
        self.class.starts_with("sentence_transformers.") || self.class.starts_with("pylate.")
    }

    /// The error for a module we do not run: never skipped silently.
    pub fn unsupported(&self) -> Error {
        Error::Input(format!(
            "modules.json: module {:?} ({}) is not supported (Transformer, Pooling, Dense, Normalize)",
            self.class, self.path
        ))
    }
}

/// Reads a JSON file, with errors that name it.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Input(format!("{}: not valid JSON: {e}", path.display())))
}

/// Reads `modules.json`, if the directory has one.
pub fn read_modules(dir: &Path) -> Result<Option<Vec<ModuleEntry>>> {
    let path = dir.join("modules.json");
    if !path.is_file() {
        return Ok(None);
    }
    let v = read_json(&path)?;
    let items = v.as_array().ok_or_else(|| Error::Input(format!("{}: expected a list of modules", path.display())))?;
    let mut modules: Vec<(i64, ModuleEntry)> = items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let class = m.get("type").and_then(Value::as_str);
            let p = m.get("path").and_then(Value::as_str);
            match (class, p) {
                (Some(class), Some(p)) => Ok((
                    m.get("idx").and_then(Value::as_i64).unwrap_or(i as i64),
                    ModuleEntry { path: p.to_string(), class: class.to_string() },
                )),
                _ => Err(Error::Input(format!("{}: module {i} needs a `type` and a `path`", path.display()))),
            }
        })
        .collect::<Result<_>>()?;
    modules.sort_by_key(|(i, _)| *i);
    let modules: Vec<ModuleEntry> = modules.into_iter().map(|(_, m)| m).collect();
    for m in &modules {
        if !m.is_known_library() {
            return Err(m.unsupported());
        }
        if m.path.contains("..") {
            return Err(Error::Input(format!(
                "{}: module path {:?} leaves the model directory",
                path.display(),
                m.path
            )));
        }
    }
    match modules.first() {
        Some(m) if m.kind() == "Transformer" => Ok(Some(modules)),
        Some(m) => Err(Error::Input(format!(
            "{}: the first module must be the Transformer, found {:?}",
            path.display(),
            m.class
        ))),
        None => Err(Error::Input(format!("{}: no modules", path.display()))),
    }
}

/// `model_type` of `config_sentence_transformers.json`, if any.
fn st_model_type(dir: &Path) -> Result<Option<String>> {
    let p = dir.join("config_sentence_transformers.json");
    if !p.is_file() {
        return Ok(None);
    }
    Ok(read_json(&p)?.get("model_type").and_then(Value::as_str).map(str::to_string))
}

/// Tells what `dir` is and reads its pipeline. `tokenizer` is needed for ColBERT's prefix and
/// skiplist ids.
pub fn read(dir: &Path, config: &Config, head: HeadKind, tokenizer: Option<&Tokenizer>) -> Result<Format> {
    let modules = read_modules(dir)?;
    let model_type = st_model_type(dir)?;
    let pylate = modules.iter().flatten().any(|m| m.class.starts_with("pylate."));
    if model_type.as_deref() == Some("ColBERT") || pylate {
        let tokenizer =
            tokenizer.ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", dir.display())))?;
        let modules = modules.unwrap_or_default();
        return Ok(Format::Colbert(Box::new(colbert::read(dir, &modules, config, tokenizer)?)));
    }
    if head == HeadKind::SequenceClassification {
        if let Some(m) = modules.iter().flatten().nth(1) {
            return Err(m.unsupported());
        }
        return Ok(Format::CrossEncoder(cross_encoder::read(dir, config)?));
    }
    match modules {
        Some(modules) => Ok(Format::SentenceTransformer(Box::new(sentence_transformers::read(
            dir,
            &modules,
            config.hidden_size,
            config.max_position_embeddings,
        )?))),
        None => Ok(Format::Transformers),
    }
}

/// Files beyond `config.json`, weights and `tokenizer.json` that a Hub download fetches when they
/// exist: the format files, and (once `modules.json` is known) every module folder's files.
pub const HUB_FORMAT_FILES: [&str; 5] = [
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "config_sentence_transformers.json",
    "sentence_bert_config.json",
];

/// The files inside a module folder that a Hub download tries.
pub const HUB_MODULE_FILES: [&str; 3] = ["config.json", "model.safetensors", "pytorch_model.bin"];

/// The `__version__` block written with sentence-transformers files (the versions whose file
/// contents we write and test against).
pub(crate) fn written_versions() -> Value {
    serde_json::json!({"sentence_transformers": "6.3.0", "transformers": "5.23.0", "pytorch": "2.15.0"})
}

/// Writes a JSON value to `dir/name` (pretty, newline-terminated), creating `dir`.
pub(crate) fn write_json(dir: &Path, name: &str, value: &Value) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(name);
    let text = serde_json::to_string_pretty(value).expect("JSON values serialise") + "\n";
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
}

/// Sets `model_max_length` in `dir/tokenizer_config.json` (created if absent): where
/// sentence-transformers ≥ 5.4 keeps the maximum input length.
pub(crate) fn set_max_length(dir: &Path, max_length: usize) -> Result<()> {
    let path = dir.join("tokenizer_config.json");
    let mut cfg = if path.is_file() { read_json(&path)? } else { serde_json::json!({}) };
    cfg["model_max_length"] = Value::from(max_length);
    write_json(dir, "tokenizer_config.json", &cfg)
}
