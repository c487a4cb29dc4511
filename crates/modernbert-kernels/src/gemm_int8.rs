//! Dynamic int8 linear layer: `y = x · Wᵀ` with int8 weights, activations quantised per row
//! at run time, exact `i32` accumulation (AVX512-VNNI `vpdpbusd`), `f32` output.
//!
//! Quantisation (this is the whole arithmetic; the fast paths reproduce it bit for bit):
//!
//! * Weights, once at load time, symmetric per output channel:
//!   `s_w[o] = max_k |W[o,k]| / 127` (1 for an all-zero row),
//!   `q_w[o,k] = clamp(round_half_even(W[o,k] / s_w[o]), -127, 127)` as `i8`,
//!   `colsum[o] = Σ_k q_w[o,k]`.
//! * Activations, per row (token) at every call, **asymmetric `u8` with a zero point**:
//!   `lo = min(0, min_k x)`, `hi = max(0, max_k x)`, `s_x = max((hi - lo) / 255, f32::MIN_POSITIVE)`,
//!   `inv = 1 / s_x`, `zp = clamp(round_half_even(-lo · inv), 0, 255)`,
//!   `q_x[k] = clamp(round_half_even(x[k] · inv) + zp, 0, 255)` as `u8`.
//!   Zero is exactly representable and the whole `[lo, hi]` range uses the 256 levels, which
//!   suits the skewed rows of the MLP output projection better than a symmetric scale.
//!   `u8 · i8` is exactly what `vpdpbusd` multiplies, so no offset trick is needed.
//! * `acc[r,o] = Σ_k q_x[r,k] · q_w[o,k]` in `i32` (exact: `|acc| < 255 · 127 · in`, fine for
//!   `in < 66 000`),
//!   `y[r,o] = ((acc - zp[r] · colsum[o]) as f32) · (s_x[r] · s_w[o])`.
//!
//! Non-finite inputs give unspecified (but memory-safe) results.

use crate::gemm_pack::{packed_stride, with_scratch, AlignedCells, Panels, Plan, SendPtr, LANES, MR, NR};

/// Quads of `k` per k block: one block of a panel is `KGC_MAX * 192` bytes (36 KiB of Zen 5's
/// 48 KiB L1D); `in <= 768` is a single block, so `y` is written once.
const KGC_MAX: usize = 192;

/// Which code path an [`Int8Linear`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Int8Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Int8Path {
    pub(crate) fn active() -> Int8Path {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::Isa::active() != crate::Isa::Portable && int8_native() {
                return Int8Path::Avx512;
            }
        }
        Int8Path::Portable
    }
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Int8Path> {
        let mut v = vec![Int8Path::Portable];
        #[cfg(target_arch = "x86_64")]
        if int8_native() {
            v.push(Int8Path::Avx512);
        }
        v
    }
}

/// Whether this CPU has the AVX512-VNNI kernels (`avx512f`, `avx512bw`, `avx512vl`,
/// `avx512vnni`).
/// Without them [`Int8Linear`] runs a portable path with bit-identical results.
pub fn int8_native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Per-row activation quantisation parameters from the row's min and max:
/// `(scale, 1 / scale, zero point)`.
#[inline]
pub(crate) fn act_params(min: f32, max: f32) -> (f32, f32, i32) {
    let lo = min.min(0.0);
    let hi = max.max(0.0);
    let s = ((hi - lo) / 255.0).max(f32::MIN_POSITIVE);
    let inv = 1.0 / s;
    let zp = ((-lo * inv).round_ties_even() as i32).clamp(0, 255);
    (s, inv, zp)
}

/// Quantises one row (scalar): returns `(scale, zero point)`, writes `q.len() == x.len()` bytes.
pub(crate) fn quantize_row_scalar(x: &[f32], q: &mut [u8]) -> (f32, i32) {
    let (mn, mx) = x.iter().fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
    let (s, inv, zp) = act_params(mn, mx);
    for (d, &v) in q.iter_mut().zip(x) {
        *d = ((v * inv).round_ties_even() as i32 + zp).clamp(0, 255) as u8;
    }
    (s, zp)
}

/// Weights quantised once at load time: symmetric int8 per output channel (see the module
/// docs for the exact arithmetic).
#[derive(Clone, Debug)]
pub struct Int8Linear {
    pn: Panels,
    /// Cells: four `i8` (`k = 4g .. 4g + 3`, low byte first) of one output column.
    w: AlignedCells,
    /// `s_w`, padded to whole panels.
    scale: Vec<f32>,
    /// `Σ_k q_w`, padded to whole panels.
    colsum: Vec<i32>,
}

