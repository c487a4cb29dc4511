//! bf16 linear layer: `y = x · Wᵀ` with bf16 weights and activations, `f32` accumulation
//! (AVX512-BF16 `vdpbf16ps`), for any shape.
//!
//! Arithmetic: `W` and `x` are rounded to bf16 (round to nearest even, like
//! `tensor.to(torch.bfloat16)`); every product of two bf16 values is exact in `f32` and the
//! products are summed in `f32`. The summation order differs between the AVX-512 path
//! (pairs of `k` per `vdpbf16ps`, k blocks of up to 192 pairs) and the portable path, so
//! results agree to `f32` rounding (≲ 1e-6 relative to `Σ|x||w|`), not bit for bit.
//! `vdpbf16ps` treats bf16 subnormals (`|v| < 1.2e-38`) as zero.

use crate::gemm_pack::{
    f32_to_bf16_bits, packed_stride, with_scratch, AlignedCells, Panels, Plan, SendPtr, LANES, MR, NR,
};
use crate::matmul::Mat;

/// Pairs of `k` per k block: one block of a panel is `KGC_MAX * 192` bytes (36 KiB of Zen 5's
/// 48 KiB L1D), so it stays in L1 while the row block streams past it.
const KGC_MAX: usize = 192;

/// Which code path a [`Bf16Linear`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bf16Path {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Bf16Path {
    pub(crate) fn active() -> Bf16Path {
        #[cfg(target_arch = "x86_64")]
        {
            if crate::Isa::active() != crate::Isa::Portable && bf16_native() {
                return Bf16Path::Avx512;
            }
        }
        Bf16Path::Portable
    }
    #[cfg(test)]
    pub(crate) fn available() -> Vec<Bf16Path> {
        let mut v = vec![Bf16Path::Portable];
        #[cfg(target_arch = "x86_64")]
        if bf16_native() {
            v.push(Bf16Path::Avx512);
        }
        v
    }
}

/// Whether this CPU has the AVX512-BF16 kernels (`avx512f`, `avx512bw`, `avx512bf16`).
/// Without them [`Bf16Linear`] runs a portable path with the same arithmetic.
pub fn bf16_native() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Weights packed once at load time for the bf16 GEMM.
#[derive(Clone, Debug)]
pub struct Bf16Linear {
    pub(crate) pn: Panels,
    /// Cells: two bf16 (`k = 2g` low half, `2g + 1` high half) of one output column.
    pub(crate) w: AlignedCells,
}

impl Bf16Linear {
    /// Packs `weight` (`[out_features, in_features]`, row-major, PyTorch's `nn.Linear`
    /// layout), rounding it to bf16 (round to nearest even, like torch).
    pub fn new(weight: &[f32], out_features: usize, in_features: usize) -> Self {
        assert_eq!(weight.len(), out_features * in_features, "weight is not [{out_features}, {in_features}]");
        Self::from_mat(Mat::rows(weight, in_features), out_features, in_features)
    }

    /// Packs the weight `W[o, k] = weight(o, k)` stored in any order (the training GEMMs pack
    /// transposed operands this way), rounded to bf16.
    pub fn from_mat(weight: Mat, out_features: usize, in_features: usize) -> Self {
        Self::from_mat_with(Bf16Path::active(), weight, out_features, in_features)
    }

    pub(crate) fn from_mat_with(path: Bf16Path, weight: Mat, out_features: usize, in_features: usize) -> Self {
        let pn = Panels::new(out_features, in_features, 2);
        weight.check(out_features, in_features);
        let inn = in_features;
        #[cfg(target_arch = "x86_64")]
        if path == Bf16Path::Avx512 && (weight.cs == 1 || weight.rs == 1) {
            let mut w = AlignedCells::zeroed(pn.cells());
            // SAFETY: AVX512-BF16 is present (the path), `check` keeps reads in `weight`.
            unsafe { avx512::pack_weight(weight, &pn, w.as_mut_slice()) };
            return Bf16Linear { pn, w };
        }
        let _ = path;
        let w = pn.pack(|o, g| {
            let k = 2 * g;
            let lo = f32_to_bf16_bits(weight.at(o, k)) as u32;
            let hi = if k + 1 < inn { f32_to_bf16_bits(weight.at(o, k + 1)) as u32 } else { 0 };
            lo | hi << 16
        });
        Bf16Linear { pn, w }
    }

