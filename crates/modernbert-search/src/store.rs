//! The index on disk.
//!
//! ```text
//! DIR/manifest.json      which generation is current, the model, the format version
//! DIR/lock               held (flock) by the one `index` run that may write
//! DIR/gen-000007/        one complete, immutable generation:
//!     files.json         indexed files: path, content hash, language
//!     chunks.bin         one 40-byte record per chunk (id, file, lines, text span), ids ascending
//!     text.bin           chunk texts (context, then the lines)
//!     vectors.f32        the chunk vectors, row-major little-endian f32, row i = chunk i
//!     bm25/              tantivy index of the chunks (identifier-aware tokenizer)
//! ```
//!
//! A commit writes `gen-N.tmp/`, syncs it, renames it to `gen-N/`, then replaces `manifest.json`
//! by rename: a crash at any point leaves the previous generation current and intact. Readers
//! open whatever generation the manifest names; the generation before the current one is kept so
//! that a reader that has just read the old manifest can still open it. BM25 is updated
//! incrementally: the new generation starts from hard links to the previous one's segment files
//! (tantivy never rewrites a file in place) and deletes/adds only the changed files' chunks.

use crate::tokens::CodeTokenizer;
use anyhow::{anyhow, bail, Context, Result};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use tantivy::schema::{Field, IndexRecordOption, NumericOptions, Schema, TextFieldIndexing, TextOptions, STRING};
use tantivy::{Index, IndexReader, ReloadPolicy, TantivyDocument};

pub const FORMAT_NAME: &str = "modernbert-search";
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
const RECORD: usize = 40;

/// `DIR/manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub generation: u64,
    /// The indexed directory (absolute); result paths are relative to it.
    pub root: String,
    pub model: crate::embedder::ModelRecord,
    pub chunks: usize,
    pub files: usize,
    /// The next chunk id to hand out (ids are never reused).
    pub next_id: u64,
    pub max_tokens: usize,
    pub prose_max_tokens: usize,
    /// False while an interrupted `index` run has committed only part of its work.
    pub complete: bool,
    pub committed_unix: u64,
}

/// One indexed file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileRecord {
    pub path: String,
    /// xxh3-128 of the contents, hex.
    pub hash: String,
    pub lang: String,
}

/// One chunk as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRecord {
    pub id: u64,
    pub file: u32,
    pub start_line: u32,
    pub end_line: u32,
    pub context_len: u32,
    pub text_offset: u64,
    pub text_len: u32,
}

impl ChunkRecord {
    fn write(&self, out: &mut impl Write) -> std::io::Result<()> {
        out.write_all(&self.id.to_le_bytes())?;
        out.write_all(&self.file.to_le_bytes())?;
        out.write_all(&self.start_line.to_le_bytes())?;
        out.write_all(&self.end_line.to_le_bytes())?;
        out.write_all(&self.context_len.to_le_bytes())?;
        out.write_all(&self.text_offset.to_le_bytes())?;
        out.write_all(&self.text_len.to_le_bytes())?;
        out.write_all(&0u32.to_le_bytes())
    }

    fn read(b: &[u8]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
        let u64_at = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
        Self {
            id: u64_at(0),
            file: u32_at(8),
            start_line: u32_at(12),
            end_line: u32_at(16),
            context_len: u32_at(20),
            text_offset: u64_at(24),
            text_len: u32_at(32),
        }
    }
}

/// A chunk read back: where it is and what it says.
#[derive(Debug, Clone)]
pub struct StoredChunk<'a> {
    pub id: u64,
    pub path: &'a str,
    pub start_line: u32,
    pub end_line: u32,
    pub context: &'a str,
    pub text: &'a str,
}

/// The BM25 schema's fields.
#[derive(Clone, Copy)]
pub struct Bm25Fields {
    pub id: Field,
    pub file: Field,
    pub body: Field,
}

