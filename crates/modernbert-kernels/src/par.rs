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

/// Runs `f` on rayon's pool with the pool's other threads kept awake until it returns.
///
/// A short forward pass is a chain of parallel calls (one per linear layer) with a little serial
/// work between them. Left alone, rayon's idle threads fall asleep within tens of microseconds,
/// and each call then pays a futex wake-up (an inter-processor interrupt in a VM) to get its
/// helper back; called from outside the pool, the caller also sleeps and is woken per call.
/// Here `f` runs inside the pool and every other thread runs a keeper that steals and runs the
/// pool's jobs as they appear and spins in between, so the calls inside `f` find their helpers
/// awake. The keepers use a core each while `f` runs: for work that is parallel most of the time.
pub fn with_pool_awake<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use std::sync::atomic::{AtomicBool, Ordering};
    let threads = rayon::current_num_threads();
    if threads < 2 {
        return f();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|s| {
        let owner = rayon::current_thread_index();
        for _ in 1..threads {
            let done = &done;
            s.spawn(move |_| {
                // On the thread that runs `f` (popped while `f` waits inside a join), a keeper
                // would wait for its own caller: leave at once.
                if rayon::current_thread_index() == owner {
                    return;
                }
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        std::hint::spin_loop();
                    }
                }
            });
        }
        let result = f();
        done.store(true, Ordering::Release);
        result
    })
}
