//! Multi-head self-attention over unpadded (cu_seqlens) batches, with RoPE applied inside.

use crate::rope::RopeTable;
use rayon::prelude::*;

/// Attention for a packed batch.
///
/// * `qkv`: `total_tokens` rows of width `3 * num_heads * head_dim`, laid out `[Q | K | V]`,
///   each block head-major (head `h` owns `[h*d, (h+1)*d)`), exactly HF's `Wqkv` output.
/// * `cu_seqlens`: `[0, end_0, end_1, ..]`; tokens of sequence `b` are rows `cu[b]..cu[b+1]`.
///   RoPE positions restart at 0 in every sequence.
/// * `window`: `Some(w)` restricts query `i` to keys `j` with `|i - j| <= w` (ModernBERT local
///   layers use `w = local_attention / 2 = 64`); `None` is full (global) attention.
/// * `out`: `total_tokens` rows of width `num_heads * head_dim`, heads merged head-major.
///
/// Scores are scaled by `1 / sqrt(head_dim)`; softmax runs in f32 with max subtraction.
pub fn attention_varlen(
    qkv: &[f32],
    cu_seqlens: &[u32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hidden = num_heads * head_dim;
    let total = *cu_seqlens.last().unwrap_or(&0) as usize;
    assert_eq!(qkv.len(), total * 3 * hidden, "qkv has the wrong size");
    assert_eq!(out.len(), total * hidden, "out has the wrong size");
    assert_eq!(rope.head_dim(), head_dim);

    // Split `out` into one contiguous chunk per sequence, then process sequences in parallel.
    let mut chunks = Vec::with_capacity(cu_seqlens.len().saturating_sub(1));
    let mut rest = out;
    for w in cu_seqlens.windows(2) {
        let (a, b) = (w[0] as usize, w[1] as usize);
        let (head, tail) = rest.split_at_mut((b - a) * hidden);
        chunks.push((a, b, head));
        rest = tail;
    }
    chunks.into_par_iter().for_each(|(start, end, out_seq)| {
        sequence_attention(&qkv[start * 3 * hidden..end * 3 * hidden], num_heads, head_dim, rope, window, out_seq)
    });
}

fn sequence_attention(
    qkv: &[f32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hidden = num_heads * head_dim;
    let len = qkv.len() / (3 * hidden);
    assert!(len <= rope.max_positions(), "sequence of {len} tokens exceeds the RoPE table");
    let scale = 1.0 / (head_dim as f32).sqrt();
    let mut q = vec![0f32; len * head_dim];
    let mut k = vec![0f32; len * head_dim];
    let mut scores = vec![0f32; len];
    for h in 0..num_heads {
        for t in 0..len {
            let row = &qkv[t * 3 * hidden..(t + 1) * 3 * hidden];
            let qt = &mut q[t * head_dim..(t + 1) * head_dim];
            qt.copy_from_slice(&row[h * head_dim..(h + 1) * head_dim]);
            rope.rotate(qt, t);
            let kt = &mut k[t * head_dim..(t + 1) * head_dim];
            kt.copy_from_slice(&row[hidden + h * head_dim..hidden + (h + 1) * head_dim]);
            rope.rotate(kt, t);
        }
        for i in 0..len {
            let (lo, hi) = match window {
                Some(w) => (i.saturating_sub(w), (i + w + 1).min(len)),
                None => (0, len),
            };
            let qi = &q[i * head_dim..(i + 1) * head_dim];
            let mut max = f32::NEG_INFINITY;
            for j in lo..hi {
                let kj = &k[j * head_dim..(j + 1) * head_dim];
                let s = qi.iter().zip(kj).map(|(a, b)| a * b).sum::<f32>() * scale;
                scores[j] = s;
                max = max.max(s);
            }
            let mut sum = 0f32;
            for s in &mut scores[lo..hi] {
                *s = (*s - max).exp();
                sum += *s;
            }
            let o = &mut out[i * hidden + h * head_dim..i * hidden + (h + 1) * head_dim];
            o.fill(0.0);
            for j in lo..hi {
                let p = scores[j] / sum;
                let vj = &qkv[j * 3 * hidden + 2 * hidden + h * head_dim..][..head_dim];
                for (o, &v) in o.iter_mut().zip(vj) {
                    *o += p * v;
                }
            }
        }
    }
}