fn bm25_schema() -> (Schema, Bm25Fields) {
    let mut b = Schema::builder();
    let id = b.add_u64_field("id", NumericOptions::default().set_fast());
    let file = b.add_text_field("file", STRING);
    let body = b.add_text_field(
        "body",
        TextOptions::default().set_indexing_options(
            TextFieldIndexing::default().set_tokenizer("code").set_index_option(IndexRecordOption::WithFreqs),
        ),
    );
    (b.build(), Bm25Fields { id, file, body })
}

fn register(index: &Index) {
    index.tokenizers().register("code", CodeTokenizer);
}

/// The text BM25 indexes for a chunk: path, context and lines.
pub fn bm25_text(path: &str, context: &str, text: &str) -> String {
    format!("{path}\n{context}\n{text}")
}

pub fn generation_dir(index: &Path, generation: u64) -> PathBuf {
    index.join(format!("gen-{generation:06}"))
}

/// An error that says the directory is not (or no longer) a usable index.
pub fn not_an_index(dir: &Path, why: &str) -> anyhow::Error {
    anyhow!("{} is not a usable code-search index: {why}", dir.display())
}

/// Reads and checks `DIR/manifest.json`; `Ok(None)` if there is none.
pub fn read_manifest(dir: &Path) -> Result<Option<Manifest>> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(not_an_index(dir, &format!("cannot read {MANIFEST}: {e}"))),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| not_an_index(dir, &format!("{MANIFEST} is not valid JSON ({e})")))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT_NAME) {
        return Err(not_an_index(dir, &format!("{MANIFEST} is not a {FORMAT_NAME} manifest")));
    }
    let version = value.get("version").and_then(|v| v.as_u64()).unwrap_or(0);
    if version != FORMAT_VERSION as u64 {
        bail!(
            "{} has index format version {version}; this build reads version {FORMAT_VERSION}: re-index it \
             (`modernbert index PATH --index {} --rebuild`)",
            dir.display(),
            dir.display()
        );
    }
    let m: Manifest =
        serde_json::from_value(value).map_err(|e| not_an_index(dir, &format!("{MANIFEST} is damaged ({e})")))?;
    Ok(Some(m))
}

/// One generation, opened: memory-mapped chunk table, texts and vectors, and a BM25 reader.
pub struct Snapshot {
    pub dir: PathBuf,
    pub manifest: Manifest,
    pub files: Vec<FileRecord>,
    chunks: Mapped,
    text: Mapped,
    vectors: Mapped,
    bm25: Option<(Index, IndexReader, Bm25Fields)>,
}

/// A read-only mapping (or nothing, for an empty file).
struct Mapped(Option<Mmap>);

impl Mapped {
    fn open(path: &Path) -> Result<Self> {
        let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        if f.metadata()?.len() == 0 {
            return Ok(Self(None));
        }
        // SAFETY: generation files are never modified after their commit; a writer only adds
        // new generations and removes old ones (removal keeps existing mappings valid).
        let m = unsafe { Mmap::map(&f) }.with_context(|| format!("cannot map {}", path.display()))?;
        Ok(Self(Some(m)))
    }
    fn bytes(&self) -> &[u8] {
        self.0.as_deref().unwrap_or(&[])
    }
}

