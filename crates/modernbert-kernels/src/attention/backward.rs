//! The backward pass of varlen attention with RoPE inside (training): `dqkv` from `qkv`, the
//! forward output and its gradient, per (sequence, head) in parallel, never across sequences.

use crate::gemm_pack::SendPtr;
use crate::math::fast_exp;
use crate::matmul::{matmul, Mat};
use crate::rope::RopeTable;
use rayon::prelude::*;

/// `dqkv [T, 3D]` (`D = heads · head_dim`) from `qkv [T, 3D]`, the forward output `out [T, D]` and
/// its gradient `dout [T, D]`, for sequences `cu_seqlens`; `window = Some(w)` is a local layer
/// (`|i − j| ≤ w`). The inverse of [`super::attention_varlen`]'s arithmetic, in f32.
#[allow(clippy::too_many_arguments)]
pub fn attention_varlen_backward(
    qkv: &[f32],
    out: &[f32],
    dout: &[f32],
    cu_seqlens: &[u32],
    heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
) -> Vec<f32> {
    let shape = Shape { heads, head_dim, rope, window };
    let hd = heads * head_dim;
    let tokens = super::checked_tokens(cu_seqlens);
    assert_eq!(qkv.len(), tokens * 3 * hd, "qkv has the wrong size");
    assert_eq!(out.len(), tokens * hd, "out has the wrong size");
    assert_eq!(dout.len(), tokens * hd, "dout has the wrong size");
    let tasks: Vec<(usize, usize, usize)> = cu_seqlens
        .windows(2)
        .flat_map(|w| (0..heads).map(move |h| (w[0] as usize, (w[1] - w[0]) as usize, h)))
        .collect();
    let mut dqkv = vec![0f32; tokens * 3 * hd];
    let dst = SendPtr(dqkv.as_mut_ptr());
    tasks.par_iter().for_each(|&(start, n, h)| {
        let grads = shape.backward_task(qkv, out, dout, start, n, h);
        for i in 0..n {
            let row = (start + i) * 3 * hd;
            for (part, g) in grads.iter().enumerate() {
                let at = row + part * hd + h * head_dim;
                // SAFETY: the sizes were checked above, so `at + head_dim <= dqkv.len()`; this task
                // alone writes the columns of head `h` in the rows of its sequence, and `dqkv`
                // outlives the parallel loop.
                unsafe { std::ptr::copy_nonoverlapping(g[i * head_dim..].as_ptr(), dst.get().add(at), head_dim) };
            }
        }
    });
    dqkv
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

/// Maximum of a slice (8 independent lanes so it vectorizes; NaN is propagated).
fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] || c[l].is_nan() { c[l] } else { acc[l] };
        }
    }
    let mut m = f32::NEG_INFINITY;
    for &v in acc.iter().chain(rest) {
        m = if v > m || v.is_nan() { v } else { m };
    }
    m
}

/// Sum of a slice with 8 independent accumulators.
fn sum_lanes(x: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + rest.iter().sum::<f32>()
}

/// Query rows per backward block (local layers: at least the window's width).
const BWD_BLOCK: usize = 64;
/// Query rows per backward block in global layers.
const BWD_BLOCK_GLOBAL: usize = 256;

/// One backward pass's shape: heads, head size, RoPE table, local window.
struct Shape<'a> {
    heads: usize,
    head_dim: usize,
    rope: &'a RopeTable,
    window: Option<usize>,
}

