//! `modernbert index`: walk, hash, chunk the changed files, embed their chunks, commit.

use crate::chunk::{chunk_file, Chunk, Lang, Limits};
use crate::embedder::{resolve_spec, Embedder};
use crate::store::{self, FileRecord, FileUpdate, Manifest, NewChunk, Snapshot, WriterLock};
use crate::walk::{read_text, walk, Skip, WalkOptions};
use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use modernbert::Precision;
use rayon::prelude::*;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// What `modernbert index` was asked to do.
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// The tree (or file) to index.
    pub root: PathBuf,
    /// The index directory.
    pub index: PathBuf,
    /// The embedding model; default: the index's own model, else the default model.
    pub model: Option<String>,
    pub precision: Precision,
    /// Token budget of a code/text chunk; 0 = the model's maximum, capped at 512.
    pub max_tokens: usize,
    /// Token budget of a prose section; 0 = the model's maximum length.
    pub prose_max_tokens: usize,
    pub walk: WalkOptions,
    /// Start afresh: ignore (and replace) what the directory holds, whatever model built it.
    pub rebuild: bool,
    /// Draw a progress bar (when stderr is a terminal).
    pub progress: bool,
    /// Commit what is done every so often, so that a killed run keeps most of its work.
    pub checkpoint: Duration,
    /// Chunks per embedding call.
    pub batch: usize,
}

impl IndexOptions {
    pub fn new(root: impl Into<PathBuf>, index: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            index: index.into(),
            model: None,
            precision: Precision::F32,
            max_tokens: 0,
            prose_max_tokens: 0,
            walk: WalkOptions::default(),
            rebuild: false,
            progress: true,
            checkpoint: Duration::from_secs(300),
            batch: 64,
        }
    }
}

/// What a run did (printed as JSON by the CLI).
#[derive(Debug, Clone, Default, Serialize)]
pub struct IndexSummary {
    pub index: String,
    pub root: String,
    pub model: String,
    pub generation: u64,
    pub files: usize,
    pub files_unchanged: usize,
    pub files_updated: usize,
    pub files_removed: usize,
    pub skipped_binary: usize,
    pub skipped_generated: usize,
    pub skipped_too_large: usize,
    pub skipped_unreadable: usize,
    pub chunks: usize,
    pub chunks_embedded: usize,
    pub seconds: f64,
    pub chunk_seconds: f64,
    pub embed_seconds: f64,
    /// Chunks embedded per second of embedding.
    pub chunks_per_second: f64,
    pub committed: bool,
}

/// Checks that `dir` is an index or may become one (never write into someone else's folder).
fn check_index_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create the index directory {}", dir.display()))?;
        return Ok(());
    }
    if !dir.is_dir() {
        bail!("--index {} is a file, not a directory", dir.display());
    }
    let ours = |name: &str| {
        name == store::MANIFEST || name == "lock" || name.starts_with("gen-") || name.starts_with("manifest.json")
    };
    let foreign: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| !ours(n))
        .collect();
    if !foreign.is_empty() {
        bail!(
            "{} is not a code-search index and not empty (it holds {}); pick a new or empty directory for --index",
            dir.display(),
            foreign.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
        );
    }
    Ok(())
}

fn hash_hex(bytes: &[u8]) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(bytes))
}

/// The text a chunk is embedded as: path, enclosing names, lines.
pub fn embed_text(path: &str, context: &str, text: &str) -> String {
    if context.is_empty() {
        format!("{path}\n{text}")
    } else {
        format!("{path}\n{context}\n{text}")
    }
}