impl Snapshot {
    /// Opens the generation `DIR/manifest.json` names.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut last_err = None;
        // A writer may remove the generation between our reading the manifest and opening it
        // (only after two newer commits); read the manifest again then.
        for _ in 0..3 {
            let manifest = match read_manifest(dir)? {
                Some(m) => m,
                None => {
                    if !dir.is_dir() {
                        bail!("no index at {}: the directory does not exist (build one with `modernbert index PATH --index {}`)", dir.display(), dir.display());
                    }
                    bail!(
                        "no index at {} (no {MANIFEST}): build one with `modernbert index PATH --index {}`",
                        dir.display(),
                        dir.display()
                    )
                }
            };
            let gen_dir = generation_dir(dir, manifest.generation);
            if !gen_dir.is_dir() {
                last_err = Some(not_an_index(dir, &format!("generation {} is missing", manifest.generation)));
                std::thread::sleep(std::time::Duration::from_millis(20));
                continue;
            }
            return Self::open_generation(dir, manifest);
        }
        Err(last_err.unwrap())
    }

    fn open_generation(dir: &Path, manifest: Manifest) -> Result<Self> {
        let g = generation_dir(dir, manifest.generation);
        let root = manifest.root.clone();
        let damaged = |what: String| {
            anyhow!(
                "the index at {} is damaged ({what}); rebuild it: `modernbert index {} --index {} --rebuild`",
                dir.display(),
                root,
                dir.display()
            )
        };
        if cfg!(target_endian = "big") {
            bail!("code-search indexes are little-endian; this machine is big-endian");
        }
        let files: Vec<FileRecord> = std::fs::read(g.join("files.json"))
            .map_err(|e| damaged(format!("files.json: {e}")))
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| damaged(format!("files.json: {e}"))))?;
        let chunks = Mapped::open(&g.join("chunks.bin")).map_err(|e| damaged(format!("{e:#}")))?;
        let text = Mapped::open(&g.join("text.bin")).map_err(|e| damaged(format!("{e:#}")))?;
        let vectors = Mapped::open(&g.join("vectors.f32")).map_err(|e| damaged(format!("{e:#}")))?;
        let n = manifest.chunks;
        let dim = manifest.model.dimension;
        if chunks.bytes().len() != n * RECORD {
            return Err(damaged(format!("chunks.bin has {} bytes, expected {}", chunks.bytes().len(), n * RECORD)));
        }
        if vectors.bytes().len() != n * dim * 4 {
            return Err(damaged(format!("vectors.f32 has {} bytes, expected {}", vectors.bytes().len(), n * dim * 4)));
        }
        if files.len() != manifest.files {
            return Err(damaged(format!("files.json lists {} files, the manifest {}", files.len(), manifest.files)));
        }
        let mut snap = Self { dir: dir.to_path_buf(), manifest, files, chunks, text, vectors, bm25: None };
        // Every record must point inside the files (checked once, so reads never panic).
        let text_len = snap.text.bytes().len() as u64;
        let mut prev_id = None;
        for i in 0..n {
            let r = snap.record(i);
            let end = r.text_offset.checked_add(r.text_len as u64);
            if r.file as usize >= snap.files.len()
                || end.is_none_or(|e| e > text_len)
                || r.context_len > r.text_len
                || prev_id.is_some_and(|p| p >= r.id)
                || std::str::from_utf8(snap.text_bytes(&r)).is_err()
            {
                return Err(damaged(format!("chunk record {i} is invalid")));
            }
            prev_id = Some(r.id);
        }
        let bm25_dir = g.join("bm25");
        let index = Index::open_in_dir(&bm25_dir).map_err(|e| damaged(format!("bm25: {e}")))?;
        register(&index);
        let (_, fields) = bm25_schema();
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(|e| damaged(format!("bm25: {e}")))?;
        snap.bm25 = Some((index, reader, fields));
        Ok(snap)
    }

    pub fn len(&self) -> usize {
        self.manifest.chunks
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn record(&self, row: usize) -> ChunkRecord {
        ChunkRecord::read(&self.chunks.bytes()[row * RECORD..(row + 1) * RECORD])
    }

    fn text_bytes(&self, r: &ChunkRecord) -> &[u8] {
        &self.text.bytes()[r.text_offset as usize..r.text_offset as usize + r.text_len as usize]
    }

    /// The chunk in row `row` (checked at open, so this cannot fail for `row < len()`).
    pub fn chunk(&self, row: usize) -> StoredChunk<'_> {
        let r = self.record(row);
        let all = std::str::from_utf8(self.text_bytes(&r)).unwrap_or("");
        let (context, text) = all.split_at((r.context_len as usize).min(all.len()));
        StoredChunk {
            id: r.id,
            path: &self.files[r.file as usize].path,
            start_line: r.start_line,
            end_line: r.end_line,
            context,
            text,
        }
    }

    /// The row of chunk `id` (rows are in id order).
    pub fn row_of(&self, id: u64) -> Option<usize> {
        let (mut lo, mut hi) = (0usize, self.len());
        while lo < hi {
            let mid = (lo + hi) / 2;
            let m = self.record(mid).id;
            if m == id {
                return Some(mid);
            }
            if m < id {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        None
    }

    /// The vector matrix, `len() × dimension`.
    pub fn vectors(&self) -> &[f32] {
        let b = self.vectors.bytes();
        if b.is_empty() {
            return &[];
        }
        // SAFETY: the mapping is page-aligned, its length a multiple of 4 (checked at open),
        // and f32 has no invalid bit patterns; little-endian is checked at open.
        unsafe { std::slice::from_raw_parts(b.as_ptr() as *const f32, b.len() / 4) }
    }

    /// BM25 top `k`: `(row, score)`, best first.
    pub fn bm25(&self, terms: &[String], k: usize) -> Result<Vec<(usize, f32)>> {
        use tantivy::collector::TopDocs;
        use tantivy::query::{BooleanQuery, Occur, Query, TermQuery};
        let Some((_, reader, fields)) = &self.bm25 else { return Ok(Vec::new()) };
        if terms.is_empty() || k == 0 || self.is_empty() {
            return Ok(Vec::new());
        }
        let clauses: Vec<(Occur, Box<dyn Query>)> = terms
            .iter()
            .map(|t| {
                let term = tantivy::Term::from_field_text(fields.body, t);
                (Occur::Should, Box::new(TermQuery::new(term, IndexRecordOption::WithFreqs)) as Box<dyn Query>)
            })
            .collect();
        let query = BooleanQuery::new(clauses);
        let searcher = reader.searcher();
        let top = searcher.search(&query, &TopDocs::with_limit(k).order_by_score())?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let ids = searcher.segment_reader(addr.segment_ord).fast_fields().u64("id")?;
            let id = ids.first(addr.doc_id).context("bm25 document without id")?;
            if let Some(row) = self.row_of(id) {
                out.push((row, score));
            }
        }
        Ok(out)
    }
}

