//! The packing pass: reads `qkv` rows in order (each row once, all heads), applies RoPE to
//! Q and K, and writes the per-head layouts the tile kernels want (see `tile.rs` for `f32`,
//! `tile_bf16.rs` for bf16):
//!
//! * Q rows (`kw` words each: `d` floats, or `d / 2` bf16 pair cells), `nq_pad` rows per
//!   head, padding rows zero;
//! * K panels of 16 keys (`16 * kw` words each), `nk_pad / 16` per head, padding keys zero;
//! * V rows of `dp` words (`f32`: one key; bf16: one key pair), padding zero.
//!
//! A task packs a chunk of whole panels (16 keys) of one unit. Within a panel it first walks
//! the 16 `qkv` rows in order (Q straight to its rows, K rotated into a `16 x hidden`
//! scratch), then per head transposes the keys into their panel and copies the values.

use super::tile::PANEL;
use super::{Arith, Packing, Unit};
use crate::gemm_pack::{f32_to_bf16_bits, round_to_bf16};
use crate::Isa;
use std::cell::RefCell;

thread_local! {
    /// Per-thread scratch: 16 rotated key rows (`16 * hidden`) and one rotated row (`d`).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Packs keys `t0..t1` of unit `u` (`t0` a multiple of 16, `t1 = min(t0 + chunk, nk)`), the
/// queries among them, and, in the task that reaches `nk`, zeroes the query padding rows.
///
/// # Safety
/// `pk.buf` must point to the group buffer with this unit's arrays at `u.off` (see
/// [`Unit`]), which no other task writes in this range of keys.
pub(crate) unsafe fn pack_chunk(pk: &Packing, u: &Unit, t0: usize, t1: usize) {
    SCRATCH.with(|cell| {
        // Taken, not borrowed, so that a reentrant call (none today) would only allocate.
        let mut scratch = cell.take();
        let need = PANEL * pk.hidden + pk.d;
        if scratch.len() < need {
            scratch.resize(need, 0.0);
        }
        let (ktmp, rest) = scratch.split_at_mut(PANEL * pk.hidden);
        let qtmp = &mut rest[..pk.d];
        match pk.isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                if pk.arith == Arith::Bf16Native {
                    avx512::pack_bf16(pk, u, t0, t1, ktmp, qtmp)
                } else {
                    avx512::pack_f32(pk, u, t0, t1, ktmp)
                }
            }
            _ => pack_portable(pk, u, t0, t1, ktmp, qtmp),
        }
        if t1 == u.nk {
            zero_query_padding(pk, u);
        }
        cell.replace(scratch);
    })
}

/// Zeroes query rows `nq..nq_pad` of every head.
unsafe fn zero_query_padding(pk: &Packing, u: &Unit) {
    let kw = pk.arith.kw(pk.d);
    let rows = u.nq_pad() - u.nq;
    for h in 0..pk.heads {
        let q = pk.q_row(u, h, u.nq);
        std::ptr::write_bytes(q, 0, rows * kw);
    }
}

/// Two bf16 (round to nearest even) in one cell, `a` in the low half.
#[inline]
fn pair(a: f32, b: f32) -> u32 {
    f32_to_bf16_bits(a) as u32 | (f32_to_bf16_bits(b) as u32) << 16
}

/// Writes `x` rotated by RoPE (`cos`, `sin` of its position) to `out`.
#[inline]
fn rotate(x: &[f32], cos: &[f32], sin: &[f32], out: &mut [f32]) {
    let half = cos.len();
    for i in 0..half {
        out[i] = x[i] * cos[i] - x[i + half] * sin[i];
        out[i + half] = x[i + half] * cos[i] + x[i] * sin[i];
    }
}

