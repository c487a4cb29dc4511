//! Multi-head self-attention over unpadded (cu_seqlens) batches, with RoPE applied inside.
//!
//! # Algorithm
//!
//! The batch is cut into *units*: a whole sequence for global attention, or a chunk of up to
//! [`LOCAL_CHUNK`] queries of a sequence plus the keys they can see for local attention.
//! Consecutive units form *groups* of about [`GROUP_KEYS`] keys, processed one after the
//! other, each in two parallel steps:
//!
//! 1. **Pack** (`pack.rs`, tasks of 64 keys): read the group's `qkv` rows in order, once,
//!    rotate Q and K by RoPE and write per-head arrays: Q rows, K in feature-major panels of
//!    16 keys, V rows (bf16 pairs for the bf16 kernel). A group's arrays (about 9 MiB in
//!    `f32`) stay in L3 for the next step.
//! 2. **Attend** (tasks = unit x head x block of up to 64 queries): for each group of 4
//!    query rows, stream the key panels it can see (all of them for global attention, those
//!    overlapping `[i - w, i + w]` for local) through the fused tile kernel (`tile.rs`,
//!    `tile_bf16.rs`): `S = Q Kᵀ` for 4 rows x up to 64 keys in registers, an online
//!    softmax in base 2, `O = O * alpha + P V`.
//!
//! Nothing of size `n x n` is ever stored; local attention costs `O(n w)`.

mod backward;
pub(crate) mod dense;
mod pack;
mod tile;
mod tile_bf16;

use crate::rope::RopeTable;
use crate::Isa;
pub use backward::attention_varlen_backward;
pub use dense::attention_key_prefix;
use rayon::prelude::*;
use std::cell::RefCell;
use tile::{Dims, Group, GroupFn, PANEL, ROWS};

/// Attention for a packed batch.
///
/// * `qkv`: `total_tokens` rows of width `3 * num_heads * head_dim`, laid out `[Q | K | V]`,
///   each block head-major (head `h` owns `[h*d, (h+1)*d)`), exactly HF's `Wqkv` output.
/// * `cu_seqlens`: `[0, end_0, end_1, ..]`; tokens of sequence `b` are rows `cu[b]..cu[b+1]`.
///   RoPE positions restart at 0 in every sequence.
/// * `window`: `Some(w)` restricts query `i` to keys `j` with `|i - j| <= w` (ModernBERT local
///   layers use `w = local_attention / 2 = 64`); `None` is full (global) attention.
/// * `out`: `total_tokens` rows of width `num_heads * head_dim`, heads merged head-major.
///
/// Scores are scaled by `1 / sqrt(head_dim)`; softmax runs in f32 with max subtraction.
pub fn attention_varlen(
    qkv: &[f32],
    cu_seqlens: &[u32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    attention_varlen_with(Isa::active(), qkv, cu_seqlens, num_heads, head_dim, rope, window, out)
}

/// [`attention_varlen`] with bf16 operands: Q and K (after RoPE), V and the softmax
/// probabilities P are rounded to bf16 (round to nearest even, as
/// [`crate::f32_to_bf16_bits`]); `Q Kᵀ` and `P V` sum the exact bf16 products in `f32`, and
/// the softmax (scaling, maximum, exponentials, sum, normalisation) runs in `f32`. Same
/// arguments, shapes and masking as [`attention_varlen`]; outputs differ from it by about
/// `2^-8` of the output scale.
///
/// Uses AVX512-BF16 `vdpbf16ps` where [`crate::bf16_native`] says the CPU has it. Elsewhere
/// the same rounding runs through the `f32` tile kernels (AVX-512F or portable; products of
/// bf16 values are exact in `f32`, so only the summation order differs), which is no faster
/// than [`attention_varlen`]: use that on such CPUs.
pub fn attention_varlen_bf16(
    qkv: &[f32],
    cu_seqlens: &[u32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    let isa = Isa::active();
    let arith = if isa == Isa::Avx512 && crate::bf16_native() { Arith::Bf16Native } else { Arith::Bf16Emulated };
    run(isa, arith, qkv, cu_seqlens, num_heads, head_dim, rope, window, out)
}

/// Operand precision and layout of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Arith {
    /// `f32` throughout.
    F32,
    /// bf16 rounding of Q, K, V and P, computed by the `f32` kernels on `f32` layouts.
    Bf16Emulated,
    /// bf16 pair layouts and `vdpbf16ps` (AVX512-BF16 only).
    Bf16Native,
}

impl Arith {
    /// 32-bit words per Q row / per K panel row of 16 keys divided by 16.
    fn kw(self, d: usize) -> usize {
        if self == Arith::Bf16Native {
            d / 2
        } else {
            d
        }
    }
    /// V rows (of `dp` words) for `nk_pad` keys.
    fn v_rows(self, nk_pad: usize) -> usize {
        if self == Arith::Bf16Native {
            nk_pad / 2
        } else {
            nk_pad
        }
    }
}

/// Queries per local unit: bounds a unit's packed arrays when a sequence is long.
const LOCAL_CHUNK: usize = 512;
/// Keys per group (a group is closed once it holds at least this many): the packed arrays of
/// a group, `3 * hidden` words per key, should stay in L3 between the two steps.
const GROUP_KEYS: usize = 512;
/// Keys per packing task.
const PACK_CHUNK: usize = 64;
/// Query rows per attention task.
const BQ: usize = 64;

/// A range of queries of one sequence and the keys they see, packed together.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Unit {
    /// Batch row of the sequence's position 0.
    start: usize,
    /// Sequence length.
    n: usize,
    /// `Some(w)` for local attention with `w < n - 1`.
    window: Option<usize>,
    /// First query position and number of queries.
    q0: usize,
    nq: usize,
    /// First key position and number of keys.
    k0: usize,
    nk: usize,
    /// Word offset of the unit's arrays in the group buffer.
    off: usize,
}

