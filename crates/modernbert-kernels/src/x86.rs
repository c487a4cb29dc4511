//! AVX-512 building blocks shared by the kernels (x86-64 only).
//!
//! Every function here carries `#[target_feature(enable = "avx512f")]`; callers must have
//! checked [`crate::Isa::Avx512`] is available before entering an AVX-512 code path.

use crate::math::{ERFC_C, ERFC_P, ERFC_POLY, ERF_POLY, ERF_SMALL, EXP_POLY, GELU_CLAMP, LN2_HI, LN2_LO, LOG2E};
use std::arch::x86_64::*;

/// Lane mask selecting the first `min(n, 16)` lanes.
#[inline(always)]
pub(crate) fn lanes(n: usize) -> __mmask16 {
    ((1u32 << n.min(16)) - 1) as __mmask16
}

#[inline]
#[target_feature(enable = "avx512f")]
fn horner_ps<const N: usize>(coeffs: &[f32; N], x: __m512) -> __m512 {
    let mut acc = _mm512_set1_ps(coeffs[0]);
    for &c in &coeffs[1..] {
        acc = _mm512_fmadd_ps(acc, x, _mm512_set1_ps(c));
    }
    acc
}

/// `e^(hi + lo)` for a small `lo` (`|lo| < 2`): `hi` goes through a two-step Cody-Waite
/// reduction (FMA), `lo` is added to the reduced argument, so a large `hi` does not lose the
/// low-order bits of `lo` to rounding.
#[inline]
#[target_feature(enable = "avx512f")]
fn exp_ext_ps(hi: __m512, lo: __m512) -> __m512 {
    // Clamping keeps -inf out of the reduction (it would turn into NaN); NaN passes through
    // because `max(c, NaN)` returns its second operand.
    let hi = _mm512_min_ps(_mm512_set1_ps(88.0), _mm512_max_ps(_mm512_set1_ps(-104.0), hi));
    let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm512_mul_ps(
        _mm512_add_ps(hi, lo),
        _mm512_set1_ps(LOG2E),
    ));
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), hi);
    let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
    let r = _mm512_add_ps(r, lo);
    _mm512_scalef_ps(horner_ps(&EXP_POLY, r), n)
}

/// `e^x` on 16 lanes (about 1 ulp); inputs below -104 give 0. Tests the core of GELU.
#[cfg(test)]
#[target_feature(enable = "avx512f")]
pub(crate) fn exp_ps(x: __m512) -> __m512 {
    exp_ext_ps(x, _mm512_setzero_ps())
}

/// Exact-erf GELU on 16 lanes; same approximation as [`crate::math::gelu`], with `u^2 / 2`
/// carried in two floats so the tail keeps its relative accuracy.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn gelu_ps(u: __m512) -> __m512 {
    let uc = _mm512_min_ps(_mm512_set1_ps(GELU_CLAMP), _mm512_abs_ps(u));
    let a = _mm512_mul_ps(uc, _mm512_set1_ps(std::f32::consts::FRAC_1_SQRT_2));
    let one = _mm512_set1_ps(1.0);
    let t = _mm512_div_ps(one, _mm512_fmadd_ps(a, _mm512_set1_ps(ERFC_P), one));
    let p = horner_ps(&ERFC_POLY, _mm512_sub_ps(t, _mm512_set1_ps(ERFC_C)));
    let sq = _mm512_mul_ps(uc, uc);
    let sq_lo = _mm512_fmsub_ps(uc, uc, sq);
    let half = _mm512_set1_ps(0.5);
    // exp(-sq/2 + p - sq_lo/2): the big (exact) term goes through the reduction.
    let e = exp_ext_ps(_mm512_mul_ps(sq, _mm512_set1_ps(-0.5)), _mm512_fmadd_ps(sq_lo, _mm512_set1_ps(-0.5), p));
    let half_erfc = _mm512_mul_ps(_mm512_mul_ps(half, t), e);
    let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(u, _mm512_setzero_ps());
    let phi = _mm512_mask_sub_ps(half_erfc, positive, one, half_erfc);
    // Near zero: phi = 0.5 +- 0.5 * erf(a), with erf(a) = a * Q(a^2).
    let half_erf = _mm512_mul_ps(_mm512_mul_ps(half, a), horner_ps(&ERF_POLY, _mm512_mul_ps(a, a)));
    let signed = _mm512_mask_sub_ps(half_erf, !positive, _mm512_setzero_ps(), half_erf);
    let small = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, _mm512_set1_ps(ERF_SMALL));
    let phi = _mm512_mask_add_ps(phi, small, half, signed);
    _mm512_mul_ps(u, phi)
}

/// In-register 16 x 16 transpose of 32-bit elements: `r[j]` lane `i` moves to `r[i]`
/// lane `j`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) fn transpose16(r: &mut [__m512; 16]) {
    let mut t = [_mm512_setzero_ps(); 16];
    for k in 0..8 {
        t[2 * k] = _mm512_unpacklo_ps(r[2 * k], r[2 * k + 1]);
        t[2 * k + 1] = _mm512_unpackhi_ps(r[2 * k], r[2 * k + 1]);
    }
    // u[4g + c] holds columns 4l + c (l = 128-bit lane) of rows 4g..4g + 4.
    let mut u = [_mm512_setzero_ps(); 16];
    for g in 0..4 {
        let (a, b, c, e) = (t[4 * g], t[4 * g + 1], t[4 * g + 2], t[4 * g + 3]);
        u[4 * g] = _mm512_shuffle_ps::<0x44>(a, c);
        u[4 * g + 1] = _mm512_shuffle_ps::<0xEE>(a, c);
        u[4 * g + 2] = _mm512_shuffle_ps::<0x44>(b, e);
        u[4 * g + 3] = _mm512_shuffle_ps::<0xEE>(b, e);
    }
    // v[c] / v[c + 4] (and + 8 for rows 8..16): columns c, c + 8 / c + 4, c + 12.
    let mut v = [_mm512_setzero_ps(); 16];
    for h in 0..2 {
        for c in 0..4 {
            let (a, b) = (u[8 * h + c], u[8 * h + 4 + c]);
            v[8 * h + c] = _mm512_shuffle_f32x4::<0x88>(a, b);
            v[8 * h + 4 + c] = _mm512_shuffle_f32x4::<0xDD>(a, b);
        }
    }
    for c in 0..4 {
        r[c] = _mm512_shuffle_f32x4::<0x88>(v[c], v[8 + c]);
        r[c + 8] = _mm512_shuffle_f32x4::<0xDD>(v[c], v[8 + c]);
        r[c + 4] = _mm512_shuffle_f32x4::<0x88>(v[4 + c], v[12 + c]);
        r[c + 12] = _mm512_shuffle_f32x4::<0xDD>(v[4 + c], v[12 + c]);
    }
}
