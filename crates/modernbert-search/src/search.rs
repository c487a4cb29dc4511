//! Searching an index: BM25, exact dense scan, or their reciprocal-rank fusion, with an optional
//! cross-encoder / ColBERT rerank of the best candidates.

use crate::embedder::Embedder;
use crate::store::Snapshot;
use anyhow::{anyhow, bail, Context, Result};
use modernbert::formats::Format;
use modernbert::{Model, Precision, Truncation};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, RwLock};

/// Reciprocal-rank fusion constant (Cormack et al.).
pub const RRF_K: f32 = 60.0;

/// Which ranking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Hybrid,
    Dense,
    Bm25,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "hybrid" => Ok(Mode::Hybrid),
            "dense" => Ok(Mode::Dense),
            "bm25" => Ok(Mode::Bm25),
            _ => bail!("unknown search mode {s:?}: use hybrid, dense or bm25"),
        }
    }
}

/// One search.
#[derive(Debug, Clone)]
pub struct Query {
    pub text: String,
    pub top_k: usize,
    pub mode: Mode,
    /// Rerank the best candidates with the searcher's reranker (if it has one).
    pub rerank: bool,
}

impl Query {
    pub fn new(text: impl Into<String>) -> Self {
        Self { text: text.into(), top_k: 10, mode: Mode::Hybrid, rerank: true }
    }
}

/// One result; `path` is relative to the indexed root, lines are 1-based and inclusive.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub score: f32,
    pub text: String,
}

/// The answer to one query (the JSON of `search --json`, `--queries` and `POST /search`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub query: String,
    pub results: Vec<Hit>,
}

/// How to open a searcher.
#[derive(Clone, Default)]
pub struct OpenOptions {
    /// Use this model for queries instead of the one the manifest names (it must be the same
    /// model: same fingerprint).
    pub model: Option<String>,
    /// An already loaded model (a server's); wins over `model`.
    pub loaded_model: Option<Arc<Model>>,
    pub precision: Precision,
    /// A cross-encoder or ColBERT model that reorders the best candidates.
    pub rerank: Option<String>,
    /// How many candidates the reranker sees.
    pub rerank_candidates: usize,
}

/// An open index. Cheap to share between threads; picks up new generations as `index` commits
/// them (each search sees one consistent generation).
pub struct Searcher {
    dir: PathBuf,
    snapshot: RwLock<Arc<Snapshot>>,
    options: OpenOptions,
    embedder: OnceLock<Arc<Embedder>>,
    embedder_lock: Mutex<()>,
    reranker: OnceLock<Arc<Model>>,
}

impl Searcher {
    /// Opens the index at `dir` (no model is loaded until a dense or hybrid search needs it).
    pub fn open(dir: &Path, options: OpenOptions) -> Result<Self> {
        let snapshot = Snapshot::open(dir)?;
        let s = Self {
            dir: dir.to_path_buf(),
            snapshot: RwLock::new(Arc::new(snapshot)),
            options,
            embedder: OnceLock::new(),
            embedder_lock: Mutex::new(()),
            reranker: OnceLock::new(),
        };
        Ok(s)
    }

    /// Loads the models now (a server does this at start, not on the first request).
    pub fn warm_up(&self, mode: Mode) -> Result<()> {
        if mode != Mode::Bm25 {
            self.embedder()?;
        }
        if self.options.rerank.is_some() {
            self.reranker()?;
        }
        Ok(())
    }

