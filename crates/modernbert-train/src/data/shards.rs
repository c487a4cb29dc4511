//! Tokenized shards on disk: the output of `modernbert data prepare`, read back memory-mapped.
//!
//! A shard directory holds `manifest.json` ([`Manifest`]) and, per split, one or more shard pairs:
//!
//! * `{split}-{k:05}.tokens` — little-endian `u32` token ids, all documents of the shard back to back;
//! * `{split}-{k:05}.offsets` — little-endian `u64`, `docs + 1` entries: document `i` is
//!   `tokens[offsets[i]..offsets[i + 1]]`, `offsets[0] = 0`.
//!
//! Every stored document is wrapped as `[CLS] ... [SEP]` and is at most `max_doc_tokens` long.

use anyhow::{bail, ensure, Context, Result};
use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;

#[cfg(not(target_endian = "little"))]
compile_error!("shards are memory-mapped as little-endian u32/u64; big-endian targets are not supported");

/// File name of the manifest inside a shard directory.
pub const MANIFEST: &str = "manifest.json";
/// `Manifest::format`.
pub const FORMAT: &str = "modernbert-shards";
/// `Manifest::version`.
pub const VERSION: u32 = 1;

/// A data split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training documents.
    Train,
    /// Held-out documents (evaluation).
    Heldout,
}

impl Split {
    /// Both splits.
    pub const ALL: [Split; 2] = [Split::Train, Split::Heldout];

    /// `"train"` or `"heldout"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Heldout => "heldout",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "heldout" | "held-out" | "eval" | "validation" => Ok(Split::Heldout),
            _ => bail!("unknown split {s:?} (expected train or heldout)"),
        }
    }
}

/// The tokenizer the shards were made with, and the ids the data side needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizerInfo {
    /// SHA-256 of the `tokenizer.json` bytes (compare with `sha256sum tokenizer.json`).
    pub sha256: String,
    /// Vocabulary size including added tokens.
    pub vocab_size: u32,
    pub cls_id: u32,
    pub sep_id: u32,
    pub pad_id: u32,
    pub mask_id: u32,
    /// Every added token flagged special (never masked, never drawn as a random token).
    pub special_ids: Vec<u32>,
    /// `[unusedK]` filler slots (never drawn as a random token).
    pub unused_ids: Vec<u32>,
}

/// One shard pair of a split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardInfo {
    pub tokens_file: String,
    pub offsets_file: String,
    pub docs: u64,
    pub tokens: u64,
}

/// One split: totals and its shards.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SplitInfo {
    /// Stored documents (after chunking long inputs).
    pub docs: u64,
    /// Tokens, `[CLS]`/`[SEP]` included.
    pub tokens: u64,
    pub shards: Vec<ShardInfo>,
}

/// What `data prepare` read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputStats {
    /// Files read (plain and JSONL).
    pub files: u64,
    /// Bytes of those files.
    pub bytes: u64,
    /// Non-empty JSONL lines read.
    pub jsonl_lines: u64,
    /// Source documents (one file or one JSONL line) that produced tokens.
    pub source_docs: u64,
    /// Source documents longer than `max_doc_tokens`, stored as several chunks.
    pub chunked_docs: u64,
    /// Files skipped because they are not valid UTF-8.
    pub skipped_invalid_utf8: u64,
    /// Documents skipped because they are empty or whitespace only.
    pub skipped_empty: u64,
}

/// `manifest.json` of a shard directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`VERSION`].
    pub version: u32,
    pub tokenizer: TokenizerInfo,
    /// Longest stored document, specials included.
    pub max_doc_tokens: usize,
    /// Fraction of source documents assigned to `heldout` (by hash of their key).
    pub heldout_fraction: f64,
    /// How documents were assigned to splits (human-readable).
    pub split_rule: String,
    pub splits: BTreeMap<Split, SplitInfo>,
    pub inputs: InputStats,
}

impl Manifest {
    /// Reads and checks `dir/manifest.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("{} (is {} a `data prepare` output?)", path.display(), dir.display()))?;
        let m: Manifest =
            serde_json::from_str(&text).with_context(|| format!("{}: invalid manifest", path.display()))?;
        ensure!(
            m.format == FORMAT && m.version == VERSION,
            "{}: unsupported format {} v{}",
            path.display(),
            m.format,
            m.version
        );
        Ok(m)
    }

    /// The split's entry (empty if the split has no documents).
    pub fn split(&self, split: Split) -> SplitInfo {
        self.splits.get(&split).cloned().unwrap_or_default()
    }
}

