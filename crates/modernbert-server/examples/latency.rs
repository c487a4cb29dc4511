//! Where a short request's time goes, at one client: the same input through the whole server
//! (HTTP, JSON, tokenisation, queue, model thread) and through the library alone
//! (`Model::prepare` + `Model::run`), per precision and input length, p50 of `--reps` runs,
//! measured in one process, alternating, so that both see the same machine load.
//!
//! Against the two floors of a forward pass, measured in the same run: reading the encoder's
//! linear-layer weights once (their bytes at this precision over the memory bandwidth of a
//! parallel sum over 1 GiB) and their arithmetic (2 FLOP per weight and token at the rate the
//! precision's kernel reaches on 256 tokens); `library / max(read, arithmetic)` is the ratio
//! to keep small. The linear layers alone are timed too: through candle's matmul (the `gemm`
//! crate repacks each weight on every call, what f32 ran before) and through the packed kernels.
//!
//! ```text
//! .venv/bin/python scripts/make_random_checkpoint.py --size base --out /tmp/mb-base
//! cargo run --release -p modernbert-server --example latency -- --model /tmp/mb-base \
//!     --precision f32,bf16,int8 --tokens 4,32,128 --reps 30
//! ```

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use modernbert::pipelines::{EmbedOptions, Want};
use modernbert::{Model, Precision};
use modernbert_kernels::{Bf16Linear, F32Linear, Int8Linear};
use modernbert_server::client::Connection;
use modernbert_server::ServeArgs;
use rayon::prelude::*;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

// The `modernbert` binary's allocator: with glibc's, every large activation buffer is a fresh
// mmap whose pages the kernel faults in and zeroes on each call.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Options {
    model: String,
    precisions: Vec<String>,
    tokens: Vec<usize>,
    reps: usize,
}

fn parse() -> Result<Options> {
    let mut o = Options { model: String::new(), precisions: vec!["f32".into()], tokens: vec![4, 32, 128], reps: 30 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--model" => o.model = value()?,
            "--precision" => o.precisions = value()?.split(',').map(str::to_string).collect(),
            "--tokens" => o.tokens = value()?.split(',').map(|x| x.trim().parse()).collect::<Result<_, _>>()?,
            "--reps" => o.reps = value()?.parse()?,
            other => anyhow::bail!("unknown option {other} (--model, --precision, --tokens, --reps)"),
        }
    }
    anyhow::ensure!(!o.model.is_empty(), "--model DIR is required");
    Ok(o)
}

/// A text of exactly `tokens` tokens ([CLS]/[SEP] included) for `model`'s tokenizer.
fn text(model: &Model, tokens: usize, seed: usize) -> Result<String> {
    const WORDS: &[&str] = &["the", "model", "reads", "a", "long", "document", "about", "rivers", "and", "mountains"];
    let mut words: Vec<String> = vec![format!("{}", seed % 1000)];
    let mut i = 0;
    loop {
        let t = words.join(" ");
        let n = model.prepare(&t, &EmbedOptions::default())?.ids.len();
        if n >= tokens {
            return Ok(t);
        }
        words.push(WORDS[(i * 7 + seed) % WORDS.len()].to_string());
        i += 1;
    }
}