    /// The current generation: re-reads the manifest and switches when `index` has committed.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>> {
        let current = self.snapshot.read().unwrap_or_else(|p| p.into_inner()).clone();
        let on_disk = crate::store::read_manifest(&self.dir).ok().flatten().map(|m| m.generation);
        if on_disk.is_some_and(|g| g != current.manifest.generation) {
            if let Ok(fresh) = Snapshot::open(&self.dir) {
                let fresh = Arc::new(fresh);
                *self.snapshot.write().unwrap_or_else(|p| p.into_inner()) = fresh.clone();
                return Ok(fresh);
            }
        }
        Ok(current)
    }

    /// The query embedder, loaded once and checked against the index's model.
    pub fn embedder(&self) -> Result<Arc<Embedder>> {
        if let Some(e) = self.embedder.get() {
            return Ok(e.clone());
        }
        let _guard = self.embedder_lock.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = self.embedder.get() {
            return Ok(e.clone());
        }
        let snap = self.snapshot()?;
        let recorded = &snap.manifest.model;
        let embedder = match (&self.options.loaded_model, &self.options.model) {
            (Some(m), _) => Embedder::from_model(m.clone(), &m.dir().display().to_string())?,
            (None, Some(spec)) => Embedder::load(spec, self.options.precision)?,
            (None, None) => {
                if !Path::new(&recorded.dir).is_dir() && !Path::new(&recorded.spec).exists() {
                    bail!(
                        "the index at {} was built with the model {} ({}), which is not there any more: \
                         pass --model with the same model",
                        self.dir.display(),
                        recorded.spec,
                        recorded.dir
                    );
                }
                let spec = if Path::new(&recorded.dir).is_dir() { &recorded.dir } else { &recorded.spec };
                Embedder::load(spec, self.options.precision)?
            }
        };
        check_model(&self.dir, &snap, &embedder)?;
        let e = Arc::new(embedder);
        let _ = self.embedder.set(e.clone());
        Ok(e)
    }

    /// Embeds queries with `model` when it is the index's model (same fingerprint), so that a
    /// server which already loaded it does not load it twice. Returns whether it was taken (not
    /// when another model, or when the query embedder is already loaded).
    pub fn share_model(&self, model: Arc<Model>) -> Result<bool> {
        if self.embedder.get().is_some() {
            return Ok(false);
        }
        let snap = self.snapshot()?;
        let recorded = &snap.manifest.model;
        if crate::embedder::fingerprint(model.dir())? != recorded.fingerprint {
            return Ok(false);
        }
        let _guard = self.embedder_lock.lock().unwrap_or_else(|p| p.into_inner());
        if self.embedder.get().is_some() {
            return Ok(false);
        }
        let embedder = Embedder::from_model(model, &recorded.spec)?;
        check_model(&self.dir, &snap, &embedder)?;
        Ok(self.embedder.set(Arc::new(embedder)).is_ok())
    }

    /// The directory of the index.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn reranker(&self) -> Result<Option<Arc<Model>>> {
        let Some(spec) = &self.options.rerank else { return Ok(None) };
        if let Some(m) = self.reranker.get() {
            return Ok(Some(m.clone()));
        }
        let dir = modernbert::hub::resolve(spec).with_context(|| format!("cannot load the reranker {spec}"))?;
        let model = Model::load_with(&dir, self.options.precision)
            .with_context(|| format!("cannot load the reranker {spec}"))?;
        if !matches!(model.format, Format::CrossEncoder(_) | Format::Colbert(_)) {
            bail!(
                "--rerank {spec}: a reranker must be a cross-encoder or a ColBERT model; this is a {} model",
                model.format.name()
            );
        }
        let m = Arc::new(model);
        let _ = self.reranker.set(m.clone());
        Ok(Some(m))
    }

    /// Runs one query.
    pub fn search(&self, q: &Query) -> Result<Response> {
        let text = q.text.trim();
        if text.is_empty() {
            bail!("empty query: give some words or code to search for");
        }
        let snap = self.snapshot()?;
        let top_k = q.top_k.max(1);
        let rerank = q.rerank && self.options.rerank.is_some();
        let want = if rerank { top_k.max(self.options.rerank_candidates.max(1)) } else { top_k };
        let pool = want.max(100);
        let ranked: Vec<(usize, f32)> = match q.mode {
            Mode::Bm25 => snap.bm25(&crate::tokens::query_terms(text), want)?,
            Mode::Dense => self.dense(&snap, text, want)?,
            Mode::Hybrid => {
                let lexical = snap.bm25(&crate::tokens::query_terms(text), pool)?;
                let dense = self.dense(&snap, text, pool)?;
                let mut fused = rrf(&[&lexical, &dense]);
                fused.truncate(want);
                fused
            }
        };
        let ranked = if rerank && !ranked.is_empty() { self.rerank(&snap, text, ranked)? } else { ranked };
        let results = ranked
            .into_iter()
            .take(top_k)
            .map(|(row, score)| {
                let c = snap.chunk(row);
                Hit {
                    path: c.path.to_string(),
                    start_line: c.start_line,
                    end_line: c.end_line,
                    score,
                    text: c.text.to_string(),
                }
            })
            .collect();
        Ok(Response { query: q.text.clone(), results })
    }

    fn dense(&self, snap: &Snapshot, text: &str, k: usize) -> Result<Vec<(usize, f32)>> {
        if snap.is_empty() {
            return Ok(Vec::new());
        }
        let embedder = self.embedder()?;
        // The index may have been rebuilt with another model since the embedder was loaded.
        check_model(&self.dir, snap, &embedder)?;
        let q = embedder.embed_query(text)?;
        if q.len() != snap.manifest.model.dimension {
            bail!("the query vector has {} values, the index {}", q.len(), snap.manifest.model.dimension);
        }
        let scores = crate::dense::scores(snap.vectors(), &q);
        Ok(modernbert::retrieval::top_k(&scores, k).into_iter().map(|i| (i, scores[i])).collect())
    }

    fn rerank(&self, snap: &Snapshot, query: &str, ranked: Vec<(usize, f32)>) -> Result<Vec<(usize, f32)>> {
        let Some(model) = self.reranker()? else { return Ok(ranked) };
        let n = ranked.len().min(self.options.rerank_candidates.max(1));
        let texts: Vec<String> = ranked[..n]
            .iter()
            .map(|&(row, _)| {
                let c = snap.chunk(row);
                crate::indexer::embed_text(c.path, c.context, c.text)
            })
            .collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let scores = model.score_pairs(query, &refs, false, Some(Truncation::right(512)))?;
        let mut out: Vec<(usize, f32)> = ranked[..n].iter().zip(scores).map(|(&(row, _), s)| (row, s)).collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1));
        Ok(out)
    }
}

