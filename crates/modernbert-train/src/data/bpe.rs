//! `modernbert tokenizer train`: a byte-level BPE with the ModernBERT layout.
//!
//! The pipeline mirrors the released ModernBERT `tokenizer.json` (spec §5): NFC normalizer,
//! `ByteLevel` pre-tokenizer and decoder (`add_prefix_space = false`, `use_regex = true`), a BPE
//! model whose initial alphabet is the 256 byte symbols (so no input is ever unknown), then the
//! added tokens after the learned vocabulary: `[UNK] [CLS] [SEP] [PAD] [MASK]` (special,
//! `[MASK]` with `lstrip`), then `[unused0]`, `[unused1]`, ... (normal added tokens) up to the
//! next multiple of 64, and the post-processor `[CLS] $A [SEP]` / `[CLS] $A [SEP] $B [SEP]`
//! (all type ids 0).
//!
//! The BPE trainer is asked for `vocab_size − 5` entries; if the corpus supports fewer merges the
//! filler slots make up the difference (the total is then the next multiple of 64, which may be
//! below the request).

use super::inputs::{collect_files, read_docs, FileDocs};
use super::shards::write_atomic;
use anyhow::{anyhow, ensure, Result};
use std::path::{Path, PathBuf};
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::normalizers::unicode::NFC;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, Tokenizer};

/// The special tokens, in id order, right after the learned vocabulary.
pub const SPECIAL_TOKENS: [&str; 5] = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"];

/// Options of `tokenizer train`.
#[derive(Debug, Clone)]
pub struct BpeConfig {
    /// Requested total vocabulary (a multiple of 64).
    pub vocab_size: usize,
    /// Minimum pair frequency for a merge.
    pub min_frequency: u64,
    /// Show the trainer's progress bars.
    pub show_progress: bool,
}

impl BpeConfig {
    /// `vocab_size` with merges seen at least twice, progress on.
    pub fn new(vocab_size: usize) -> Self {
        Self { vocab_size, min_frequency: 2, show_progress: true }
    }
}

/// Trains on an iterator of documents and returns the finished tokenizer.
pub fn train_from_texts<I>(cfg: &BpeConfig, texts: I) -> Result<Tokenizer>
where
    I: Iterator<Item = String> + Send,
{
    ensure!(
        cfg.vocab_size / 64 * 64 == cfg.vocab_size,
        "--vocab-size must be a multiple of 64 (got {})",
        cfg.vocab_size
    );
    ensure!(cfg.vocab_size >= 320, "--vocab-size must be at least 320 (256 byte symbols + specials)");
    let mut tok = Tokenizer::new(BPE::default());
    tok.with_normalizer(Some(NFC));
    tok.with_pre_tokenizer(Some(ByteLevel::new(false, true, true)));
    tok.with_decoder(Some(ByteLevelDecoder::new(false, true, true)));
    let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
        .vocab_size(cfg.vocab_size - SPECIAL_TOKENS.len())
        .min_frequency(cfg.min_frequency)
        .show_progress(cfg.show_progress)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build()
        .into();
    tok.train(&mut trainer, texts).map_err(|e| anyhow!("training BPE: {e}"))?;
    finish_layout(&mut tok)?;
    Ok(tok)
}

/// Adds the specials, the `[unusedK]` fillers and the BERT template to a trained BPE.
fn finish_layout(tok: &mut Tokenizer) -> Result<()> {
    let base = tok.get_vocab_size(false);
    let specials: Vec<AddedToken> =
        SPECIAL_TOKENS.iter().map(|&s| AddedToken::from(s, true).lstrip(s == "[MASK]")).collect();
    tok.add_special_tokens(&specials);
    let total = (base + SPECIAL_TOKENS.len()).div_ceil(64) * 64;
    let unused: Vec<AddedToken> =
        (0..total - base - SPECIAL_TOKENS.len()).map(|k| AddedToken::from(format!("[unused{k}]"), false)).collect();
    tok.add_tokens(&unused);
    ensure!(
        tok.get_vocab_size(true) == total,
        "vocabulary layout came out wrong ({} != {total})",
        tok.get_vocab_size(true)
    );
    let id = |t: &str| tok.token_to_id(t).ok_or_else(|| anyhow!("missing {t}"));
    for (k, s) in SPECIAL_TOKENS.iter().enumerate() {
        ensure!(id(s)? as usize == base + k, "{s} did not get id {}", base + k);
    }
    let special_tokens = SPECIAL_TOKENS.iter().map(|&s| Ok((s, id(s)?))).collect::<Result<Vec<_>>>()?;
    let template = TemplateProcessing::builder()
        .try_single("[CLS] $A [SEP]")
        .map_err(|e| anyhow!(e))?
        .try_pair("[CLS] $A [SEP] $B [SEP]")
        .map_err(|e| anyhow!(e))?
        .special_tokens(special_tokens)
        .build()?;
    tok.with_post_processor(Some(template));
    Ok(())
}

