//! The resumable batch source: shards → (shuffled) documents → chunks of at most `max_seq_len`
//! → greedy best-fit packer → MLM masking → one [`MlmBatch`] per packed row.
//!
//! Everything is a pure function of the configuration and the position:
//! * the document order of epoch `e` is a Fisher–Yates shuffle with a [`Pcg64`] keyed by
//!   `(seed, e)` (identity order when `shuffle` is off);
//! * documents longer than `max_seq_len` are split at read time into `[CLS] piece [SEP]` chunks of
//!   at most `max_seq_len` tokens (the last one shorter), so nothing is dropped;
//! * masking of row `r` of step `s` uses the stream keyed by `(seed, s, r)`.
//!
//! The position (epoch, cursor, chunk, the packer's buffer of [`DocRef`]s, the step counter and
//! how many rows of the current step were already handed out) is what [`BatchSource::state`]
//! saves; [`BatchSource::restore`] recomputes the rest, so a resumed run sees exactly the batches
//! an uninterrupted one would.

use super::masking::{Masker, MaskingConfig};
use super::packing::{DocRef, GreedyBestFitPacker, PackStats, PackedRow};
use super::rng::{key, Pcg64};
use super::shards::{ShardSet, Split};
use crate::MlmBatch;
use anyhow::{bail, ensure, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::VecDeque;
use std::path::Path;

const TAG_SHUFFLE: u64 = 0x7368_7566;
const STATE_VERSION: u32 = 1;

/// How a [`BatchSource`] reads, packs and masks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SourceConfig {
    /// Which split to read.
    pub split: Split,
    /// Longest sequence (document chunk) in tokens, specials included (1024 in phase 1).
    pub max_seq_len: usize,
    /// Token budget of one packed row, P (a multiple of `max_seq_len` in the recipe, e.g. 8192).
    pub row_tokens: usize,
    /// Rows per optimizer step for the [`Iterator`] interface (see [`BatchSource::next_step`]).
    pub rows_per_step: usize,
    /// Seed for shuffling and masking.
    pub seed: u64,
    /// Masking rates.
    pub masking: MaskingConfig,
    /// Shuffle document order every epoch.
    pub shuffle: bool,
    /// Start a new epoch when the documents run out (training); otherwise stop after one pass
    /// and emit the last, partial rows (evaluation).
    pub repeat: bool,
    /// Packer buffer capacity in units of one step's sequences (5 in the spec).
    pub buffer_factor: usize,
}

impl SourceConfig {
    /// Training: shuffled, endless, 30% masking, P = 8192, max_seq_len = 1024, one row per step.
    pub fn train(seed: u64) -> Self {
        Self {
            split: Split::Train,
            max_seq_len: 1024,
            row_tokens: 8192,
            rows_per_step: 1,
            seed,
            masking: MaskingConfig::TRAIN,
            shuffle: true,
            repeat: true,
            buffer_factor: 5,
        }
    }

    /// Evaluation on the held-out split: one pass in stored order, 15% masking, fixed seed.
    pub fn eval() -> Self {
        Self { split: Split::Heldout, masking: MaskingConfig::EVAL, shuffle: false, repeat: false, ..Self::train(0) }
    }
}

/// One optimizer step's worth of micro-batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// Step index (0-based, counts packed steps of this source).
    pub index: u64,
    /// Epoch the step's last document came from.
    pub epoch: u64,
    /// One micro-batch per packed row.
    pub batches: Vec<MlmBatch>,
    /// Real tokens in the step.
    pub tokens: usize,
    /// Rows · P.
    pub capacity: usize,
}

/// Where the source stands; everything else is recomputed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Position {
    epoch: u64,
    /// Next index into the epoch's document order.
    cursor: u64,
    /// Next chunk of the document at `cursor`.
    chunk: u32,
    /// The packer's buffer, as `[doc, chunk, len]`.
    buffer: Vec<[u32; 3]>,
    /// Next step index.
    step: u64,
    stats: PackStats,
}