/// Builds or updates the index.
pub fn index(opts: &IndexOptions) -> Result<IndexSummary> {
    let t0 = Instant::now();
    let root = opts.root.canonicalize().with_context(|| format!("cannot index {}", opts.root.display()))?;
    check_index_dir(&opts.index)?;
    let dir = opts.index.canonicalize()?;
    if root.is_dir() && dir.starts_with(&root) && dir != root {
        // Fine (the walk skips it below), but say nothing: a hidden `.index` folder is common.
    }
    let _lock = WriterLock::acquire(&dir)?;

    // The previous generation, unless rebuilding.
    let prev_manifest = match store::read_manifest(&dir) {
        Ok(m) => m,
        Err(e) if opts.rebuild => {
            tracing::warn!("ignoring the old index: {e:#}");
            None
        }
        Err(e) => return Err(e.context("run with --rebuild to index from scratch")),
    };
    let prev_manifest = if opts.rebuild { None } else { prev_manifest };
    if let Some(m) = &prev_manifest {
        if Path::new(&m.root) != root {
            bail!(
                "{} indexes {}, not {}: use another --index directory, or --rebuild to replace it",
                dir.display(),
                m.root,
                root.display()
            );
        }
    }
    let spec = match (&opts.model, &prev_manifest) {
        (Some(m), _) => m.clone(),
        (None, Some(m)) => m.model.spec.clone(),
        (None, None) => resolve_spec(None)?,
    };
    let embedder = Embedder::load(&spec, opts.precision)?;
    if let Some(m) = &prev_manifest {
        if m.model.fingerprint != embedder.record.fingerprint {
            bail!(
                "{} was built with the model {} ({}); {} is a different model, and vectors of two models \
                 cannot be mixed: index with --model {}, or pass --rebuild to re-embed everything with {}",
                dir.display(),
                m.model.spec,
                m.model.dir,
                spec,
                m.model.spec,
                spec
            );
        }
    }
    let mut prev = match &prev_manifest {
        Some(_) => Some(Snapshot::open(&dir).context("run with --rebuild to index from scratch")?),
        None => None,
    };

    let model_max = embedder.max_length;
    let max_tokens = if opts.max_tokens == 0 { model_max.min(512) } else { opts.max_tokens.min(model_max) };
    let prose_max_tokens = if opts.prose_max_tokens == 0 { model_max } else { opts.prose_max_tokens.min(model_max) };
    let limits = Limits {
        max_tokens,
        prose_max_tokens: prose_max_tokens.max(max_tokens),
        reserved_tokens: 2 + embedder.document_prompt_tokens(),
        ..Limits::default()
    };
    let base = Manifest {
        format: store::FORMAT_NAME.into(),
        version: store::FORMAT_VERSION,
        generation: 0,
        root: root.display().to_string(),
        model: embedder.record.clone(),
        chunks: 0,
        files: 0,
        next_id: 0,
        max_tokens: limits.max_tokens,
        prose_max_tokens: limits.prose_max_tokens,
        complete: false,
        committed_unix: 0,
    };

    let mut summary = IndexSummary {
        index: dir.display().to_string(),
        root: root.display().to_string(),
        model: spec.clone(),
        ..Default::default()
    };

    // Walk and hash.
    let spinner = progress_bar(opts.progress, None, "scanning");
    let found = walk(&root, &opts.walk)?;
    let found: Vec<_> = found.into_iter().filter(|f| !f.abs.starts_with(&dir)).collect();
    let prev_hash: HashMap<String, String> =
        prev.as_ref().map(|p| p.files.iter().map(|f| (f.path.clone(), f.hash.clone())).collect()).unwrap_or_default();
    let max_bytes = opts.walk.max_file_bytes;
    // (path, (text, content hash) or why it was skipped)
    type Read = (String, Result<(String, String), Skip>);
    let read: Vec<Read> = found
        .par_iter()
        .map(|f| {
            let r = read_text(&f.abs, max_bytes).map(|text| {
                let h = hash_hex(text.as_bytes());
                (text, h)
            });
            (f.rel.clone(), r)
        })
        .collect();
    spinner.finish_and_clear();
    let mut present: HashSet<String> = HashSet::new();
    let mut todo: Vec<(String, String, String)> = Vec::new(); // (path, text, hash)
    for (path, r) in read {
        match r {
            Ok((text, hash)) => {
                present.insert(path.clone());
                if prev_hash.get(&path) == Some(&hash) {
                    summary.files_unchanged += 1;
                } else {
                    todo.push((path, text, hash));
                }
            }
            Err(Skip::Unreadable) => {
                summary.skipped_unreadable += 1;
                // Keep what the index has: the file is there, we just cannot read it now.
                if prev_hash.contains_key(&path) {
                    present.insert(path);
                    summary.files_unchanged += 1;
                }
            }
            Err(s) => match s {
                Skip::Binary => summary.skipped_binary += 1,
                Skip::Generated => summary.skipped_generated += 1,
                _ => summary.skipped_too_large += 1,
            },
        }
    }
    let removed: HashSet<String> = prev_hash.keys().filter(|p| !present.contains(*p)).cloned().collect();
    summary.files_removed = removed.len();
    summary.files_updated = todo.len();

    // Chunk the changed files (in parallel; the tokenizer measures every line).
    let tc = Instant::now();
    let tokenizer = embedder.model.tokenizer()?;
    let chunked: Vec<(FileRecord, Vec<Chunk>)> = todo
        .par_iter()
        .map(|(path, text, hash)| {
            let lang = Lang::of(Path::new(path));
            let chunks = chunk_file(Path::new(path), text, &limits, tokenizer);
            (FileRecord { path: path.clone(), hash: hash.clone(), lang: lang.name().into() }, chunks)
        })
        .collect();
    drop(todo);
    summary.chunk_seconds = tc.elapsed().as_secs_f64();
    let total_new: usize = chunked.iter().map(|(_, c)| c.len()).sum();

    let nothing_to_do = chunked.is_empty() && removed.is_empty() && prev.as_ref().is_some_and(|p| p.manifest.complete);
    if nothing_to_do {
        let p = prev.as_ref().unwrap();
        summary.generation = p.manifest.generation;
        summary.files = p.files.len();
        summary.chunks = p.len();
        summary.seconds = t0.elapsed().as_secs_f64();
        return Ok(summary);
    }

    // Embed, committing every `checkpoint` so that a kill loses little.
    let bar = progress_bar(opts.progress, Some(total_new as u64), "embedding");
    let mut pending: Vec<FileUpdate> = Vec::new();
    let mut pending_removed = removed;
    let mut last_commit = Instant::now();
    let mut embed_time = Duration::ZERO;
    let max_embed = limits.prose_max_tokens.max(limits.max_tokens);
    // Files are embedded in groups of about `batch` chunks.
    let mut group: Vec<(FileRecord, Vec<Chunk>)> = Vec::new();
    let mut group_chunks = 0usize;
    let n_files = chunked.len();
    for (i, item) in chunked.into_iter().enumerate() {
        group_chunks += item.1.len();
        group.push(item);
        if group_chunks < opts.batch && i + 1 < n_files {
            continue;
        }
        let texts: Vec<String> =
            group.iter().flat_map(|(f, cs)| cs.iter().map(move |c| embed_text(&f.path, &c.context, &c.text))).collect();
        let te = Instant::now();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = if refs.is_empty() { Vec::new() } else { embedder.embed_documents(&refs, max_embed)? };
        embed_time += te.elapsed();
        let mut vectors = vectors.into_iter();
        for (record, chunks) in group.drain(..) {
            let chunks = chunks
                .into_iter()
                .map(|c| NewChunk {
                    start_line: c.start_line,
                    end_line: c.end_line,
                    context: c.context,
                    text: c.text,
                    vector: vectors.next().unwrap_or_default(),
                })
                .collect();
            pending.push(FileUpdate { record, chunks });
        }
        bar.inc(group_chunks as u64);
        summary.chunks_embedded += group_chunks;
        group_chunks = 0;
        if last_commit.elapsed() >= opts.checkpoint && i + 1 < n_files {
            let snap = store::commit(&dir, prev.as_ref(), &base, &pending, &pending_removed)?;
            prev = Some(snap);
            pending.clear();
            pending_removed.clear();
            last_commit = Instant::now();
        }
    }
    bar.finish_and_clear();
    let final_manifest = Manifest { complete: true, ..base.clone() };
    let snap = store::commit(&dir, prev.as_ref(), &final_manifest, &pending, &pending_removed)?;
    summary.committed = true;
    summary.generation = snap.manifest.generation;
    summary.files = snap.files.len();
    summary.chunks = snap.len();
    summary.embed_seconds = embed_time.as_secs_f64();
    summary.chunks_per_second =
        if summary.embed_seconds > 0.0 { summary.chunks_embedded as f64 / summary.embed_seconds } else { 0.0 };
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

fn progress_bar(enabled: bool, len: Option<u64>, what: &'static str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    match len {
        Some(n) => {
            let bar = ProgressBar::new(n);
            bar.set_style(
                ProgressStyle::with_template("{msg} {bar:40} {pos}/{len} chunks ({per_sec}, {eta} left)")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_message(what);
            bar
        }
        None => {
            let s = ProgressBar::new_spinner();
            s.set_message(what);
            s.enable_steady_tick(Duration::from_millis(120));
            s
        }
    }
}
