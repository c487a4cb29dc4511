//! `modernbert data prepare`: text/code files, directories and JSONL → tokenized shards.
//!
//! Each document is tokenized without specials and stored as `[CLS] tokens [SEP]`. A document
//! longer than `max_doc_tokens` is stored as consecutive chunks `[CLS] piece [SEP]` of at most
//! `max_doc_tokens` tokens instead of being truncated as the authors did (spec §7.1): on a small
//! corpus dominated by long files (source files, plays, manuals) truncation would throw away most
//! of the text. The batch source chunks again at read time if it trains with a shorter
//! `max_seq_len`, so shards made with the default 8192 serve every phase.
//!
//! The held-out split is decided per *source* document (all chunks of a document go to the same
//! split): the first 8 bytes of SHA-256(key), read as a big-endian u64, below
//! `heldout_fraction · 2^64` → held-out. Keys are relative paths (see [`super::inputs`]), so the
//! split is stable across machines and runs; `heldout.txt` in the output lists the held-out keys.
//!
//! Output is written to a temporary sibling directory and renamed into place at the end, so an
//! interrupted run never leaves a half-written shard directory behind.

use super::inputs::{collect_files, read_docs, FileDocs, InputFile};
use super::shards::{write_atomic, InputStats, Manifest, ShardWriter, Split, TokenizerInfo, FORMAT, MANIFEST, VERSION};
use anyhow::{bail, ensure, Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Options of `data prepare`.
#[derive(Debug, Clone)]
pub struct PrepareConfig {
    /// `tokenizer.json` to tokenize with.
    pub tokenizer: PathBuf,
    /// Output shard directory (replaced if it holds a previous `data prepare` output).
    pub output: PathBuf,
    /// Files and directories to read.
    pub inputs: Vec<PathBuf>,
    /// Globs a file under a directory input must match (any of them), if given.
    pub include: Vec<String>,
    /// Globs that exclude files under a directory input.
    pub exclude: Vec<String>,
    /// Fraction of documents for the held-out split, in `[0, 1)`.
    pub heldout_fraction: f64,
    /// Longest stored document, specials included; longer ones are chunked.
    pub max_doc_tokens: usize,
    /// Tokens per shard file before a new one is started.
    pub shard_tokens: u64,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

impl PrepareConfig {
    /// Defaults: 1% held out, documents up to 8192 tokens, shards of 2^28 tokens (1 GiB), progress on.
    pub fn new(tokenizer: PathBuf, output: PathBuf, inputs: Vec<PathBuf>) -> Self {
        Self {
            tokenizer,
            output,
            inputs,
            include: Vec::new(),
            exclude: Vec::new(),
            heldout_fraction: 0.01,
            max_doc_tokens: 8192,
            shard_tokens: 1 << 28,
            progress: true,
        }
    }
}

/// The split rule, as recorded in the manifest.
pub const SPLIT_RULE: &str = "heldout iff u64_be(sha256(key)[0..8]) < heldout_fraction * 2^64; key = path relative to the directory input (or file name), plus :LINE for JSONL";

/// Whether a document with this key goes to the held-out split.
pub fn is_heldout(key: &str, fraction: f64) -> bool {
    let h = Sha256::digest(key.as_bytes());
    let x = u64::from_be_bytes(h[..8].try_into().unwrap());
    (x as f64) < fraction * 18_446_744_073_709_551_616.0
}

/// SHA-256 of a file, hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Loads a tokenizer and reads the ids the data side needs.
pub fn tokenizer_info(path: &Path) -> Result<(tokenizers::Tokenizer, TokenizerInfo)> {
    let tok = tokenizers::Tokenizer::from_file(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let id = |t: &str| tok.token_to_id(t).with_context(|| format!("{}: no {t} token", path.display()));
    let added = tok.get_added_tokens_decoder();
    let mut special_ids: Vec<u32> = added.iter().filter(|(_, t)| t.special).map(|(&i, _)| i).collect();
    special_ids.sort_unstable();
    let mut unused_ids: Vec<u32> = added
        .iter()
        .filter(|(_, t)| !t.special && t.content.starts_with("[unused") && t.content.ends_with(']'))
        .map(|(&i, _)| i)
        .collect();
    unused_ids.sort_unstable();
    let info = TokenizerInfo {
        sha256: sha256_file(path)?,
        vocab_size: tok.get_vocab_size(true) as u32,
        cls_id: id("[CLS]")?,
        sep_id: id("[SEP]")?,
        pad_id: id("[PAD]")?,
        mask_id: id("[MASK]")?,
        special_ids,
        unused_ids,
    };
    for s in [info.cls_id, info.sep_id, info.pad_id, info.mask_id] {
        ensure!(info.special_ids.contains(&s), "{}: [CLS]/[SEP]/[PAD]/[MASK] must be special tokens", path.display());
    }
    Ok((tok, info))
}

/// Splits `ids` (no specials) into `[CLS] piece [SEP]` documents of at most `max_len` tokens.
pub fn wrap_and_chunk(ids: &[u32], cls: u32, sep: u32, max_len: usize) -> Vec<Vec<u32>> {
    assert!(max_len >= 3);
    ids.chunks(max_len - 2)
        .map(|piece| {
            let mut d = Vec::with_capacity(piece.len() + 2);
            d.push(cls);
            d.extend_from_slice(piece);
            d.push(sep);
            d
        })
        .collect()
}

fn progress_bar(total: u64, on: bool) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(
        Some(total),
        if on { ProgressDrawTarget::stderr() } else { ProgressDrawTarget::hidden() },
    );
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
        )
        .unwrap(),
    );
    pb
}