impl Int8Linear {
    /// Quantises and packs `weight` (`[out_features, in_features]`, row-major, PyTorch's
    /// `nn.Linear` layout).
    pub fn new(weight: &[f32], out_features: usize, in_features: usize) -> Self {
        assert_eq!(weight.len(), out_features * in_features, "weight is not [{out_features}, {in_features}]");
        assert!(in_features < 66_000, "i32 accumulation could overflow");
        let pn = Panels::new(out_features, in_features, 4);
        let inn = in_features;
        let padded = pn.n_panels * NR;
        let mut scale = vec![0f32; padded];
        let mut colsum = vec![0i32; padded];
        let mut q = vec![0i8; out_features * inn];
        for o in 0..out_features {
            let row = &weight[o * inn..][..inn];
            let amax = row.iter().fold(0f32, |a, &v| a.max(v.abs()));
            let s = if amax > 0.0 { amax / 127.0 } else { 1.0 };
            let mut sum = 0i32;
            for (d, &v) in q[o * inn..][..inn].iter_mut().zip(row) {
                *d = (v / s).round_ties_even().clamp(-127.0, 127.0) as i8;
                sum += *d as i32;
            }
            scale[o] = s;
            colsum[o] = sum;
        }
        let w = pn.pack(|o, g| {
            let mut cell = 0u32;
            for j in 0..4 {
                let k = 4 * g + j;
                if k < inn {
                    cell |= (q[o * inn + k] as u8 as u32) << (8 * j);
                }
            }
            cell
        });
        Int8Linear { pn, w, scale, colsum }
    }

    pub fn out_features(&self) -> usize {
        self.pn.out
    }

    pub fn in_features(&self) -> usize {
        self.pn.inn
    }

    /// The quantised weight `q_w[o, k]`.
    pub fn weight_q(&self, o: usize, k: usize) -> i8 {
        assert!(o < self.pn.out && k < self.pn.inn);
        let (p, c) = (o / NR, o % NR);
        let cell = self.w.as_slice()[self.pn.offset(p) + (k / 4) * self.pn.nv(p) * LANES + c];
        (cell >> (8 * (k % 4))) as u8 as i8
    }

    /// The weight scale `s_w[o]`.
    pub fn weight_scale(&self, o: usize) -> f32 {
        self.scale[o]
    }

    /// `y = x · Wᵀ` for `rows` rows of `f32` input (`[rows, in_features]`), quantised per row
    /// on the fly; `y` (`[rows, out_features]`) is overwritten.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        self.forward_with(Int8Path::active(), x, rows, y);
    }

    /// Slow scalar version of [`Int8Linear::forward`], the module docs transcribed; the fast
    /// paths match it bit for bit.
    pub fn forward_reference(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let (out, inn) = (self.pn.out, self.pn.inn);
        assert_eq!(x.len(), rows * inn);
        assert_eq!(y.len(), rows * out);
        let mut q = vec![0u8; inn];
        for r in 0..rows {
            let (sx, zp) = quantize_row_scalar(&x[r * inn..][..inn], &mut q);
            for o in 0..out {
                let mut acc = 0i32;
                for (k, &qx) in q.iter().enumerate() {
                    acc += qx as i32 * self.weight_q(o, k) as i32;
                }
                let d = acc - zp * self.colsum[o];
                y[r * out + o] = d as f32 * (sx * self.scale[o]);
            }
        }
    }

    pub(crate) fn forward_with(&self, path: Int8Path, x: &[f32], rows: usize, y: &mut [f32]) {
        let pn = &self.pn;
        assert_eq!(x.len(), rows * pn.inn, "x is not [{rows}, {}]", pn.inn);
        assert_eq!(y.len(), rows * pn.out, "y is not [{rows}, {}]", pn.out);
        if rows == 0 {
            return;
        }
        let plan = Plan::new(rows, pn, KGC_MAX);
        let xs = packed_stride(pn.groups);
        let yp = SendPtr(y.as_mut_ptr());
        let w = self.w.as_slice();
        plan.run(rows, pn.n_panels, |r0, r1, p0, p1| {
            let nr = r1 - r0;
            with_scratch(nr * xs + 2 * nr, |buf| {
                let (xb, meta) = buf.split_at_mut(nr * xs);
                let (sxb, zpb) = meta.split_at_mut(nr);
                for i in 0..nr {
                    let xr = &x[(r0 + i) * pn.inn..][..pn.inn];
                    let (s, zp) = quantize_row(path, xr, &mut xb[i * xs..][..pn.groups]);
                    sxb[i] = s.to_bits();
                    zpb[i] = zp as u32;
                }
                for p in p0..p1 {
                    let (nv, width) = (pn.nv(p), pn.width(p));
                    let wpanel = &w[pn.offset(p)..][..pn.groups * nv * LANES];
                    let mut g0 = 0;
                    while g0 < pn.groups {
                        let kg = plan.kgc.min(pn.groups - g0);
                        let last = g0 + kg == pn.groups;
                        let mut i = 0;
                        while i < nr {
                            let m = MR.min(nr - i);
                            let dq = Dequant {
                                sx: sxb[i..].as_ptr() as *const f32,
                                zp: zpb[i..].as_ptr() as *const i32,
                                sw: self.scale[p * NR..].as_ptr(),
                                colsum: self.colsum[p * NR..].as_ptr(),
                            };
                            // SAFETY: rows r0+i .. r0+i+m and columns p*NR .. p*NR+width of
                            // y belong to this task only; xb holds nr rows of xs cells; the
                            // scale/colsum vectors are padded to whole panels.
                            unsafe {
                                let yt = yp.get().add((r0 + i) * pn.out + p * NR);
                                let xt = xb.as_ptr().add(i * xs + g0);
                                let wt = wpanel.as_ptr().add(g0 * nv * LANES);
                                let dq = if last { Some(&dq) } else { None };
                                micro(path, m, nv, kg, xt, xs, wt, yt, pn.out, width, g0 == 0, dq);
                            }
                            i += m;
                        }
                        g0 += kg;
                    }
                }
            });
        });
    }
}