impl Unit {
    fn nq_pad(&self) -> usize {
        self.nq.next_multiple_of(PANEL)
    }
    fn nk_pad(&self) -> usize {
        self.nk.next_multiple_of(PANEL)
    }
    /// Visible keys `[lo, hi)` of the query at `pos`, relative to `k0`.
    fn visible(&self, pos: usize) -> (usize, usize) {
        match self.window {
            Some(w) => (pos.saturating_sub(w) - self.k0, (pos + w + 1).min(self.n) - self.k0),
            None => (0, self.nk),
        }
    }
}

/// Everything the packing and attention tasks of one run share.
pub(crate) struct Packing<'a> {
    qkv: &'a [f32],
    heads: usize,
    d: usize,
    /// `d` rounded up to 16.
    dp: usize,
    hidden: usize,
    rope: &'a RopeTable,
    arith: Arith,
    isa: Isa,
    /// The group buffer (64-byte aligned).
    buf: *mut u32,
}

impl Packing<'_> {
    fn words(&self, u: &Unit) -> [usize; 3] {
        let kw = self.arith.kw(self.d);
        [u.nq_pad() * kw, u.nk_pad() * kw, self.arith.v_rows(u.nk_pad()) * self.dp]
    }
    /// Words of one unit's arrays, all heads.
    fn unit_words(&self, u: &Unit) -> usize {
        self.heads * self.words(u).iter().sum::<usize>()
    }
    /// Query row `i` (relative to `q0`) of head `h`.
    fn q_row(&self, u: &Unit, h: usize, i: usize) -> *mut u32 {
        let [qh, _, _] = self.words(u);
        self.buf.wrapping_add(u.off + h * qh + i * self.arith.kw(self.d))
    }
    /// Key panel `p` (keys `k0 + 16 p ..`) of head `h`.
    fn k_panel(&self, u: &Unit, h: usize, p: usize) -> *mut u32 {
        let [qh, kh, _] = self.words(u);
        self.buf.wrapping_add(u.off + self.heads * qh + h * kh + p * PANEL * self.arith.kw(self.d))
    }
    /// Value row `t` (key `k0 + t`, or key pair `k0 + 2t ..` for bf16) of head `h`.
    fn v_row(&self, u: &Unit, h: usize, t: usize) -> *mut u32 {
        let [qh, kh, vh] = self.words(u);
        self.buf.wrapping_add(u.off + self.heads * (qh + kh) + h * vh + t * self.dp)
    }
}

// SAFETY: the raw buffer pointer is shared by tasks that write disjoint parts of it (packing)
// or only read it (attention); the buffer outlives both parallel steps.
unsafe impl Sync for Packing<'_> {}
unsafe impl Send for Packing<'_> {}

/// The output matrix, written concurrently by tasks that own disjoint (row, head) cells.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every task writes only the rows of its query block and the columns of its head,
// which no other task touches (see `attend_block`), and the buffer outlives the parallel scope.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_varlen_with(
    isa: Isa,
    qkv: &[f32],
    cu_seqlens: &[u32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    run(isa, Arith::F32, qkv, cu_seqlens, num_heads, head_dim, rope, window, out)
}

