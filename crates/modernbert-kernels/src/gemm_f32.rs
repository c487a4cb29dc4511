//! f32 linear layer with its weight packed once at load time: `y = x · Wᵀ` in `f32`.
//!
//! A general GEMM (candle's, through the `gemm` crate) packs the weight matrix on every call;
//! for the short inputs of an interactive request that packing costs more than the arithmetic.
//! Here the weight lives in [`NR`]-column panels (the layout of [`crate::Bf16Linear`], one `f32`
//! per cell) and the rows of `x` are read in place, so a call reads each weight once.
//!
//! Arithmetic: plain `f32` products and sums (fused multiply-adds where the CPU has them), `k` in
//! order within a k block; results agree with any other `f32` GEMM to `f32` rounding
//! (≲ 1e-6 relative to `Σ|x||w|`), not bit for bit. Below 64 rows our microkernel runs (AVX2 +
//! FMA intrinsics, or portable Rust compiled for AVX-512F or the baseline, picked at run time);
//! from 64 rows the `gemm` crate's blocked kernels, reading the packed panels in place.

use crate::gemm_pack::{AlignedCells, Panels, SendPtr, LANES, MIN_PARALLEL_MACS, NR};

/// `k` per block: one block of a panel is `KC_MAX * 192` bytes (24 KiB), so it stays in L1
/// while the rows of the task stream past it.
const KC_MAX: usize = 128;

/// From this many rows on, the `gemm` crate's blocked kernels (per panel) beat the microkernel
/// here, and its packing of the panel is paid back.
const GEMM_CRATE_ROWS: usize = 64;
/// Rows per `gemm` crate call.
const GEMM_CRATE_BLOCK: usize = 512;

/// A linear layer's weight packed once for the f32 GEMM.
#[derive(Clone, Debug)]
pub struct F32Linear {
    pn: Panels,
    /// Cells: the `f32` bits of `W[o, k]`.
    w: AlignedCells,
}

impl F32Linear {
    /// Packs `weight` (`[out_features, in_features]`, row-major, PyTorch's `nn.Linear` layout).
    pub fn new(weight: &[f32], out_features: usize, in_features: usize) -> Self {
        assert_eq!(weight.len(), out_features * in_features, "weight is not [{out_features}, {in_features}]");
        let pn = Panels::new(out_features, in_features, 1);
        let w = pn.pack(|o, k| weight[o * in_features + k].to_bits());
        F32Linear { pn, w }
    }

    pub fn out_features(&self) -> usize {
        self.pn.out
    }

    pub fn in_features(&self) -> usize {
        self.pn.inn
    }

