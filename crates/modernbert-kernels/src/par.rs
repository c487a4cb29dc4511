//! When to go parallel.

/// Below this many elements of work a kernel runs on the calling thread: rayon's fork/join
/// costs a few microseconds, about what a memory-bound kernel needs for 32 Ki floats.
pub(crate) const MIN_PARALLEL_ELEMS: usize = 1 << 15;

/// Rows per rayon task for a row-wise kernel over `rows` rows of `row_elems` elements each,
/// or `None` when the whole job should run serially.
pub(crate) fn rows_per_task(rows: usize, row_elems: usize) -> Option<usize> {
    let total = rows.saturating_mul(row_elems.max(1));
    if total < MIN_PARALLEL_ELEMS || rows < 2 || rayon::current_num_threads() < 2 {
        return None;
    }
    // Tasks of ~16 Ki elements: enough of them for work stealing to balance the load,
    // each big enough to amortize its scheduling.
    Some(((MIN_PARALLEL_ELEMS / 2) / row_elems.max(1)).max(1))
}