thread_local! {
    /// The calling thread's group buffer, kept between calls (only when small, see `run`).
    static GROUP_BUF: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Group buffers up to this many words are kept for the next call (page faults on a fresh
/// 10 MiB buffer cost about as much as packing it); bigger ones only come with long global
/// sequences, whose attention takes far longer than the faults.
const KEEP_BUF_WORDS: usize = 8 << 20;

/// The number of tokens `cu_seqlens` covers, after checking that the offsets start at 0 and
/// never decrease (the forward and backward passes index `qkv` by them).
pub(crate) fn checked_tokens(cu_seqlens: &[u32]) -> usize {
    assert!(cu_seqlens.first().is_none_or(|&c| c == 0), "cu_seqlens must start at 0");
    assert!(cu_seqlens.windows(2).all(|w| w[0] <= w[1]), "cu_seqlens must be non-decreasing");
    *cu_seqlens.last().unwrap_or(&0) as usize
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    isa: Isa,
    arith: Arith,
    qkv: &[f32],
    cu_seqlens: &[u32],
    num_heads: usize,
    head_dim: usize,
    rope: &RopeTable,
    window: Option<usize>,
    out: &mut [f32],
) {
    let hidden = num_heads * head_dim;
    let total = checked_tokens(cu_seqlens);
    assert_eq!(qkv.len(), total * 3 * hidden, "qkv has the wrong size");
    assert_eq!(out.len(), total * hidden, "out has the wrong size");
    assert_eq!(rope.head_dim(), head_dim, "RoPE table built for another head dim");
    if isa == Isa::Avx512 {
        assert!(isa.is_available(), "AVX-512 requested on a CPU without it");
    }
    if arith == Arith::Bf16Native {
        assert!(isa == Isa::Avx512 && crate::bf16_native(), "bf16 kernels need AVX512-BF16");
    }
    if hidden == 0 || total == 0 {
        return;
    }
    let kernel: GroupFn = match (isa, arith) {
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Arith::F32) => tile::avx512::group,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Arith::Bf16Emulated) => tile::avx512::group_round,
        #[cfg(target_arch = "x86_64")]
        (Isa::Avx512, Arith::Bf16Native) => tile_bf16::group,
        (_, Arith::F32) => tile::group_portable,
        _ => tile::group_portable_round,
    };

    // Units, in batch order.
    let mut units = Vec::new();
    for w in cu_seqlens.windows(2) {
        let (start, end) = (w[0] as usize, w[1] as usize);
        let n = end - start;
        if n == 0 {
            continue;
        }
        assert!(n <= rope.max_positions(), "sequence of {n} tokens exceeds the RoPE table");
        let unit = |window, q0, q1, k0, k1| Unit { start, n, window, q0, nq: q1 - q0, k0, nk: k1 - k0, off: 0 };
        match window.filter(|&w| w < n - 1) {
            Some(w) => {
                for q0 in (0..n).step_by(LOCAL_CHUNK) {
                    let q1 = (q0 + LOCAL_CHUNK).min(n);
                    units.push(unit(Some(w), q0, q1, q0.saturating_sub(w), (q1 + w).min(n)));
                }
            }
            None => units.push(unit(None, 0, n, 0, n)),
        }
    }

    let mut buf = GROUP_BUF.with(|b| b.take());
    let mut pk = Packing {
        qkv,
        heads: num_heads,
        d: head_dim,
        dp: head_dim.next_multiple_of(PANEL),
        hidden,
        rope,
        arith,
        isa,
        buf: std::ptr::null_mut(),
    };
    let dims = Dims { d: head_dim, dp: pk.dp, c: std::f32::consts::LOG2_E / (head_dim as f32).sqrt() };
    let out = OutPtr(out.as_mut_ptr());
    let parallel = rayon::current_num_threads() > 1;

    // Groups of consecutive units, closed once they hold GROUP_KEYS keys.
    let mut groups = Vec::new();
    let mut first = 0;
    while first < units.len() {
        let (mut last, mut keys, mut words) = (first, 0, 0);
        while last < units.len() && (last == first || keys < GROUP_KEYS) {
            units[last].off = words;
            keys += units[last].nk;
            words += pk.unit_words(&units[last]);
            last += 1;
        }
        groups.push((first, last, words));
        first = last;
    }
    for grp in &groups {
        let group = &units[grp.0..grp.1];
        let words = grp.2;
        // 16 words of slack to align the start to 64 bytes.
        if buf.len() < words + 16 {
            buf = vec![0; words + 16];
        }
        let align = buf.as_ptr().align_offset(64).min(15);
        pk.buf = buf[align..].as_mut_ptr();

        let pack_tasks: Vec<(usize, usize)> =
            group.iter().enumerate().flat_map(|(i, u)| (0..u.nk).step_by(PACK_CHUNK).map(move |t0| (i, t0))).collect();
        let pack_one = |&(i, t0): &(usize, usize)| {
            let u = &group[i];
            // SAFETY: the buffer holds every unit's arrays at its offset (sized above); a
            // task writes only its own keys' panels and rows and its own queries.
            unsafe { pack::pack_chunk(&pk, u, t0, (t0 + PACK_CHUNK).min(u.nk)) }
        };
        let attend_tasks: Vec<(usize, usize, usize)> = group
            .iter()
            .enumerate()
            .flat_map(|(i, u)| (0..num_heads).flat_map(move |h| (0..u.nq.div_ceil(BQ)).map(move |b| (i, h, b))))
            .collect();
        let ntasks = attend_tasks.len();
        let attend_one = |t: usize| {
            let (i, h, b) = attend_tasks[t];
            // SAFETY: the group's arrays were fully written by the packing step; the block
            // writes only its own rows of head `h` in `out`.
            unsafe { attend_block(&pk, &dims, kernel, &group[i], h, b, out) }
        };
        if parallel {
            pack_tasks.par_iter().for_each(pack_one);
            (0..ntasks).into_par_iter().for_each(attend_one);
        } else {
            pack_tasks.iter().for_each(pack_one);
            (0..ntasks).for_each(attend_one);
        }
    }
    if buf.len() <= KEEP_BUF_WORDS {
        GROUP_BUF.with(|b| b.replace(buf));
    }
}

