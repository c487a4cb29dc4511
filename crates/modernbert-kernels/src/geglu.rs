//! GeGLU: `gelu_erf(u) * g` for input rows `[u | g]`.

use crate::par::rows_per_task;
use crate::Isa;
use rayon::prelude::*;

/// `x` holds rows of width `2 * inter` laid out `[u | g]`; `out` holds rows of width `inter`
/// with `out = gelu_erf(u) * g` (exact erf GELU, first half activated, second half is the gate).
pub fn geglu(x: &[f32], inter: usize, out: &mut [f32]) {
    geglu_with(Isa::active(), x, inter, out)
}

/// Exact-erf GELU of one value, `0.5 * u * (1 + erf(u / sqrt 2))`, to ~1e-7 relative error
/// (the same approximation [`geglu`] uses).
pub fn gelu_erf(u: f32) -> f32 {
    crate::math::gelu(u)
}

/// Gradient of GeGLU: `x` rows `[u | g]` of width `2·inter`, `dy` rows of width `inter`.
pub fn geglu_backward(x: &[f32], dy: &[f32], inter: usize) -> Vec<f32> {
    let width = 2 * inter;
    let mut dx = vec![0f32; x.len()];
    let rows = rows_per_task(x.len() / width, 4 * width).unwrap_or(usize::MAX / width);
    dx.par_chunks_mut(rows * width)
        .zip(x.par_chunks(rows * width).zip(dy.par_chunks(rows * inter)))
        .for_each(|(dxc, (xc, dyc))| backward_rows(dxc, xc, dyc, inter));
    dx
}

/// [`geglu_backward`] of whole rows, in AVX-512 where the CPU has it (the same IEEE operations,
/// no fused multiply-adds, so the same bits as the portable build).
fn backward_rows(dx: &mut [f32], x: &[f32], dy: &[f32], inter: usize) {
    #[cfg(target_arch = "x86_64")]
    if crate::Isa::active() == crate::Isa::Avx512 {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(dx: &mut [f32], x: &[f32], dy: &[f32], inter: usize) {
            backward_rows_portable(dx, x, dy, inter)
        }
        // SAFETY: the CPU has AVX-512F (Isa::active checked it).
        return unsafe { wide(dx, x, dy, inter) };
    }
    backward_rows_portable(dx, x, dy, inter)
}

#[inline(always)]
fn backward_rows_portable(dx: &mut [f32], x: &[f32], dy: &[f32], inter: usize) {
    let width = 2 * inter;
    for ((dxr, xr), dyr) in dx.chunks_exact_mut(width).zip(x.chunks_exact(width)).zip(dy.chunks_exact(inter)) {
        let (u, g) = xr.split_at(inter);
        let (du, dg) = dxr.split_at_mut(inter);
        let n = inter;
        let (du, dg, u, g, dy) = (&mut du[..n], &mut dg[..n], &u[..n], &g[..n], &dyr[..n]);
        for k in 0..n {
            let (cdf, pdf) = cdf_pdf(u[k]);
            du[k] = dy[k] * g[k] * (cdf + u[k] * pdf);
            dg[k] = dy[k] * u[k] * cdf;
        }
    }
}