    /// `y = x · Wᵀ` for `rows` rows of input (`[rows, in_features]`); `y`
    /// (`[rows, out_features]`) is overwritten.
    pub fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        let pn = &self.pn;
        assert_eq!(x.len(), rows * pn.inn, "x is not [{rows}, {}]", pn.inn);
        assert_eq!(y.len(), rows * pn.out, "y is not [{rows}, {}]", pn.out);
        if rows == 0 {
            return;
        }
        if rows >= GEMM_CRATE_ROWS {
            return self.forward_gemm_crate(x, rows, y);
        }
        // Few rows: every weight is read from memory once. The panels are split over the threads
        // (never the rows, which would read the weights once per row block); each k block of a
        // panel (24 KiB) stays in L1 while all the rows pass over it.
        let threads = rayon::current_num_threads();
        let parallel = threads > 1 && rows * pn.out * pn.inn >= MIN_PARALLEL_MACS;
        let tasks = if parallel { (3 * threads).min(pn.n_panels) } else { 1 };
        let per_task = pn.n_panels.div_ceil(tasks);
        let yp = SendPtr(y.as_mut_ptr());
        let w = self.w.as_slice();
        let task = |t: usize| {
            for p in t * per_task..((t + 1) * per_task).min(pn.n_panels) {
                let (nv, width) = (pn.nv(p), pn.width(p));
                let mut k0 = 0;
                while k0 < pn.inn {
                    let kc = KC_MAX.min(pn.inn - k0);
                    // SAFETY: columns p*NR .. p*NR+width of y belong to this task only; x has
                    // `rows` rows of inn values, the panel kc * nv * 16 values from k0 on.
                    unsafe {
                        let yt = yp.get().add(p * NR);
                        let wt = (w.as_ptr().add(pn.offset(p)) as *const f32).add(k0 * nv * LANES);
                        micro(Block {
                            m: rows,
                            nv,
                            kc,
                            x: x.as_ptr().add(k0),
                            xs: pn.inn,
                            w: wt,
                            y: yt,
                            ys: pn.out,
                            width,
                            first: k0 == 0,
                        });
                    }
                    k0 += kc;
                }
            }
        };
        if tasks > 1 {
            use rayon::prelude::*;
            (0..tasks).into_par_iter().for_each(task);
        } else {
            task(0);
        }
    }

    /// [`F32Linear::forward`] through the `gemm` crate, one call per (block of rows, panel):
    /// panel `p` is `Wᵀ[:, p*NR ..]` stored `[in, nv*16]` row-major, a strided matrix the crate
    /// reads as is.
    fn forward_gemm_crate(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        use rayon::prelude::*;
        let pn = &self.pn;
        let w = self.w.as_slice();
        let yp = SendPtr(y.as_mut_ptr());
        // One single-threaded call per (block of rows, panel), spread over the threads; a block
        // of x (1.5 MiB at 768 features) stays in cache while the panels pass over it.
        let blocks = rows.div_ceil(GEMM_CRATE_BLOCK);
        (0..blocks * pn.n_panels).into_par_iter().for_each(|t| {
            let (b, p) = (t / pn.n_panels, t % pn.n_panels);
            let (r0, r1) = (b * GEMM_CRATE_BLOCK, ((b + 1) * GEMM_CRATE_BLOCK).min(rows));
            let (nv, width) = (pn.nv(p), pn.width(p));
            // SAFETY: x is [rows, inn] row-major; the panel holds inn rows of nv*16 values (the
            // first `width` used); y is [rows, out] row-major, columns p*NR .. p*NR+width of
            // rows r0 .. r1 belong to this task only.
            unsafe {
                gemm::gemm(
                    r1 - r0,
                    width,
                    pn.inn,
                    yp.get().add(r0 * pn.out + p * NR),
                    1,
                    pn.out as isize,
                    false,
                    x.as_ptr().add(r0 * pn.inn),
                    1,
                    pn.inn as isize,
                    w.as_ptr().add(pn.offset(p)) as *const f32,
                    1,
                    (nv * LANES) as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                )
            }
        });
    }
}

/// One microkernel call: `m` rows × one panel (`nv` vectors, `width` valid columns), `kc` values
/// of k; `first`: start from zero, else accumulate onto `y`. `x` holds `m` rows of stride `xs`
/// with `kc` values each, `w` holds `kc * nv * 16` values, `y` has `m` rows of stride `ys` with
/// `width` writable columns.
#[derive(Clone, Copy)]
struct Block {
    m: usize,
    nv: usize,
    kc: usize,
    x: *const f32,
    xs: usize,
    w: *const f32,
    y: *mut f32,
    ys: usize,
    width: usize,
    first: bool,
}

/// Runs `b` with the widest build this CPU runs.
///
/// # Safety
/// The pointers of `b` cover what [`Block`] says.
unsafe fn micro(b: Block) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(b: Block) {
            // 32 registers of 16 lanes: 4 rows × 48 columns of accumulators, 3 for the
            // weights, 4 for the broadcasts.
            rows::<4, 48, 16, true>(b)
        }
        if crate::Isa::active() == crate::Isa::Avx512 {
            return avx512(b);
        }
        if crate::gemm_pack::avx2_available() {
            return avx2::micro(b);
        }
    }
    rows::<2, 16, 8, false>(b)
}

/// The panel in passes of `W` columns (of `V` where fewer than `W` remain), each pass over the
/// `m` rows in groups of `M` (the rest one by one), the group's accumulators in registers
/// while the pass's slice of the panel block is read once per group.
#[inline(always)]
unsafe fn rows<const M: usize, const W: usize, const V: usize, const FMA: bool>(b: Block) {
    let Block { m, nv, kc, x, xs, w, y, ys, width, first } = b;
    // Panel rows are nv * 16 wide, zero past `width`: a pass may run into the padding.
    let ws = nv * LANES;
    let mut c0 = 0;
    while c0 < width {
        let wide = ws - c0 >= W;
        let valid = (width - c0).min(if wide { W } else { V });
        let (w, y) = (w.add(c0), y.add(c0));
        let mut i = 0;
        while i < m {
            let (x, y) = (x.add(i * xs), y.add(i * ys));
            let group = m - i >= M;
            match (group, wide) {
                (true, true) => tile::<M, W, FMA>(kc, x, xs, w, ws, y, ys, valid, first),
                (true, false) => tile::<M, V, FMA>(kc, x, xs, w, ws, y, ys, valid, first),
                (false, true) => tile::<1, W, FMA>(kc, x, xs, w, ws, y, ys, valid, first),
                (false, false) => tile::<1, V, FMA>(kc, x, xs, w, ws, y, ys, valid, first),
            }
            i += if group { M } else { 1 };
        }
        c0 += if wide { W } else { V };
    }
}

