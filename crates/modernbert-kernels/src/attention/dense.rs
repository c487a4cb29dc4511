//! Dense attention, one sequence per thread, computed in f64: slow and obviously correct. The
//! reference the fast kernels are tested against, and the kernel for sequences whose keys are
//! a prefix of the sequence (ColBERT queries whose `[MASK]` expansion tokens are not attended
//! to), which are short.

use crate::rope::RopeTable;
use rayon::prelude::*;

/// Attention over an unpadded batch (same layout as [`crate::attention_varlen`]) where the
/// tokens of sequence `b` attend only to its first `keys[b]` tokens (`None`: all of them), within
/// `window` when given. A token with no key in reach gets zeros.
#[allow(clippy::too_many_arguments)]
pub fn attention_key_prefix(
    qkv: &[f32],
    cu_seqlens: &[u32],
    keys: Option<&[u32]>,
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
    let mut chunks = Vec::with_capacity(cu_seqlens.len().saturating_sub(1));
    let mut rest = out;
    for (b, w) in cu_seqlens.windows(2).enumerate() {
        let (a, e) = (w[0] as usize, w[1] as usize);
        let (head, tail) = rest.split_at_mut((e - a) * hidden);
        let k = keys.map_or(e - a, |k| (k[b] as usize).min(e - a));
        chunks.push((a, e, k, head));
        rest = tail;
    }
    chunks.into_par_iter().for_each(|(start, end, k, out_seq)| {
        let qkv_seq = &qkv[start * 3 * hidden..end * 3 * hidden];
        sequence_attention(qkv_seq, k, num_heads, head_dim, rope, window, out_seq)
    });
}

fn sequence_attention(
    qkv: &[f32],
    keys: usize,
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hidden = num_heads * head_dim;
    let len = qkv.len() / (3 * hidden);
    assert!(len <= rope.max_positions(), "sequence of {len} tokens exceeds the RoPE table");
    let scale = 1.0 / (head_dim as f64).sqrt();
    let mut q = vec![0f32; len * head_dim];
    let mut k = vec![0f32; len * head_dim];
    let mut scores = vec![0f64; len];
    let mut acc = vec![0f64; head_dim];
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
                Some(w) => (i.saturating_sub(w), (i + w + 1).min(keys)),
                None => (0, keys),
            };
            if lo >= hi {
                // No key in reach: PyTorch's masked softmax is undefined here; give zeros.
                out[i * hidden + h * head_dim..][..head_dim].fill(0.0);
                continue;
            }
            let qi = &q[i * head_dim..(i + 1) * head_dim];
            let mut max = f64::NEG_INFINITY;
            for j in lo..hi {
                let kj = &k[j * head_dim..(j + 1) * head_dim];
                let dot: f64 = qi.iter().zip(kj).map(|(&a, &b)| a as f64 * b as f64).sum();
                scores[j] = dot * scale;
                max = max.max(scores[j]);
            }
            let mut sum = 0f64;
            for s in &mut scores[lo..hi] {
                *s = (*s - max).exp();
                sum += *s;
            }
            acc.fill(0.0);
            for j in lo..hi {
                let p = scores[j] / sum;
                let vj = &qkv[j * 3 * hidden + 2 * hidden + h * head_dim..][..head_dim];
                for (a, &v) in acc.iter_mut().zip(vj) {
                    *a += p * v as f64;
                }
            }
            let o = &mut out[i * hidden + h * head_dim..][..head_dim];
            for (o, &a) in o.iter_mut().zip(&acc) {
                *o = a as f32;
            }
        }
    }
}
