//! LayerNorm without bias, plain and fused with the residual add.
//!
//! Two passes over each row (mean, then the biased variance around it) for accuracy, a third
//! to write; a row of the model (768 floats) stays in L1 across the three. The mean is summed
//! in f64 and kept as two floats (`hi + lo`), so `(x - hi) - lo` gives each deviation to full
//! f32 precision even when the row's mean is large next to its spread.

use crate::par::rows_per_task;
use crate::Isa;
use rayon::prelude::*;

/// LayerNorm over rows of width `weight.len()`, no bias, biased variance, `eps` inside the sqrt.
/// `x` and `out` hold `rows * width` values.
pub fn layer_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_with(Isa::active(), x, weight, eps, out)
}

/// [`layer_norm`] in place: `x = layer_norm(x)`.
pub fn layer_norm_inplace(x: &mut [f32], weight: &[f32], eps: f32) {
    layer_norm_inplace_with(Isa::active(), x, weight, eps)
}

/// Residual add fused with the next LayerNorm: `hidden += delta`, then
/// `out = layer_norm(hidden)`; one pass over memory instead of three.
///
/// This is the pre-norm block boundary `h = h + sublayer(..); y = norm(h)`.
pub fn add_layer_norm(hidden: &mut [f32], delta: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    add_layer_norm_with(Isa::active(), hidden, delta, weight, eps, out)
}

fn check(len: usize, weight: &[f32]) -> usize {
    let d = weight.len();
    assert!(d > 0, "LayerNorm needs a non-empty weight");
    assert_eq!(len % d, 0, "LayerNorm input is not a whole number of rows of {d}");
    d
}

pub(crate) fn layer_norm_with(isa: Isa, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let d = check(x.len(), weight);
    assert_eq!(x.len(), out.len(), "LayerNorm output has the wrong size");
    let run = |x: &[f32], out: &mut [f32]| {
        for (xr, or) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let (mean, inv) = stats(isa, xr, eps);
            // SAFETY: `xr` and `or` both hold `d` floats.
            unsafe { normalize(isa, xr.as_ptr(), or.as_mut_ptr(), weight, mean, inv) };
        }
    };
    match rows_per_task(x.len() / d, d) {
        None => run(x, out),
        Some(rows) => {
            let n = rows * d;
            x.par_chunks(n).zip(out.par_chunks_mut(n)).for_each(|(x, o)| run(x, o))
        }
    }
}

pub(crate) fn layer_norm_inplace_with(isa: Isa, x: &mut [f32], weight: &[f32], eps: f32) {
    let d = check(x.len(), weight);
    let run = |x: &mut [f32]| {
        for xr in x.chunks_exact_mut(d) {
            let (mean, inv) = stats(isa, xr, eps);
            let p = xr.as_mut_ptr();
            // SAFETY: `p` holds `d` floats; `normalize` reads element `i` before writing it.
            unsafe { normalize(isa, p, p, weight, mean, inv) };
        }
    };
    match rows_per_task(x.len() / d, d) {
        None => run(x),
        Some(rows) => x.par_chunks_mut(rows * d).for_each(run),
    }
}

pub(crate) fn add_layer_norm_with(
    isa: Isa,
    hidden: &mut [f32],
    delta: &[f32],
    weight: &[f32],
    eps: f32,
    out: &mut [f32],
) {
    let d = check(hidden.len(), weight);
    assert_eq!(hidden.len(), delta.len(), "residual delta has the wrong size");
    assert_eq!(hidden.len(), out.len(), "LayerNorm output has the wrong size");
    let run = |h: &mut [f32], dl: &[f32], out: &mut [f32]| {
        for ((hr, dr), or) in h.chunks_exact_mut(d).zip(dl.chunks_exact(d)).zip(out.chunks_exact_mut(d)) {
            let mean = split(add_sum(isa, hr, dr) / d as f64);
            let inv = inv_std(sq_dev(isa, hr, mean), d, eps);
            // SAFETY: `hr` and `or` both hold `d` floats.
            unsafe { normalize(isa, hr.as_ptr(), or.as_mut_ptr(), weight, mean, inv) };
        }
    };
    match rows_per_task(hidden.len() / d, d) {
        None => run(hidden, delta, out),
        Some(rows) => {
            let n = rows * d;
            hidden
                .par_chunks_mut(n)
                .zip(delta.par_chunks(n))
                .zip(out.par_chunks_mut(n))
                .for_each(|((h, dl), o)| run(h, dl, o))
        }
    }
}