/// Dequantisation inputs of one microkernel tile: per-row `s_x`, `zp` (the tile's first row),
/// per-column `s_w`, `colsum` (the panel's first column).
pub(crate) struct Dequant {
    sx: *const f32,
    zp: *const i32,
    sw: *const f32,
    colsum: *const i32,
}

/// Quantises one row into `out` (`ceil(len / 4)` cells of 4 bytes, padding bytes unspecified:
/// the packed weights are zero there). Returns `(scale, zero point)`.
pub(crate) fn quantize_row(path: Int8Path, x: &[f32], out: &mut [u32]) -> (f32, i32) {
    match path {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the Avx512 path is only chosen when int8_native() holds.
        Int8Path::Avx512 => unsafe { avx512::quantize_row(x, out) },
        Int8Path::Portable => {
            let (mn, mx) = x.iter().fold((0f32, 0f32), |(a, b), &v| (a.min(v), b.max(v)));
            let (s, inv, zp) = act_params(mn, mx);
            for (g, c) in out.iter_mut().enumerate() {
                let mut cell = 0u32;
                for j in 0..4 {
                    if let Some(&v) = x.get(4 * g + j) {
                        let q = ((v * inv).round_ties_even() as i32 + zp).clamp(0, 255);
                        cell |= (q as u32) << (8 * j);
                    }
                }
                *c = cell;
            }
            (s, zp)
        }
    }
}

/// One microkernel call: `m <= MR` rows × one panel (`nv` vectors, `width` valid columns),
/// `kg` quads of k. `first`: start from zero, else continue the `i32` partial sums stored in
/// `y`; `dq`: this is the last k block, dequantise into `y` (else store `i32` partial sums).
///
/// # Safety
/// `x` holds `m` rows of stride `xs` with `kg` cells each, `w` holds `kg * nv * 16` cells,
/// `y` has `m` rows of stride `ys` with `width` writable columns; `dq` points at `m` rows and
/// `nv * 16` columns.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro(
    path: Int8Path,
    m: usize,
    nv: usize,
    kg: usize,
    x: *const u32,
    xs: usize,
    w: *const u32,
    y: *mut f32,
    ys: usize,
    width: usize,
    first: bool,
    dq: Option<&Dequant>,
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Int8Path::Avx512 => avx512::micro(m, nv, kg, x, xs, w, y, ys, width, first, dq),
        Int8Path::Portable => portable_micro(m, nv, kg, x, xs, w, y, ys, width, first, dq),
    }
}

