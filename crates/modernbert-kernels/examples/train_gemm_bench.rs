//! The six GEMMs of one training sub-layer (`y = W_out · f(W_in · x)` forward, then `dW_out`,
//! `d_mid`, `dW_in`, `dx`), as the training blocks run them: f32 through the `gemm` crate vs
//! [`product`] in bf16 (operands packed on every call, as a step must), timed in the same run.
//!
//! `cargo run --release -p modernbert-kernels --example train_gemm_bench [-- --rows N]`
//!
//! Shapes: ModernBERT-base's attention (768 → 2304, 768 → 768) and MLP (768 → 2304, 1152 → 768)
//! sub-layers and modernbert-mini's (256 → 768, 256 → 256; 256 → 768, 384 → 256). Default rows
//! 480 (a fine-tuning step of 16 sentences).

use modernbert_kernels::matmul::{product, Arithmetic, Mat};
use std::hint::black_box;
use std::time::{Duration, Instant};

fn data(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
        })
        .collect()
}

fn best(mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    let mut best = Duration::MAX;
    let mut runs = 0;
    while runs < 5 || (start.elapsed() < Duration::from_millis(1500) && runs < 1000) {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed());
        runs += 1;
    }
    best
}

/// Forward and backward GEMMs of one sub-layer: `x [t, d]`, `W_in [n_in, d]`, `W_out [d, m]`.
fn sublayer(arith: Arithmetic, t: usize, d: usize, n_in: usize, m: usize, ops: &Ops) {
    let Ops { x, w_in, w_out, mid, dy, dpre } = ops;
    let mut pre = vec![0f32; t * n_in];
    product(arith, &mut pre, Mat::rows(x, d), Mat::cols(w_in, d), t, n_in, d);
    let mut y = vec![0f32; t * d];
    product(arith, &mut y, Mat::rows(mid, m), Mat::cols(w_out, m), t, d, m);
    let mut dw_out = vec![0f32; d * m];
    product(arith, &mut dw_out, Mat::cols(dy, d), Mat::rows(mid, m), d, m, t);
    let mut dmid = vec![0f32; t * m];
    product(arith, &mut dmid, Mat::rows(dy, d), Mat::rows(w_out, m), t, m, d);
    let mut dw_in = vec![0f32; n_in * d];
    product(arith, &mut dw_in, Mat::cols(dpre, n_in), Mat::rows(x, d), n_in, d, t);
    let mut dx = vec![0f32; t * d];
    product(arith, &mut dx, Mat::rows(dpre, n_in), Mat::rows(w_in, d), t, d, n_in);
    black_box((pre, y, dw_out, dmid, dw_in, dx));
}

struct Ops {
    x: Vec<f32>,
    w_in: Vec<f32>,
    w_out: Vec<f32>,
    mid: Vec<f32>,
    dy: Vec<f32>,
    dpre: Vec<f32>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let t = args.iter().position(|a| a == "--rows").map(|i| args[i + 1].parse().expect("--rows N")).unwrap_or(480);
    println!("rows {t}, {} rayon threads", rayon::current_num_threads());
    println!("{:<26} {:>10} {:>10} {:>7}", "sub-layer (d, n_in, m)", "f32 ms", "bf16 ms", "ratio");
    let shapes = [
        ("base attention", 768, 2304, 768),
        ("base MLP", 768, 2304, 1152),
        ("mini attention", 256, 768, 256),
        ("mini MLP", 256, 768, 384),
    ];
    let each = args.iter().any(|a| a == "--each");
    for (name, d, n_in, m) in shapes {
        let ops = Ops {
            x: data(t * d, 1, 1.0),
            w_in: data(n_in * d, 2, 0.05),
            w_out: data(d * m, 3, 0.05),
            mid: data(t * m, 4, 1.0),
            dy: data(t * d, 5, 1e-3),
            dpre: data(t * n_in, 6, 1e-3),
        };
        if each {
            // Each product alone: (label, m, n, k, a, b).
            let gemms: [(&str, usize, usize, usize, Mat, Mat); 6] = [
                ("x·W_inᵀ", t, n_in, d, Mat::rows(&ops.x, d), Mat::cols(&ops.w_in, d)),
                ("mid·W_outᵀ", t, d, m, Mat::rows(&ops.mid, m), Mat::cols(&ops.w_out, m)),
                ("dW_out = dyᵀ·mid", d, m, t, Mat::cols(&ops.dy, d), Mat::rows(&ops.mid, m)),
                ("d_mid = dy·W_out", t, m, d, Mat::rows(&ops.dy, d), Mat::rows(&ops.w_out, m)),
                ("dW_in = d_preᵀ·x", n_in, d, t, Mat::cols(&ops.dpre, n_in), Mat::rows(&ops.x, d)),
                ("dx = d_pre·W_in", t, d, n_in, Mat::rows(&ops.dpre, n_in), Mat::rows(&ops.w_in, d)),
            ];
            for (label, gm, gn, gk, a, b) in gemms {
                let mut c = vec![0f32; gm * gn];
                let f = best(|| product(Arithmetic::F32, &mut c, a, b, gm, gn, gk));
                let h = best(|| product(Arithmetic::Bf16, &mut c, a, b, gm, gn, gk));
                println!(
                    "  {label:<20} {gm}x{gn}x{gk}: f32 {:.3} ms, bf16 {:.3} ms, {:.2}x",
                    f.as_secs_f64() * 1e3,
                    h.as_secs_f64() * 1e3,
                    f.as_secs_f64() / h.as_secs_f64()
                );
            }
        }
        let f = best(|| sublayer(Arithmetic::F32, t, d, n_in, m, &ops));
        let b = best(|| sublayer(Arithmetic::Bf16, t, d, n_in, m, &ops));
        println!(
            "{:<26} {:>10.3} {:>10.3} {:>6.2}x",
            format!("{name} ({d}, {n_in}, {m})"),
            f.as_secs_f64() * 1e3,
            b.as_secs_f64() * 1e3,
            f.as_secs_f64() / b.as_secs_f64()
        );
    }
}
