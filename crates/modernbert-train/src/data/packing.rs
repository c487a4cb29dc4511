//! The authors' streaming greedy best-fit packer (spec §7.6, FB `GreedyBestFitSequencePacker`),
//! producing *unpadded* rows.
//!
//! Per optimizer step the caller asks for `rows` rows of `row_tokens` (= P) tokens each. Documents
//! (each at most `max_seq_len` ≤ P tokens) are popped from a buffer, oldest first; each goes to
//! the row with the **smallest remaining space ≥ its length** (ties → lowest row index), or is
//! deferred. When the buffer runs dry it is refilled from the source with at most
//! `capacity − #deferred` documents, `capacity = buffer_factor · rows · (P / max_seq_len)`
//! (5·B in the spec, B = sequences per step); the step ends when nothing can be added (source
//! exhausted, or as many documents deferred as the buffer holds). Deferred documents go back to
//! the front of the buffer, in reverse order (Python's `deque.extendleft`), and are tried first
//! next step. Rows are never padded: a row is the concatenation of whole documents.
//!
//! The packer only moves [`DocRef`]s; [`super::source`] turns rows into token batches.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// A document (or a chunk of a long one) by reference: what the packer moves around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct DocRef {
    /// Document index in its split.
    pub doc: u32,
    /// Chunk index within the document (0 unless the document is longer than `max_seq_len`).
    pub chunk: u32,
    /// Length in tokens, specials included.
    pub len: u32,
}

/// One packed row: whole documents, in placement order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackedRow {
    /// The documents of the row.
    pub docs: Vec<DocRef>,
    /// Tokens used (sum of the documents' lengths), at most `row_tokens`.
    pub tokens: usize,
}

/// Streaming greedy best-fit packer; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GreedyBestFitPacker {
    row_tokens: usize,
    max_seq_len: usize,
    buffer_factor: usize,
    buffer: VecDeque<DocRef>,
}

impl GreedyBestFitPacker {
    /// A packer for rows of `row_tokens` tokens and documents of at most `max_seq_len` tokens;
    /// `buffer_factor` is 5 in the spec. Panics unless `0 < max_seq_len <= row_tokens`.
    pub fn new(row_tokens: usize, max_seq_len: usize, buffer_factor: usize) -> Self {
        assert!(
            max_seq_len > 0 && max_seq_len <= row_tokens,
            "need 0 < max_seq_len ({max_seq_len}) <= row_tokens ({row_tokens})"
        );
        Self { row_tokens, max_seq_len, buffer_factor: buffer_factor.max(1), buffer: VecDeque::new() }
    }

    /// Tokens per row (P).
    pub fn row_tokens(&self) -> usize {
        self.row_tokens
    }

    /// Buffer capacity in documents for a step of `rows` rows.
    pub fn capacity(&self, rows: usize) -> usize {
        self.buffer_factor * rows * (self.row_tokens / self.max_seq_len).max(1)
    }

    /// Documents waiting in the buffer (deferred ones first).
    pub fn buffer(&self) -> &VecDeque<DocRef> {
        &self.buffer
    }

    /// Replaces the buffer (restoring a saved position).
    pub fn set_buffer(&mut self, buffer: VecDeque<DocRef>) {
        self.buffer = buffer;
    }

    /// Packs one step of `rows` rows, pulling documents from `next_doc` as needed. Returns all
    /// `rows` rows; some may be empty when the source ran out (the caller decides what to do).
    pub fn pack_step(&mut self, rows: usize, next_doc: &mut dyn FnMut() -> Option<DocRef>) -> Vec<PackedRow> {
        assert!(rows > 0, "a step needs at least one row");
        let capacity = self.capacity(rows);
        let mut out = vec![PackedRow::default(); rows];
        let mut remaining = vec![self.row_tokens; rows];
        let mut deferred = Vec::new();
        loop {
            if self.buffer.is_empty() {
                let want = capacity.saturating_sub(deferred.len());
                let mut added = 0;
                while added < want {
                    match next_doc() {
                        Some(d) => {
                            self.buffer.push_back(d);
                            added += 1;
                        }
                        None => break,
                    }
                }
                if added == 0 {
                    break;
                }
            }
            let d = self.buffer.pop_front().unwrap();
            let len = d.len as usize;
            assert!(len > 0 && len <= self.max_seq_len, "document of {len} tokens (max_seq_len {})", self.max_seq_len);
            let mut best: Option<usize> = None;
            for (r, &rem) in remaining.iter().enumerate() {
                if rem >= len && best.is_none_or(|b| rem < remaining[b]) {
                    best = Some(r);
                }
            }
            match best {
                Some(r) => {
                    remaining[r] -= len;
                    out[r].tokens += len;
                    out[r].docs.push(d);
                }
                None => deferred.push(d),
            }
        }
        for d in deferred {
            self.buffer.push_front(d);
        }
        out
    }
}