thread_local! {
    /// Per-thread accumulators of `attend_block` (never held across a rayon call).
    static ACC: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Attention of query block `b` (queries `q0 + b * BQ ..`) of unit `u`, head `h`; writes the
/// normalised result into `out`.
///
/// # Safety
/// The unit's arrays must be packed in `pk.buf`; `out` must hold the batch's output rows.
#[allow(clippy::too_many_arguments)]
unsafe fn attend_block(pk: &Packing, dims: &Dims, kernel: GroupFn, u: &Unit, h: usize, b: usize, out: OutPtr) {
    let dp = dims.dp;
    let i0 = b * BQ; // first row, relative to q0
    let rows = (u.nq - i0).min(BQ);
    let rows_pad = rows.next_multiple_of(ROWS);
    ACC.with_borrow_mut(|acc| {
        let need = rows_pad * (dp + 1 + PANEL);
        if acc.len() < need {
            acc.resize(need, 0.0);
        }
        let (o, rest) = acc.split_at_mut(rows_pad * dp);
        let (m, rest) = rest.split_at_mut(rows_pad);
        let l = &mut rest[..rows_pad * PANEL];
        o.fill(0.0);
        m.fill(f32::NEG_INFINITY);
        l.fill(0.0);

        let np_total = u.nk_pad() / PANEL;
        for g in (0..rows_pad).step_by(ROWS) {
            // Queries of this row group (positions) and the keys any of them sees.
            let pos0 = u.q0 + i0 + g;
            let real = (rows - g).min(ROWS);
            let vis: [(usize, usize); ROWS] =
                std::array::from_fn(|r| if r < real { u.visible(pos0 + r) } else { (0, 0) });
            let lo = vis[0].0;
            let hi = vis[real - 1].1;
            // Panels [pa, pz), cut into calls of at most 4 panels, as even as possible.
            let pa = lo / PANEL;
            let pz = hi.div_ceil(PANEL).min(np_total);
            let npan = pz - pa;
            let calls = npan.div_ceil(tile::MAX_NP);
            let mut p = pa;
            for c in 0..calls {
                let np = (npan - (p - pa)).div_ceil(calls - c);
                let (k_lo, k_hi) = (p * PANEL, (p + np) * PANEL);
                let full = real == ROWS && vis.iter().all(|&(a, z)| a <= k_lo && z >= k_hi);
                let ranges =
                    (!full).then(|| vis.map(|(a, z)| (a.clamp(k_lo, k_hi) - k_lo, z.clamp(k_lo, k_hi) - k_lo)));
                let v_row = if pk.arith == Arith::Bf16Native { k_lo / 2 } else { k_lo };
                let grp = Group {
                    q: pk.q_row(u, h, i0 + g) as *const f32,
                    kp: pk.k_panel(u, h, p) as *const f32,
                    v: pk.v_row(u, h, v_row) as *const f32,
                    o: o.as_mut_ptr().add(g * dp),
                    m: m.as_mut_ptr().add(g),
                    l: l.as_mut_ptr().add(g * PANEL),
                    np,
                    ranges,
                };
                kernel(dims, &grp);
                p += np;
            }
        }

        let width = pk.hidden;
        let d = dims.d;
        for r in 0..rows {
            let sum: f32 = l[r * PANEL..(r + 1) * PANEL].iter().sum();
            let inv = 1.0 / sum;
            // SAFETY: row `start + q0 + i0 + r`, columns `h*d..(h+1)*d` of `out` belong to
            // this block alone; `out` holds `total * width` floats (checked by the caller).
            let dst = std::slice::from_raw_parts_mut(out.0.add((u.start + u.q0 + i0 + r) * width + h * d), d);
            for (x, &y) in dst.iter_mut().zip(&o[r * dp..r * dp + d]) {
                *x = y * inv;
            }
        }
    });
}