/// Backward of [`layer_norm`]: writes the input's gradient `dx` from the input `x`, the weight
/// and the output's gradient `dy`, and returns the weight's gradient (summed over rows; the
/// per-task partial sums are added in f64). The row statistics are the forward pass's.
pub fn layer_norm_backward(x: &[f32], weight: &[f32], eps: f32, dy: &[f32], dx: &mut [f32]) -> Vec<f32> {
    layer_norm_backward_with(Isa::active(), x, weight, eps, dy, dx)
}

pub(crate) fn layer_norm_backward_with(
    isa: Isa,
    x: &[f32],
    weight: &[f32],
    eps: f32,
    dy: &[f32],
    dx: &mut [f32],
) -> Vec<f32> {
    let d = check(x.len(), weight);
    assert_eq!(x.len(), dy.len(), "LayerNorm output gradient has the wrong size");
    assert_eq!(x.len(), dx.len(), "LayerNorm input gradient has the wrong size");
    let run = |x: &[f32], dy: &[f32], dx: &mut [f32]| {
        let mut dw = vec![0f32; d];
        backward_rows(isa, x, weight, eps, dy, dx, &mut dw);
        dw
    };
    let partial: Vec<Vec<f32>> = match rows_per_task(x.len() / d, 4 * d) {
        None => vec![run(x, dy, dx)],
        Some(rows) => {
            let n = rows * d;
            x.par_chunks(n)
                .zip(dy.par_chunks(n))
                .zip(dx.par_chunks_mut(n))
                .map(|((x, dy), dx)| run(x, dy, dx))
                .collect()
        }
    };
    let mut dw = vec![0f64; d];
    for p in partial {
        dw.iter_mut().zip(p).for_each(|(a, b)| *a += b as f64);
    }
    dw.into_iter().map(|v| v as f32).collect()
}

/// [`layer_norm_backward`] of whole rows, adding into `dw`; the portable body compiled for
/// AVX-512 where the CPU has it.
fn backward_rows(isa: Isa, x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if isa == Isa::Avx512 {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(isa: Isa, x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
            backward_rows_portable(isa, x, w, eps, dy, dx, dw)
        }
        // SAFETY: the caller picked `Isa::Avx512` only where it is available.
        return unsafe { wide(isa, x, w, eps, dy, dx, dw) };
    }
    backward_rows_portable(isa, x, w, eps, dy, dx, dw)
}

/// Per row, with `x̂ = (x − mean)·inv` and `g = dy·w`: `dx = inv·(g − mean(g) − x̂·mean(g·x̂))`,
/// `dw += dy·x̂`. The two row sums run in 16 independent lanes so that they vectorize.
#[inline(always)]
fn backward_rows_portable(isa: Isa, x: &[f32], w: &[f32], eps: f32, dy: &[f32], dx: &mut [f32], dw: &mut [f32]) {
    const L: usize = 16;
    let d = w.len();
    for ((xr, dyr), dxr) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(dx.chunks_exact_mut(d)) {
        let (mean, inv) = stats(isa, xr, eps);
        let xhat = |v: f32| ((v - mean.0) - mean.1) * inv;
        let (mut sum_g, mut sum_gx) = ([0f32; L], [0f32; L]);
        let lanes = xr.chunks_exact(L).zip(dyr.chunks_exact(L)).zip(w.chunks_exact(L)).zip(dw.chunks_exact_mut(L));
        for (((xc, dyc), wc), dwc) in lanes {
            for l in 0..L {
                let (h, g) = (xhat(xc[l]), dyc[l] * wc[l]);
                sum_g[l] += g;
                sum_gx[l] += g * h;
                dwc[l] += dyc[l] * h;
            }
        }
        let (mut tail_g, mut tail_gx) = (0f32, 0f32);
        for k in d / L * L..d {
            let (h, g) = (xhat(xr[k]), dyr[k] * w[k]);
            tail_g += g;
            tail_gx += g * h;
            dw[k] += dyr[k] * h;
        }
        let mean_g = (sum_g.iter().sum::<f32>() + tail_g) / d as f32;
        let mean_gx = (sum_gx.iter().sum::<f32>() + tail_gx) / d as f32;
        for (((o, &v), &g), &wk) in dxr.iter_mut().zip(xr).zip(dyr).zip(w) {
            *o = inv * (g * wk - mean_g - xhat(v) * mean_gx);
        }
    }
}