impl Shape<'_> {
    /// Rotates `x` (one head vector) by the table row of `pos`; `inverse` applies Rᵀ.
    fn rotate(&self, x: &mut [f32], pos: usize, inverse: bool) {
        let half = self.head_dim / 2;
        let (cos, sin) = self.rope.row(pos);
        let (x1, x2) = x.split_at_mut(half);
        for k in 0..half {
            let (a, b, c, s) = (x1[k], x2[k], cos[k], sin[k]);
            if inverse {
                x1[k] = a * c + b * s;
                x2[k] = b * c - a * s;
            } else {
                x1[k] = a * c - b * s;
                x2[k] = b * c + a * s;
            }
        }
    }

    /// Gradients of one (document, head): returns `(dq, dk, dv)`, each `[n, d]`.
    ///
    /// Flash-attention-style: for each block of queries, recompute `P = softmax(Q Kᵀ·s)` over the
    /// keys the block can see, then `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))·s`,
    /// `dQ += dS K`, `dK += dSᵀ Q`, `dV += Pᵀ dO` (GEMMs), and finally undo RoPE on `dQ`, `dK`.
    fn backward_task(&self, qkv: &[f32], out: &[f32], dout: &[f32], start: usize, n: usize, h: usize) -> [Vec<f32>; 3] {
        let d = self.head_dim;
        let hd = self.heads * d;
        let scale = (d as f32).powf(-0.5);
        let mut q = vec![0f32; n * d];
        let mut k = vec![0f32; n * d];
        let mut v = vec![0f32; n * d];
        let mut go = vec![0f32; n * d];
        let mut delta = vec![0f32; n];
        for i in 0..n {
            let row = (start + i) * 3 * hd;
            q[i * d..(i + 1) * d].copy_from_slice(&qkv[row + h * d..row + (h + 1) * d]);
            k[i * d..(i + 1) * d].copy_from_slice(&qkv[row + hd + h * d..row + hd + (h + 1) * d]);
            v[i * d..(i + 1) * d].copy_from_slice(&qkv[row + 2 * hd + h * d..row + 2 * hd + (h + 1) * d]);
            self.rotate(&mut q[i * d..(i + 1) * d], i, false);
            self.rotate(&mut k[i * d..(i + 1) * d], i, false);
            let orow = (start + i) * hd + h * d;
            go[i * d..(i + 1) * d].copy_from_slice(&dout[orow..orow + d]);
            delta[i] = dot(&dout[orow..orow + d], &out[orow..orow + d]);
        }
        let mut dq = vec![0f32; n * d];
        let mut dk = vec![0f32; n * d];
        let mut dv = vec![0f32; n * d];
        // Bigger blocks mean fewer, larger GEMMs; local layers keep blocks near the window size
        // so that little of each block's key range is masked out.
        let block = match self.window {
            Some(w) => BWD_BLOCK.max(2 * w).min(n),
            None => BWD_BLOCK_GLOBAL.min(n),
        };
        let max_keys = match self.window {
            Some(w) => (block + 2 * w).min(n),
            None => n,
        };
        let mut p = vec![0f32; block * max_keys];
        let mut ds = vec![0f32; block * max_keys];
        for q0 in (0..n).step_by(block) {
            let q1 = (q0 + block).min(n);
            let bq = q1 - q0;
            let (k0, k1) = match self.window {
                Some(w) => (q0.saturating_sub(w), (q1 - 1 + w + 1).min(n)),
                None => (0, n),
            };
            let nk = k1 - k0;
            let (qb, kb, vb, gob) = (&q[q0 * d..q1 * d], &k[k0 * d..k1 * d], &v[k0 * d..k1 * d], &go[q0 * d..q1 * d]);
            matmul(&mut p, nk, false, Mat::rows(qb, d), Mat::cols(kb, d), bq, nk, d);
            matmul(&mut ds, nk, false, Mat::rows(gob, d), Mat::cols(vb, d), bq, nk, d);
            for r in 0..bq {
                let i = q0 + r;
                let (lo, hi) = match self.window {
                    Some(w) => (i.saturating_sub(w).max(k0) - k0, (i + w + 1).min(k1) - k0),
                    None => (0, nk),
                };
                let pr = &mut p[r * nk..(r + 1) * nk];
                let dr = &mut ds[r * nk..(r + 1) * nk];
                pr[..lo].fill(0.0);
                pr[hi..].fill(0.0);
                dr[..lo].fill(0.0);
                dr[hi..].fill(0.0);
                let (pw, dw) = (&mut pr[lo..hi], &mut dr[lo..hi]);
                let max = max_lanes(pw) * scale;
                for x in pw.iter_mut() {
                    *x = fast_exp(*x * scale - max);
                }
                let inv = 1.0 / sum_lanes(pw);
                let di = delta[i];
                for (pj, dj) in pw.iter_mut().zip(dw.iter_mut()) {
                    *pj *= inv;
                    *dj = *pj * (*dj - di) * scale;
                }
            }
            matmul(&mut dq[q0 * d..q1 * d], d, true, Mat::rows(&ds, nk), Mat::rows(kb, d), bq, d, nk);
            matmul(&mut dk[k0 * d..k1 * d], d, true, Mat::cols(&ds, nk), Mat::rows(qb, d), nk, d, bq);
            matmul(&mut dv[k0 * d..k1 * d], d, true, Mat::cols(&p, nk), Mat::rows(gob, d), nk, d, bq);
        }
        for i in 0..n {
            self.rotate(&mut dq[i * d..(i + 1) * d], i, true);
            self.rotate(&mut dk[i * d..(i + 1) * d], i, true);
        }
        [dq, dk, dv]
    }
}