    pub fn out_features(&self) -> usize {
        self.pn.out
    }

    pub fn in_features(&self) -> usize {
        self.pn.inn
    }

    /// The stored (bf16-rounded) weight `W[o, k]` as `f32`.
    pub fn weight(&self, o: usize, k: usize) -> f32 {
        assert!(o < self.pn.out && k < self.pn.inn);
        let (p, c) = (o / NR, o % NR);
        let cell = self.w.as_slice()[self.pn.offset(p) + (k / 2) * self.pn.nv(p) * LANES + c];
        f32::from_bits(if k.is_multiple_of(2) { cell << 16 } else { cell & 0xFFFF_0000 })
    }

    /// `y = x · Wᵀ` for `rows` rows of `f32` input (`[rows, in_features]`, rounded to bf16 on
    /// the fly); `y` (`[rows, out_features]`) is overwritten.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        assert_eq!(x.len(), rows * self.pn.inn, "x is not [{rows}, {}]", self.pn.inn);
        self.forward_with(Bf16Path::active(), Mat::rows(x, self.pn.inn), rows, y);
    }

    /// [`Bf16Linear::forward`] with `x` (`[rows, in_features]`) stored in any order.
    pub fn forward_mat(&self, x: Mat, rows: usize, y: &mut [f32]) {
        self.forward_with(Bf16Path::active(), x, rows, y);
    }

    /// Slow scalar version of [`Bf16Linear::forward`]: products of the bf16-rounded operands
    /// summed in `f64`, then rounded to `f32` (what the fast paths approximate to `f32`
    /// rounding).
    pub fn forward_reference(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let (out, inn) = (self.pn.out, self.pn.inn);
        assert_eq!(x.len(), rows * inn);
        assert_eq!(y.len(), rows * out);
        let wt: Vec<f32> = (0..out * inn).map(|i| self.weight(i / inn, i % inn)).collect();
        for r in 0..rows {
            let xr: Vec<f32> = x[r * inn..][..inn].iter().map(|&v| crate::gemm_pack::round_to_bf16(v)).collect();
            for o in 0..out {
                let wr = &wt[o * inn..][..inn];
                let s: f64 = xr.iter().zip(wr).map(|(&a, &b)| a as f64 * b as f64).sum();
                y[r * out + o] = s as f32;
            }
        }
    }

    pub(crate) fn forward_with(&self, path: Bf16Path, x: Mat, rows: usize, y: &mut [f32]) {
        let pn = &self.pn;
        x.check(rows, pn.inn);
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
            with_scratch(nr * xs, |xb| {
                pack_activations(path, x, r0, r1, pn.inn, xb, xs);
                for p in p0..p1 {
                    let (nv, width) = (pn.nv(p), pn.width(p));
                    let wpanel = &w[pn.offset(p)..][..pn.groups * nv * LANES];
                    let mut g0 = 0;
                    while g0 < pn.groups {
                        let kg = plan.kgc.min(pn.groups - g0);
                        let mut i = 0;
                        while i < nr {
                            let m = MR.min(nr - i);
                            // SAFETY: rows r0+i .. r0+i+m and columns p*NR .. p*NR+width of
                            // y belong to this task only; xb holds nr rows of xs cells.
                            unsafe {
                                let yt = yp.get().add((r0 + i) * pn.out + p * NR);
                                let xt = xb.as_ptr().add(i * xs + g0);
                                let wt = wpanel.as_ptr().add(g0 * nv * LANES);
                                micro(path, m, nv, kg, xt, xs, wt, yt, pn.out, width, g0 == 0);
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

/// Rounds rows `r0..r1` of `x` (`[_, inn]`, any storage order) to bf16 pairs, as
/// [`pack_rows`] does: row `r` goes to `out[(r - r0) * xs ..]`.
fn pack_activations(path: Bf16Path, x: Mat, r0: usize, r1: usize, inn: usize, out: &mut [u32], xs: usize) {
    if x.cs == 1 && x.rs == inn {
        return pack_rows(path, &x.data[r0 * inn..r1 * inn], inn, out, xs);
    }
    #[cfg(target_arch = "x86_64")]
    if path == Bf16Path::Avx512 && x.rs == 1 {
        // SAFETY: AVX512-BF16 is present (the path); the caller checked `x` for `r1` rows.
        return unsafe { avx512::pack_transposed(x, r0, r1, inn, out, xs) };
    }
    for (r, or) in (r0..r1).zip(out.chunks_exact_mut(xs)) {
        for (g, c) in or[..inn.div_ceil(2)].iter_mut().enumerate() {
            let lo = f32_to_bf16_bits(x.at(r, 2 * g)) as u32;
            let hi = if 2 * g + 1 < inn { f32_to_bf16_bits(x.at(r, 2 * g + 1)) as u32 } else { 0 };
            *c = lo | hi << 16;
        }
    }
}

/// Rounds rows of `x` (`inn` wide) to bf16 pairs: row `r` goes to `out[r * xs ..]`, cell `g`
/// = `x[2g] | x[2g+1] << 16`, zero past the end of the row.
pub(crate) fn pack_rows(path: Bf16Path, x: &[f32], inn: usize, out: &mut [u32], xs: usize) {
    let groups = inn.div_ceil(2);
    for (xr, or) in x.chunks_exact(inn).zip(out.chunks_exact_mut(xs)) {
        match path {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: the Avx512 path is only chosen when bf16_native() holds.
            Bf16Path::Avx512 => unsafe { avx512::pack_row(xr, &mut or[..groups]) },
            Bf16Path::Portable => {
                for (g, c) in or[..groups].iter_mut().enumerate() {
                    let lo = f32_to_bf16_bits(xr[2 * g]) as u32;
                    let hi = xr.get(2 * g + 1).map_or(0, |&v| f32_to_bf16_bits(v) as u32);
                    *c = lo | hi << 16;
                }
            }
        }
    }
}

/// One microkernel call: `m <= MR` rows × one panel (`nv` vectors, `width` valid columns),
/// `kg` pairs of k. `first`: start from zero, else accumulate onto `y`.
///
/// # Safety
/// `x` holds `m` rows of stride `xs` with `kg` cells each, `w` holds `kg * nv * 16` cells,
/// `y` has `m` rows of stride `ys` with `width` writable columns.
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn micro(
    path: Bf16Path,
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
) {
    match path {
        #[cfg(target_arch = "x86_64")]
        Bf16Path::Avx512 => avx512::micro(m, nv, kg, x, xs, w, y, ys, width, first),
        Bf16Path::Portable => portable_micro(m, nv, kg, x, xs, w, y, ys, width, first),
    }
}

/// Plain-Rust microkernel (autovectorised over the 48 columns).
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
        ) {
            portable_micro_body(m, nv, kg, x, xs, w, y, ys, width, first)
        }
        if crate::gemm_pack::avx2_available() {
            return avx2(m, nv, kg, x, xs, w, y, ys, width, first);
        }
    }
    portable_micro_body(m, nv, kg, x, xs, w, y, ys, width, first)
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
) {
    match nv {
        3 => portable_rows::<3>(m, kg, x, xs, w, y, ys, width, first),
        2 => portable_rows::<2>(m, kg, x, xs, w, y, ys, width, first),
        _ => portable_rows::<1>(m, kg, x, xs, w, y, ys, width, first),
    }
}

/// One row at a time, its `NV * 16` accumulators in registers, the panel block re-read from
/// L1 for every row (the bf16 → f32 widening is a shift or a mask).
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
) {
    for i in 0..m {
        let mut a = [0f32; NR];
        let yr = y.add(i * ys);
        if !first {
            for (c, v) in a.iter_mut().enumerate().take(width) {
                *v = *yr.add(c);
            }
        }
        let xr = x.add(i * xs);
        for g in 0..kg {
            let xc = *xr.add(g);
            let (xl, xh) = (f32::from_bits(xc << 16), f32::from_bits(xc & 0xFFFF_0000));
            let wg = w.add(g * NV * LANES);
            for (c, v) in a.iter_mut().enumerate().take(NV * LANES) {
                let wc = *wg.add(c);
                // Products of bf16 values are exact in f32, so this is what an FMA gives.
                *v += xl * f32::from_bits(wc << 16);
                *v += xh * f32::from_bits(wc & 0xFFFF_0000);
            }
        }
        for (c, &v) in a.iter().enumerate().take(width) {
            *yr.add(c) = v;
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx512 {
    use super::{Mat, LANES, MR};
    use crate::x86::{lanes, transpose16};
    use std::arch::x86_64::*;

    /// `v` rounded to bf16 in the high half of each lane (round to nearest even, NaN → 0x7FC0),
    /// exactly like [`crate::gemm_pack::f32_to_bf16_bits`]; the low half is garbage.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn round(v: __m512) -> __m512i {
        let b = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        let r = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb);
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
        _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0_0000))
    }

    /// 16 cells from two vectors of values: `lo` in the low half, `hi` in the high half.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn cells(lo: __m512, hi: __m512) -> __m512i {
        let keep_high = _mm512_set1_epi32(0xFFFF_0000u32 as i32);
        _mm512_or_si512(_mm512_srli_epi32::<16>(round(lo)), _mm512_and_si512(round(hi), keep_high))
    }

    /// 16 cells from `n ≤ 32` consecutive values at `x` (pairs; zeros past `n`).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(crate) unsafe fn pair_cells(x: *const f32, n: usize) -> __m512i {
        // High halves of 32 dwords (a ++ b) in order: word indices 1, 3, .., 63.
        let idx = _mm512_set_epi16(
            63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11,
            9, 7, 5, 3, 1,
        );
        let a = round(_mm512_maskz_loadu_ps(lanes(n), x));
        let b = round(_mm512_maskz_loadu_ps(lanes(n.saturating_sub(16)), x.wrapping_add(16)));
        _mm512_permutex2var_epi16(a, idx, b)
    }

    /// Packs `W[o, k] = w.at(o, k)` into `pn`'s panels (`out`: `pn.cells()` long) when `W` is
    /// stored row-major (`w.cs == 1`: 16 rows × 16 pairs at a time, transposed in registers) or
    /// column-major (`w.rs == 1`: 16 consecutive `o` are consecutive values).
    ///
    /// # Safety
    /// AVX512-BF16 present; `w` checked for `pn.out × pn.inn`.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pack_weight(w: Mat, pn: &super::Panels, out: &mut [u32]) {
        let (base, outp) = (w.data.as_ptr(), out.as_mut_ptr());
        for p in 0..pn.n_panels {
            let (nv, width, off) = (pn.nv(p), pn.width(p), pn.offset(p));
            for v in 0..nv {
                let o0 = p * super::NR + v * LANES;
                let no = (width - v * LANES).min(LANES);
                let dst = |g: usize| outp.add(off + g * nv * LANES + v * LANES) as *mut __m512i;
                if w.rs == 1 {
                    for g in 0..pn.groups {
                        let (k0, mk) = (2 * g, lanes(no));
                        let lo = _mm512_maskz_loadu_ps(mk, base.add(o0 + k0 * w.cs));
                        let hi = if k0 + 1 < pn.inn {
                            _mm512_maskz_loadu_ps(mk, base.add(o0 + (k0 + 1) * w.cs))
                        } else {
                            _mm512_setzero_ps()
                        };
                        _mm512_store_si512(dst(g), cells(lo, hi));
                    }
                    continue;
                }
                let mut g0 = 0;
                while g0 < pn.groups {
                    let ng = (pn.groups - g0).min(LANES);
                    let mut m = [_mm512_setzero_ps(); 16];
                    for (i, row) in m.iter_mut().enumerate().take(no) {
                        let c = pair_cells(base.add((o0 + i) * w.rs + 2 * g0), (pn.inn - 2 * g0).min(32));
                        *row = _mm512_castsi512_ps(c);
                    }
                    transpose16(&mut m);
                    for (j, col) in m.iter().enumerate().take(ng) {
                        _mm512_store_si512(dst(g0 + j), _mm512_castps_si512(*col));
                    }
                    g0 += LANES;
                }
            }
        }
    }

    /// [`super::pack_rows`] for rows `r0..r1` of an `x` stored transposed (`x.rs == 1`:
    /// `x[r, k] = data[r + k * cs]`): 16 rows × 16 pairs at a time, loaded along `r` and
    /// transposed in registers.
    ///
    /// # Safety
    /// AVX512-BF16 present; `x` checked for `r1 × inn`; `out` holds `(r1 - r0) * xs` cells.
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pack_transposed(x: Mat, r0: usize, r1: usize, inn: usize, out: &mut [u32], xs: usize) {
        debug_assert!(out.len() >= (r1 - r0) * xs);
        let base = x.data.as_ptr();
        let groups = inn.div_ceil(2);
        let mut r = r0;
        while r < r1 {
            let (nr, mk) = ((r1 - r).min(LANES), lanes(r1 - r));
            let mut g0 = 0;
            while g0 < groups {
                let ng = (groups - g0).min(LANES);
                let mut m = [_mm512_setzero_ps(); 16];
                for (i, col) in m.iter_mut().enumerate().take(ng) {
                    let k0 = 2 * (g0 + i);
                    let lo = _mm512_maskz_loadu_ps(mk, base.add(r + k0 * x.cs));
                    let hi = if k0 + 1 < inn {
                        _mm512_maskz_loadu_ps(mk, base.add(r + (k0 + 1) * x.cs))
                    } else {
                        _mm512_setzero_ps()
                    };
                    *col = _mm512_castsi512_ps(cells(lo, hi));
                }
                transpose16(&mut m);
                for (c, row) in m.iter().enumerate().take(nr) {
                    let dst = out.as_mut_ptr().add((r - r0 + c) * xs + g0) as *mut _;
                    _mm512_mask_storeu_epi32(dst, lanes(ng), _mm512_castps_si512(*row));
                }
                g0 += LANES;
            }
            r += LANES;
        }
    }

    /// Rounds one row to bf16 pairs (`out.len() == ceil(x.len() / 2)`), round to nearest
    /// even with NaN → 0x7FC0, exactly like [`crate::gemm_pack::f32_to_bf16_bits`].
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn pack_row(x: &[f32], out: &mut [u32]) {
        let n = x.len();
        let (xp, op) = (x.as_ptr(), out.as_mut_ptr());
        let mut k = 0;
        while k + 32 <= n {
            _mm512_storeu_si512(op.add(k / 2) as *mut _, pair_cells(xp.add(k), 32));
            k += 32;
        }
        if k < n {
            let rem = n - k;
            _mm512_mask_storeu_epi32(op.add(k / 2) as *mut _, lanes(rem.div_ceil(2)), pair_cells(xp.add(k), rem));
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    unsafe fn kernel<const M: usize, const NV: usize>(
        kg: usize,
        x: *const u32,
        xs: usize,
        w: *const u32,
        y: *mut f32,
        ys: usize,
        width: usize,
        first: bool,
    ) {
        let mut acc = [[_mm512_setzero_ps(); NV]; M];
        if !first {
            for (i, a) in acc.iter_mut().enumerate() {
                for (v, av) in a.iter_mut().enumerate() {
                    let mk = lanes(width.saturating_sub(v * LANES));
                    *av = _mm512_maskz_loadu_ps(mk, y.add(i * ys + v * LANES));
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
                let b: __m512bh = std::mem::transmute(_mm512_set1_epi32(*xp.add(i * xs) as i32));
                for (v, av) in a.iter_mut().enumerate() {
                    *av = _mm512_dpbf16_ps(*av, b, std::mem::transmute::<__m512i, __m512bh>(wv[v]));
                }
            }
            wp = wp.add(NV * LANES);
            xp = xp.add(1);
        }
        for (i, a) in acc.iter().enumerate() {
            for (v, av) in a.iter().enumerate() {
                let mk = lanes(width.saturating_sub(v * LANES));
                _mm512_mask_storeu_ps(y.add(i * ys + v * LANES), mk, *av);
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
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
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
    ) {
        debug_assert!((1..=MR).contains(&m));
        dispatch!(m, nv, (kg, x, xs, w, y, ys, width, first); 1 2 3 4 5 6 7 8)
    }
}