/// A mean as `hi + lo` (two floats, ~48 bits).
type Mean = (f32, f32);

fn split(mean: f64) -> Mean {
    let hi = mean as f32;
    (hi, (mean - hi as f64) as f32)
}

fn inv_std(sq_dev: f32, d: usize, eps: f32) -> f32 {
    1.0 / (sq_dev / d as f32 + eps).sqrt()
}

/// `(mean, 1 / sqrt(var + eps))` of one row.
fn stats(isa: Isa, x: &[f32], eps: f32) -> (Mean, f32) {
    let d = x.len();
    let mean = split(sum(isa, x) / d as f64);
    (mean, inv_std(sq_dev(isa, x, mean), d, eps))
}

/// Sum of a row, accumulated in f64.
fn sum(isa: Isa, x: &[f32]) -> f64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked `Isa::Avx512` only where it is available.
        Isa::Avx512 => unsafe { avx512::sum(x) },
        _ => {
            let mut acc = [0f64; 8];
            let chunks = x.chunks_exact(8);
            let tail: f64 = chunks.remainder().iter().map(|&v| v as f64).sum();
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += v as f64;
                }
            }
            acc.iter().sum::<f64>() + tail
        }
    }
}

/// Sum of squared deviations from `mean`.
fn sq_dev(isa: Isa, x: &[f32], mean: Mean) -> f32 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `sum`.
        Isa::Avx512 => unsafe { avx512::sq_dev(x, mean) },
        _ => {
            let dev = |v: f32| (v - mean.0) - mean.1;
            let mut acc = [0f32; 16];
            let chunks = x.chunks_exact(16);
            let tail: f32 = chunks.remainder().iter().map(|&v| dev(v) * dev(v)).sum();
            for c in chunks {
                for (a, &v) in acc.iter_mut().zip(c) {
                    *a += dev(v) * dev(v);
                }
            }
            acc.iter().sum::<f32>() + tail
        }
    }
}

/// `h += delta`, returning the sum of the new `h` (in f64).
fn add_sum(isa: Isa, h: &mut [f32], delta: &[f32]) -> f64 {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `sum`.
        Isa::Avx512 => unsafe { avx512::add_sum(h, delta) },
        _ => {
            for (h, &dl) in h.iter_mut().zip(delta) {
                *h += dl;
            }
            sum(isa, h)
        }
    }
}

