//! Packing for the attention tiles: RoPE rotation of query / key rows and the transposition
//! of keys into feature-major panels of 16 (see `tile.rs` for the layouts).

use super::tile::PANEL;
use crate::rope::RopeTable;
use crate::Isa;

/// Rotates `rows` head vectors by RoPE and multiplies them by `scale`: the vector at
/// `src[r * stride..][..d]` has position `pos0 + r` and goes to `dst[r * d..][..d]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn rope_rows(
    isa: Isa,
    src: &[f32],
    stride: usize,
    rows: usize,
    rope: &RopeTable,
    pos0: usize,
    scale: f32,
    dst: &mut [f32],
) {
    let d = rope.head_dim();
    if rows == 0 {
        return;
    }
    assert!(src.len() >= (rows - 1) * stride + d && dst.len() >= rows * d);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the caller picked `Isa::Avx512` only where it is available; sizes checked.
        Isa::Avx512 => unsafe { avx512::rope_rows(src, stride, rows, rope, pos0, scale, dst) },
        _ => {
            let half = d / 2;
            for r in 0..rows {
                let x = &src[r * stride..r * stride + d];
                let (cos, sin) = rope.row(pos0 + r);
                let (lo, hi) = dst[r * d..(r + 1) * d].split_at_mut(half);
                for i in 0..half {
                    lo[i] = (x[i] * cos[i] - x[i + half] * sin[i]) * scale;
                    hi[i] = (x[i + half] * cos[i] + x[i] * sin[i]) * scale;
                }
            }
        }
    }
}

/// Writes 16 rows of `d` floats (`rows[j * d + i]`) as one panel: `panel[i * 16 + j]`.
pub(crate) fn to_panel(isa: Isa, rows: &[f32], d: usize, panel: &mut [f32]) {
    assert!(rows.len() >= PANEL * d && panel.len() >= PANEL * d);
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `rope_rows`.
        Isa::Avx512 => unsafe { avx512::to_panel(rows, d, panel) },
        _ => {
            for (j, row) in rows.chunks_exact(d).take(PANEL).enumerate() {
                for (i, &x) in row.iter().enumerate() {
                    panel[i * PANEL + j] = x;
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::PANEL;
    use crate::rope::RopeTable;
    use crate::x86::lanes;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn rope_rows(
        src: &[f32],
        stride: usize,
        rows: usize,
        rope: &RopeTable,
        pos0: usize,
        scale: f32,
        dst: &mut [f32],
    ) {
        let d = rope.head_dim();
        let half = d / 2;
        let sv = _mm512_set1_ps(scale);
        for r in 0..rows {
            // The rows are far apart in `qkv` (one token each), which the hardware prefetcher
            // does not follow well: ask for the row PREFETCH_ROWS ahead.
            if r + PREFETCH_ROWS < rows {
                prefetch_row(src.as_ptr().add((r + PREFETCH_ROWS) * stride), d);
            }
            let (cos, sin) = rope.row(pos0 + r);
            let (x, o) = (src.as_ptr().add(r * stride), dst.as_mut_ptr().add(r * d));
            for i in (0..half).step_by(16) {
                let m = lanes((half - i).min(16));
                let x1 = _mm512_maskz_loadu_ps(m, x.add(i));
                let x2 = _mm512_maskz_loadu_ps(m, x.add(half + i));
                let c = _mm512_maskz_loadu_ps(m, cos.as_ptr().add(i));
                let s = _mm512_maskz_loadu_ps(m, sin.as_ptr().add(i));
                let lo = _mm512_fmsub_ps(x1, c, _mm512_mul_ps(x2, s));
                let hi = _mm512_fmadd_ps(x2, c, _mm512_mul_ps(x1, s));
                _mm512_mask_storeu_ps(o.add(i), m, _mm512_mul_ps(lo, sv));
                _mm512_mask_storeu_ps(o.add(half + i), m, _mm512_mul_ps(hi, sv));
            }
        }
    }

    /// How far ahead `rope_rows` prefetches.
    const PREFETCH_ROWS: usize = 6;

    /// Prefetches the cache lines of `len` floats at `p` into L1.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn prefetch_row(p: *const f32, len: usize) {
        for off in (0..len).step_by(16) {
            _mm_prefetch::<_MM_HINT_T0>(p.add(off) as *const i8);
        }
    }

    /// In-register 16 x 16 transpose: `r[j]` lane `i` moves to `r[i]` lane `j`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose16(r: &mut [__m512; 16]) {
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

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn to_panel(rows: &[f32], d: usize, panel: &mut [f32]) {
        let (src, dst) = (rows.as_ptr(), panel.as_mut_ptr());
        for f0 in (0..d).step_by(16) {
            let nf = (d - f0).min(16);
            let m = lanes(nf);
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, r) in r.iter_mut().enumerate() {
                *r = _mm512_maskz_loadu_ps(m, src.add(j * d + f0));
            }
            transpose16(&mut r);
            for (c, &r) in r.iter().enumerate().take(nf) {
                _mm512_storeu_ps(dst.add((f0 + c) * PANEL), r);
            }
        }
    }
}