struct Writers {
    train: ShardWriter,
    heldout: ShardWriter,
    heldout_keys: Vec<String>,
}

/// A batch of documents waiting to be tokenized together (parallel `encode_batch`).
#[derive(Default)]
struct Pending {
    keys: Vec<String>,
    texts: Vec<String>,
    bytes: usize,
}

const BATCH_BYTES: usize = 8 << 20;
const BATCH_DOCS: usize = 4096;

/// Runs `data prepare`; returns the manifest it wrote.
pub fn prepare(cfg: &PrepareConfig) -> Result<Manifest> {
    ensure!((0.0..1.0).contains(&cfg.heldout_fraction), "--heldout-fraction must be in [0, 1)");
    ensure!(cfg.max_doc_tokens >= 3, "--max-doc-tokens must be at least 3");
    ensure!(!cfg.inputs.is_empty(), "no inputs given");
    let (tok, info) = tokenizer_info(&cfg.tokenizer)?;
    let files = collect_files(&cfg.inputs, &cfg.include, &cfg.exclude)?;
    ensure!(!files.is_empty(), "no input files found (check the paths and --include/--exclude globs)");

    let out = &cfg.output;
    if out.exists() {
        let is_ours = out.join(MANIFEST).is_file();
        let is_empty = out.is_dir() && std::fs::read_dir(out)?.next().is_none();
        ensure!(is_ours || is_empty, "{} exists and is not a shard directory; refusing to replace it", out.display());
    }
    let name = out.file_name().context("--output has no directory name")?.to_string_lossy().into_owned();
    let tmp = out.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;

    let result = write_shards(cfg, &tok, &info, &files, &tmp);
    let manifest = match result {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    if out.exists() {
        let old = out.with_file_name(format!(".{name}.old-{}", std::process::id()));
        std::fs::rename(out, &old)?;
        std::fs::rename(&tmp, out)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, out)?;
    }
    Ok(manifest)
}