/// `M` rows × `W` columns (weight rows `ws` apart) over `kc` values of k, autovectorised over
/// the columns; `valid` columns are read and written. `FMA`: fused multiply-adds.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile<const M: usize, const W: usize, const FMA: bool>(
    kc: usize,
    x: *const f32,
    xs: usize,
    w: *const f32,
    ws: usize,
    y: *mut f32,
    ys: usize,
    valid: usize,
    first: bool,
) {
    let mut acc = [[0f32; W]; M];
    if !first {
        for (r, a) in acc.iter_mut().enumerate() {
            for (c, v) in a.iter_mut().enumerate().take(valid) {
                *v = *y.add(r * ys + c);
            }
        }
    }
    for k in 0..kc {
        let wk = w.add(k * ws);
        let mut xk = [0f32; M];
        for (r, v) in xk.iter_mut().enumerate() {
            *v = *x.add(r * xs + k);
        }
        for c in 0..W {
            let wc = *wk.add(c);
            for r in 0..M {
                // `mul_add` is one instruction where the build has FMA, a slow call otherwise.
                acc[r][c] = if FMA { xk[r].mul_add(wc, acc[r][c]) } else { acc[r][c] + xk[r] * wc };
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (c, &v) in a.iter().enumerate().take(valid) {
            *y.add(r * ys + c) = v;
        }
    }
}

/// The AVX2 + FMA microkernel in intrinsics (the autovectorised tile spills with 16 registers):
/// 2 rows × a whole panel (up to 48 columns: 12 accumulator registers), so the panel block is
/// read in order, once per pair of rows.
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{Block, LANES};
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn micro(b: Block) {
        let Block { m, nv, kc, x, xs, w, y, ys, width, first } = b;
        let ws = nv * LANES;
        let mut i = 0;
        while i < m {
            let two = m - i >= 2;
            let (xt, yt) = (x.add(i * xs), y.add(i * ys));
            match (two, nv) {
                (true, 3) => tile::<2, 6>(kc, xt, xs, w, ws, yt, ys, width, first),
                (true, 2) => tile::<2, 4>(kc, xt, xs, w, ws, yt, ys, width, first),
                (true, _) => tile::<2, 2>(kc, xt, xs, w, ws, yt, ys, width, first),
                (false, 3) => tile::<1, 6>(kc, xt, xs, w, ws, yt, ys, width, first),
                (false, 2) => tile::<1, 4>(kc, xt, xs, w, ws, yt, ys, width, first),
                (false, _) => tile::<1, 2>(kc, xt, xs, w, ws, yt, ys, width, first),
            }
            i += if two { 2 } else { 1 };
        }
    }

    /// `M` rows × `V * 8` columns (weight rows `ws` apart, zero-padded past `valid`).
    #[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile<const M: usize, const V: usize>(
        kc: usize,
        x: *const f32,
        xs: usize,
        w: *const f32,
        ws: usize,
        y: *mut f32,
        ys: usize,
        valid: usize,
        first: bool,
    ) {
        let mut acc = [[_mm256_setzero_ps(); V]; M];
        if !first {
            for (r, a) in acc.iter_mut().enumerate() {
                let mut row = [0f32; 48];
                for (c, v) in row.iter_mut().enumerate().take(valid) {
                    *v = *y.add(r * ys + c);
                }
                for (v, av) in a.iter_mut().enumerate() {
                    *av = _mm256_loadu_ps(row.as_ptr().add(8 * v));
                }
            }
        }
        for k in 0..kc {
            let wk = w.add(k * ws);
            let mut b = [_mm256_setzero_ps(); M];
            for (r, bv) in b.iter_mut().enumerate() {
                *bv = _mm256_broadcast_ss(&*x.add(r * xs + k));
            }
            for v in 0..V {
                let wv = _mm256_loadu_ps(wk.add(8 * v));
                for r in 0..M {
                    acc[r][v] = _mm256_fmadd_ps(b[r], wv, acc[r][v]);
                }
            }
        }
        for (r, a) in acc.iter().enumerate() {
            let mut row = [0f32; 48];
            for (v, av) in a.iter().enumerate() {
                _mm256_storeu_ps(row.as_mut_ptr().add(8 * v), *av);
            }
            for (c, &v) in row.iter().enumerate().take(valid) {
                *y.add(r * ys + c) = v;
            }
        }
    }
}
