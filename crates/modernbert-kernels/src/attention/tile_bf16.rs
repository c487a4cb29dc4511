//! The fused tile kernel with bf16 operands (AVX512-BF16 `vdpbf16ps`, `f32` accumulation).
//!
//! Same contract as [`super::tile::Group`], on the bf16 layouts `pack.rs` writes. A "cell"
//! is a `u32` holding two bf16 (the lower-indexed one in the low half):
//! * `q`: query rows of `d / 2` cells, cell `k` = features `(2k, 2k + 1)`.
//! * `kp`: panels of 16 keys, `d / 2` rows of 16 cells: cell `(k, j)` at `k * 16 + j` holds
//!   features `(2k, 2k + 1)` of key `j`; panel stride `8 * d` cells.
//! * `v`: key-pair rows of `dp` cells: cell `(t, c)` holds column `c` of keys `(2t, 2t + 1)`.
//!
//! `vdpbf16ps` adds two exact bf16 products to each `f32` lane: `S = Q Kᵀ` takes one
//! instruction per 16 keys x 2 features, `P V` one per 16 columns x 2 keys, half the
//! instructions of the `f32` kernel. Softmax stays in `f32`; probabilities are rounded to
//! bf16 (`vcvtne2ps2bf16`, round to nearest even) just before `P V`.

#![cfg(target_arch = "x86_64")]

use super::tile::avx512::{masks, softmax_row, Aligned};
use super::tile::{Dims, Group, EXP2_POLY4, KT, MAX_NP, PANEL, ROWS};
use std::arch::x86_64::*;

/// Cells per row of the probability scratch (64 keys).
const PC: usize = KT / 2;

/// # Safety
/// AVX-512F/BW/BF16 must be available; pointers as documented on [`Group`] and above.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
pub(crate) unsafe fn group(dims: &Dims, g: &Group) {
    debug_assert!((1..=MAX_NP).contains(&g.np) && dims.d.is_multiple_of(2));
    match (g.np, g.ranges.is_some()) {
        (1, false) => group_np::<1, false>(dims, g),
        (2, false) => group_np::<2, false>(dims, g),
        (3, false) => group_np::<3, false>(dims, g),
        (_, false) => group_np::<4, false>(dims, g),
        (1, true) => group_np::<1, true>(dims, g),
        (2, true) => group_np::<2, true>(dims, g),
        (3, true) => group_np::<3, true>(dims, g),
        (_, true) => group_np::<4, true>(dims, g),
    }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
fn bh(x: __m512i) -> __m512bh {
    // SAFETY: same size, every bit pattern is valid for both.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(x) }
}

#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn group_np<const NP: usize, const MASK: bool>(dims: &Dims, g: &Group) {
    let (d2, dp) = (dims.d / 2, dims.dp);
    let (q, kp) = (g.q as *const u32, g.kp as *const u32);
    let mut s = [[_mm512_setzero_ps(); NP]; ROWS];
    for k in 0..d2 {
        let mut kv = [_mm512_setzero_si512(); NP];
        for (p, kv) in kv.iter_mut().enumerate() {
            *kv = _mm512_loadu_si512(kp.add(p * PANEL * d2 + k * PANEL) as *const _);
        }
        for (r, s) in s.iter_mut().enumerate() {
            let qb = bh(_mm512_set1_epi32(*q.add(r * d2 + k) as i32));
            for (a, &kv) in s.iter_mut().zip(&kv) {
                *a = _mm512_dpbf16_ps(*a, qb, bh(kv));
            }
        }
    }
    let mk = match &g.ranges {
        Some(rg) if MASK => masks::<NP>(rg),
        _ => [[0xFFFF; NP]; ROWS],
    };
    let c = _mm512_set1_ps(dims.c);
    let mut pb = Aligned([0u32; ROWS * PC]);
    let mut alpha = [1f32; ROWS];
    for r in 0..ROWS {
        let (e, a) = softmax_row::<NP, MASK, 5>(&s[r], &mk[r], c, g.m.add(r), g.l.add(r * PANEL), &EXP2_POLY4);
        alpha[r] = a;
        // Keys 32t..32t + 32 as 16 cells of consecutive key pairs.
        for t in 0..NP.div_ceil(2) {
            let hi = if 2 * t + 1 < NP { e[2 * t + 1] } else { _mm512_setzero_ps() };
            let cells: __m512i = std::mem::transmute(_mm512_cvtne2ps_pbh(hi, e[2 * t]));
            _mm512_store_si512(pb.0.as_mut_ptr().add(r * PC + t * PANEL) as *mut _, cells);
        }
    }
    let v = g.v as *const u32;
    let mut c0 = 0;
    while c0 < dp {
        let (v, o) = (v.add(c0), g.o.add(c0));
        match (dp - c0) / PANEL {
            1 => pv::<NP, 1>(pb.0.as_ptr(), v, dp, o, &alpha),
            2 => pv::<NP, 2>(pb.0.as_ptr(), v, dp, o, &alpha),
            3 => pv::<NP, 3>(pb.0.as_ptr(), v, dp, o, &alpha),
            _ => pv::<NP, 4>(pb.0.as_ptr(), v, dp, o, &alpha),
        }
        c0 += 4 * PANEL;
    }
}

/// `ROWS` output rows x `NV` vectors of columns over `8 * NP` key pairs.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pv<const NP: usize, const NV: usize>(
    p: *const u32,
    v: *const u32,
    dp: usize,
    o: *mut f32,
    alpha: &[f32; ROWS],
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
    for (r, acc) in acc.iter_mut().enumerate() {
        let a = _mm512_set1_ps(alpha[r]);
        for (c, acc) in acc.iter_mut().enumerate() {
            *acc = _mm512_mul_ps(_mm512_loadu_ps(o.add(r * dp + c * PANEL)), a);
        }
    }
    for t in 0..NP * PANEL / 2 {
        let mut vv = [_mm512_setzero_si512(); NV];
        for (c, vv) in vv.iter_mut().enumerate() {
            *vv = _mm512_loadu_si512(v.add(t * dp + c * PANEL) as *const _);
        }
        for (r, acc) in acc.iter_mut().enumerate() {
            let pr = bh(_mm512_set1_epi32(*p.add(r * PC + t) as i32));
            for (a, &vv) in acc.iter_mut().zip(&vv) {
                *a = _mm512_dpbf16_ps(*a, pr, bh(vv));
            }
        }
    }
    for (r, acc) in acc.iter().enumerate() {
        for (c, &a) in acc.iter().enumerate() {
            _mm512_storeu_ps(o.add(r * dp + c * PANEL), a);
        }
    }
}