/// Writes one split as a sequence of shards of at most `max_shard_tokens` tokens each.
pub struct ShardWriter {
    dir: PathBuf,
    split: Split,
    max_shard_tokens: u64,
    current: Option<OpenWriter>,
    info: SplitInfo,
}

struct OpenWriter {
    tokens: BufWriter<File>,
    tokens_tmp: PathBuf,
    offsets: Vec<u64>,
}

impl ShardWriter {
    /// A writer for `split` into `dir` (which must exist).
    pub fn new(dir: &Path, split: Split, max_shard_tokens: u64) -> Self {
        Self {
            dir: dir.to_path_buf(),
            split,
            max_shard_tokens: max_shard_tokens.max(1),
            current: None,
            info: SplitInfo::default(),
        }
    }

    /// Appends one document (already wrapped in `[CLS]`/`[SEP]`).
    pub fn push(&mut self, doc: &[u32]) -> Result<()> {
        if let Some(w) = &self.current {
            let len = *w.offsets.last().unwrap();
            if len > 0 && len + doc.len() as u64 > self.max_shard_tokens {
                self.close_shard()?;
            }
        }
        if self.current.is_none() {
            let k = self.info.shards.len();
            let tokens_tmp = self.dir.join(format!("{}-{k:05}.tokens.tmp", self.split));
            let f = File::create(&tokens_tmp).with_context(|| format!("creating {}", tokens_tmp.display()))?;
            self.current =
                Some(OpenWriter { tokens: BufWriter::with_capacity(1 << 20, f), tokens_tmp, offsets: vec![0] });
        }
        let w = self.current.as_mut().unwrap();
        w.tokens.write_all(bytemuck::cast_slice(doc))?;
        let end = w.offsets.last().unwrap() + doc.len() as u64;
        w.offsets.push(end);
        Ok(())
    }

    fn close_shard(&mut self) -> Result<()> {
        let Some(mut w) = self.current.take() else { return Ok(()) };
        let k = self.info.shards.len();
        let tokens_file = format!("{}-{k:05}.tokens", self.split);
        let offsets_file = format!("{}-{k:05}.offsets", self.split);
        w.tokens.flush()?;
        w.tokens.get_ref().sync_all()?;
        drop(w.tokens);
        std::fs::rename(&w.tokens_tmp, self.dir.join(&tokens_file))?;
        write_atomic(&self.dir.join(&offsets_file), bytemuck::cast_slice(&w.offsets))?;
        let docs = w.offsets.len() as u64 - 1;
        let tokens = *w.offsets.last().unwrap();
        self.info.docs += docs;
        self.info.tokens += tokens;
        self.info.shards.push(ShardInfo { tokens_file, offsets_file, docs, tokens });
        Ok(())
    }

    /// Closes the last shard and returns the split's totals.
    pub fn finish(mut self) -> Result<SplitInfo> {
        self.close_shard()?;
        Ok(self.info)
    }
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().context("write_atomic: path has no file name")?.to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let mut f = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

struct MappedShard {
    tokens: Mmap,
    offsets: Mmap,
}

impl MappedShard {
    fn tokens(&self) -> &[u32] {
        bytemuck::cast_slice(&self.tokens[..])
    }
    fn offsets(&self) -> &[u64] {
        bytemuck::cast_slice(&self.offsets[..])
    }
}

fn map(path: &Path) -> Result<Mmap> {
    let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    // SAFETY: shard files are written once (temp + rename) and never modified in place.
    unsafe { Mmap::map(&f) }.with_context(|| format!("mapping {}", path.display()))
}

/// The documents of one split, memory-mapped, addressed by a global document index.
pub struct ShardSet {
    manifest: Manifest,
    split: Split,
    shards: Vec<MappedShard>,
    /// `doc_starts[k]` = global index of shard `k`'s first document; last entry = total docs.
    doc_starts: Vec<usize>,
}

impl ShardSet {
    /// Opens `split` of the shard directory `dir` and checks the files against the manifest.
    pub fn open(dir: &Path, split: Split) -> Result<Self> {
        let manifest = Manifest::load(dir)?;
        let info = manifest.split(split);
        let mut shards = Vec::with_capacity(info.shards.len());
        let mut doc_starts = vec![0usize];
        for s in &info.shards {
            let tokens = map(&dir.join(&s.tokens_file))?;
            let offsets = map(&dir.join(&s.offsets_file))?;
            ensure!(tokens.len() as u64 == s.tokens * 4, "{}: size does not match the manifest", s.tokens_file);
            ensure!(offsets.len() as u64 == (s.docs + 1) * 8, "{}: size does not match the manifest", s.offsets_file);
            let shard = MappedShard { tokens, offsets };
            let offs = shard.offsets();
            ensure!(offs[0] == 0 && offs[offs.len() - 1] == s.tokens, "{}: bad first/last offset", s.offsets_file);
            ensure!(offs.windows(2).all(|w| w[0] < w[1]), "{}: offsets not strictly increasing", s.offsets_file);
            doc_starts.push(doc_starts.last().unwrap() + s.docs as usize);
            shards.push(shard);
        }
        Ok(Self { manifest, split, shards, doc_starts })
    }