/// `Φ(u)` (standard normal CDF) and `φ(u)` (density). `Φ` uses the Numerical Recipes `erfc`
/// rational approximation (fractional error < 1.2e-7), branch-free so it vectorizes.
#[inline(always)]
#[allow(clippy::excessive_precision)] // Numerical Recipes' constants, as published
fn cdf_pdf(u: f32) -> (f32, f32) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let z = (u * std::f32::consts::FRAC_1_SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -1.265_512_2
        + t * (1.000_023_7
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98 + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let erfc = t * crate::math::fast_exp(-z * z + poly);
    // Φ(u) = erfc(−u/√2)/2: for u ≥ 0 that is 1 − erfc(|u|/√2)/2.
    let cdf = if u >= 0.0 { 1.0 - 0.5 * erfc } else { 0.5 * erfc };
    (cdf, INV_SQRT_2PI * crate::math::fast_exp(-0.5 * u * u))
}

pub(crate) fn geglu_with(isa: Isa, x: &[f32], inter: usize, out: &mut [f32]) {
    assert!(inter > 0, "GeGLU needs a non-zero intermediate size");
    assert_eq!(out.len() % inter, 0, "GeGLU output is not a whole number of rows");
    assert_eq!(x.len(), 2 * out.len(), "GeGLU input must be twice the output");
    let run = |x: &[f32], out: &mut [f32]| {
        for (xr, or) in x.chunks_exact(2 * inter).zip(out.chunks_exact_mut(inter)) {
            let (u, g) = xr.split_at(inter);
            row(isa, u, g, or);
        }
    };
    // Cost: a GELU is ~30 flops, so a row weighs about 4x its width in memory-bound terms.
    match rows_per_task(out.len() / inter, 4 * inter) {
        None => run(x, out),
        Some(rows) => x.par_chunks(2 * inter * rows).zip(out.par_chunks_mut(inter * rows)).for_each(|(x, o)| run(x, o)),
    }
}

fn row(isa: Isa, u: &[f32], g: &[f32], out: &mut [f32]) {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked `Isa::Avx512` only where it is available.
        Isa::Avx512 => unsafe { avx512::row(u, g, out) },
        _ => {
            for ((o, &u), &g) in out.iter_mut().zip(u).zip(g) {
                *o = crate::math::gelu(u) * g;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use crate::x86::{gelu_ps, lanes};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn row(u: &[f32], g: &[f32], out: &mut [f32]) {
        let n = out.len();
        assert!(u.len() == n && g.len() == n);
        let (up, gp, op) = (u.as_ptr(), g.as_ptr(), out.as_mut_ptr());
        let mut i = 0;
        while i + 16 <= n {
            let v = _mm512_mul_ps(gelu_ps(_mm512_loadu_ps(up.add(i))), _mm512_loadu_ps(gp.add(i)));
            _mm512_storeu_ps(op.add(i), v);
            i += 16;
        }
        if i < n {
            let m = lanes(n - i);
            let v = _mm512_mul_ps(gelu_ps(_mm512_maskz_loadu_ps(m, up.add(i))), _mm512_maskz_loadu_ps(m, gp.add(i)));
            _mm512_mask_storeu_ps(op.add(i), m, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::cdf_pdf;
    use crate::math::fast_exp;

    #[test]
    fn fast_exp_and_normal_cdf_are_accurate() {
        let mut worst = 0f64;
        for i in -8000..=8000 {
            let x = i as f32 * 0.01;
            let want = (x as f64).exp();
            worst = worst.max(((fast_exp(x) as f64 - want) / want).abs());
        }
        assert!(worst < 5e-7, "exp rel error {worst}");
        assert!(fast_exp(-200.0) < 1e-37 && fast_exp(f32::NAN).is_nan());
        let mut worst = 0f64;
        for i in -1000..=1000 {
            let u = i as f32 * 0.01;
            let (cdf, pdf) = cdf_pdf(u);
            let want = 0.5 * crate::reference::erfc(-(u as f64) / std::f64::consts::SQRT_2);
            worst = worst
                .max((cdf as f64 - want).abs() / want.max(1e-30))
                .max((pdf as f64 - (-(u as f64).powi(2) / 2.0).exp() * 0.398_942_280_401_432_7).abs());
        }
        assert!(worst < 1e-5, "cdf/pdf error {worst}");
    }
}

#[cfg(test)]
mod backward_tests {
    #[test]
    fn the_avx512_backward_gives_the_portable_bits() {
        let inter = 37;
        let x: Vec<f32> = (0..5 * 2 * inter).map(|i| ((i as f32) * 0.731).sin() * 4.0).collect();
        let dy: Vec<f32> = (0..5 * inter).map(|i| ((i as f32) * 1.37).cos()).collect();
        let (mut a, mut b) = (vec![0f32; x.len()], vec![0f32; x.len()]);
        super::backward_rows(&mut a, &x, &dy, inter);
        super::backward_rows_portable(&mut b, &x, &dy, inter);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
        assert!(a.iter().any(|&v| v != 0.0));
    }
}
