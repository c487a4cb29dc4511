//! The fused tile kernel in `f32`: for 4 query rows and up to 4 key panels, `S = Q Kᵀ`, the
//! online-softmax update and `O = O * alpha + P V`, in one call (see [`Group`]).
//!
//! Packed layouts (`f32`, written by `pack.rs`):
//! * `q`: query rows of `d` floats (RoPE applied, not scaled).
//! * `kp`: keys in panels of [`PANEL`]: panel `p` holds `d x 16` floats, element `(k, j)` at
//!   `p * 16 * d + k * 16 + j` (feature-major, so 16 keys load as one vector).
//! * `v`: value rows of stride `dp` (the head dim rounded up to 16, zero padded).
//! * `o`: output accumulator rows of stride `dp`.
//!
//! Softmax state per row: `m`, the running maximum of `s * c` (`c = log2(e) / sqrt(d)`, so
//! probabilities are `2^(s c - m)`), and `l`, the running sum of probabilities kept as 16
//! lane partial sums (reduced once, when the block is done). `m` moves only when a score
//! exceeds it by more than [`SLACK`] (in log2 units), so after the first tiles a row rarely
//! pays for a horizontal maximum or a rescale: probabilities stay `<= 2^SLACK`, far from
//! overflow, and their relative precision does not depend on `m`.
//!
//! With `round` (the emulated bf16 arithmetic, see `super::Arith`), probabilities are rounded
//! to bf16 before `P V` (they are summed into `l` unrounded).

/// Keys per panel (one AVX-512 vector).
pub(crate) const PANEL: usize = 16;
/// Most panels per call.
pub(crate) const MAX_NP: usize = 4;
/// Keys per call: at most 4 panels.
pub(crate) const KT: usize = PANEL * MAX_NP;
/// Query rows per call.
pub(crate) const ROWS: usize = 4;
/// How far (log2 units) a score may exceed the running maximum before the maximum moves.
pub(crate) const SLACK: f32 = 8.0;

/// `2^f` on `[-0.5, 0.5]`, degree 5, relative minimax error 7.5e-8 (own fit).
pub(crate) const EXP2_POLY5: [f32; 6] =
    [1.000_000_1, 0.693_146_97, 0.240_221_2, 0.055_507_133, 0.009_675_541, 0.001_327_647_2];
/// `2^f` on `[-0.5, 0.5]`, degree 4, relative minimax error 2.6e-6 (own fit); the bf16
/// kernel's probabilities are rounded to bf16 (2^-8 relative) right after, so this is plenty.
pub(crate) const EXP2_POLY4: [f32; 5] = [0.999_999_3, 0.693_121_8, 0.240_247_45, 0.055_917_86, 0.009_570_102];

/// Dimensions shared by every call of one attention run.
pub(crate) struct Dims {
    /// Head dim.
    pub d: usize,
    /// Row stride of `v` and `o` (head dim rounded up to 16).
    pub dp: usize,
    /// `log2(e) / sqrt(d)`: scores times `c` are log2-scaled logits.
    pub c: f32,
}

/// One call: 4 query rows against `np` consecutive key panels.
pub(crate) struct Group {
    /// First of 4 query rows (row stride `d` floats, or `d / 2` bf16 pairs for the bf16 kernel).
    pub q: *const f32,
    /// First key panel.
    pub kp: *const f32,
    /// Value row of the first key (bf16 kernel: value pair row of the first key pair).
    pub v: *const f32,
    /// 4 output accumulator rows, stride `dp`.
    pub o: *mut f32,
    /// Running maxima of the 4 rows.
    pub m: *mut f32,
    /// Running sums of the 4 rows, 16 lanes each.
    pub l: *mut f32,
    /// Number of key panels, `1..=4`.
    pub np: usize,
    /// Visible keys `[lo, hi)` of each row, relative to the first key of the call; `None`
    /// when every row sees every key of the call.
    pub ranges: Option<[(usize, usize); ROWS]>,
}

/// A tile kernel. Safety: the pointers of `Group` must be valid for the shapes above and the
/// kernel's instruction set available.
pub(crate) type GroupFn = unsafe fn(&Dims, &Group);

