//! Shared machinery of the reduced-precision linear layers ([`crate::Bf16Linear`],
//! [`crate::Int8Linear`]): the packed weight layout, the blocking plan, the rayon task split
//! and per-thread scratch buffers.
//!
//! # Layout
//!
//! Both GEMMs compute `y[rows, out] = x[rows, in] · Wᵀ` with a register-blocked microkernel of
//! up to [`MR`] rows × [`NR`] output columns (3 vectors of 16 `f32`/`i32` lanes). The reduction
//! axis is cut in *groups* of `GROUP` consecutive `k` (2 for bf16, `vdpbf16ps`; 4 for int8,
//! `vpdpbusd`), and one group of one output column is a 32-bit *cell*.
//!
//! The weights are packed once into column *panels* of [`NR`] output columns: panel `p` holds
//! columns `p*NR ..` for every group, group-major, so one group of a panel is 3 (fewer in a
//! narrow last panel) consecutive 64-byte vectors. Padding columns and padding `k` are zero.
//!
//! The activations are packed per task (row block), one row of cells per token, rows
//! 64-byte aligned; the microkernel broadcasts one cell per row and group.

use std::cell::RefCell;

/// `f32`/`i32` lanes per 512-bit vector.
pub(crate) const LANES: usize = 16;
/// Output columns per packed weight panel (3 vectors).
pub(crate) const NR: usize = 3 * LANES;
/// Rows per microkernel call.
pub(crate) const MR: usize = 8;
/// Upper bound on the rows of one task (rows of x packed together, reused for every panel).
const MC_MAX: usize = 64;
/// Below this many multiply-adds a GEMM runs on the calling thread.
pub(crate) const MIN_PARALLEL_MACS: usize = 1 << 20;

/// Geometry of a weight matrix packed into panels of [`NR`] columns.
#[derive(Clone, Debug)]
pub(crate) struct Panels {
    pub out: usize,
    pub inn: usize,
    /// Cells along `k`: `ceil(inn / group)`.
    pub groups: usize,
    pub n_panels: usize,
}

impl Panels {
    /// `group`: `k` per cell, 2 (bf16) or 4 (int8).
    pub fn new(out: usize, inn: usize, group: usize) -> Self {
        assert!(out > 0 && inn > 0, "empty linear layer ({out} x {inn})");
        Panels { out, inn, groups: inn.div_ceil(group), n_panels: out.div_ceil(NR) }
    }
    /// Valid output columns of panel `p`.
    pub fn width(&self, p: usize) -> usize {
        (self.out - p * NR).min(NR)
    }
    /// Vectors per group in panel `p` (1..=3).
    pub fn nv(&self, p: usize) -> usize {
        self.width(p).div_ceil(LANES)
    }
    /// Cell index of panel `p`'s first cell (every earlier panel is full).
    pub fn offset(&self, p: usize) -> usize {
        p * self.groups * NR
    }
    /// Total packed cells.
    pub fn cells(&self) -> usize {
        self.offset(self.n_panels - 1) + self.groups * self.nv(self.n_panels - 1) * LANES
    }
    /// Packs `cell(o, g)` (column `o < out`, group `g < groups`) into the panel layout;
    /// padding columns get 0.
    pub fn pack(&self, mut cell: impl FnMut(usize, usize) -> u32) -> AlignedCells {
        let mut buf = AlignedCells::zeroed(self.cells());
        let data = buf.as_mut_slice();
        for p in 0..self.n_panels {
            let (nv, width, base) = (self.nv(p), self.width(p), self.offset(p));
            for g in 0..self.groups {
                let row = &mut data[base + g * nv * LANES..][..nv * LANES];
                for (c, slot) in row.iter_mut().enumerate().take(width) {
                    *slot = cell(p * NR + c, g);
                }
            }
        }
        buf
    }
}

/// A `u32` buffer whose first element is 64-byte aligned.
#[derive(Clone, Debug)]
pub(crate) struct AlignedCells {
    buf: Vec<u32>,
    start: usize,
    len: usize,
}

impl AlignedCells {
    pub fn zeroed(len: usize) -> Self {
        let buf = vec![0u32; len + LANES];
        let start = align_start(&buf);
        AlignedCells { buf, start, len }
    }
    pub fn as_slice(&self) -> &[u32] {
        &self.buf[self.start..self.start + self.len]
    }
    pub fn as_mut_slice(&mut self) -> &mut [u32] {
        &mut self.buf[self.start..self.start + self.len]
    }
}

fn align_start(buf: &[u32]) -> usize {
    let misalign = (buf.as_ptr() as usize / 4) % LANES;
    (LANES - misalign) % LANES
}

