//! Slow, obviously correct reference kernels.
//!
//! These are straight transcriptions of the spec (modernbert.md §3), computed in f64 where
//! that helps, with the same signatures as the fast kernels. The tests compare every fast
//! kernel against them and `examples/kernel_bench.rs` times them as the naive baseline.
//! Do not use them in the model: they are single-threaded (attention: one thread per
//! sequence) and one to three orders of magnitude slower.

use crate::rope::RopeTable;

/// Reference LayerNorm (no bias, biased variance, `eps` inside the sqrt), in f64.
pub fn layer_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = weight.len();
    assert_eq!(x.len(), out.len());
    assert_eq!(x.len() % d, 0);
    for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        for ((o, &v), &w) in or.iter_mut().zip(xr).zip(weight) {
            *o = ((v as f64 - mean) * inv * w as f64) as f32;
        }
    }
}

/// Reference LayerNorm backward in f64: `(dx, dw)` from `x`, the weight and the output gradient `dy`.
pub fn layer_norm_backward(x: &[f32], weight: &[f32], eps: f32, dy: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let d = weight.len();
    let (mut dx, mut dw) = (vec![0f32; x.len()], vec![0f64; d]);
    for ((xr, dyr), dxr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
        let mean = xr.iter().map(|&v| v as f64).sum::<f64>() / d as f64;
        let var = xr.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / d as f64;
        let inv = 1.0 / (var + eps as f64).sqrt();
        let xhat: Vec<f64> = xr.iter().map(|&v| (v as f64 - mean) * inv).collect();
        let g: Vec<f64> = dyr.iter().zip(weight).map(|(&a, &b)| a as f64 * b as f64).collect();
        let mean_g = g.iter().sum::<f64>() / d as f64;
        let mean_gx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / d as f64;
        for k in 0..d {
            dxr[k] = (inv * (g[k] - mean_g - xhat[k] * mean_gx)) as f32;
            dw[k] += dyr[k] as f64 * xhat[k];
        }
    }
    (dx, dw.into_iter().map(|v| v as f32).collect())
}

/// Reference residual add + LayerNorm: `hidden += delta` (in f32), then
/// `out = layer_norm(hidden)`.
pub fn add_layer_norm(hidden: &mut [f32], delta: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    assert_eq!(hidden.len(), delta.len());
    for (h, &d) in hidden.iter_mut().zip(delta) {
        *h += d;
    }
    layer_norm(hidden, weight, eps, out);
}

/// `erf(x)` in f64 to about 1e-15: Taylor series for `|x| <= 2.5`, else `1 - erfc(x)`.
pub fn erf(x: f64) -> f64 {
    if x.abs() > 2.5 {
        return x.signum() * (1.0 - erfc(x.abs()));
    }
    // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1)).
    let x2 = x * x;
    let mut term = x; // (-1)^n x^(2n+1) / n!
    let mut sum = x;
    for n in 1..200 {
        term *= -x2 / n as f64;
        let add = term / (2 * n + 1) as f64;
        sum += add;
        if add.abs() < 1e-17 * sum.abs() {
            break;
        }
    }
    sum * std::f64::consts::FRAC_2_SQRT_PI
}

/// `erfc(x)` in f64 with full relative accuracy for large `x` (continued fraction beyond 2.5).
pub fn erfc(x: f64) -> f64 {
    if x < 2.5 {
        return 1.0 - erf(x);
    }
    // erfc(x) = exp(-x^2) / sqrt(pi) / (x + (1/2) / (x + 1 / (x + (3/2) / (x + 2 / (x + ..))))).
    let mut frac = x;
    for k in (1..=120).rev() {
        frac = x + (k as f64 / 2.0) / frac;
    }
    (-x * x).exp() / std::f64::consts::PI.sqrt() / frac
}

/// Exact-erf GELU in f64, `0.5 * u * erfc(-u / sqrt 2)` (no cancellation for negative `u`).
pub fn gelu_erf(u: f64) -> f64 {
    0.5 * u * erfc(-u / std::f64::consts::SQRT_2)
}

/// Reference GeGLU: rows `[u | g]` of width `2 * inter` to rows `gelu_erf(u) * g`, in f64.
pub fn geglu(x: &[f32], inter: usize, out: &mut [f32]) {
    assert_eq!(x.len(), 2 * out.len());
    for (xr, or) in x.chunks_exact(2 * inter).zip(out.chunks_exact_mut(inter)) {
        let (u, g) = xr.split_at(inter);
        for ((o, &u), &g) in or.iter_mut().zip(u).zip(g) {
            *o = (gelu_erf(u as f64) * g as f64) as f32;
        }
    }
}

/// Reference attention with the same contract as [`crate::attention_varlen`]: RoPE in f32
/// through [`RopeTable::rotate`], then scores, softmax and the weighted sum of values in f64.
/// Parallel over sequences only.
pub fn attention_varlen(
    qkv: &[f32],
    cu_seqlens: &[u32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    crate::attention::dense::attention_key_prefix(qkv, cu_seqlens, None, num_heads, head_dim, rope, window, out)
}