/// Packing counters: efficiency = `tokens / (rows · row_tokens)`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackStats {
    /// Optimizer steps packed.
    pub steps: u64,
    /// Rows emitted.
    pub rows: u64,
    /// Documents (chunks) placed.
    pub docs: u64,
    /// Real tokens placed.
    pub tokens: u64,
    /// `rows · row_tokens`.
    pub capacity: u64,
}

impl PackStats {
    /// Real tokens / row capacity (1.0 when nothing was packed).
    pub fn efficiency(&self) -> f64 {
        if self.capacity == 0 {
            1.0
        } else {
            self.tokens as f64 / self.capacity as f64
        }
    }

    /// Adds one step's rows (of `row_tokens` tokens each).
    pub fn add(&mut self, rows: &[PackedRow], row_tokens: usize) {
        self.steps += 1;
        self.rows += rows.len() as u64;
        self.docs += rows.iter().map(|r| r.docs.len() as u64).sum::<u64>();
        self.tokens += rows.iter().map(|r| r.tokens as u64).sum::<u64>();
        self.capacity += (rows.len() * row_tokens) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rng::Pcg64;

    fn docs(lens: &[u32]) -> impl FnMut() -> Option<DocRef> + '_ {
        let mut i = 0;
        move || {
            let d = lens.get(i).map(|&len| DocRef { doc: i as u32, chunk: 0, len });
            i += 1;
            d
        }
    }

    #[test]
    fn best_fit_ties_and_deferral() {
        // P = 10, L = 10, factor 1, 2 rows -> capacity 2 docs.
        let mut p = GreedyBestFitPacker::new(10, 10, 1);
        let lens = [6, 6, 4, 3, 5, 2];
        let mut src = docs(&lens);
        let rows = p.pack_step(2, &mut src);
        // 6 -> row0 (tie, lowest), 6 -> row1; refill: 4 -> row0 (tie 4/4, lowest), 3 -> row1;
        // refill: 5 deferred, 2 -> ... rem row0 0, row1 1 -> deferred; 2 deferred = capacity -> stop.
        assert_eq!(rows[0].docs.iter().map(|d| d.len).collect::<Vec<_>>(), [6, 4]);
        assert_eq!(rows[1].docs.iter().map(|d| d.len).collect::<Vec<_>>(), [6, 3]);
        // deferred pushed to the front reversed: [2, 5]
        assert_eq!(p.buffer().iter().map(|d| d.len).collect::<Vec<_>>(), [2, 5]);
        let rows = p.pack_step(2, &mut src);
        assert_eq!(rows[0].docs.iter().map(|d| d.len).collect::<Vec<_>>(), [2, 5]);
        assert!(rows[1].docs.is_empty());
        assert!(p.buffer().is_empty());
    }

    #[test]
    fn smallest_sufficient_row_wins() {
        let mut p = GreedyBestFitPacker::new(10, 10, 10);
        let lens = [7, 4, 3, 3];
        let rows = p.pack_step(3, &mut docs(&lens));
        // 7 -> r0 (rem 3), 4 -> r1 (rem 6), 3 -> r0 (rem 0: best fit), 3 -> r1 (rem 3 < 10)
        assert_eq!(rows.iter().map(|r| r.tokens).collect::<Vec<_>>(), [10, 7, 0]);
    }

    #[test]
    fn nothing_lost_and_high_efficiency_on_random_lengths() {
        let mut rng = Pcg64::new(3);
        let lens: Vec<u32> =
            (0..20_000).map(|_| if rng.below(4) == 0 { 1024 } else { 3 + rng.below(900) as u32 }).collect();
        let mut p = GreedyBestFitPacker::new(8192, 1024, 5);
        let mut src = docs(&lens);
        let mut seen = Vec::new();
        let mut stats = PackStats::default();
        let mut full = PackStats::default();
        loop {
            let rows = p.pack_step(2, &mut src);
            if rows.iter().all(|r| r.docs.is_empty()) {
                break;
            }
            for r in &rows {
                assert!(r.tokens <= 8192);
                assert_eq!(r.tokens, r.docs.iter().map(|d| d.len as usize).sum::<usize>());
                seen.extend(r.docs.iter().map(|d| d.doc));
            }
            if rows.iter().all(|r| !r.docs.is_empty()) && !p.buffer().is_empty() {
                full.add(&rows, 8192);
            }
            stats.add(&rows, 8192);
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..lens.len() as u32).collect::<Vec<_>>(), "every document exactly once");
        assert!(full.efficiency() > 0.99, "steady-state efficiency {}", full.efficiency());
    }
}
