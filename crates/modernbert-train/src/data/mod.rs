//! The data side of pretraining: tokenized shards, `data prepare`, `tokenizer train`, the greedy
//! best-fit packer, MLM masking and the resumable batch source.
//!
//! ```text
//! files / dirs / JSONL ──prepare──▶ shards (mmap u32 ids + u64 offsets, manifest.json)
//!        shards ──source──▶ chunks ≤ max_seq_len ──packing──▶ rows of ≤ P tokens
//!        rows ──masking──▶ MlmBatch (one per row, unpadded, cu_seqlens at document boundaries)
//! ```
//!
//! The trainer needs only [`source::BatchSource`] (with [`source::SourceConfig`]): call
//! `next_step(rows)` once per optimizer step, save `state()` in checkpoints, `restore()` on resume.

pub mod bpe;
pub mod inputs;
pub mod masking;
pub mod packing;
pub mod prepare;
pub mod rng;
pub mod shards;
pub mod source;

pub use masking::{Masker, MaskingConfig};
pub use packing::{GreedyBestFitPacker, PackStats};
pub use shards::{Manifest, ShardSet, Split};
pub use source::{measure_packing, BatchSource, SourceConfig, Step};

#[cfg(test)]
pub(crate) mod testutil {
    use super::shards::*;
    use std::collections::BTreeMap;
    use std::path::Path;

    /// Vocabulary of the synthetic shards: ids 0..=4 special (UNK CLS SEP PAD MASK), 99 unused.
    pub fn tokenizer_info() -> TokenizerInfo {
        TokenizerInfo {
            sha256: "0".repeat(64),
            vocab_size: 100,
            cls_id: 1,
            sep_id: 2,
            pad_id: 3,
            mask_id: 4,
            special_ids: vec![0, 1, 2, 3, 4],
            unused_ids: vec![99],
        }
    }

    /// Writes a shard directory whose documents have the given content lengths (wrapped in
    /// CLS/SEP; content token t of document i is `5 + (i + t) % 90`).
    pub fn write_shards(dir: &Path, train: &[usize], heldout: &[usize]) {
        let docs = |lens: &[usize]| -> Vec<Vec<u32>> {
            lens.iter().enumerate().map(|(i, &n)| (0..n).map(|t| 5 + ((i + t) % 90) as u32).collect()).collect()
        };
        write_docs(dir, &docs(train), &docs(heldout));
    }

    /// Writes a shard directory with the given document contents (each wrapped in CLS/SEP).
    pub fn write_docs(dir: &Path, train: &[Vec<u32>], heldout: &[Vec<u32>]) {
        let mut splits = BTreeMap::new();
        for (split, docs) in [(Split::Train, train), (Split::Heldout, heldout)] {
            let mut w = ShardWriter::new(dir, split, 5000);
            for content in docs {
                let mut d = vec![1u32];
                d.extend_from_slice(content);
                d.push(2);
                w.push(&d).unwrap();
            }
            splits.insert(split, w.finish().unwrap());
        }
        let m = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            tokenizer: tokenizer_info(),
            max_doc_tokens: 1 << 20,
            heldout_fraction: 0.0,
            split_rule: String::new(),
            splits,
            inputs: InputStats::default(),
        };
        write_atomic(&dir.join(MANIFEST), serde_json::to_string(&m).unwrap().as_bytes()).unwrap();
    }
}
