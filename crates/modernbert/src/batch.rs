//! Unpadded batches: sequences concatenated along the token axis, described by `cu_seqlens`.

use crate::error::{Error, Result};

/// Token ids of several sequences, concatenated without padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// All token ids, sequence after sequence.
    pub input_ids: Vec<u32>,
    /// `[0, end_0, end_1, ..]`: sequence `b` is `input_ids[cu_seqlens[b]..cu_seqlens[b + 1]]`.
    pub cu_seqlens: Vec<u32>,
    /// Per sequence, the number of leading tokens every token may attend to (`None`: all of the
    /// sequence). ColBERT's expanded queries keep their `[MASK]` tokens out of the keys.
    pub key_limits: Option<Vec<u32>>,
}

impl Batch {
    /// Concatenates sequences; every sequence must have at least one token.
    pub fn new<S: AsRef<[u32]>>(sequences: &[S]) -> Result<Self> {
        let mut input_ids = Vec::with_capacity(sequences.iter().map(|s| s.as_ref().len()).sum());
        let mut cu_seqlens = Vec::with_capacity(sequences.len() + 1);
        cu_seqlens.push(0);
        for (i, s) in sequences.iter().enumerate() {
            let s = s.as_ref();
            if s.is_empty() {
                return Err(Error::Input(format!("sequence {i} has no tokens")));
            }
            input_ids.extend_from_slice(s);
            cu_seqlens.push(input_ids.len() as u32);
        }
        Ok(Self { input_ids, cu_seqlens, key_limits: None })
    }

    /// Restricts the keys of each sequence to its first `limits[b]` tokens.
    pub fn with_key_limits(mut self, limits: Vec<u32>) -> Result<Self> {
        if limits.len() != self.num_sequences() {
            return Err(Error::Input(format!("{} key limits for {} sequences", limits.len(), self.num_sequences())));
        }
        self.key_limits = Some(limits);
        Ok(self)
    }

    /// Number of sequences.
    pub fn num_sequences(&self) -> usize {
        self.cu_seqlens.len() - 1
    }

    /// Total number of tokens.
    pub fn num_tokens(&self) -> usize {
        self.input_ids.len()
    }

    /// Token range of sequence `b`.
    pub fn range(&self, b: usize) -> std::ops::Range<usize> {
        self.cu_seqlens[b] as usize..self.cu_seqlens[b + 1] as usize
    }

    /// Length of the longest sequence.
    pub fn max_len(&self) -> usize {
        self.cu_seqlens.windows(2).map(|w| (w[1] - w[0]) as usize).max().unwrap_or(0)
    }
}