/// The portable microkernel, compiled for AVX2 + FMA too and picked at run time (the same
/// operations in the same order, so the same results, just wider vectors).
#[allow(clippy::too_many_arguments)]
unsafe fn portable_micro(
    m: usize,
    nv: usize,
    kg: usize,
    x: *const u32,
    xs: usize,
    w: *const u32,
    y: *mut f32,
    ys: usize,
    width: usize,
    first: bool,
    dq: Option<&Dequant>,
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
            m: usize,
            nv: usize,
            kg: usize,
            x: *const u32,
            xs: usize,
            w: *const u32,
            y: *mut f32,
            ys: usize,
            width: usize,
            first: bool,
            dq: Option<&Dequant>,
        ) {
            portable_micro_body(m, nv, kg, x, xs, w, y, ys, width, first, dq)
        }
        if crate::gemm_pack::avx2_available() {
            return avx2(m, nv, kg, x, xs, w, y, ys, width, first, dq);
        }
    }
    portable_micro_body(m, nv, kg, x, xs, w, y, ys, width, first, dq)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn portable_micro_body(
    m: usize,
    nv: usize,
    kg: usize,
    x: *const u32,
    xs: usize,
    w: *const u32,
    y: *mut f32,
    ys: usize,
    width: usize,
    first: bool,
    dq: Option<&Dequant>,
) {
    match nv {
        3 => portable_rows::<3>(m, kg, x, xs, w, y, ys, width, first, dq),
        2 => portable_rows::<2>(m, kg, x, xs, w, y, ys, width, first, dq),
        _ => portable_rows::<1>(m, kg, x, xs, w, y, ys, width, first, dq),
    }
}