    /// The directory's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Which split this is.
    pub fn split(&self) -> Split {
        self.split
    }

    /// Number of documents.
    pub fn num_docs(&self) -> usize {
        *self.doc_starts.last().unwrap()
    }

    /// Number of tokens over all documents.
    pub fn num_tokens(&self) -> u64 {
        self.shards.iter().map(|s| s.tokens().len() as u64).sum()
    }

    fn locate(&self, i: usize) -> (&MappedShard, usize) {
        assert!(i < self.num_docs(), "document {i} out of range ({} documents)", self.num_docs());
        let k = self.doc_starts.partition_point(|&start| start <= i) - 1;
        (&self.shards[k], i - self.doc_starts[k])
    }

    /// Document `i`: `[CLS] ... [SEP]` token ids. Panics if `i >= num_docs()`.
    pub fn doc(&self, i: usize) -> &[u32] {
        let (shard, j) = self.locate(i);
        let offs = shard.offsets();
        &shard.tokens()[offs[j] as usize..offs[j + 1] as usize]
    }

    /// Length of document `i` in tokens.
    pub fn doc_len(&self, i: usize) -> usize {
        let (shard, j) = self.locate(i);
        let offs = shard.offsets();
        (offs[j + 1] - offs[j]) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::testutil::tokenizer_info;

    #[test]
    fn write_then_map_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        let docs: Vec<Vec<u32>> = (0..25u32).map(|i| (0..(3 + i % 7)).map(|t| t + i).collect()).collect();
        let mut w = ShardWriter::new(dir.path(), Split::Train, 20);
        for d in &docs {
            w.push(d).unwrap();
        }
        let info = w.finish().unwrap();
        assert!(info.shards.len() > 3);
        assert_eq!(info.docs, 25);
        let mut splits = BTreeMap::new();
        splits.insert(Split::Train, info);
        let m = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            tokenizer: tokenizer_info(),
            max_doc_tokens: 16,
            heldout_fraction: 0.0,
            split_rule: String::new(),
            splits,
            inputs: InputStats::default(),
        };
        write_atomic(&dir.path().join(MANIFEST), serde_json::to_string(&m).unwrap().as_bytes()).unwrap();
        let set = ShardSet::open(dir.path(), Split::Train).unwrap();
        assert_eq!(set.num_docs(), 25);
        for (i, d) in docs.iter().enumerate() {
            assert_eq!(set.doc(i), &d[..]);
            assert_eq!(set.doc_len(i), d.len());
        }
        let empty = ShardSet::open(dir.path(), Split::Heldout).unwrap();
        assert_eq!(empty.num_docs(), 0);
        // no temp files left behind
        assert!(std::fs::read_dir(dir.path()).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains("tmp")));
        // a truncated file is detected
        let f = dir.path().join(&m.splits[&Split::Train].shards[0].tokens_file);
        let bytes = std::fs::read(&f).unwrap();
        std::fs::write(&f, &bytes[..bytes.len() - 4]).unwrap();
        assert!(ShardSet::open(dir.path(), Split::Train).is_err());
    }
}