unsafe fn pack_portable(pk: &Packing, u: &Unit, t0: usize, t1: usize, ktmp: &mut [f32], qtmp: &mut [f32]) {
    let (d, dp, hid) = (pk.d, pk.dp, pk.hidden);
    let native = pk.arith == Arith::Bf16Native;
    let round = pk.arith == Arith::Bf16Emulated;
    let rnd = |x: f32| if round { round_to_bf16(x) } else { x };
    for p0 in (t0..t1).step_by(PANEL) {
        let cnt = (u.nk - p0).min(PANEL);
        let row = |j: usize| &pk.qkv[(u.start + u.k0 + p0 + j) * 3 * hid..][..3 * hid];
        for j in 0..PANEL {
            let kt = &mut ktmp[j * hid..(j + 1) * hid];
            if j >= cnt {
                kt.fill(0.0);
                continue;
            }
            let pos = u.k0 + p0 + j;
            let (cos, sin) = pk.rope.row(pos);
            let x = row(j);
            if (u.q0..u.q0 + u.nq).contains(&pos) {
                for h in 0..pk.heads {
                    rotate(&x[h * d..(h + 1) * d], cos, sin, qtmp);
                    let q = pk.q_row(u, h, pos - u.q0);
                    if native {
                        for k in 0..d / 2 {
                            *q.add(k) = pair(qtmp[2 * k], qtmp[2 * k + 1]);
                        }
                    } else {
                        for (k, &y) in qtmp.iter().enumerate() {
                            *q.add(k) = rnd(y).to_bits();
                        }
                    }
                }
            }
            for h in 0..pk.heads {
                let src = &x[hid + h * d..hid + (h + 1) * d];
                let dst = &mut kt[h * d..(h + 1) * d];
                rotate(src, cos, sin, dst);
                for y in dst.iter_mut() {
                    *y = rnd(*y);
                }
            }
        }
        for h in 0..pk.heads {
            let panel = pk.k_panel(u, h, p0 / PANEL);
            let kv = |j: usize, k: usize| ktmp[j * hid + h * d + k];
            if native {
                for k in 0..d / 2 {
                    for j in 0..PANEL {
                        *panel.add(k * PANEL + j) = pair(kv(j, 2 * k), kv(j, 2 * k + 1));
                    }
                }
            } else {
                for k in 0..d {
                    for j in 0..PANEL {
                        *panel.add(k * PANEL + j) = kv(j, k).to_bits();
                    }
                }
            }
            let vv = |j: usize, c: usize| {
                if j < cnt && c < d {
                    row(j)[2 * hid + h * d + c]
                } else {
                    0.0
                }
            };
            if native {
                for t in 0..PANEL / 2 {
                    let dst = pk.v_row(u, h, p0 / 2 + t);
                    for c in 0..dp {
                        *dst.add(c) = pair(vv(2 * t, c), vv(2 * t + 1, c));
                    }
                }
            } else {
                for j in 0..PANEL {
                    let dst = pk.v_row(u, h, p0 + j);
                    for c in 0..dp {
                        *dst.add(c) = rnd(vv(j, c)).to_bits();
                    }
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::super::tile::avx512::round_bf16_ps;
    use super::super::{Arith, Packing, Unit};
    use super::PANEL;
    use crate::gemm_bf16::avx512::{cells, pair_cells};
    use crate::x86::{lanes, transpose16};
    use std::arch::x86_64::*;

    /// How many `qkv` rows ahead the packing loops prefetch: the rows are read once, usually
    /// from DRAM (a batch's `qkv` is bigger than L3), and a row is 9 KiB at ModernBERT-base
    /// widths, too little for the hardware prefetcher to ramp up on.
    const PREFETCH_ROWS: usize = 8;

    /// Prefetches the `len` floats at `p` into L1.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn prefetch_row(p: *const f32, len: usize) {
        for off in (0..len).step_by(16) {
            _mm_prefetch::<_MM_HINT_T1>(p.wrapping_add(off) as *const i8);
        }
    }

    /// Rotates the head vector at `x` (cos / sin rows of its position) into `out`, rounding
    /// to bf16 precision when `round`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn rotate(x: *const f32, cos: &[f32], sin: &[f32], out: *mut f32, round: bool) {
        let half = cos.len();
        for i in (0..half).step_by(16) {
            let m = lanes(half - i);
            let x1 = _mm512_maskz_loadu_ps(m, x.add(i));
            let x2 = _mm512_maskz_loadu_ps(m, x.add(half + i));
            let c = _mm512_maskz_loadu_ps(m, cos.as_ptr().add(i));
            let s = _mm512_maskz_loadu_ps(m, sin.as_ptr().add(i));
            let mut lo = _mm512_fmsub_ps(x1, c, _mm512_mul_ps(x2, s));
            let mut hi = _mm512_fmadd_ps(x2, c, _mm512_mul_ps(x1, s));
            if round {
                lo = round_bf16_ps(lo);
                hi = round_bf16_ps(hi);
            }
            _mm512_mask_storeu_ps(out.add(i), m, lo);
            _mm512_mask_storeu_ps(out.add(half + i), m, hi);
        }
    }

    /// `n` floats (even) as `n / 2` bf16 pair cells.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn to_pairs(x: *const f32, n: usize, out: *mut u32) {
        for k in (0..n).step_by(32) {
            let rem = n - k;
            let v = pair_cells(x.add(k), rem.min(32));
            _mm512_mask_storeu_epi32(out.add(k / 2) as *mut _, lanes(rem / 2), v);
        }
    }

    /// 16 rows of `w` 32-bit words (row `j` at `src + j * stride`) as one panel:
    /// `panel[i * 16 + j] = row j word i`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn to_panel(src: *const f32, stride: usize, w: usize, panel: *mut f32) {
        for f0 in (0..w).step_by(16) {
            let nf = (w - f0).min(16);
            let m = lanes(nf);
            let mut r = [_mm512_setzero_ps(); 16];
            for (j, r) in r.iter_mut().enumerate() {
                *r = _mm512_maskz_loadu_ps(m, src.add(j * stride + f0));
            }
            transpose16(&mut r);
            for (c, &r) in r.iter().enumerate().take(nf) {
                _mm512_storeu_ps(panel.add((f0 + c) * PANEL), r);
            }
        }
    }

    /// `f32` layouts (plain or rounded to bf16 precision).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn pack_f32(pk: &Packing, u: &Unit, t0: usize, t1: usize, ktmp: &mut [f32]) {
        let (d, dp, hid) = (pk.d, pk.dp, pk.hidden);
        let round = pk.arith == Arith::Bf16Emulated;
        let kt = ktmp.as_mut_ptr();
        for p0 in (t0..t1).step_by(PANEL) {
            let cnt = (u.nk - p0).min(PANEL);
            // Rows past `cnt` are never read (zero load masks), so `wrapping_add`.
            let row = |j: usize| pk.qkv.as_ptr().wrapping_add((u.start + u.k0 + p0 + j) * 3 * hid);
            for j in 0..PANEL {
                if j >= cnt {
                    std::ptr::write_bytes(kt.add(j * hid), 0, hid);
                    for h in 0..pk.heads {
                        std::ptr::write_bytes(pk.v_row(u, h, p0 + j), 0, dp);
                    }
                    continue;
                }
                if p0 + j + PREFETCH_ROWS < u.nk {
                    prefetch_row(row(j + PREFETCH_ROWS), 3 * hid);
                }
                let pos = u.k0 + p0 + j;
                let (cos, sin) = pk.rope.row(pos);
                let x = row(j);
                if (u.q0..u.q0 + u.nq).contains(&pos) {
                    for h in 0..pk.heads {
                        let q = pk.q_row(u, h, pos - u.q0) as *mut f32;
                        rotate(x.add(h * d), cos, sin, q, round);
                    }
                }
                for h in 0..pk.heads {
                    rotate(x.add(hid + h * d), cos, sin, kt.add(j * hid + h * d), round);
                }
                for h in 0..pk.heads {
                    let (src, dst) = (x.add(2 * hid + h * d), pk.v_row(u, h, p0 + j) as *mut f32);
                    for c in (0..dp).step_by(16) {
                        let mut v = _mm512_maskz_loadu_ps(lanes(d.saturating_sub(c)), src.add(c));
                        if round {
                            v = round_bf16_ps(v);
                        }
                        _mm512_storeu_ps(dst.add(c), v);
                    }
                }
            }
            for h in 0..pk.heads {
                to_panel(kt.add(h * d), hid, d, pk.k_panel(u, h, p0 / PANEL) as *mut f32);
            }
        }
    }

    /// bf16 pair layouts.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pack_bf16(pk: &Packing, u: &Unit, t0: usize, t1: usize, ktmp: &mut [f32], qtmp: &mut [f32]) {
        let (d, dp, hid) = (pk.d, pk.dp, pk.hidden);
        let d2 = d / 2;
        let (kt, qt) = (ktmp.as_mut_ptr(), qtmp.as_mut_ptr());
        for p0 in (t0..t1).step_by(PANEL) {
            let cnt = (u.nk - p0).min(PANEL);
            // Rows past `cnt` are never read (zero load masks), so `wrapping_add`.
            let row = |j: usize| pk.qkv.as_ptr().wrapping_add((u.start + u.k0 + p0 + j) * 3 * hid);
            for j in 0..PANEL {
                if j >= cnt {
                    std::ptr::write_bytes(kt.add(j * hid), 0, hid);
                    if j % 2 == 0 {
                        for h in 0..pk.heads {
                            std::ptr::write_bytes(pk.v_row(u, h, (p0 + j) / 2), 0, dp);
                        }
                    }
                    continue;
                }
                if p0 + j + PREFETCH_ROWS < u.nk {
                    prefetch_row(row(j + PREFETCH_ROWS), 3 * hid);
                }
                let pos = u.k0 + p0 + j;
                let (cos, sin) = pk.rope.row(pos);
                let x = row(j);
                if (u.q0..u.q0 + u.nq).contains(&pos) {
                    for h in 0..pk.heads {
                        rotate(x.add(h * d), cos, sin, qt, false);
                        to_pairs(qt, d, pk.q_row(u, h, pos - u.q0));
                    }
                }
                // Rotated keys, then each row as pair cells in place (the cells of a head's
                // segment take its first half).
                for h in 0..pk.heads {
                    let seg = kt.add(j * hid + h * d);
                    rotate(x.add(hid + h * d), cos, sin, qt, false);
                    to_pairs(qt, d, seg as *mut u32);
                }
                // Values, once both keys of a pair are read (the second is zero past `cnt`).
                if j % 2 == 1 || j + 1 == cnt {
                    let j0 = j & !1;
                    let n1 = if j % 2 == 1 { 16 } else { 0 };
                    for h in 0..pk.heads {
                        let dst = pk.v_row(u, h, (p0 + j0) / 2);
                        let s0 = row(j0).add(2 * hid + h * d);
                        let s1 = row(j).add(2 * hid + h * d);
                        for c in (0..dp).step_by(16) {
                            let n = d.saturating_sub(c).min(16);
                            let a = _mm512_maskz_loadu_ps(lanes(n), s0.add(c));
                            let b = _mm512_maskz_loadu_ps(lanes(n.min(n1)), s1.add(c));
                            _mm512_storeu_si512(dst.add(c) as *mut _, cells(a, b));
                        }
                    }
                }
            }
            for h in 0..pk.heads {
                to_panel(kt.add(h * d), hid, d2, pk.k_panel(u, h, p0 / PANEL) as *mut f32);
            }
        }
    }
}
