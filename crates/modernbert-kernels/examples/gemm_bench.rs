//! Linear-layer GEMM rates: f32 (the `gemm` crate, what candle runs, which packs `W` on every
//! call) vs [`F32Linear`] (packed once, what f32 inference runs) vs [`Bf16Linear`] (AVX512-BF16)
//! vs [`Int8Linear`] (AVX512-VNNI), `y[rows, out] = x[rows, in] · Wᵀ` with `W` stored
//! `[out, in]`, all timed in the same run; the ratios are against the `gemm` crate.
//!
//! `cargo run --release -p modernbert-kernels --example gemm_bench [-- --rows N] [--large]`
//!
//! ModernBERT-base shapes (Wqkv / Wi 768→2304, Wo 768→768, mlp.Wo 1152→768), `--large` adds
//! ModernBERT-large's (1024→3072, 1024→5248, 2624→1024). `RAYON_NUM_THREADS=1` for one thread;
//! `MODERNBERT_KERNELS_ISA=portable` times the portable fallback. Each figure is the best of
//! several runs after a warm-up; GFLOP/s count 2·rows·in·out.

use modernbert_kernels::{bf16_native, int8_native, Bf16Linear, F32Linear, Int8Linear};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn best(budget: Duration, mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 3 || (start.elapsed() < budget && runs < 1000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
    }
    best
}

fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            let mut u = 0.0;
            for _ in 0..4 {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                u += ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0;
            }
            u * 0.866 * scale
        })
        .collect()
}

fn f32_gemm(x: &[f32], w: &[f32], rows: usize, out: usize, inn: usize, y: &mut [f32]) {
    let threads = rayon::current_num_threads();
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: the strides describe x [rows, inn] row-major, Wᵀ [inn, out] (W row-major
    // [out, inn]) and y [rows, out] row-major, all in bounds.
    unsafe {
        gemm::gemm(
            rows,
            out,
            inn,
            y.as_mut_ptr(),
            1,
            out as isize,
            false,
            x.as_ptr(),
            1,
            inn as isize,
            w.as_ptr(),
            inn as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows =
        args.iter().position(|a| a == "--rows").map(|i| args[i + 1].parse().expect("--rows N")).unwrap_or(4096usize);
    let mut shapes =
        vec![("Wqkv/Wi 768->2304", 768, 2304), ("attn Wo 768->768", 768, 768), ("mlp Wo 1152->768", 1152, 768)];
    if let Some(i) = args.iter().position(|a| a == "--shape") {
        let (a, b) = args[i + 1].split_once(',').expect("--shape IN,OUT");
        shapes = vec![("custom", a.parse().unwrap(), b.parse().unwrap())];
    }
    if args.iter().any(|a| a == "--large") {
        shapes.extend([
            ("L Wqkv 1024->3072", 1024, 3072),
            ("L Wi 1024->5248", 1024, 5248),
            ("L mlp Wo 2624->1024", 2624, 1024),
        ]);
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "rows {rows}, {} rayon threads, avx512-bf16 {}, avx512-vnni {}, loadavg {}",
        rayon::current_num_threads(),
        bf16_native(),
        int8_native(),
        load.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
    );
    println!(
        "{:<22} {:>15} {:>15} {:>15} {:>15} {:>7} {:>7} {:>7}",
        "shape", "f32 gemm", "f32 packed", "bf16", "int8", "f32px", "bf16x", "int8x"
    );
    let budget = Duration::from_millis(1500);
    let (mut tf, mut tp, mut tb, mut tq, mut flops) = (0.0, 0.0, 0.0, 0.0, 0.0);
    for (name, inn, out) in shapes {
        let x = data(rows * inn, 1, 1.0);
        let w = data(out * inn, 2, 0.02);
        let mut y = vec![0f32; rows * out];
        let lp = F32Linear::new(&w, out, inn);
        let lb = Bf16Linear::new(&w, out, inn);
        let lq = Int8Linear::new(&w, out, inn);
        let f = best(budget, || f32_gemm(&x, &w, rows, out, inn, black_box(&mut y)));
        let p = best(budget, || lp.forward(&x, rows, black_box(&mut y)));
        let b = best(budget, || lb.forward(&x, rows, black_box(&mut y)));
        let q = best(budget, || lq.forward(&x, rows, black_box(&mut y)));
        let work = 2.0 * (rows * inn * out) as f64;
        let g = |t: Duration| work / t.as_secs_f64() / 1e9;
        println!(
            "{name:<22} {:>7.0} GFLOP/s {:>7.0} GFLOP/s {:>7.0} GFLOP/s {:>7.0} GFLOP/s {:>6.2}x {:>6.2}x {:>6.2}x",
            g(f),
            g(p),
            g(b),
            g(q),
            f.as_secs_f64() / p.as_secs_f64(),
            f.as_secs_f64() / b.as_secs_f64(),
            f.as_secs_f64() / q.as_secs_f64()
        );
        tf += f.as_secs_f64();
        tp += p.as_secs_f64();
        tb += b.as_secs_f64();
        tq += q.as_secs_f64();
        flops += work;
    }
    println!(
        "{:<22} {:>7.0} GFLOP/s {:>7.0} GFLOP/s {:>7.0} GFLOP/s {:>7.0} GFLOP/s {:>6.2}x {:>6.2}x {:>6.2}x",
        "all (time-weighted)",
        flops / tf / 1e9,
        flops / tp / 1e9,
        flops / tb / 1e9,
        flops / tq / 1e9,
        tf / tp,
        tf / tb,
        tf / tq
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("loadavg after: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
}