/// `out[i] = (x[i] - mean) * inv * w[i]` for `i < w.len()`.
///
/// # Safety
/// `x` and `out` must be valid for `w.len()` floats; they may be equal (in place) but must
/// not otherwise overlap.
unsafe fn normalize(isa: Isa, x: *const f32, out: *mut f32, w: &[f32], mean: Mean, inv: f32) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => avx512::normalize(x, out, w, mean, inv),
        _ => {
            for (i, &w) in w.iter().enumerate() {
                *out.add(i) = ((*x.add(i) - mean.0) - mean.1) * inv * w;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::Mean;
    use crate::x86::lanes;
    use std::arch::x86_64::*;

    /// Adds the 16 floats of `v` to the f64 accumulators `lo` (lanes 0..8) and `hi` (8..16).
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn add_wide(acc: &mut [__m512d; 2], v: __m512) {
        let low = _mm512_castps512_ps256(v);
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)));
        acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(low));
        acc[1] = _mm512_add_pd(acc[1], _mm512_cvtps_pd(high));
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sum(x: &[f32]) -> f64 {
        let (n, p) = (x.len(), x.as_ptr());
        let mut acc = [[_mm512_setzero_pd(); 2]; 2];
        let mut i = 0;
        while i + 32 <= n {
            add_wide(&mut acc[0], _mm512_loadu_ps(p.add(i)));
            add_wide(&mut acc[1], _mm512_loadu_ps(p.add(i + 16)));
            i += 32;
        }
        while i < n {
            add_wide(&mut acc[0], _mm512_maskz_loadu_ps(lanes(n - i), p.add(i)));
            i += 16;
        }
        let a = _mm512_add_pd(_mm512_add_pd(acc[0][0], acc[0][1]), _mm512_add_pd(acc[1][0], acc[1][1]));
        _mm512_reduce_add_pd(a)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn sq_dev(x: &[f32], mean: Mean) -> f32 {
        let (n, p) = (x.len(), x.as_ptr());
        let (hi, lo) = (_mm512_set1_ps(mean.0), _mm512_set1_ps(mean.1));
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut i = 0;
        while i + 64 <= n {
            for (k, a) in acc.iter_mut().enumerate() {
                let v = _mm512_sub_ps(_mm512_sub_ps(_mm512_loadu_ps(p.add(i + 16 * k)), hi), lo);
                *a = _mm512_fmadd_ps(v, v, *a);
            }
            i += 64;
        }
        while i < n {
            let m = lanes(n - i);
            let v = _mm512_maskz_sub_ps(m, _mm512_sub_ps(_mm512_maskz_loadu_ps(m, p.add(i)), hi), lo);
            acc[0] = _mm512_fmadd_ps(v, v, acc[0]);
            i += 16;
        }
        _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3])))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn add_sum(h: &mut [f32], delta: &[f32]) -> f64 {
        let (n, p, q) = (h.len(), h.as_mut_ptr(), delta.as_ptr());
        let mut acc = [[_mm512_setzero_pd(); 2]; 2];
        let mut i = 0;
        while i + 32 <= n {
            for (k, acc) in acc.iter_mut().enumerate() {
                let at = i + 16 * k;
                let v = _mm512_add_ps(_mm512_loadu_ps(p.add(at)), _mm512_loadu_ps(q.add(at)));
                _mm512_storeu_ps(p.add(at), v);
                add_wide(acc, v);
            }
            i += 32;
        }
        while i < n {
            let m = lanes(n - i);
            let v = _mm512_add_ps(_mm512_maskz_loadu_ps(m, p.add(i)), _mm512_maskz_loadu_ps(m, q.add(i)));
            _mm512_mask_storeu_ps(p.add(i), m, v);
            add_wide(&mut acc[0], v);
            i += 16;
        }
        let a = _mm512_add_pd(_mm512_add_pd(acc[0][0], acc[0][1]), _mm512_add_pd(acc[1][0], acc[1][1]));
        _mm512_reduce_add_pd(a)
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn normalize(x: *const f32, out: *mut f32, w: &[f32], mean: Mean, inv: f32) {
        let (n, wp) = (w.len(), w.as_ptr());
        let (hi, lo) = (_mm512_set1_ps(mean.0), _mm512_set1_ps(mean.1));
        let iv = _mm512_set1_ps(inv);
        let dev = |v: __m512| _mm512_mul_ps(_mm512_sub_ps(_mm512_sub_ps(v, hi), lo), iv);
        let mut i = 0;
        while i + 16 <= n {
            let v = dev(_mm512_loadu_ps(x.add(i)));
            _mm512_storeu_ps(out.add(i), _mm512_mul_ps(v, _mm512_loadu_ps(wp.add(i))));
            i += 16;
        }
        if i < n {
            let m = lanes(n - i);
            let v = dev(_mm512_maskz_loadu_ps(m, x.add(i)));
            _mm512_mask_storeu_ps(out.add(i), m, _mm512_mul_ps(v, _mm512_maskz_loadu_ps(m, wp.add(i))));
        }
    }
}
