//! Times every kernel on ModernBERT-base shapes, fast vs the naive reference, in one run.
//!
//! `cargo run --release -p modernbert-kernels --example kernel_bench`
//!
//! Shapes: hidden 768, 12 heads of 64, GeGLU intermediate 1152, 4096 tokens as 8 x 512 and
//! one 8192-token sequence. Each figure is the best of several runs after a warm-up.
//! `MODERNBERT_KERNELS_ISA=portable` times the portable path instead of AVX-512.
//! Pass `--quick` to skip the slowest naive runs, `--attention` for the attention kernels only
//! (f32 and bf16, no naive runs).

use modernbert_kernels::{reference, Isa, RopeTable};
use std::hint::black_box;
use std::time::{Duration, Instant};

const HIDDEN: usize = 768;
const HEADS: usize = 12;
const HEAD_DIM: usize = 64;
const INTER: usize = 1152;
const WINDOW: usize = 64;

/// Best wall time of `f` over runs lasting about `budget` in total (at least 2 runs).
fn best(budget: Duration, mut f: impl FnMut()) -> Duration {
    f(); // warm-up (page faults, thread pool start)
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 2 || (start.elapsed() < budget && runs < 1000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
    }
    best
}

fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn row(name: &str, fast: Duration, naive: Option<Duration>, work: f64, unit: &str) {
    let rate = |t: Duration| work / t.as_secs_f64() / 1e9;
    let naive_txt = match naive {
        Some(n) => format!(
            "{:>10.2} ms {:>8.2} {unit}  {:>7.1}x",
            n.as_secs_f64() * 1e3,
            rate(n),
            n.as_secs_f64() / fast.as_secs_f64()
        ),
        None => "       (skipped)".to_string(),
    };
    println!("{name:<34} {:>8.3} ms {:>8.2} {unit} | {naive_txt}", fast.as_secs_f64() * 1e3, rate(fast));
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // `--attention`: only the attention kernels, without the naive references.
    let attention_only = std::env::args().any(|a| a == "--attention");
    let skip_naive = attention_only;
    let budget = Duration::from_millis(if quick { 200 } else { 600 });
    println!("modernbert-kernels bench: isa {:?}, {} rayon threads", Isa::active(), rayon::current_num_threads());
    println!("{:<34} {:>23} | {:>23} {:>9}", "kernel", "fast", "naive reference", "speed-up");

    let tokens = 4096;
    let rope_local = RopeTable::new(10_000.0, HEAD_DIM, 8192);
    if !attention_only {
        other_kernels(budget, tokens, &rope_local);
    }

    // ---- Attention ----
    // f32 and bf16 kernels, 12 heads of 64: 8 x 512, one 8192-token sequence, and 16 short
    // sequences of 100-300 tokens (many small tasks).
    let rope_global = RopeTable::new(160_000.0, HEAD_DIM, 8192);
    let width = 3 * HIDDEN;
    let short: Vec<usize> = data(16, 9).iter().map(|v| (200.0 + 100.0 * v) as usize).collect();
    for (label, lens) in [("8x512", vec![512usize; 8]), ("16x100..300", short), ("1x8192", vec![8192usize])] {
        let total: usize = lens.iter().sum();
        let mut cu = vec![0u32];
        for &n in &lens {
            cu.push(cu.last().unwrap() + n as u32);
        }
        let qkv = data(total * width, 6);
        let mut aout = vec![0f32; total * HIDDEN];
        for (kind, window, rope) in [("local w=64", Some(WINDOW), &rope_local), ("global", None, &rope_global)] {
            // Useful flops: 2*d for q.k plus 2*d for p*v, per (query, visible key) pair.
            let pairs: f64 = lens
                .iter()
                .map(|&n| match window {
                    Some(w) => (0..n).map(|i| ((i + w + 1).min(n) - i.saturating_sub(w)) as f64).sum::<f64>(),
                    None => (n * n) as f64,
                })
                .sum();
            let flops = pairs * (4 * HEAD_DIM * HEADS) as f64;
            let fast = best(budget, || {
                modernbert_kernels::attention_varlen(black_box(&qkv), &cu, HEADS, HEAD_DIM, rope, window, &mut aout)
            });
            let name = format!("attention {kind} {label}");
            // The naive kernel is far too slow for the long global case at 12 heads: time one
            // head (its own qkv slice) and scale by 12.
            let naive = if skip_naive || (quick && window.is_none() && total > 4096) {
                None
            } else if window.is_none() && total > 4096 {
                let one: Vec<f32> = qkv
                    .chunks_exact(width)
                    .flat_map(|r| (0..3).flat_map(move |b| r[b * HIDDEN..b * HIDDEN + HEAD_DIM].iter().copied()))
                    .collect();
                let mut o1 = vec![0f32; total * HEAD_DIM];
                let t = Instant::now();
                reference::attention_varlen(&one, &cu, 1, HEAD_DIM, rope, window, &mut o1);
                Some(t.elapsed() * HEADS as u32)
            } else {
                Some(best(Duration::ZERO, || {
                    reference::attention_varlen(black_box(&qkv), &cu, HEADS, HEAD_DIM, rope, window, &mut aout)
                }))
            };
            row(&name, fast, naive, flops, "GFLOP/s");
            let bf16 = best(budget, || {
                modernbert_kernels::attention_varlen_bf16(
                    black_box(&qkv),
                    &cu,
                    HEADS,
                    HEAD_DIM,
                    rope,
                    window,
                    &mut aout,
                )
            });
            println!(
                "{:<34} {:>8.3} ms {:>8.2} GFLOP/s | {:.2}x the f32 kernel",
                format!("  bf16 {kind} {label}"),
                bf16.as_secs_f64() * 1e3,
                flops / bf16.as_secs_f64() / 1e9,
                fast.as_secs_f64() / bf16.as_secs_f64()
            );
        }
    }
    println!("(attention GFLOP/s count 4*d useful flops per visible (query, key) pair; naive global 1x8192 timed on 1 head x 12)");
}

