//! f32 linear layer with its weight packed once at load time: `y = x · Wᵀ` in `f32`.
//!
//! A general GEMM (candle's, through the `gemm` crate) packs the weight matrix on every call;
//! for the short inputs of an interactive request that packing costs more than the arithmetic.
//! Here the weight lives in [`NR`]-column panels (the layout of [`crate::Bf16Linear`], one `f32`
//! per cell) and the rows of `x` are read in place, so a call reads each weight once.
//!
//! Arithmetic: plain `f32` products and sums (fused multiply-adds where the CPU has them), `k` in
//! order within a k block; results agree with any other `f32` GEMM to `f32` rounding
//! (≲ 1e-6 relative to `Σ|x||w|`), not bit for bit. The microkernel is portable Rust, compiled
//! three times (AVX-512F, AVX2 + FMA, baseline) and picked at run time.

use crate::gemm_pack::{AlignedCells, Panels, Plan, SendPtr, LANES, MR, NR};

/// `k` per block: one block of a panel is `KC_MAX * 192` bytes (24 KiB), so it stays in L1
/// while the rows of the task stream past it.
const KC_MAX: usize = 128;

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
        let plan = Plan::new(rows, pn, KC_MAX);
        let yp = SendPtr(y.as_mut_ptr());
        let w = self.w.as_slice();
        plan.run(rows, pn.n_panels, |r0, r1, p0, p1| {
            for p in p0..p1 {
                let (nv, width) = (pn.nv(p), pn.width(p));
                let wpanel = &w[pn.offset(p)..][..pn.groups * nv * LANES];
                let mut k0 = 0;
                while k0 < pn.inn {
                    let kc = plan.kgc.min(pn.inn - k0);
                    let mut i = r0;
                    while i < r1 {
                        let m = MR.min(r1 - i);
                        // SAFETY: rows i .. i+m and columns p*NR .. p*NR+width of y belong to
                        // this task only; x has rows of inn values, the panel kc * nv * 16 cells
                        // from k0 on.
                        unsafe {
                            let yt = yp.get().add(i * pn.out + p * NR);
                            let xt = x.as_ptr().add(i * pn.inn + k0);
                            let wt = wpanel.as_ptr().add(k0 * nv * LANES) as *const f32;
                            micro(m, nv, kc, xt, pn.inn, wt, yt, pn.out, width, k0 == 0);
                        }
                        i += m;
                    }
                    k0 += kc;
                }
            }
        });
    }
}

/// `m <= MR` rows × one panel (`nv` vectors, `width` valid columns), `kc` values of k;
/// `first`: start from zero, else accumulate onto `y`. Picks the widest build this CPU runs.
///
/// # Safety
/// `x` holds `m` rows of stride `xs` with `kc` values each, `w` holds `kc * nv * 16` values,
/// `y` has `m` rows of stride `ys` with `width` writable columns.
#[allow(clippy::too_many_arguments)]
unsafe fn micro(
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
) {
    #[cfg(target_arch = "x86_64")]
    {
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(
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
        ) {
            // 32 vector registers: four rows of three 16-lane accumulators.
            rows::<4, true>(m, nv, kc, x, xs, w, y, ys, width, first)
        }
        #[allow(clippy::too_many_arguments)]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(
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
        ) {
            // 16 vector registers: two rows of six 8-lane accumulators.
            rows::<2, true>(m, nv, kc, x, xs, w, y, ys, width, first)
        }
        if crate::Isa::active() == crate::Isa::Avx512 {
            return avx512(m, nv, kc, x, xs, w, y, ys, width, first);
        }
        if crate::gemm_pack::avx2_available() {
            return avx2(m, nv, kc, x, xs, w, y, ys, width, first);
        }
    }
    rows::<1, false>(m, nv, kc, x, xs, w, y, ys, width, first)
}

/// The `m` rows in groups of `M` (the rest one by one), each group's accumulators kept in registers while
/// the panel block is read once per group.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
unsafe fn rows<const M: usize, const FMA: bool>(
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
) {
    let mut i = 0;
    while i < m {
        let (x, y) = (x.add(i * xs), y.add(i * ys));
        match (m - i >= M, nv) {
            (true, 3) => tile::<M, 3, FMA>(kc, x, xs, w, y, ys, width, first),
            (true, 2) => tile::<M, 2, FMA>(kc, x, xs, w, y, ys, width, first),
            (true, _) => tile::<M, 1, FMA>(kc, x, xs, w, y, ys, width, first),
            (false, 3) => tile::<1, 3, FMA>(kc, x, xs, w, y, ys, width, first),
            (false, 2) => tile::<1, 2, FMA>(kc, x, xs, w, y, ys, width, first),
            (false, _) => tile::<1, 1, FMA>(kc, x, xs, w, y, ys, width, first),
        }
        i += if m - i >= M { M } else { 1 };
    }
}

/// `M` rows × `NV * 16` columns over `kc` values of k (autovectorised over the columns);
/// `FMA`: fused multiply-adds.
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
#[inline(always)]
unsafe fn tile<const M: usize, const NV: usize, const FMA: bool>(
    kc: usize,
    x: *const f32,
    xs: usize,
    w: *const f32,
    y: *mut f32,
    ys: usize,
    width: usize,
    first: bool,
) {
    let mut acc = [[0f32; NR]; M];
    if !first {
        for (r, a) in acc.iter_mut().enumerate() {
            for (c, v) in a.iter_mut().enumerate().take(width) {
                *v = *y.add(r * ys + c);
            }
        }
    }
    for k in 0..kc {
        let wk = w.add(k * NV * LANES);
        let mut xk = [0f32; M];
        for (r, v) in xk.iter_mut().enumerate() {
            *v = *x.add(r * xs + k);
        }
        for c in 0..NV * LANES {
            let wc = *wk.add(c);
            for r in 0..M {
                // `mul_add` is one instruction where the build has FMA, a slow call otherwise.
                acc[r][c] = if FMA { xk[r].mul_add(wc, acc[r][c]) } else { acc[r][c] + xk[r] * wc };
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        for (c, &v) in a.iter().enumerate().take(width) {
            *y.add(r * ys + c) = v;
        }
    }
}
