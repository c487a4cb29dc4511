//! Portable scalar versions of the transcendental functions the kernels need.
//!
//! The constants are shared with the AVX-512 versions in `x86.rs`, so both paths compute the
//! same approximation. The polynomials were fitted for this crate (Chebyshev fits in
//! 40-digit arithmetic with mpmath).

/// `log2(e)`.
pub(crate) const LOG2E: f32 = std::f32::consts::LOG2_E;
/// High part of `ln 2` with 9 significant bits, so `n * LN2_HI` is exact for `|n| < 2^15`.
pub(crate) const LN2_HI: f32 = 0.693_359_4;
/// `ln 2 - LN2_HI`.
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
/// `exp(r)` on `|r| <= ln(2) / 2`, highest degree first (max error 2e-9).
pub(crate) const EXP_POLY: [f32; 7] =
    [0.001_394_110_8, 0.008_375_126, 0.041_666_35, 0.166_664_16, 0.5, 1.000_000_04, 1.0];

/// `erfc(a) = t * exp(-a^2 + P(t - ERFC_C))` with `t = 1 / (1 + ERFC_P * a)`, `a >= 0`.
pub(crate) const ERFC_P: f32 = 0.4;
/// Centre of the fitted `t` interval `[1 / (1 + 0.4 * 9.5), 1]`.
pub(crate) const ERFC_C: f32 = 0.604_166_7;
/// `P` above, highest degree first (max error 5.5e-9 on `a` in `[0, 9.5]`).
pub(crate) const ERFC_POLY: [f32; 11] = [
    0.201_439_62,
    0.076_755_54,
    -0.290_617_5,
    -0.105_214_1,
    0.315_975_74,
    0.140_757_2,
    -0.360_428_4,
    -0.301_962_4,
    0.487_130_16,
    1.636_434,
    -0.698_789_5,
];
/// `erf(a) = a * Q(a^2)` for `a < ERF_SMALL`, highest degree first (max error 1.5e-9).
#[allow(clippy::approx_constant)] // the constant term is 2/sqrt(pi), as a fitted value
pub(crate) const ERF_POLY: [f32; 6] =
    [-0.000_675_648, 0.005_115_332, -0.026_835_115, 0.112_833_865, -0.376_126_2, 1.128_379_2];
/// Below this `a = |u| / sqrt 2` GELU uses `erf` directly: the `erfc` form is only good to
/// ~4e-7 relative near zero, where its `exp` and `t` roundings add up.
pub(crate) const ERF_SMALL: f32 = 0.75;
/// Beyond `|u| = 9 * sqrt(2)` the normal CDF is 1 (or below 1e-36) in f32.
pub(crate) const GELU_CLAMP: f32 = 12.727_922;

/// Horner evaluation, highest degree first.
#[inline(always)]
fn horner(coeffs: &[f32], x: f32) -> f32 {
    coeffs.iter().fold(0.0, |acc, &c| acc * x + c)
}

/// `e^x` in f32 (about 1 ulp); saturates below `e^-87` and above `e^88`. Tests the core of GELU.
#[cfg(test)]
pub(crate) fn exp(x: f32) -> f32 {
    exp_ext(x, 0.0)
}

/// `e^(hi + lo)` for a small `lo` (`|lo| < 2`), reducing `hi` alone so the bits of `lo`
/// survive a large `hi`.
#[inline(always)]
fn exp_ext(hi: f32, lo: f32) -> f32 {
    // NaN passes through `clamp`.
    let hi = hi.clamp(-87.0, 88.0);
    // Round to nearest with the 1.5 * 2^23 trick: no SSE4.1 `roundss` needed. The lower
    // bound keeps the scale below a normal float; results there are < 1e-37 anyway.
    const MAGIC: f32 = 12_582_912.0;
    let n = (((hi + lo) * LOG2E + MAGIC) - MAGIC).max(-126.0);
    let r = (hi - n * LN2_HI) - n * LN2_LO + lo;
    let scale = f32::from_bits(((n as i32 + 127) as u32) << 23);
    horner(&EXP_POLY, r) * scale
}

/// Exact-erf GELU, `0.5 * u * (1 + erf(u / sqrt 2))`, in f32 with ~1e-7 relative error.
///
/// Written as `u * Phi(u)` with the normal CDF `Phi` taken from `erfc` of `|u| / sqrt 2`, so
/// negative inputs keep their relative accuracy instead of cancelling in `1 + erf`.
#[inline(always)]
pub(crate) fn gelu(u: f32) -> f32 {
    let uc = u.abs().min(GELU_CLAMP);
    let a = uc * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (1.0 + ERFC_P * a);
    let p = horner(&ERFC_POLY, t - ERFC_C);
    // -u^2/2 split in a high and a low float (exactly, through f64).
    let sq = -0.5 * (uc as f64) * (uc as f64);
    let sq_hi = sq as f32;
    let sq_lo = (sq - sq_hi as f64) as f32;
    let half_erfc = 0.5 * t * exp_ext(sq_hi, p + sq_lo);
    let phi = if a < ERF_SMALL {
        let half_erf = 0.5 * a * horner(&ERF_POLY, a * a);
        if u > 0.0 {
            0.5 + half_erf
        } else {
            0.5 - half_erf
        }
    } else if u > 0.0 {
        1.0 - half_erfc
    } else {
        half_erfc
    };
    u * phi
}

/// `e^x` in f32 without branches or calls (so loops over it vectorize): `2^n · p(r)` with
/// `x = n·ln2 + r`, `|r| ≤ ln2/2`, `p` a degree-6 Taylor polynomial (rel. error < 3e-8 + rounding).
/// Inputs below −87 give ≈1.6e-38 (0 for every caller here); NaN propagates.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5·2^23: adding it rounds to an integer in the low mantissa bits
    let x_in = x;
    let x = x.clamp(-87.0, 88.0);
    let m = x * LOG2E + MAGIC;
    let n = m - MAGIC;
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // 2^n from the integer in m's low bits, with integer ops only (vectorizes; no float→int cast).
    let two_n = f32::from_bits(m.to_bits().wrapping_sub(MAGIC.to_bits()).wrapping_add(127) << 23);
    // max/min above drop NaN; keep it (a NaN loss must stay NaN).
    if x_in.is_nan() {
        x_in
    } else {
        p * two_n
    }
}
