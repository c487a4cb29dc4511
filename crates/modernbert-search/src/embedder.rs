//! The embedding model of an index: loading it, its identity (a fingerprint of its files, recorded
//! in the manifest so that an index is never searched with vectors of another model), and the
//! query/document prompts (the model's `query` and `document`/`passage`/`corpus` prompts, as
//! `modernbert::retrieval::evaluate` uses them).

use anyhow::{bail, Context, Result};
use modernbert::formats::Format;
use modernbert::pipelines::EmbedOptions;
use modernbert::tasks::Embedding;
use modernbert::{Model, Precision, Truncation};
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

/// What the manifest records about the model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelRecord {
    /// `--model` as given (a directory or Hub id).
    pub spec: String,
    /// The directory it resolved to.
    pub dir: String,
    /// A hash of the model's files (configs, tokenizer, sizes, heads and tails of the weights).
    pub fingerprint: String,
    /// Width of the vectors.
    pub dimension: usize,
    pub query_prompt: Option<String>,
    pub document_prompt: Option<String>,
}

/// A model that embeds chunks and queries.
pub struct Embedder {
    pub model: Arc<Model>,
    pub record: ModelRecord,
    pub max_length: usize,
}

/// Reads up to `n` bytes at `offset`.
fn read_at(file: &mut std::fs::File, offset: u64, n: usize) -> std::io::Result<Vec<u8>> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::with_capacity(n);
    file.take(n as u64).read_to_end(&mut buf)?;
    Ok(buf)
}

/// A hash of the files that decide a model's vectors: every file of the directory and of its
/// module folders (name, size, first and last 64 KiB). Cheap on multi-GB checkpoints, and a
/// fine-tune or another model changes it.
pub fn fingerprint(dir: &Path) -> Result<String> {
    const EDGE: usize = 64 * 1024;
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((d, depth)) = stack.pop() {
        let entries = std::fs::read_dir(&d).with_context(|| format!("cannot read model directory {}", d.display()))?;
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.starts_with('.') {
                continue;
            }
            if p.is_dir() && depth == 0 {
                stack.push((p, depth + 1));
            } else if p.is_file() {
                let relevant = [".json", ".safetensors", ".bin", ".txt", ".model"].iter().any(|x| name.ends_with(x));
                if relevant && name != "README.md" {
                    files.push(p);
                }
            }
        }
    }
    files.sort();
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for p in files {
        let rel = p.strip_prefix(dir).unwrap_or(&p).to_string_lossy().replace('\\', "/");
        let mut f = std::fs::File::open(&p).with_context(|| format!("cannot read {}", p.display()))?;
        let len = f.metadata()?.len();
        h.update(rel.as_bytes());
        h.update(&len.to_le_bytes());
        h.update(&read_at(&mut f, 0, EDGE)?);
        if len > EDGE as u64 {
            h.update(&read_at(&mut f, len.saturating_sub(EDGE as u64).max(EDGE as u64), EDGE)?);
        }
    }
    Ok(format!("{:032x}", h.digest128()))
}

/// The model's query and document prompt names, where it has them.
fn side_prompts(model: &Model) -> (Option<String>, Option<String>) {
    let prompts = match &model.format {
        Format::SentenceTransformer(st) => &st.prompts.prompts,
        _ => return (None, None),
    };
    let has = |n: &str| prompts.get(n).is_some_and(|p| !p.is_empty());
    let q = has("query").then(|| "query".to_string());
    let d = ["document", "passage", "corpus"].into_iter().find(|n| has(n)).map(str::to_string);
    (q, d)
}

/// `--model` or the default model, as a directory.
pub fn resolve_spec(spec: Option<&str>) -> Result<String> {
    match spec {
        Some(s) => Ok(s.to_string()),
        None => modernbert::hub::default_embedding_model().context(
            "no model given and none found: pass --model DIR, set MODERNBERT_MODEL, or run from a \
             clone of this repository (models/modernbert-mini-embed)",
        ),
    }
}

impl Embedder {
    /// Loads the model `spec` (a directory or Hub id).
    pub fn load(spec: &str, precision: Precision) -> Result<Self> {
        let dir = modernbert::hub::resolve(spec).with_context(|| format!("cannot load model {spec}"))?;
        let model = Model::load_with(&dir, precision).with_context(|| format!("cannot load model {spec}"))?;
        Self::from_model(Arc::new(model), spec)
    }

    /// Wraps an already loaded model (a server's).
    pub fn from_model(model: Arc<Model>, spec: &str) -> Result<Self> {
        match &model.format {
            Format::Colbert(_) => bail!(
                "{spec} is a ColBERT model: the index stores one vector per chunk; use it with \
                 `search --rerank {spec}` and index with a sentence-embedding model"
            ),
            Format::CrossEncoder(_) => bail!(
                "{spec} is a cross-encoder: it scores (query, chunk) pairs and gives no vectors; use it \
                 with `search --rerank {spec}` and index with a sentence-embedding model"
            ),
            _ => {}
        }
        model.tokenizer().with_context(|| format!("{spec} cannot embed text"))?;
        let dir = model.dir().to_path_buf();
        let (query_prompt, document_prompt) = side_prompts(&model);
        let dir_abs = dir.canonicalize().unwrap_or(dir.clone());
        let record = ModelRecord {
            spec: spec.to_string(),
            dir: dir_abs.display().to_string(),
            fingerprint: fingerprint(&dir)?,
            dimension: model.output_dimension(),
            query_prompt,
            document_prompt,
        };
        // A sentence-transformers model cuts its inputs at its own `max_seq_length`.
        let format_max = match &model.format {
            Format::SentenceTransformer(st) => st.max_seq_length,
            _ => None,
        };
        let max_length = model.tokenizer()?.max_length().min(format_max.unwrap_or(usize::MAX));
        Ok(Self { model, record, max_length })
    }

    /// Tokens the document prompt adds to every chunk.
    pub fn document_prompt_tokens(&self) -> usize {
        let opts = EmbedOptions { prompt_name: self.record.document_prompt.clone(), ..Default::default() };
        match self.model.resolve_prompt(&opts) {
            Ok(Some(p)) => {
                self.model.tokenizer().ok().and_then(|t| t.encode(p, None, false, None).ok()).map_or(0, |e| e.ids.len())
            }
            _ => 0,
        }
    }

    fn vectors(&self, texts: &[&str], prompt: Option<String>, max_tokens: usize) -> Result<Vec<Vec<f32>>> {
        let opts = EmbedOptions {
            prompt_name: prompt,
            normalize: true,
            truncation: Some(Truncation::right(max_tokens.min(self.max_length).max(3))),
            ..Default::default()
        };
        let out = self.model.embed(texts, &opts)?;
        out.into_iter()
            .map(|e| match e {
                Embedding::Pooled(v) => Ok(v),
                Embedding::Tokens(_) => bail!("the model gave token vectors, not one vector per text"),
            })
            .collect()
    }

    /// Chunk vectors (L2-normalised, with the document prompt), each cut to `max_tokens`.
    pub fn embed_documents(&self, texts: &[&str], max_tokens: usize) -> Result<Vec<Vec<f32>>> {
        self.vectors(texts, self.record.document_prompt.clone(), max_tokens)
    }

    /// A query vector (L2-normalised, with the query prompt).
    pub fn embed_query(&self, query: &str) -> Result<Vec<f32>> {
        let mut v = self.vectors(&[query], self.record.query_prompt.clone(), 512)?;
        v.pop().context("no vector for the query")
    }
}