fn p50(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A linear layer's weight packed for one precision's kernel.
enum Packed {
    F32(F32Linear),
    Bf16(Bf16Linear),
    Int8(Int8Linear),
}

impl Packed {
    fn new(p: Precision, w: &[f32], out: usize, inp: usize) -> Packed {
        match p {
            Precision::F32 => Packed::F32(F32Linear::new(w, out, inp)),
            Precision::Bf16 => Packed::Bf16(Bf16Linear::new(w, out, inp)),
            Precision::Int8 => Packed::Int8(Int8Linear::new(w, out, inp)),
        }
    }
    fn forward(&self, x: &[f32], rows: usize, y: &mut [f32]) {
        match self {
            Packed::F32(w) => w.forward(x, rows, y),
            Packed::Bf16(w) => w.forward(x, rows, y),
            Packed::Int8(w) => w.forward(x, rows, y),
        }
    }
}

/// The encoder's linear layers (Wqkv, Wo, Wi, mlp Wo) × layers, with random weights.
struct LinearLayers {
    shapes: [(usize, usize); 4],
    weights: Vec<Vec<Tensor>>,
}

impl LinearLayers {
    fn new(c: &modernbert::Config) -> Result<Self> {
        let (h, i) = (c.hidden_size, c.intermediate_size);
        let shapes = [(3 * h, h), (h, h), (2 * i, h), (h, i)];
        let weights = (0..c.num_hidden_layers)
            .map(|_| shapes.iter().map(|&(o, i)| Tensor::randn(0f32, 0.02, (o, i), &Device::Cpu)).collect())
            .collect::<candle_core::Result<_>>()?;
        Ok(LinearLayers { shapes, weights })
    }

    /// Weights in all layers.
    fn params(&self) -> usize {
        self.weights.len() * self.shapes.iter().map(|&(o, i)| o * i).sum::<usize>()
    }

    fn inputs(&self, t: usize) -> Result<Vec<Tensor>> {
        Ok(self
            .shapes
            .iter()
            .map(|&(_, i)| Tensor::randn(0f32, 1.0, (t, i), &Device::Cpu))
            .collect::<candle_core::Result<_>>()?)
    }

    /// p50 ms of one pass at `t` tokens through candle's matmul (the `gemm` crate packs each
    /// weight on every call: what the library ran at f32 before it packed weights once).
    fn candle_ms(&self, t: usize, reps: usize) -> Result<f64> {
        let xs = self.inputs(t)?;
        let mut times = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            for layer in &self.weights {
                for (w, x) in layer.iter().zip(&xs) {
                    std::hint::black_box(x.matmul(&w.t()?)?);
                }
            }
            times.push(ms(start.elapsed()));
        }
        Ok(p50(times))
    }

    /// p50 ms of one pass at `t` tokens through the kernels that `p` runs (packed once).
    fn packed_ms(&self, p: Precision, t: usize, reps: usize) -> Result<f64> {
        let packed: Vec<Vec<Packed>> = self
            .weights
            .iter()
            .map(|l| {
                l.iter()
                    .zip(&self.shapes)
                    .map(|(w, &(o, i))| Ok(Packed::new(p, &w.flatten_all()?.to_vec1::<f32>()?, o, i)))
                    .collect()
            })
            .collect::<candle_core::Result<_>>()?;
        let xs: Vec<Vec<f32>> =
            self.inputs(t)?.iter().map(|x| x.flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<_>>()?;
        let mut times = Vec::new();
        for _ in 0..reps {
            let start = Instant::now();
            for layer in &packed {
                for ((w, x), &(o, _)) in layer.iter().zip(&xs).zip(&self.shapes) {
                    let mut y = vec![0f32; t * o];
                    w.forward(x, t, &mut y);
                    std::hint::black_box(&y);
                }
            }
            times.push(ms(start.elapsed()));
        }
        Ok(p50(times))
    }
}

/// Memory read bandwidth in bytes/s: the best of 5 parallel sums over 1 GiB (far beyond L3).
fn read_bandwidth() -> f64 {
    let buf = vec![1f32; 1 << 28];
    (0..5)
        .map(|_| {
            let start = Instant::now();
            let s: f32 = buf.par_chunks(1 << 16).map(sum).sum();
            std::hint::black_box(s);
            (buf.len() * 4) as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max)
}

/// A sum with 16 independent accumulators, so that it vectorises and memory is the limit.
fn sum(v: &[f32]) -> f32 {
    let mut acc = [0f32; 16];
    for c in v.chunks_exact(16) {
        for (a, x) in acc.iter_mut().zip(c) {
            *a += x;
        }
    }
    acc.iter().sum()
}

/// Bytes one weight takes at `p`.
fn weight_bytes(p: Precision) -> f64 {
    match p {
        Precision::F32 => 4.0,
        Precision::Bf16 => 2.0,
        Precision::Int8 => 1.0,
    }
}

fn main() -> Result<()> {
    modernbert::threads::keep_candle_on_one_thread();
    let o = parse()?;
    let dir = modernbert::hub::resolve(&o.model)?;
    let bandwidth = read_bandwidth();
    println!("memory read bandwidth (this run): {:.1} GB/s", bandwidth / 1e9);
    println!(
        "| precision | tokens | server p50 ms | library p50 ms | server / library | weight read ms | \
         arithmetic ms | library / max(read, arithmetic) | linear layers: candle matmul ms | packed ms | load avg |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|");
    for precision in &o.precisions {
        let p: Precision = precision.parse()?;
        let model = Model::load_with(Path::new(&dir), p)?;
        let layers = LinearLayers::new(&model.config)?;
        // The kernels' rate at this precision on a compute-bound size, measured in this run.
        let rate_tokens = 256;
        let flops_per_token = 2.0 * layers.params() as f64;
        let rate = flops_per_token * rate_tokens as f64 / (layers.packed_ms(p, rate_tokens, 3)? / 1e3);
        println!("{precision}: linear-layer rate at {rate_tokens} tokens {:.1} GFLOP/s", rate / 1e9);
        let read_ms = weight_bytes(p) * layers.params() as f64 / bandwidth * 1e3;
        let mut args = ServeArgs::for_model(dir.to_str().context("model path")?);
        args.precision = p;
        let server = modernbert_server::spawn(args)?;
        server.wait_ready(Duration::from_secs(600))?;
        let mut conn = Connection::open(server.addr())?;
        for &tokens in &o.tokens {
            let texts: Vec<String> = (0..o.reps).map(|r| text(&model, tokens, r)).collect::<Result<_>>()?;
            // Warm both paths up.
            for t in texts.iter().take(3) {
                conn.post_json("/embed", &json!({ "inputs": t }))?;
                model.run(&[(&model.prepare(t, &EmbedOptions::default())?, Want::Embedding)], None)?;
            }
            let (mut served, mut library) = (Vec::new(), Vec::new());
            for t in &texts {
                let start = Instant::now();
                let r = conn.post_json("/embed", &json!({ "inputs": t }))?;
                anyhow::ensure!(r.status == 200, "status {}: {}", r.status, r.text());
                served.push(ms(start.elapsed()));
                let start = Instant::now();
                let prepared = model.prepare(t, &EmbedOptions::default())?;
                model.run(&[(&prepared, Want::Embedding)], None)?;
                library.push(ms(start.elapsed()));
            }
            let (s, l) = (p50(served), p50(library));
            let arithmetic_ms = flops_per_token * tokens as f64 / rate * 1e3;
            let reps = o.reps.min(10);
            let candle =
                if p == Precision::F32 { format!("{:.1}", layers.candle_ms(tokens, reps)?) } else { String::new() };
            let packed = layers.packed_ms(p, tokens, reps)?;
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load: Vec<&str> = load.split_whitespace().take(3).collect();
            println!(
                "| {precision} | {tokens} | {s:.1} | {l:.1} | {:.2} | {read_ms:.1} | {arithmetic_ms:.1} | {:.2} | {candle} | {packed:.1} | {} |",
                s / l,
                l / read_ms.max(arithmetic_ms),
                load.join(" ")
            );
        }
        server.shutdown()?;
    }
    Ok(())
}