/// Refuses a model other than the one that built the index.
fn check_model(dir: &Path, snap: &Snapshot, embedder: &Embedder) -> Result<()> {
    let recorded = &snap.manifest.model;
    if recorded.fingerprint != embedder.record.fingerprint {
        return Err(anyhow!(
            "the index at {} was built with the model {} ({}); {} is a different model, whose vectors cannot \
             be compared with the index's: search with --model {} (or without --model), or re-index with \
             `modernbert index {} --index {} --rebuild --model {}`",
            dir.display(),
            recorded.spec,
            recorded.dir,
            embedder.record.spec,
            recorded.spec,
            snap.manifest.root,
            dir.display(),
            embedder.record.spec
        ));
    }
    Ok(())
}

/// Reciprocal-rank fusion: `Σ 1 / (k + rank)` over the lists (ranks from 1), best first.
pub fn rrf(lists: &[&[(usize, f32)]]) -> Vec<(usize, f32)> {
    let mut acc: std::collections::HashMap<usize, f32> = std::collections::HashMap::new();
    for list in lists {
        for (rank, &(row, _)) in list.iter().enumerate() {
            *acc.entry(row).or_default() += 1.0 / (RRF_K + rank as f32 + 1.0);
        }
    }
    let mut out: Vec<(usize, f32)> = acc.into_iter().collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_fuses_ranks() {
        let a = [(1usize, 9.0f32), (2, 5.0), (3, 1.0)];
        let b = [(3usize, 0.9f32), (1, 0.8)];
        let f = rrf(&[&a, &b]);
        assert_eq!(f[0].0, 1);
        assert!((f[0].1 - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-7);
        assert_eq!(f[1].0, 3);
        assert_eq!(f[2].0, 2);
    }
}