fn write_shards(
    cfg: &PrepareConfig,
    tok: &tokenizers::Tokenizer,
    info: &TokenizerInfo,
    files: &[InputFile],
    dir: &Path,
) -> Result<Manifest> {
    let mut stats = InputStats::default();
    let mut w = Writers {
        train: ShardWriter::new(dir, Split::Train, cfg.shard_tokens),
        heldout: ShardWriter::new(dir, Split::Heldout, cfg.shard_tokens),
        heldout_keys: Vec::new(),
    };
    let pb = progress_bar(files.iter().map(|f| f.size).sum(), cfg.progress);
    let mut pending = Pending::default();
    for file in files {
        match read_docs(file)? {
            FileDocs::InvalidUtf8 => {
                stats.skipped_invalid_utf8 += 1;
                pb.suspend(|| eprintln!("warning: skipping {} (not valid UTF-8)", file.path.display()));
            }
            FileDocs::Docs { docs, empty, jsonl_lines } => {
                stats.files += 1;
                stats.skipped_empty += empty;
                stats.jsonl_lines += jsonl_lines;
                for (key, text) in docs {
                    pending.bytes += text.len();
                    pending.keys.push(key);
                    pending.texts.push(text);
                }
            }
        }
        stats.bytes += file.size;
        if pending.bytes >= BATCH_BYTES || pending.texts.len() >= BATCH_DOCS {
            flush(cfg, tok, info, &mut pending, &mut w, &mut stats)?;
        }
        pb.inc(file.size);
        pb.set_message(format!("{} docs", stats.source_docs));
    }
    flush(cfg, tok, info, &mut pending, &mut w, &mut stats)?;
    pb.finish_and_clear();

    let mut splits = BTreeMap::new();
    splits.insert(Split::Train, w.train.finish()?);
    splits.insert(Split::Heldout, w.heldout.finish()?);
    let mut keys = w.heldout_keys.join("\n");
    keys.push('\n');
    write_atomic(&dir.join("heldout.txt"), keys.as_bytes())?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        tokenizer: info.clone(),
        max_doc_tokens: cfg.max_doc_tokens,
        heldout_fraction: cfg.heldout_fraction,
        split_rule: SPLIT_RULE.into(),
        splits,
        inputs: stats,
    };
    if manifest.splits.values().all(|s| s.docs == 0) {
        bail!("no documents: every input was empty or invalid");
    }
    write_atomic(&dir.join(MANIFEST), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    Ok(manifest)
}

