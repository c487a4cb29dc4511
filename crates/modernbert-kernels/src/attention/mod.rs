//! Multi-head self-attention over unpadded (cu_seqlens) batches, with RoPE applied inside.
//!
//! # Algorithm
//!
//! Work is split into one task per (sequence, head). A task rotates that head's keys once
//! into feature-major panels of 16 keys and gathers its values into contiguous rows, then
//! walks the sequence in blocks of queries (in parallel when the pool has idle threads).
//! A block rotates and scales its queries and streams over tiles of up to 64 keys with an
//! online (flash-style) softmax: `S = Q Kᵀ` for the tile (register-blocked), a running max
//! and sum per query, and `O = O * alpha + P V`. Nothing of size `n x n` is ever stored.
//!
//! Global layers stream every key of the sequence. Local layers (`window = Some(w)`) only
//! visit the key tiles that overlap `[q0 - w, q1 - 1 + w]` for the block `[q0, q1)`, so the
//! cost is `O(n * w)`; the masks inside those tiles keep exactly `|i - j| <= w`.

mod pack;
mod tile;

use crate::rope::RopeTable;
use crate::Isa;
use rayon::prelude::*;
use std::cell::RefCell;
use tile::{TileKernels, KT, PANEL, ROWS};

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
    attention_varlen_with(
        Isa::active(),
        qkv,
        cu_seqlens,
        num_heads,
        head_dim,
        rope,
        window,
        out,
    )
}

/// Query rows per block for global attention.
const BQ_GLOBAL: usize = 64;
/// Query rows per block for local attention: smaller blocks waste less of the key tiles
/// at the edges of the band.
const BQ_LOCAL: usize = 32;

/// Shape and data shared by every task of one call.
struct Problem<'a> {
    qkv: &'a [f32],
    num_heads: usize,
    d: usize,
    /// `d` rounded up to a multiple of 16.
    dp: usize,
    rope: &'a RopeTable,
    window: Option<usize>,
    scale: f32,
    isa: Isa,
    kernels: &'static TileKernels,
    out: OutPtr,
}

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
    let hidden = num_heads * head_dim;
    let total = *cu_seqlens.last().unwrap_or(&0) as usize;
    assert_eq!(qkv.len(), total * 3 * hidden, "qkv has the wrong size");
    assert_eq!(out.len(), total * hidden, "out has the wrong size");
    assert_eq!(
        rope.head_dim(),
        head_dim,
        "RoPE table built for another head dim"
    );
    assert!(
        cu_seqlens.first().is_none_or(|&c| c == 0),
        "cu_seqlens must start at 0"
    );
    assert!(
        cu_seqlens.windows(2).all(|w| w[0] <= w[1]),
        "cu_seqlens must be non-decreasing"
    );
    let kernels: &'static TileKernels = match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => {
            assert!(isa.is_available(), "AVX-512 requested on a CPU without it");
            &tile::AVX512
        }
        _ => &tile::PORTABLE,
    };
    let problem = Problem {
        qkv,
        num_heads,
        d: head_dim,
        dp: head_dim.next_multiple_of(PANEL),
        rope,
        window,
        scale: 1.0 / (head_dim as f32).sqrt(),
        isa,
        kernels,
        out: OutPtr(out.as_mut_ptr()),
    };
    // One task per (sequence, head), longest sequences first for a better balance.
    let mut tasks: Vec<(usize, usize, usize)> = Vec::new();
    for w in cu_seqlens.windows(2) {
        let (start, end) = (w[0] as usize, w[1] as usize);
        if end > start {
            assert!(
                end - start <= rope.max_positions(),
                "sequence of {} tokens exceeds the RoPE table",
                end - start
            );
            tasks.extend((0..num_heads).map(|h| (start, end, h)));
        }
    }
    tasks.sort_by_key(|&(start, end, _)| std::cmp::Reverse(end - start));
    tasks
        .into_par_iter()
        .for_each(|(start, end, h)| head_task(&problem, start, end - start, h));
}