/// One row at a time, its `NV * 16` accumulators in registers, the panel block re-read from
/// L1 for every row.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn portable_rows<const NV: usize>(
    m: usize,
    kg: usize,
    x: *const u32,
    xs: usize,
    w: *const u32,
    y: *mut f32,
    ys: usize,
    width: usize,
    first: bool,
    dq: Option<&Dequant>,
) {
    let yi = y as *mut i32;
    for i in 0..m {
        let mut a = [0i32; NR];
        if !first {
            for (c, v) in a.iter_mut().enumerate().take(width) {
                *v = *yi.add(i * ys + c);
            }
        }
        let xr = x.add(i * xs);
        for g in 0..kg {
            let xc = *xr.add(g);
            let xb = [(xc & 0xFF) as i32, ((xc >> 8) & 0xFF) as i32, ((xc >> 16) & 0xFF) as i32, (xc >> 24) as i32];
            let wg = w.add(g * NV * LANES);
            for (c, v) in a.iter_mut().enumerate().take(NV * LANES) {
                let wc = *wg.add(c);
                let p = xb[0] * (wc as u8 as i8 as i32)
                    + xb[1] * ((wc >> 8) as u8 as i8 as i32)
                    + xb[2] * ((wc >> 16) as u8 as i8 as i32)
                    + xb[3] * ((wc >> 24) as u8 as i8 as i32);
                *v = v.wrapping_add(p);
            }
        }
        match dq {
            None => {
                for (c, &v) in a.iter().enumerate().take(width) {
                    *yi.add(i * ys + c) = v;
                }
            }
            Some(dq) => {
                let (sx, zp) = (*dq.sx.add(i), *dq.zp.add(i));
                for (c, &v) in a.iter().enumerate().take(width) {
                    let d = v.wrapping_sub(zp.wrapping_mul(*dq.colsum.add(c)));
                    *y.add(i * ys + c) = d as f32 * (sx * *dq.sw.add(c));
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{act_params, Dequant, LANES, MR};
    use std::arch::x86_64::*;

    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        if n >= 16 {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    /// [`super::quantize_row`] with AVX-512 (same arithmetic: `vcvtps2dq` rounds half to even).
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    pub(super) unsafe fn quantize_row(x: &[f32], out: &mut [u32]) -> (f32, i32) {
        let n = x.len();
        let full = n / LANES * LANES;
        let xp = x.as_ptr();
        let (mut mn, mut mx) = (_mm512_setzero_ps(), _mm512_setzero_ps());
        let mut k = 0;
        while k < full {
            let v = _mm512_loadu_ps(xp.add(k));
            mn = _mm512_min_ps(mn, v);
            mx = _mm512_max_ps(mx, v);
            k += LANES;
        }
        if full < n {
            // Masked-off lanes load 0, which is in the range anyway.
            let v = _mm512_maskz_loadu_ps(mask(n - full), xp.add(full));
            mn = _mm512_min_ps(mn, v);
            mx = _mm512_max_ps(mx, v);
        }
        let (s, inv, zp) = act_params(_mm512_reduce_min_ps(mn), _mm512_reduce_max_ps(mx));
        let (invv, zpv) = (_mm512_set1_ps(inv), _mm512_set1_epi32(zp));
        let (lo, hi) = (_mm512_setzero_si512(), _mm512_set1_epi32(255));
        let q = |v: __m512| {
            let q = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_mul_ps(v, invv)), zpv);
            _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_max_epi32(q, lo), hi))
        };
        let op = out.as_mut_ptr() as *mut u8;
        let mut k = 0;
        while k < full {
            _mm_storeu_si128(op.add(k) as *mut _, q(_mm512_loadu_ps(xp.add(k))));
            k += LANES;
        }
        if full < n {
            let bytes = q(_mm512_maskz_loadu_ps(mask(n - full), xp.add(full)));
            // Up to the end of the last cell (padding bytes are don't-care).
            let keep = out.len() * 4 - full;
            _mm_mask_storeu_epi8(op.add(full) as *mut _, mask(keep), bytes);
        }
        (s, zp)
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn kernel<const M: usize, const NV: usize>(
        kg: usize,
        x: *const u32,
        xs: usize,
        w: *const u32,
        y: *mut f32,
        ys: usize,
        width: usize,
        first: bool,
        dq: Option<&Dequant>,
    ) {
        let mut acc = [[_mm512_setzero_si512(); NV]; M];
        let yi = y as *mut i32;
        if !first {
            for (i, a) in acc.iter_mut().enumerate() {
                for (v, av) in a.iter_mut().enumerate() {
                    let mk = mask(width.saturating_sub(v * LANES));
                    *av = _mm512_maskz_loadu_epi32(mk, yi.add(i * ys + v * LANES));
                }
            }
        }
        if first {
            // The output tile is first touched here and is likely in DRAM (y is rows x out,
            // often bigger than L3, rows 1-9 KB apart so the hardware prefetcher misses
            // them): fetch it now, the k loop hides the latency.
            for i in 0..M {
                for v in 0..NV {
                    _mm_prefetch::<_MM_HINT_ET0>(y.add(i * ys + v * LANES) as *const i8);
                }
            }
        }
        let mut wp = w;
        let mut xp = x;
        for _ in 0..kg {
            let mut wv = [_mm512_setzero_si512(); NV];
            for (v, wvv) in wv.iter_mut().enumerate() {
                *wvv = _mm512_load_si512(wp.add(v * LANES) as *const _);
            }
            for (i, a) in acc.iter_mut().enumerate() {
                let b = _mm512_set1_epi32(*xp.add(i * xs) as i32);
                for (v, av) in a.iter_mut().enumerate() {
                    *av = _mm512_dpbusd_epi32(*av, b, wv[v]);
                }
            }
            wp = wp.add(NV * LANES);
            xp = xp.add(1);
        }
        match dq {
            None => {
                for (i, a) in acc.iter().enumerate() {
                    for (v, av) in a.iter().enumerate() {
                        let mk = mask(width.saturating_sub(v * LANES));
                        _mm512_mask_storeu_epi32(yi.add(i * ys + v * LANES), mk, *av);
                    }
                }
            }
            Some(dq) => {
                for v in 0..NV {
                    let cs = _mm512_loadu_si512(dq.colsum.add(v * LANES) as *const _);
                    let sw = _mm512_loadu_ps(dq.sw.add(v * LANES));
                    let mk = mask(width.saturating_sub(v * LANES));
                    for (i, a) in acc.iter().enumerate() {
                        let zp = _mm512_set1_epi32(*dq.zp.add(i));
                        let d = _mm512_sub_epi32(a[v], _mm512_mullo_epi32(zp, cs));
                        let s = _mm512_mul_ps(_mm512_set1_ps(*dq.sx.add(i)), sw);
                        let out = _mm512_mul_ps(_mm512_cvtepi32_ps(d), s);
                        _mm512_mask_storeu_ps(y.add(i * ys + v * LANES), mk, out);
                    }
                }
            }
        }
    }

    macro_rules! dispatch {
        ($m:expr, $nv:expr, $args:tt; $($mm:literal)*) => {
            match ($m, $nv) {
                $(
                    ($mm, 3) => kernel::<$mm, 3> $args,
                    ($mm, 2) => kernel::<$mm, 2> $args,
                    ($mm, 1) => kernel::<$mm, 1> $args,
                )*
                _ => unreachable!(),
            }
        };
    }

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) unsafe fn micro(
        m: usize,
        nv: usize,
        kg: usize,
        x: *const u32,
        xs: usize,
        w: *const u32,
        y: *mut f32,
        ys: usize,
        width: usize,
        first: bool,
        dq: Option<&Dequant>,
    ) {
        debug_assert!((1..=MR).contains(&m));
        dispatch!(m, nv, (kg, x, xs, w, y, ys, width, first, dq); 1 2 3 4 5 6 7 8)
    }
}