/// The rows of the step in progress, as far as [`Iterator::next`] handed them out.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Partial {
    /// Position before the step was packed.
    before: Position,
    rows: usize,
    taken: usize,
}

#[derive(Serialize, Deserialize)]
struct SavedState {
    version: u32,
    config: SourceConfig,
    num_docs: u64,
    position: Position,
    partial: Option<Partial>,
}

/// Resumable iterator over MLM micro-batches; see the module docs.
pub struct BatchSource {
    shards: ShardSet,
    cfg: SourceConfig,
    masker: Masker,
    packer: GreedyBestFitPacker,
    cls: u32,
    sep: u32,
    order: Vec<u32>,
    order_epoch: Option<u64>,
    epoch: u64,
    cursor: u64,
    chunk: u32,
    step: u64,
    stats: PackStats,
    pending: VecDeque<MlmBatch>,
    partial: Option<Partial>,
}

impl BatchSource {
    /// Opens `cfg.split` of the shard directory `dir`.
    pub fn open(dir: &Path, cfg: SourceConfig) -> Result<Self> {
        let shards = ShardSet::open(dir, cfg.split)?;
        Self::new(shards, cfg)
    }

    /// A source over already opened shards (`cfg.split` is ignored in favour of theirs).
    pub fn new(shards: ShardSet, mut cfg: SourceConfig) -> Result<Self> {
        cfg.split = shards.split();
        ensure!(cfg.max_seq_len >= 3, "max_seq_len must be at least 3 ([CLS] token [SEP])");
        ensure!(
            cfg.row_tokens >= cfg.max_seq_len,
            "row_tokens ({}) < max_seq_len ({})",
            cfg.row_tokens,
            cfg.max_seq_len
        );
        ensure!(cfg.rows_per_step > 0, "rows_per_step must be positive");
        ensure!(shards.num_docs() <= u32::MAX as usize, "more than 2^32 documents in one split");
        let tok = &shards.manifest().tokenizer;
        let masker = Masker::from_tokenizer(cfg.masking, tok)?;
        let (cls, sep) = (tok.cls_id, tok.sep_id);
        Ok(Self {
            packer: GreedyBestFitPacker::new(cfg.row_tokens, cfg.max_seq_len, cfg.buffer_factor),
            shards,
            cfg,
            masker,
            cls,
            sep,
            order: Vec::new(),
            order_epoch: None,
            epoch: 0,
            cursor: 0,
            chunk: 0,
            step: 0,
            stats: PackStats::default(),
            pending: VecDeque::new(),
            partial: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SourceConfig {
        &self.cfg
    }

    /// The shards read.
    pub fn shards(&self) -> &ShardSet {
        &self.shards
    }

    /// Packing counters so far (efficiency = [`PackStats::efficiency`]).
    pub fn stats(&self) -> PackStats {
        self.stats
    }

    /// Index of the next step to be packed.
    pub fn step_index(&self) -> u64 {
        self.step
    }

    /// Current epoch (documents are being read from it).
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Number of chunks document `doc` is split into.
    fn num_chunks(&self, doc: usize) -> u32 {
        let len = self.shards.doc_len(doc);
        if len <= self.cfg.max_seq_len {
            1
        } else {
            (len - 2).div_ceil(self.cfg.max_seq_len - 2) as u32
        }
    }

    fn chunk_len(&self, doc: usize, chunk: u32) -> u32 {
        let len = self.shards.doc_len(doc);
        if len <= self.cfg.max_seq_len {
            return len as u32;
        }
        let piece = self.cfg.max_seq_len - 2;
        let start = chunk as usize * piece;
        ((len - 2 - start).min(piece) + 2) as u32
    }

    /// Appends the tokens of `d` to `out`.
    fn write_chunk(&self, d: DocRef, out: &mut Vec<u32>) {
        let toks = self.shards.doc(d.doc as usize);
        if toks.len() <= self.cfg.max_seq_len {
            out.extend_from_slice(toks);
            return;
        }
        let piece = self.cfg.max_seq_len - 2;
        let start = 1 + d.chunk as usize * piece;
        out.push(self.cls);
        out.extend_from_slice(&toks[start..start + d.len as usize - 2]);
        out.push(self.sep);
    }

    fn ensure_order(&mut self) {
        if self.order_epoch == Some(self.epoch) {
            return;
        }
        let n = self.shards.num_docs() as u32;
        self.order = (0..n).collect();
        if self.cfg.shuffle {
            Pcg64::new(key(&[TAG_SHUFFLE, self.cfg.seed, self.epoch])).shuffle(&mut self.order);
        }
        self.order_epoch = Some(self.epoch);
    }

    /// The next document chunk of the stream, moving to the next epoch if `repeat` is on.
    fn next_doc(&mut self) -> Option<DocRef> {
        let n = self.shards.num_docs() as u64;
        if n == 0 {
            return None;
        }
        if self.cursor >= n {
            if !self.cfg.repeat {
                return None;
            }
            self.epoch += 1;
            self.cursor = 0;
            self.chunk = 0;
        }
        self.ensure_order();
        let doc = self.order[self.cursor as usize] as usize;
        let d = DocRef { doc: doc as u32, chunk: self.chunk, len: self.chunk_len(doc, self.chunk) };
        self.chunk += 1;
        if self.chunk >= self.num_chunks(doc) {
            self.chunk = 0;
            self.cursor += 1;
        }
        Some(d)
    }

    fn snapshot(&self) -> Position {
        Position {
            epoch: self.epoch,
            cursor: self.cursor,
            chunk: self.chunk,
            buffer: self.packer.buffer().iter().map(|d| [d.doc, d.chunk, d.len]).collect(),
            step: self.step,
            stats: self.stats,
        }
    }

    fn set_position(&mut self, p: &Position) -> Result<()> {
        let docs = self.shards.num_docs() as u64;
        ensure!(p.cursor <= docs, "data source state: cursor {} is past the {docs} documents", p.cursor);
        if let Some([doc, _, _]) = p.buffer.iter().find(|[doc, _, _]| *doc as u64 >= docs) {
            bail!("data source state: document {doc} is out of range ({docs} documents)");
        }
        self.epoch = p.epoch;
        self.cursor = p.cursor;
        self.chunk = p.chunk;
        self.packer.set_buffer(p.buffer.iter().map(|&[doc, chunk, len]| DocRef { doc, chunk, len }).collect());
        self.step = p.step;
        self.stats = p.stats;
        Ok(())
    }

    /// Packs the documents of one step into rows (no masking yet). `None` once a finite source
    /// is used up; empty rows are dropped at the end of a finite pass.
    fn pack(&mut self, rows: usize) -> Option<Vec<PackedRow>> {
        let mut packer = std::mem::replace(&mut self.packer, GreedyBestFitPacker::new(1, 1, 1));
        let mut packed = packer.pack_step(rows, &mut || self.next_doc());
        self.packer = packer;
        packed.retain(|r| !r.docs.is_empty());
        if packed.is_empty() {
            return None;
        }
        self.stats.add(&packed, self.cfg.row_tokens);
        Some(packed)
    }

    /// Turns a packed row into a masked micro-batch.
    fn materialize(&self, row: &PackedRow, step: u64, r: usize) -> MlmBatch {
        let mut input_ids = Vec::with_capacity(row.tokens);
        let mut cu_seqlens = Vec::with_capacity(row.docs.len() + 1);
        cu_seqlens.push(0u32);
        for &d in &row.docs {
            self.write_chunk(d, &mut input_ids);
            cu_seqlens.push(input_ids.len() as u32);
        }
        let labels = self.masker.mask_row(&mut input_ids, self.cfg.seed, step, r as u64);
        MlmBatch { input_ids, cu_seqlens, labels }
    }

    /// Packs, masks and returns the next optimizer step with `rows` rows (`rows` may change from
    /// step to step: batch-size warmup, spec §7.3). Returns `None` when a non-repeating source is
    /// exhausted; its last step may have fewer rows. Rows of a step partly handed out by
    /// [`Iterator::next`] are discarded.
    pub fn next_step(&mut self, rows: usize) -> Option<Step> {
        self.pending.clear();
        self.partial = None;
        let index = self.step;
        let packed = self.pack(rows)?;
        self.step += 1;
        let batches: Vec<MlmBatch> =
            packed.iter().enumerate().map(|(r, row)| self.materialize(row, index, r)).collect();
        let tokens = packed.iter().map(|r| r.tokens).sum();
        Some(Step { index, epoch: self.epoch, capacity: batches.len() * self.cfg.row_tokens, batches, tokens })
    }

    /// The full position as JSON (small: the packer buffer holds at most a few hundred refs).
    pub fn state(&self) -> Value {
        let saved = SavedState {
            version: STATE_VERSION,
            config: self.cfg,
            num_docs: self.shards.num_docs() as u64,
            position: self.snapshot(),
            partial: self.partial.clone(),
        };
        serde_json::to_value(saved).expect("state serializes")
    }

    /// Restores a position saved by [`BatchSource::state`] from a source with the same data and
    /// configuration (`rows_per_step` may differ).
    pub fn restore(&mut self, state: &Value) -> Result<()> {
        let saved: SavedState = serde_json::from_value(state.clone()).context("invalid data source state")?;
        ensure!(saved.version == STATE_VERSION, "unsupported data source state version {}", saved.version);
        let (a, b) = (SourceConfig { rows_per_step: 1, ..saved.config }, SourceConfig { rows_per_step: 1, ..self.cfg });
        ensure!(a == b, "data source state was saved with another configuration: {:?} vs {:?}", saved.config, self.cfg);
        ensure!(
            saved.num_docs == self.shards.num_docs() as u64,
            "data source state is for a split of {} documents, not {}",
            saved.num_docs,
            self.shards.num_docs()
        );
        self.pending.clear();
        self.partial = None;
        match saved.partial {
            None => self.set_position(&saved.position)?,
            Some(p) => {
                self.set_position(&p.before)?;
                let step = self.next_step(p.rows).context("data source state points past the end of the data")?;
                ensure!(step.batches.len() == p.rows && p.taken <= p.rows, "data source state does not match the data");
                self.pending = step.batches.into_iter().skip(p.taken).collect();
                self.partial = Some(Partial { taken: p.taken, ..p });
            }
        }
        Ok(())
    }
}

impl Iterator for BatchSource {
    type Item = MlmBatch;

    /// The next micro-batch, packing a new step of `rows_per_step` rows when the current one is
    /// used up.
    fn next(&mut self) -> Option<MlmBatch> {
        if self.pending.is_empty() {
            let before = self.snapshot();
            let step = self.next_step(self.cfg.rows_per_step)?;
            self.partial = Some(Partial { before, rows: step.batches.len(), taken: 0 });
            self.pending = step.batches.into();
        }
        let b = self.pending.pop_front()?;
        let p = self.partial.as_mut().expect("partial step recorded");
        p.taken += 1;
        if self.pending.is_empty() {
            self.partial = None;
        }
        Some(b)
    }
}

/// Packs (without masking) the first epoch of a split and returns the counters — what
/// `data prepare` prints as packing efficiency. Steps whose rows are not all filled because the
/// epoch ended are not counted, as training would continue into the next epoch.
pub fn measure_packing(
    dir: &Path,
    split: Split,
    max_seq_len: usize,
    row_tokens: usize,
    rows_per_step: usize,
    seed: u64,
) -> Result<PackStats> {
    let cfg = SourceConfig { split, max_seq_len, row_tokens, rows_per_step, seed, ..SourceConfig::train(seed) };
    let mut src = BatchSource::open(dir, cfg)?;
    let mut stats = PackStats::default();
    while src.epoch == 0 {
        let Some(rows) = src.pack(rows_per_step) else { break };
        if src.epoch == 0 {
            stats.add(&rows, row_tokens);
        }
    }
    Ok(stats)
}

#[cfg(test)]
#[path = "source_tests.rs"]
mod tests;