/// LayerNorm, GeGLU and RoPE rows.
fn other_kernels(budget: Duration, tokens: usize, rope_local: &RopeTable) {
    // ---- LayerNorm, [4096 x 768] ----
    let x = data(tokens * HIDDEN, 1);
    let w: Vec<f32> = data(HIDDEN, 2).iter().map(|v| 1.0 + 0.1 * v).collect();
    let mut out = vec![0f32; x.len()];
    let bytes = (2 * x.len() * 4) as f64;
    let fast = best(budget, || modernbert_kernels::layer_norm(black_box(&x), &w, 1e-5, &mut out));
    let naive = best(budget, || reference::layer_norm(black_box(&x), &w, 1e-5, &mut out));
    row("layer_norm [4096x768]", fast, Some(naive), bytes, "GB/s ");

    let delta = data(tokens * HIDDEN, 3);
    let mut h = x.clone();
    let bytes = (4 * x.len() * 4) as f64; // read h, delta; write h, out
    let fast = best(budget, || modernbert_kernels::add_layer_norm(&mut h, black_box(&delta), &w, 1e-5, &mut out));
    let naive = best(budget, || reference::add_layer_norm(&mut h, black_box(&delta), &w, 1e-5, &mut out));
    row("add_layer_norm [4096x768]", fast, Some(naive), bytes, "GB/s ");

    // ---- GeGLU, [4096 x 2304] -> [4096 x 1152] ----
    let gx: Vec<f32> = data(tokens * 2 * INTER, 4).iter().map(|v| 3.0 * v).collect();
    let mut gout = vec![0f32; tokens * INTER];
    let bytes = ((gx.len() + gout.len()) * 4) as f64;
    let fast = best(budget, || modernbert_kernels::geglu(black_box(&gx), INTER, &mut gout));
    let naive = best(budget, || reference::geglu(black_box(&gx), INTER, &mut gout));
    row("geglu [4096x2304]->[4096x1152]", fast, Some(naive), bytes, "GB/s ");

    // ---- RoPE: rotate every Q and K head vector of 4096 tokens ----
    let mut qk = data(tokens * 2 * HIDDEN, 5);
    let bytes = (2 * qk.len() * 4) as f64;
    let fast = best(budget, || {
        for (t, row) in qk.chunks_exact_mut(2 * HIDDEN).enumerate() {
            for head in row.chunks_exact_mut(HEAD_DIM) {
                rope_local.rotate(head, t % 512);
            }
        }
    });
    row("RopeTable::rotate Q,K [4096x1536]", fast, None, bytes, "GB/s ");
}