/// Portable version (plain Rust), `f32` arithmetic; built for AVX2 + FMA too and picked at
/// run time (the same operations in the same order, so the same results).
pub(crate) unsafe fn group_portable(dims: &Dims, g: &Group) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm_pack::avx2_available() {
        return group_avx2(dims, g, false);
    }
    group_portable_impl(dims, g, false)
}

/// Portable version with probabilities rounded to bf16 (emulated bf16 arithmetic; `pack.rs`
/// rounds Q, K and V).
pub(crate) unsafe fn group_portable_round(dims: &Dims, g: &Group) {
    #[cfg(target_arch = "x86_64")]
    if crate::gemm_pack::avx2_available() {
        return group_avx2(dims, g, true);
    }
    group_portable_impl(dims, g, true)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn group_avx2(dims: &Dims, g: &Group, round: bool) {
    group_portable_impl(dims, g, round)
}

#[inline(always)]
unsafe fn group_portable_impl(dims: &Dims, g: &Group, round: bool) {
    let (d, dp, c) = (dims.d, dims.dp, dims.c);
    let nk = g.np * PANEL;
    let q = std::slice::from_raw_parts(g.q, ROWS * d);
    let kp = std::slice::from_raw_parts(g.kp, nk * d);
    let v = std::slice::from_raw_parts(g.v, nk * dp);
    let o = std::slice::from_raw_parts_mut(g.o, ROWS * dp);
    let m = std::slice::from_raw_parts_mut(g.m, ROWS);
    let l = std::slice::from_raw_parts_mut(g.l, ROWS * PANEL);
    let mut s = [[0f32; KT]; ROWS];
    for (r, s) in s.iter_mut().enumerate() {
        let qr = &q[r * d..(r + 1) * d];
        for p in 0..g.np {
            let panel = &kp[p * PANEL * d..(p + 1) * PANEL * d];
            let mut acc = [0f32; PANEL];
            for (&qv, kv) in qr.iter().zip(panel.chunks_exact(PANEL)) {
                for (a, &kv) in acc.iter_mut().zip(kv) {
                    *a += qv * kv;
                }
            }
            s[p * PANEL..(p + 1) * PANEL].copy_from_slice(&acc);
        }
    }
    for (r, s) in s.iter_mut().enumerate() {
        let (lo, hi) = g.ranges.map_or((0, nk), |rg| rg[r]);
        let mut alpha = 1.0;
        if lo < hi {
            let mx = s[lo..hi].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) * c;
            if mx > m[r] + SLACK {
                let m_new = m[r].max(mx);
                alpha = if m[r] == f32::NEG_INFINITY { 0.0 } else { (m[r] - m_new).exp2() };
                m[r] = m_new;
            }
        }
        let lr = &mut l[r * PANEL..(r + 1) * PANEL];
        for x in lr.iter_mut() {
            *x *= alpha;
        }
        for (j, x) in s[..nk].iter_mut().enumerate() {
            let p = if (lo..hi).contains(&j) { x.mul_add(c, -m[r]).exp2() } else { 0.0 };
            lr[j % PANEL] += p;
            *x = if round { crate::gemm_pack::round_to_bf16(p) } else { p };
        }
        let orow = &mut o[r * dp..(r + 1) * dp];
        for x in orow.iter_mut() {
            *x *= alpha;
        }
        for (j, &p) in s[..nk].iter().enumerate() {
            for (x, &vv) in orow.iter_mut().zip(&v[j * dp..(j + 1) * dp]) {
                *x += p * vv;
            }
        }
    }
}