/// Trains on files and directories (same walking and JSONL rules as `data prepare`; invalid
/// UTF-8 files are skipped with a warning) and writes `tokenizer.json` atomically.
pub fn train(
    cfg: &BpeConfig,
    inputs: &[PathBuf],
    include: &[String],
    exclude: &[String],
    output: &Path,
) -> Result<Tokenizer> {
    let files = collect_files(inputs, include, exclude)?;
    ensure!(!files.is_empty(), "no input files found");
    let mut docs = Vec::new();
    for f in &files {
        match read_docs(f)? {
            FileDocs::Docs { docs: d, .. } => docs.extend(d.into_iter().map(|(_, text)| text)),
            FileDocs::InvalidUtf8 => eprintln!("warning: skipping {} (not valid UTF-8)", f.path.display()),
        }
    }
    ensure!(!docs.is_empty(), "no text in the inputs");
    let tok = train_from_texts(cfg, docs.into_iter())?;
    let json = tok.to_string(true).map_err(|e| anyhow!("serializing tokenizer: {e}"))?;
    write_atomic(output, json.as_bytes())?;
    Ok(tok)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn corpus() -> Vec<String> {
        let mut docs = Vec::new();
        for i in 0..200 {
            docs.push(format!("fn add_{i}(a: u32, b: u32) -> u32 {{\n    a + b * {i}\n}}\n"));
            docs.push(format!("The quick brown fox number {i} jumps over the lazy dog. Ünïcödé ✓ 日本語\r\n\ttabbed"));
        }
        docs
    }

    #[test]
    fn layout_round_trip_and_reload() {
        let mut cfg = BpeConfig::new(384);
        cfg.show_progress = false;
        let tok = train_from_texts(&cfg, corpus().into_iter()).unwrap();
        let n = tok.get_vocab_size(true);
        assert_eq!(n % 64, 0);
        assert!(n <= 384);
        let base = tok.get_vocab_size(false) as u32;
        for (k, s) in SPECIAL_TOKENS.iter().enumerate() {
            assert_eq!(tok.token_to_id(s), Some(base + k as u32));
        }
        let added = tok.get_added_tokens_decoder();
        let mask = &added[&(base + 4)];
        assert!(mask.special && mask.lstrip);
        let unused = n as u32 - base - 5;
        assert_eq!(tok.token_to_id("[unused0]"), if unused > 0 { Some(base + 5) } else { None });
        for id in base + 5..n as u32 {
            assert!(!added[&id].special && added[&id].normalized);
        }

        let text = "fn main() {\n    let x = \"héllo wörld ✓\";\n\t}\r\n  two  spaces";
        let enc = tok.encode(text, true).unwrap();
        let ids = enc.get_ids();
        assert_eq!(ids[0], base + 1);
        assert_eq!(*ids.last().unwrap(), base + 2);
        assert_eq!(tok.decode(ids, true).unwrap(), text);
        // [MASK] swallows the preceding space, like ModernBERT's
        let m = tok.encode("a [MASK] b", false).unwrap();
        assert_eq!((m.get_tokens()[0].as_str(), m.get_ids()[1]), ("a", base + 4), "{:?}", m.get_tokens());

        // written file reloads identically, and the inference crate loads it
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..2)
            .map(|k| {
                let p = dir.path().join(format!("c{k}.txt"));
                std::fs::write(&p, corpus()[k..].join("\n")).unwrap();
                p
            })
            .collect();
        let out = dir.path().join("tokenizer.json");
        let trained = train(&cfg, &files, &[], &[], &out).unwrap();
        let reloaded = Tokenizer::from_file(&out).unwrap();
        assert_eq!(reloaded.encode(text, true).unwrap().get_ids(), trained.encode(text, true).unwrap().get_ids());
        let inference = modernbert::Tokenizer::from_file(&out, 512).unwrap();
        assert_eq!(inference.vocab_size(), trained.get_vocab_size(true));
        let (_, info) = super::super::prepare::tokenizer_info(&out).unwrap();
        assert_eq!(info.mask_id, base + 4);
        assert_eq!(info.special_ids, (base..base + 5).collect::<Vec<_>>());
        assert_eq!(info.unused_ids.len() as u32, unused);

        assert!(train_from_texts(&BpeConfig::new(300), corpus().into_iter()).is_err());
    }
}
