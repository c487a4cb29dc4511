//! One pool of threads for the CPU work: rayon's.
//!
//! Our kernels and the `gemm` crate run on rayon's threads. candle 0.11 runs its large
//! element-wise ops (≥ 64 Ki values: residual adds, gradients) on a second pool of its own, whose
//! workers spin 25,000 times after each op before they park — on the same cores, while rayon's
//! threads need them. With one core per thread that spinning took ~15% of a 128-token forward pass
//! (ModernBERT-base, int8: 68 → 55 ms); pretraining on 2 cores ran 20% faster without it.

use std::sync::Once;

/// Makes candle run its element-wise ops on the calling thread (`CANDLE_NUM_THREADS=1`), unless
/// the user set `CANDLE_NUM_THREADS`. Takes effect only before candle's first large element-wise
/// op, so [`crate::ModernBert::load`] calls it, and binaries call it first thing in `main`.
pub fn keep_candle_on_one_thread() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    });
}
