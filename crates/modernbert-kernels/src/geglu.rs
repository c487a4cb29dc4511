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