/// Packs the keys and values of head `h` of the sequence at `start`, then runs its query blocks.
fn head_task(pb: &Problem, start: usize, n: usize, h: usize) {
    let (d, dp) = (pb.d, pb.dp);
    let stride = 3 * pb.num_heads * d;
    let n_pad = n.next_multiple_of(PANEL);
    let mut kp = vec![0f32; n_pad * d];
    let mut v = vec![0f32; n_pad * dp];
    // 16 rotated keys at a time, row-major, then transposed into their panel.
    let mut rows = vec![0f32; PANEL * d];
    let k_src = &pb.qkv[start * stride + (pb.num_heads + h) * d..];
    let v_src = &pb.qkv[start * stride + (2 * pb.num_heads + h) * d..];
    for (p, panel) in kp.chunks_exact_mut(PANEL * d).enumerate() {
        let j0 = p * PANEL;
        let count = (n - j0).min(PANEL);
        if count < PANEL {
            rows.fill(0.0);
        }
        pack::rope_rows(
            pb.isa,
            &k_src[j0 * stride..],
            stride,
            count,
            pb.rope,
            j0,
            1.0,
            &mut rows,
        );
        pack::to_panel(pb.isa, &rows, d, panel);
        for j in j0..j0 + count {
            let (dst, src) = (
                &mut v[j * dp..j * dp + d],
                &v_src[j * stride..j * stride + d],
            );
            for (x, &y) in dst.iter_mut().zip(src) {
                *x = y;
            }
        }
    }
    let bq = if pb.window.is_some_and(|w| w < n) {
        BQ_LOCAL
    } else {
        BQ_GLOBAL
    };
    let blocks = n.div_ceil(bq);
    let run = |b: usize| attend_block(pb, start, n, h, b * bq, ((b + 1) * bq).min(n), &kp, &v);
    if blocks > 1 && rayon::current_num_threads() > 1 {
        (0..blocks).into_par_iter().for_each(run);
    } else {
        (0..blocks).for_each(run);
    }
}

thread_local! {
    /// Per-thread scratch of `attend_block` (never held across a rayon call, so no reentrancy).
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Attention of queries `q0..q1` of head `h` (sequence at `start`, length `n`) against the
/// packed keys `kp` and values `v`; writes the normalized result into `pb.out`.
#[allow(clippy::too_many_arguments)]
fn attend_block(
    pb: &Problem,
    start: usize,
    n: usize,
    h: usize,
    q0: usize,
    q1: usize,
    kp: &[f32],
    v: &[f32],
) {
    let (d, dp) = (pb.d, pb.dp);
    let rows = q1 - q0;
    let rows_pad = rows.next_multiple_of(ROWS);
    let stride = 3 * pb.num_heads * d;
    SCRATCH.with_borrow_mut(|buf| {
        let need = rows_pad * (d + KT + dp + 3);
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        let (q, rest) = buf.split_at_mut(rows_pad * d);
        let (s, rest) = rest.split_at_mut(rows_pad * KT);
        let (o, rest) = rest.split_at_mut(rows_pad * dp);
        let (m, rest) = rest.split_at_mut(rows_pad);
        let (l, rest) = rest.split_at_mut(rows_pad);
        let alpha = &mut rest[..rows_pad];

        // Rotated, pre-scaled queries; padding rows are zero.
        q[rows * d..].fill(0.0);
        let q_src = &pb.qkv[(start + q0) * stride + h * d..];
        pack::rope_rows(pb.isa, q_src, stride, rows, pb.rope, q0, pb.scale, q);
        o.fill(0.0);
        m.fill(f32::NEG_INFINITY);
        l.fill(0.0);

        // Keys this block can see, starting on a panel boundary.
        let (key_lo, key_hi) = match pb.window {
            Some(w) => ((q0.saturating_sub(w) / PANEL) * PANEL, (q1 + w).min(n)),
            None => (0, n),
        };
        let mut ranges = [(0usize, 0usize); BQ_GLOBAL];
        let ranges = &mut ranges[..rows_pad];
        let mut k0 = key_lo;
        while k0 < key_hi {
            let k1 = (k0 + KT).min(key_hi);
            let npan = (k1 - k0).div_ceil(PANEL);
            for (r, range) in ranges.iter_mut().enumerate() {
                *range = if r < rows {
                    let i = q0 + r;
                    let (lo, hi) = match pb.window {
                        Some(w) => (i.saturating_sub(w), (i + w + 1).min(n)),
                        None => (0, n),
                    };
                    (lo.clamp(k0, k1) - k0, hi.clamp(k0, k1) - k0)
                } else {
                    (0, 0)
                };
            }
            // SAFETY: the kernels were chosen for an instruction set this CPU has, and the
            // buffers have the shapes `tile` documents: `q` and `s` hold `rows_pad` rows,
            // `kp` from panel `k0 / 16` on holds `npan` panels, `v` from row `k0` on holds
            // `npan * 16` rows (the packed buffers are padded to whole panels).
            unsafe {
                (pb.kernels.qk)(q, rows_pad, d, &kp[k0 * d..], npan, s);
                (pb.kernels.softmax)(s, npan * PANEL, ranges, m, l, alpha);
                (pb.kernels.pv)(s, rows_pad, npan * PANEL, &v[k0 * dp..], dp, o, alpha);
            }
            k0 = k1;
        }

        let width = pb.num_heads * d;
        for r in 0..rows {
            let inv = 1.0 / l[r];
            // SAFETY: row `start + q0 + r`, columns `h*d..(h+1)*d` of `out` belong to this
            // block alone; `out` holds `total * width` floats (checked by the caller).
            let dst = unsafe {
                std::slice::from_raw_parts_mut(pb.out.0.add((start + q0 + r) * width + h * d), d)
            };
            for (x, &y) in dst.iter_mut().zip(&o[r * dp..r * dp + d]) {
                *x = y * inv;
            }
        }
    });
}