fn flush(
    cfg: &PrepareConfig,
    tok: &tokenizers::Tokenizer,
    info: &TokenizerInfo,
    p: &mut Pending,
    w: &mut Writers,
    stats: &mut InputStats,
) -> Result<()> {
    if p.texts.is_empty() {
        return Ok(());
    }
    let texts = std::mem::take(&mut p.texts);
    let keys = std::mem::take(&mut p.keys);
    p.bytes = 0;
    let encodings = tok.encode_batch_fast(texts, false).map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
    for (key, enc) in keys.into_iter().zip(encodings) {
        let ids = enc.get_ids();
        if ids.is_empty() {
            stats.skipped_empty += 1;
            continue;
        }
        stats.source_docs += 1;
        if ids.len() + 2 > cfg.max_doc_tokens {
            stats.chunked_docs += 1;
        }
        let heldout = is_heldout(&key, cfg.heldout_fraction);
        let writer = if heldout { &mut w.heldout } else { &mut w.train };
        for d in wrap_and_chunk(ids, info.cls_id, info.sep_id, cfg.max_doc_tokens) {
            writer.push(&d)?;
        }
        if heldout {
            w.heldout_keys.push(key);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::shards::ShardSet;

    pub(crate) fn asset_tokenizer() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../assets/tokenizer/tokenizer.json")
    }

    #[test]
    fn split_rule_is_stable_and_proportional() {
        // pinned (sha256("abc") starts ba7816bf8f01cfea = 0.7284 * 2^64): changing the rule
        // silently would move documents between splits
        assert!(is_heldout("abc", 0.73) && !is_heldout("abc", 0.72));
        let n = 20_000;
        let held = (0..n).filter(|i| is_heldout(&format!("doc/{i}.txt"), 0.05)).count();
        assert!((held as f64 / n as f64 - 0.05).abs() < 0.006, "{held}");
        assert!(!(0..1000).any(|i| is_heldout(&i.to_string(), 0.0)));
    }

    #[test]
    fn chunking_keeps_every_token() {
        let ids: Vec<u32> = (10..30).collect();
        let docs = wrap_and_chunk(&ids, 1, 2, 8);
        assert_eq!(docs.len(), 4);
        assert!(docs.iter().all(|d| d.len() <= 8 && d[0] == 1 && *d.last().unwrap() == 2));
        let back: Vec<u32> = docs.iter().flat_map(|d| d[1..d.len() - 1].to_vec()).collect();
        assert_eq!(back, ids);
    }

    #[test]
    fn prepare_end_to_end() {
        let dir = tempfile::tempdir().unwrap();
        let corpus = dir.path().join("corpus");
        std::fs::create_dir_all(corpus.join("sub")).unwrap();
        for i in 0..40 {
            std::fs::write(corpus.join(format!("sub/f{i:02}.txt")), format!("Document number {i}. ").repeat(1 + i % 9))
                .unwrap();
        }
        std::fs::write(corpus.join("long.txt"), "word ".repeat(300)).unwrap();
        std::fs::write(corpus.join("empty.txt"), "  \n").unwrap();
        std::fs::write(corpus.join("bad.txt"), [0xc3u8, 0x28]).unwrap();
        std::fs::write(corpus.join("skip.md"), "excluded").unwrap();
        std::fs::write(corpus.join("lines.jsonl"), "{\"text\": \"first line\"}\n{\"text\": \"second line\"}\n")
            .unwrap();
        let out = dir.path().join("shards");
        let mut cfg = PrepareConfig::new(asset_tokenizer(), out.clone(), vec![corpus.clone()]);
        cfg.exclude = vec!["*.md".into()];
        cfg.heldout_fraction = 0.2;
        cfg.max_doc_tokens = 64;
        cfg.shard_tokens = 500;
        cfg.progress = false;
        let m = prepare(&cfg).unwrap();
        assert_eq!(m.inputs.skipped_invalid_utf8, 1);
        assert_eq!(m.inputs.skipped_empty, 1);
        assert_eq!(m.inputs.source_docs, 43);
        assert_eq!(m.inputs.chunked_docs, 1);
        assert_eq!(m.tokenizer.cls_id, 50281);
        assert_eq!(m.tokenizer.unused_ids.len(), 83);
        assert!(m.tokenizer.special_ids.contains(&50279) && m.tokenizer.special_ids.contains(&50284));
        let (train, held) = (m.split(Split::Train), m.split(Split::Heldout));
        assert!(held.docs > 0 && train.docs > held.docs && train.shards.len() > 1);
        let heldout_txt = std::fs::read_to_string(out.join("heldout.txt")).unwrap();
        for key in heldout_txt.lines() {
            assert!(is_heldout(key, 0.2));
        }
        // all documents are wrapped and within the limit; the long one is chunked, not truncated
        let set = ShardSet::open(&out, Split::Train).unwrap();
        let mut total = 0;
        for i in 0..set.num_docs() {
            let d = set.doc(i);
            assert!(d.len() <= 64 && d[0] == 50281 && d[d.len() - 1] == 50282);
            total += d.len() as u64;
        }
        assert_eq!(total, train.tokens);
        // the tokens are the text's: decode a short document back
        let (tok, _) = tokenizer_info(&asset_tokenizer()).unwrap();
        let texts: Vec<String> = (0..set.num_docs()).map(|i| tok.decode(set.doc(i), true).unwrap()).collect();
        assert!(texts
            .iter()
            .any(|t| t == "Document number 3. Document number 3. Document number 3. Document number 3. "));
        assert!(texts.iter().any(|t| t == "second line") || heldout_txt.contains("lines.jsonl:2"));
        // same output again (deterministic), replacing the previous directory
        let m2 = prepare(&cfg).unwrap();
        assert_eq!(m, m2);
        assert!(std::fs::read_dir(dir.path()).unwrap().count() == 2, "no temp dirs left");
        // bad JSONL aborts with file:line and leaves the previous output untouched
        std::fs::write(corpus.join("lines.jsonl"), "{\"text\": \"ok\"}\n{oops}\n").unwrap();
        let err = format!("{:#}", prepare(&cfg).unwrap_err());
        assert!(err.contains("lines.jsonl:2"), "{err}");
        assert_eq!(Manifest::load(&out).unwrap(), m);
        // refuses to overwrite a directory that is not a shard directory
        let other = dir.path().join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("keep.txt"), "x").unwrap();
        cfg.output = other;
        std::fs::write(corpus.join("lines.jsonl"), "").unwrap();
        assert!(prepare(&cfg).is_err());
    }
}