/// A chunk to add in a commit.
#[derive(Debug, Clone)]
pub struct NewChunk {
    pub start_line: u32,
    pub end_line: u32,
    pub context: String,
    pub text: String,
    pub vector: Vec<f32>,
}

/// A file whose chunks a commit replaces (or adds).
#[derive(Debug, Clone)]
pub struct FileUpdate {
    pub record: FileRecord,
    pub chunks: Vec<NewChunk>,
}

fn sync_dir(dir: &Path) -> Result<()> {
    // Directories cannot be opened for syncing on every platform; where they can, do.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a new generation: `prev`'s files minus `removed` and minus the updated paths, plus the
/// `updates`; then makes it current. Returns the new snapshot.
pub fn commit(
    dir: &Path,
    prev: Option<&Snapshot>,
    base: &Manifest,
    updates: &[FileUpdate],
    removed: &std::collections::HashSet<String>,
) -> Result<Snapshot> {
    // Generations only grow, also across `--rebuild` (which starts without `prev`): a rebuilt
    // index must neither overwrite the generation readers are using nor look unchanged to them.
    let current = read_manifest(dir).ok().flatten().map_or(0, |m| m.generation);
    let generation = prev.map_or(base.generation, |p| p.manifest.generation).max(current) + 1;
    let final_dir = generation_dir(dir, generation);
    let tmp = dir.join(format!("gen-{generation:06}.tmp"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("cannot remove leftover {}", tmp.display()))?;
    }
    if final_dir.exists() {
        // A generation that never became current (a crash between the two renames).
        std::fs::remove_dir_all(&final_dir)
            .with_context(|| format!("cannot remove leftover {}", final_dir.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let dim = base.model.dimension;

    // Files: the kept ones and the updated ones, sorted by path.
    let updated: std::collections::HashSet<&str> = updates.iter().map(|u| u.record.path.as_str()).collect();
    let dropped = |p: &str| removed.contains(p) || updated.contains(p);
    let mut files: Vec<FileRecord> =
        prev.map(|p| p.files.iter().filter(|f| !dropped(&f.path)).cloned().collect()).unwrap_or_default();
    files.extend(updates.iter().map(|u| u.record.clone()));
    files.sort_by(|a, b| a.path.cmp(&b.path));
    files.dedup_by(|a, b| a.path == b.path);
    let file_index: std::collections::HashMap<&str, u32> =
        files.iter().enumerate().map(|(i, f)| (f.path.as_str(), i as u32)).collect();

    let mut chunks_out = BufWriter::new(File::create(tmp.join("chunks.bin"))?);
    let mut text_out = BufWriter::new(File::create(tmp.join("text.bin"))?);
    let mut vec_out = BufWriter::new(File::create(tmp.join("vectors.f32"))?);
    let mut offset = 0u64;
    let mut rows = 0usize;
    let mut next_id = prev.map_or(base.next_id, |p| p.manifest.next_id);
    let mut write_row = |id: u64,
                         file: u32,
                         start: u32,
                         end: u32,
                         context: &str,
                         text: &str,
                         vector: &[f32],
                         offset: &mut u64|
     -> Result<()> {
        if vector.len() != dim {
            bail!("a vector has {} values, the index {}", vector.len(), dim);
        }
        let r = ChunkRecord {
            id,
            file,
            start_line: start,
            end_line: end,
            context_len: context.len() as u32,
            text_offset: *offset,
            text_len: (context.len() + text.len()) as u32,
        };
        r.write(&mut chunks_out)?;
        text_out.write_all(context.as_bytes())?;
        text_out.write_all(text.as_bytes())?;
        *offset += r.text_len as u64;
        for v in vector {
            vec_out.write_all(&v.to_le_bytes())?;
        }
        Ok(())
    };
    // Kept rows, in their (id) order.
    if let Some(p) = prev {
        let vectors = p.vectors();
        for row in 0..p.len() {
            let c = p.chunk(row);
            if dropped(c.path) {
                continue;
            }
            let file = file_index[c.path];
            write_row(
                c.id,
                file,
                c.start_line,
                c.end_line,
                c.context,
                c.text,
                &vectors[row * dim..(row + 1) * dim],
                &mut offset,
            )?;
            rows += 1;
        }
    }
    // New rows, with new ids.
    let mut added: Vec<(u64, String, String)> = Vec::new();
    for u in updates {
        let file = file_index[u.record.path.as_str()];
        for c in &u.chunks {
            let id = next_id;
            next_id += 1;
            write_row(id, file, c.start_line, c.end_line, &c.context, &c.text, &c.vector, &mut offset)?;
            rows += 1;
            added.push((id, u.record.path.clone(), bm25_text(&u.record.path, &c.context, &c.text)));
        }
    }
    for mut w in [chunks_out, text_out, vec_out] {
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    let files_json = serde_json::to_vec(&files)?;
    let mut f = File::create(tmp.join("files.json"))?;
    f.write_all(&files_json)?;
    f.sync_all()?;

    // BM25: incremental from the previous generation where possible.
    let bm25 = tmp.join("bm25");
    let mut incremental = false;
    if let Some(p) = prev {
        let prev_bm25 = generation_dir(dir, p.manifest.generation).join("bm25");
        let deleted: Vec<&str> = p.files.iter().map(|f| f.path.as_str()).filter(|path| dropped(path)).collect();
        match link_and_update(&prev_bm25, &bm25, &deleted, &added) {
            Ok(()) => incremental = true,
            Err(e) => {
                tracing::warn!("rebuilding the BM25 index from scratch: {e:#}");
                let _ = std::fs::remove_dir_all(&bm25);
            }
        }
    }
    if !incremental {
        let mut docs: Vec<(u64, String, String)> = Vec::new();
        if let Some(p) = prev {
            for row in 0..p.len() {
                let c = p.chunk(row);
                if !dropped(c.path) {
                    docs.push((c.id, c.path.to_string(), bm25_text(c.path, c.context, c.text)));
                }
            }
        }
        docs.extend(added);
        build_bm25(&bm25, &docs)?;
    }
    sync_dir(&bm25)?;
    sync_dir(&tmp)?;
    std::fs::rename(&tmp, &final_dir)
        .with_context(|| format!("cannot rename {} to {}", tmp.display(), final_dir.display()))?;
    sync_dir(dir)?;

    let manifest = Manifest {
        generation,
        chunks: rows,
        files: files.len(),
        next_id,
        committed_unix: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        ..base.clone()
    };
    write_manifest(dir, &manifest)?;
    collect_garbage(dir, generation);
    Snapshot::open(dir)
}

/// Replaces `DIR/manifest.json` atomically.
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<()> {
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    let mut f = File::create(&tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(manifest)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).context("cannot replace the manifest")?;
    sync_dir(dir)
}

/// Removes generations older than the previous one and unfinished `.tmp` generations.
fn collect_garbage(dir: &Path, current: u64) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(rest) = name.strip_prefix("gen-") else { continue };
        let old = match rest.strip_suffix(".tmp") {
            Some(_) => true,
            None => rest.parse::<u64>().is_ok_and(|g| g + 1 < current),
        };
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// A fresh BM25 index at `path` with `docs` (`(id, file, text)`).
fn build_bm25(path: &Path, docs: &[(u64, String, String)]) -> Result<()> {
    std::fs::create_dir_all(path)?;
    let (schema, fields) = bm25_schema();
    let index = Index::create_in_dir(path, schema).context("cannot create the BM25 index")?;
    register(&index);
    write_docs(&index, fields, &[], docs)
}

fn write_docs(index: &Index, fields: Bm25Fields, deleted: &[&str], docs: &[(u64, String, String)]) -> Result<()> {
    let mut writer: tantivy::IndexWriter<TantivyDocument> =
        index.writer_with_num_threads(1, 64_000_000).context("cannot open the BM25 writer")?;
    for path in deleted {
        writer.delete_term(tantivy::Term::from_field_text(fields.file, path));
    }
    for (id, file, body) in docs {
        let mut doc = TantivyDocument::default();
        doc.add_u64(fields.id, *id);
        doc.add_text(fields.file, file);
        doc.add_text(fields.body, body);
        writer.add_document(doc)?;
    }
    writer.commit().context("cannot commit the BM25 index")?;
    writer.wait_merging_threads().context("BM25 merge failed")?;
    Ok(())
}

/// `new` = hard links to `prev`'s files, then delete `deleted` files' chunks and add `docs`.
fn link_and_update(prev: &Path, new: &Path, deleted: &[&str], docs: &[(u64, String, String)]) -> Result<()> {
    std::fs::create_dir_all(new)?;
    for e in std::fs::read_dir(prev).with_context(|| format!("cannot read {}", prev.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().to_string();
        if name.ends_with(".lock") || !e.file_type()?.is_file() {
            continue;
        }
        let target = new.join(&name);
        if std::fs::hard_link(e.path(), &target).is_err() {
            std::fs::copy(e.path(), &target).with_context(|| format!("cannot copy {}", e.path().display()))?;
        }
    }
    let index = Index::open_in_dir(new).context("cannot open the previous BM25 index")?;
    register(&index);
    let (_, fields) = bm25_schema();
    write_docs(&index, fields, deleted, docs)
}

/// The writer lock: held for the whole of an `index` run, released when dropped (or when the
/// process dies).
pub struct WriterLock(#[allow(dead_code)] File);

impl WriterLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        match f.try_lock() {
            Ok(()) => Ok(Self(f)),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another `modernbert index` is writing {} (its lock is held); wait for it to finish",
                dir.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}