/// Lanes `lo..hi` of the 16-lane vector starting at column `base`.
#[inline(always)]
pub(crate) fn range_mask(lo: usize, hi: usize, base: usize) -> u16 {
    let a = lo.saturating_sub(base).min(16);
    let b = hi.saturating_sub(base).min(16);
    let upto = |n: usize| ((1u32 << n) - 1) as u16;
    upto(b) & !upto(a)
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{Dims, Group, EXP2_POLY5, KT, MAX_NP, PANEL, ROWS, SLACK};
    use std::arch::x86_64::*;

    /// 64-byte aligned scratch for one call's probabilities.
    #[repr(C, align(64))]
    pub(crate) struct Aligned<T>(pub T);

    /// `2^x` for `x <= 128` (larger gives inf); about 1 ulp with `EXP2_POLY5`. `-inf` and NaN
    /// give NaN: callers mask the lanes where that can happen.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn exp2_ps<const N: usize>(x: __m512, poly: &[f32; N]) -> __m512 {
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(x);
        let f = _mm512_sub_ps(x, n);
        let mut acc = _mm512_set1_ps(poly[N - 1]);
        for &k in poly[..N - 1].iter().rev() {
            acc = _mm512_fmadd_ps(acc, f, _mm512_set1_ps(k));
        }
        _mm512_scalef_ps(acc, n)
    }

    /// `x` rounded to bf16 precision (round to nearest even; NaN stays NaN), as `f32`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn round_bf16_ps(x: __m512) -> __m512 {
        let r = _mm512_and_si512(crate::gemm_bf16::avx512::round(x), _mm512_set1_epi32(0xFFFF_0000u32 as i32));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        _mm512_mask_mov_ps(_mm512_castsi512_ps(r), nan, x)
    }

    /// Per row and panel, the lanes the row may see (`ranges` relative to the first key).
    #[inline(always)]
    pub(crate) fn masks<const NP: usize>(ranges: &[(usize, usize); ROWS]) -> [[u16; NP]; ROWS] {
        let mut mk = [[0u16; NP]; ROWS];
        for (mk, &(lo, hi)) in mk.iter_mut().zip(ranges) {
            for (p, mk) in mk.iter_mut().enumerate() {
                *mk = super::range_mask(lo, hi, p * PANEL);
            }
        }
        mk
    }

    /// The online-softmax update of one row of `NP` score vectors (already masked when
    /// `MASK`): moves `m` if needed, returns the probabilities and `alpha`, and adds the
    /// probabilities into the row's lane sums `l`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn softmax_row<const NP: usize, const MASK: bool, const N: usize>(
        s: &[__m512; NP],
        mk: &[u16; NP],
        c: __m512,
        m: *mut f32,
        l: *mut f32,
        poly: &[f32; N],
    ) -> ([__m512; NP], f32) {
        let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
        for p in 0..NP {
            mx = if MASK { _mm512_mask_max_ps(mx, mk[p], mx, s[p]) } else { _mm512_max_ps(mx, s[p]) };
        }
        let mx = _mm512_mul_ps(mx, c);
        let m_old = *m;
        let mut alpha = 1.0;
        if _mm512_cmp_ps_mask::<_CMP_GT_OQ>(mx, _mm512_set1_ps(m_old + SLACK)) != 0 {
            let m_new = m_old.max(_mm512_reduce_max_ps(mx));
            alpha = if m_old == f32::NEG_INFINITY { 0.0 } else { (m_old - m_new).exp2() };
            *m = m_new;
        }
        let neg_m = _mm512_set1_ps(-*m);
        let mut e = [_mm512_setzero_ps(); NP];
        let mut sum = _mm512_setzero_ps();
        for p in 0..NP {
            e[p] = exp2_ps(_mm512_fmadd_ps(s[p], c, neg_m), poly);
            if MASK {
                e[p] = _mm512_maskz_mov_ps(mk[p], e[p]);
            }
            sum = _mm512_add_ps(sum, e[p]);
        }
        let lv = _mm512_loadu_ps(l);
        _mm512_storeu_ps(l, _mm512_fmadd_ps(lv, _mm512_set1_ps(alpha), sum));
        (e, alpha)
    }

    /// # Safety
    /// AVX-512F must be available; pointers as documented on [`Group`].
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn group(dims: &Dims, g: &Group) {
        dispatch::<false>(dims, g)
    }

    /// [`group`] with probabilities rounded to bf16 (emulated bf16 arithmetic).
    ///
    /// # Safety
    /// As [`group`].
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn group_round(dims: &Dims, g: &Group) {
        dispatch::<true>(dims, g)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn dispatch<const ROUND: bool>(dims: &Dims, g: &Group) {
        debug_assert!((1..=MAX_NP).contains(&g.np));
        match (g.np, g.ranges.is_some()) {
            (1, false) => group_np::<1, false, ROUND>(dims, g),
            (2, false) => group_np::<2, false, ROUND>(dims, g),
            (3, false) => group_np::<3, false, ROUND>(dims, g),
            (_, false) => group_np::<4, false, ROUND>(dims, g),
            (1, true) => group_np::<1, true, ROUND>(dims, g),
            (2, true) => group_np::<2, true, ROUND>(dims, g),
            (3, true) => group_np::<3, true, ROUND>(dims, g),
            (_, true) => group_np::<4, true, ROUND>(dims, g),
        }
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn group_np<const NP: usize, const MASK: bool, const ROUND: bool>(dims: &Dims, g: &Group) {
        let (d, dp) = (dims.d, dims.dp);
        // S = Q Kᵀ: 4 rows x NP panels of accumulators.
        let mut s = [[_mm512_setzero_ps(); NP]; ROWS];
        let (q, kp) = (g.q, g.kp);
        for k in 0..d {
            let mut kv = [_mm512_setzero_ps(); NP];
            for (p, kv) in kv.iter_mut().enumerate() {
                *kv = _mm512_loadu_ps(kp.add(p * PANEL * d + k * PANEL));
            }
            for (r, s) in s.iter_mut().enumerate() {
                let qb = _mm512_set1_ps(*q.add(r * d + k));
                for (a, &kv) in s.iter_mut().zip(&kv) {
                    *a = _mm512_fmadd_ps(qb, kv, *a);
                }
            }
        }
        let mk = match &g.ranges {
            Some(rg) if MASK => masks::<NP>(rg),
            _ => [[0xFFFF; NP]; ROWS],
        };
        let c = _mm512_set1_ps(dims.c);
        let mut pb = Aligned([0f32; ROWS * KT]);
        let mut alpha = [1f32; ROWS];
        for r in 0..ROWS {
            let (e, a) = softmax_row::<NP, MASK, 6>(&s[r], &mk[r], c, g.m.add(r), g.l.add(r * PANEL), &EXP2_POLY5);
            alpha[r] = a;
            for (p, &e) in e.iter().enumerate() {
                let e = if ROUND { round_bf16_ps(e) } else { e };
                _mm512_store_ps(pb.0.as_mut_ptr().add(r * KT + p * PANEL), e);
            }
        }
        // O = O * alpha + P V, 64 columns at a time.
        let mut c0 = 0;
        while c0 < dp {
            let (v, o) = (g.v.add(c0), g.o.add(c0));
            match (dp - c0) / PANEL {
                1 => pv::<NP, 1>(pb.0.as_ptr(), v, dp, o, &alpha),
                2 => pv::<NP, 2>(pb.0.as_ptr(), v, dp, o, &alpha),
                3 => pv::<NP, 3>(pb.0.as_ptr(), v, dp, o, &alpha),
                _ => pv::<NP, 4>(pb.0.as_ptr(), v, dp, o, &alpha),
            }
            c0 += 4 * PANEL;
        }
    }

    /// `ROWS` output rows x `NV` vectors of columns over `16 * NP` keys.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn pv<const NP: usize, const NV: usize>(
        p: *const f32,
        v: *const f32,
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
        for j in 0..NP * PANEL {
            let mut vv = [_mm512_setzero_ps(); NV];
            for (c, vv) in vv.iter_mut().enumerate() {
                *vv = _mm512_loadu_ps(v.add(j * dp + c * PANEL));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let pr = _mm512_set1_ps(*p.add(r * KT + j));
                for (a, &vv) in acc.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(pr, vv, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (c, &a) in acc.iter().enumerate() {
                _mm512_storeu_ps(o.add(r * dp + c * PANEL), a);
            }
        }
    }
}
