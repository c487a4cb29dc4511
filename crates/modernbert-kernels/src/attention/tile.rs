//! Tile kernels of the attention: `S = Q Kᵀ`, the online-softmax update, and `O += P V`.
//!
//! Layouts (all `f32`):
//! * `q`: `rows` query rows of `d` floats (`rows` a multiple of [`ROWS`], padding rows zero).
//! * `kp`: keys in panels of [`PANEL`]: panel `p` holds `d x 16` floats, element `(k, j)` at
//!   `p * 16 * d + k * 16 + j` (feature-major, so 16 keys load as one vector).
//! * `s`: the score / probability tile, `rows` rows of stride [`KT`].
//! * `v`: value rows of stride `dp` (the head dim rounded up to 16, zero padded).
//! * `o`: output accumulator rows of stride `dp`.

/// Keys per panel (one AVX-512 vector).
pub(crate) const PANEL: usize = 16;
/// Keys per tile: at most 4 panels.
pub(crate) const KT: usize = 64;
/// Query rows per register block.
pub(crate) const ROWS: usize = 4;

/// `s[r][0..16 * npan] = q[r] . keys` for `r < rows`: `(q, rows, d, kp, npan, s)`.
pub(crate) type QkFn = unsafe fn(&[f32], usize, usize, &[f32], usize, &mut [f32]);
/// Online-softmax update of every row: `(s, ncols, ranges, m, l, alpha)`. Masks `s[r]` to
/// `ranges[r]`, turns it into probabilities relative to the new running max `m[r]`, updates
/// the running sum `l[r]`, and writes the factor `alpha[r]` by which the row's accumulated
/// output must be rescaled.
pub(crate) type SoftmaxFn =
    unsafe fn(&mut [f32], usize, &[(usize, usize)], &mut [f32], &mut [f32], &mut [f32]);
/// `o[r] = o[r] * alpha[r] + sum_j s[r][j] * v[j]` for `r < rows`, `j < nkeys`:
/// `(s, rows, nkeys, v, dp, o, alpha)`.
pub(crate) type PvFn = unsafe fn(&[f32], usize, usize, &[f32], usize, &mut [f32], &[f32]);

/// The three tile kernels of one instruction set.
pub(crate) struct TileKernels {
    /// See [`QkFn`].
    pub qk: QkFn,
    /// See [`SoftmaxFn`].
    pub softmax: SoftmaxFn,
    /// See [`PvFn`].
    pub pv: PvFn,
}

/// Portable Rust versions (fixed 16-wide inner loops the compiler can vectorize).
pub(crate) static PORTABLE: TileKernels = TileKernels {
    qk: qk_portable,
    softmax: softmax_portable,
    pv: pv_portable,
};

fn qk_portable(q: &[f32], rows: usize, d: usize, kp: &[f32], npan: usize, s: &mut [f32]) {
    for r in 0..rows {
        let qr = &q[r * d..(r + 1) * d];
        for p in 0..npan {
            let panel = &kp[p * PANEL * d..(p + 1) * PANEL * d];
            let mut acc = [0f32; PANEL];
            for (&qv, kv) in qr.iter().zip(panel.chunks_exact(PANEL)) {
                for (a, &kv) in acc.iter_mut().zip(kv) {
                    *a += qv * kv;
                }
            }
            s[r * KT + p * PANEL..][..PANEL].copy_from_slice(&acc);
        }
    }
}

fn softmax_portable(
    s: &mut [f32],
    ncols: usize,
    ranges: &[(usize, usize)],
    m: &mut [f32],
    l: &mut [f32],
    alpha: &mut [f32],
) {
    for (r, &(lo, hi)) in ranges.iter().enumerate() {
        let row = &mut s[r * KT..r * KT + ncols];
        if lo >= hi {
            row.fill(0.0);
            alpha[r] = 1.0;
            continue;
        }
        let mx = row[lo..hi].iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
        let m_new = m[r].max(mx);
        alpha[r] = crate::math::exp(m[r] - m_new);
        let mut sum = 0.0;
        for (j, x) in row.iter_mut().enumerate() {
            *x = if (lo..hi).contains(&j) {
                crate::math::exp(*x - m_new)
            } else {
                0.0
            };
            sum += *x;
        }
        l[r] = l[r] * alpha[r] + sum;
        m[r] = m_new;
    }
}