/// Row stride (in cells) of packed activations: a whole number of 64-byte lines, plus one line
/// when it would be a multiple of 1 KiB (rows at such strides share L1 sets).
pub(crate) fn packed_stride(groups: usize) -> usize {
    let s = groups.div_ceil(LANES) * LANES;
    if s.is_multiple_of(256) {
        s + LANES
    } else {
        s
    }
}

thread_local! {
    static SCRATCH: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on a zero-length-agnostic scratch slice of `len` cells, 64-byte aligned, reused
/// across calls on this thread (its contents are unspecified on entry).
pub(crate) fn with_scratch<R>(len: usize, f: impl FnOnce(&mut [u32]) -> R) -> R {
    SCRATCH.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.len() < len + LANES {
                *v = vec![0u32; len + LANES];
            }
            let start = align_start(&v);
            f(&mut v[start..start + len])
        }
        // Re-entered on this thread (cannot happen today): use a fresh buffer.
        Err(_) => {
            let mut v = vec![0u32; len + LANES];
            let start = align_start(&v);
            f(&mut v[start..start + len])
        }
    })
}

/// How one GEMM is cut into tasks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    /// Rows per task (a multiple of [`MR`] except for the last task).
    pub mc: usize,
    pub row_blocks: usize,
    /// Panels per task.
    pub ppt: usize,
    pub col_groups: usize,
    /// Groups (cells along k) per k block.
    pub kgc: usize,
    pub parallel: bool,
}

impl Plan {
    /// `kgc_max`: groups per k block such that one block of a panel stays in L1.
    pub fn new(rows: usize, pn: &Panels, kgc_max: usize) -> Plan {
        let threads = rayon::current_num_threads();
        let macs = rows.saturating_mul(pn.out).saturating_mul(pn.inn);
        let parallel = threads > 1 && macs >= MIN_PARALLEL_MACS;
        let kblocks = pn.groups.div_ceil(kgc_max);
        let kgc = pn.groups.div_ceil(kblocks);
        let mut mc = MC_MAX.min(rows.div_ceil(MR) * MR);
        let mut ppt = pn.n_panels;
        if parallel {
            // At least ~3 tasks per thread so work stealing can even out a noisy machine:
            // split rows first (the packed x block is shared by all panels), then columns.
            let want = 3 * threads;
            if rows.div_ceil(mc) < want {
                mc = (rows.div_ceil(want).div_ceil(MR) * MR).max(MR);
            }
            let rb = rows.div_ceil(mc);
            if rb < want {
                let cg = want.div_ceil(rb).min(pn.n_panels);
                ppt = pn.n_panels.div_ceil(cg);
            }
        }
        Plan { mc, row_blocks: rows.div_ceil(mc), ppt, col_groups: pn.n_panels.div_ceil(ppt), kgc, parallel }
    }

    /// Runs `task(r0, r1, p0, p1)` for every (row block, panel group), in parallel when the
    /// plan says so.
    pub fn run(&self, rows: usize, n_panels: usize, task: impl Fn(usize, usize, usize, usize) + Sync) {
        let n = self.row_blocks * self.col_groups;
        let one = |t: usize| {
            let (rb, cg) = (t / self.col_groups, t % self.col_groups);
            let r0 = rb * self.mc;
            let p0 = cg * self.ppt;
            task(r0, (r0 + self.mc).min(rows), p0, (p0 + self.ppt).min(n_panels));
        };
        if self.parallel && n > 1 {
            use rayon::prelude::*;
            (0..n).into_par_iter().for_each(one);
        } else {
            (0..n).for_each(one);
        }
    }
}

/// A raw pointer that tasks writing disjoint parts of one output may share.
#[derive(Clone, Copy)]
pub(crate) struct SendPtr<T>(pub *mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The pointer (a method, so closures capture the whole `SendPtr`, not the raw field).
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// `f32` to bf16 bits, round to nearest even, NaN to the canonical quiet NaN `0x7FC0` (what
/// PyTorch does; subnormals are kept).
#[inline]
pub fn f32_to_bf16_bits(x: f32) -> u16 {
    if x.is_nan() {
        return 0x7FC0;
    }
    let b = x.to_bits();
    ((b + 0x7FFF + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 bits to `f32` (exact).
#[inline]
pub fn bf16_bits_to_f32(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

/// `x` rounded to bf16 precision, as an `f32`.
#[inline]
pub fn round_to_bf16(x: f32) -> f32 {
    bf16_bits_to_f32(f32_to_bf16_bits(x))
}

/// Whether the portable microkernels may use their AVX2 + FMA build (detected once).
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx2_available() -> bool {
    static AVX2: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVX2.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
}