fn pv_portable(
    s: &[f32],
    rows: usize,
    nkeys: usize,
    v: &[f32],
    dp: usize,
    o: &mut [f32],
    alpha: &[f32],
) {
    for r in 0..rows {
        let orow = &mut o[r * dp..(r + 1) * dp];
        for x in orow.iter_mut() {
            *x *= alpha[r];
        }
        for (j, &p) in s[r * KT..r * KT + nkeys].iter().enumerate() {
            for (x, &vv) in orow.iter_mut().zip(&v[j * dp..(j + 1) * dp]) {
                *x += p * vv;
            }
        }
    }
}

/// AVX-512 versions (register-blocked 4 rows x 64 columns).
#[cfg(target_arch = "x86_64")]
pub(crate) static AVX512: TileKernels = TileKernels {
    qk: avx512::qk,
    softmax: avx512::softmax,
    pv: avx512::pv,
};

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{KT, PANEL, ROWS};
    use crate::x86::exp_ps;
    use std::arch::x86_64::*;

    /// Lanes `lo..hi` of the 16-lane vector starting at column `base`.
    #[inline(always)]
    fn range_mask(lo: usize, hi: usize, base: usize) -> __mmask16 {
        let a = lo.saturating_sub(base).min(16);
        let b = hi.saturating_sub(base).min(16);
        let upto = |n: usize| ((1u32 << n) - 1) as __mmask16;
        upto(b) & !upto(a)
    }

    /// # Safety
    /// AVX-512F must be available; shapes as documented on [`super::TileKernels`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn qk(
        q: &[f32],
        rows: usize,
        d: usize,
        kp: &[f32],
        npan: usize,
        s: &mut [f32],
    ) {
        assert!(rows.is_multiple_of(ROWS) && q.len() >= rows * d && kp.len() >= npan * PANEL * d);
        assert!(s.len() >= rows * KT && (1..=4).contains(&npan));
        for r0 in (0..rows).step_by(ROWS) {
            let (qp, sp) = (q.as_ptr().add(r0 * d), s.as_mut_ptr().add(r0 * KT));
            match npan {
                1 => qk_block::<1>(qp, d, kp.as_ptr(), sp),
                2 => qk_block::<2>(qp, d, kp.as_ptr(), sp),
                3 => qk_block::<3>(qp, d, kp.as_ptr(), sp),
                _ => qk_block::<4>(qp, d, kp.as_ptr(), sp),
            }
        }
    }

    /// `ROWS` query rows against `NP` key panels, all accumulators in registers.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn qk_block<const NP: usize>(q: *const f32, d: usize, kp: *const f32, s: *mut f32) {
        let mut acc = [[_mm512_setzero_ps(); NP]; ROWS];
        for k in 0..d {
            let mut kv = [_mm512_setzero_ps(); NP];
            for (p, kv) in kv.iter_mut().enumerate() {
                *kv = _mm512_loadu_ps(kp.add(p * PANEL * d + k * PANEL));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let qb = _mm512_set1_ps(*q.add(r * d + k));
                for (a, &kv) in acc.iter_mut().zip(&kv) {
                    *a = _mm512_fmadd_ps(qb, kv, *a);
                }
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            for (p, &a) in acc.iter().enumerate() {
                _mm512_storeu_ps(s.add(r * KT + p * PANEL), a);
            }
        }
    }

    /// # Safety
    /// AVX-512F must be available; shapes as documented on [`super::TileKernels`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn softmax(
        s: &mut [f32],
        ncols: usize,
        ranges: &[(usize, usize)],
        m: &mut [f32],
        l: &mut [f32],
        alpha: &mut [f32],
    ) {
        let nv = ncols.div_ceil(PANEL);
        assert!(nv <= 4 && s.len() >= ranges.len() * KT);
        assert!(m.len() >= ranges.len() && l.len() >= ranges.len() && alpha.len() >= ranges.len());
        for (r, &(lo, hi)) in ranges.iter().enumerate() {
            let row = s.as_mut_ptr().add(r * KT);
            if lo >= hi {
                for c in 0..nv {
                    _mm512_storeu_ps(row.add(c * PANEL), _mm512_setzero_ps());
                }
                alpha[r] = 1.0;
                continue;
            }
            let mut x = [_mm512_setzero_ps(); 4];
            let mut mask = [0 as __mmask16; 4];
            let mut mx = _mm512_set1_ps(f32::NEG_INFINITY);
            for c in 0..nv {
                mask[c] = range_mask(lo, hi, c * PANEL);
                x[c] = _mm512_loadu_ps(row.add(c * PANEL));
                mx = _mm512_mask_max_ps(mx, mask[c], mx, x[c]);
            }
            let m_new = m[r].max(_mm512_reduce_max_ps(mx));
            alpha[r] = crate::math::exp(m[r] - m_new);
            let mv = _mm512_set1_ps(m_new);
            let mut sum = _mm512_setzero_ps();
            for c in 0..nv {
                let p = _mm512_maskz_mov_ps(mask[c], exp_ps(_mm512_sub_ps(x[c], mv)));
                _mm512_storeu_ps(row.add(c * PANEL), p);
                sum = _mm512_add_ps(sum, p);
            }
            l[r] = l[r] * alpha[r] + _mm512_reduce_add_ps(sum);
            m[r] = m_new;
        }
    }

    /// # Safety
    /// AVX-512F must be available; shapes as documented on [`super::TileKernels`].
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pv(
        s: &[f32],
        rows: usize,
        nkeys: usize,
        v: &[f32],
        dp: usize,
        o: &mut [f32],
        alpha: &[f32],
    ) {
        assert!(rows.is_multiple_of(ROWS) && dp.is_multiple_of(PANEL) && nkeys <= KT);
        assert!(s.len() >= rows * KT && v.len() >= nkeys * dp && o.len() >= rows * dp);
        assert!(alpha.len() >= rows);
        for r0 in (0..rows).step_by(ROWS) {
            let a = &alpha[r0..r0 + ROWS];
            let sp = s.as_ptr().add(r0 * KT);
            for c0 in (0..dp).step_by(4 * PANEL) {
                let (vp, op) = (v.as_ptr().add(c0), o.as_mut_ptr().add(r0 * dp + c0));
                match (dp - c0) / PANEL {
                    1 => pv_block::<1>(sp, nkeys, vp, dp, op, a),
                    2 => pv_block::<2>(sp, nkeys, vp, dp, op, a),
                    3 => pv_block::<3>(sp, nkeys, vp, dp, op, a),
                    _ => pv_block::<4>(sp, nkeys, vp, dp, op, a),
                }
            }
        }
    }

    /// `ROWS` output rows x `NV` vectors of columns, accumulated in registers over all keys.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn pv_block<const NV: usize>(
        s: *const f32,
        nkeys: usize,
        v: *const f32,
        dp: usize,
        o: *mut f32,
        alpha: &[f32],
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; ROWS];
        for (r, acc) in acc.iter_mut().enumerate() {
            let a = _mm512_set1_ps(alpha[r]);
            for (c, acc) in acc.iter_mut().enumerate() {
                *acc = _mm512_mul_ps(_mm512_loadu_ps(o.add(r * dp + c * PANEL)), a);
            }
        }
        for j in 0..nkeys {
            let mut vv = [_mm512_setzero_ps(); NV];
            for (c, vv) in vv.iter_mut().enumerate() {
                *vv = _mm512_loadu_ps(v.add(j * dp + c * PANEL));
            }
            for (r, acc) in acc.iter_mut().enumerate() {
                let p = _mm512_set1_ps(*s.add(r * KT + j));
                for (a, &vv) in acc.iter_mut().zip(&vv) {
                    *a = _mm512_fmadd_ps(p, vv, *a);
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
