//! Where a short request's time goes, at one client: the same input through the whole server
//! (HTTP, JSON, tokenisation, queue, model thread) and through the library alone
//! (`Model::prepare` + `Model::run`), per precision and input length, p50 of `--reps` runs,
//! measured in one process, alternating, so that both see the same machine load. For f32 it also
//! times the encoder's linear layers alone: candle's matmul (the `gemm` crate packs the weight
//! matrix on every call; what the library ran before it packed frozen f32 weights once) against
//! the kernels' `F32Linear` (packed once at load, what the library runs now).
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
use modernbert_kernels::F32Linear;
use modernbert_server::client::Connection;
use modernbert_server::ServeArgs;
use serde_json::json;
use std::path::Path;
use std::time::{Duration, Instant};

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

/// Times one forward pass' f32 linear layers of a ModernBERT of `hidden`/`intermediate`/`layers`
/// at `t` tokens: (candle's matmul, which packs each weight on every call; the kernels'
/// [`F32Linear`], packed once), p50 ms.
fn linear_layers(t: usize, hidden: usize, intermediate: usize, layers: usize, reps: usize) -> Result<(f64, f64)> {
    let dev = Device::Cpu;
    let shapes = [(3 * hidden, hidden), (hidden, hidden), (2 * intermediate, hidden), (hidden, intermediate)];
    let weights: Vec<Vec<Tensor>> = (0..layers)
        .map(|_| shapes.iter().map(|&(o, i)| Tensor::randn(0f32, 0.02, (o, i), &dev)).collect())
        .collect::<candle_core::Result<_>>()?;
    let packed: Vec<Vec<F32Linear>> = weights
        .iter()
        .map(|l| {
            l.iter()
                .zip(&shapes)
                .map(|(w, &(o, i))| Ok(F32Linear::new(&w.flatten_all()?.to_vec1::<f32>()?, o, i)))
                .collect()
        })
        .collect::<candle_core::Result<_>>()?;
    let xs: Vec<Tensor> =
        shapes.iter().map(|&(_, i)| Tensor::randn(0f32, 1.0, (t, i), &dev)).collect::<candle_core::Result<_>>()?;
    let xv: Vec<Vec<f32>> = xs.iter().map(|x| x.flatten_all()?.to_vec1::<f32>()).collect::<candle_core::Result<_>>()?;
    let (mut candle, mut once) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        let start = Instant::now();
        for layer in &weights {
            for (w, x) in layer.iter().zip(&xs) {
                std::hint::black_box(x.matmul(&w.t()?)?);
            }
        }
        candle.push(ms(start.elapsed()));
        let start = Instant::now();
        for layer in &packed {
            for (w, x) in layer.iter().zip(&xv) {
                let mut y = vec![0f32; t * w.out_features()];
                w.forward(x, t, &mut y);
                std::hint::black_box(&y);
            }
        }
        once.push(ms(start.elapsed()));
    }
    Ok((p50(candle), p50(once)))
}

fn main() -> Result<()> {
    let o = parse()?;
    let dir = modernbert::hub::resolve(&o.model)?;
    println!(
        "| precision | tokens | server p50 ms | library p50 ms | server − library ms | server / library | \
         f32 linear layers: candle matmul ms | packed once ms | load avg |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---|");
    for precision in &o.precisions {
        let p: Precision = precision.parse()?;
        let model = Model::load_with(Path::new(&dir), p)?;
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
            let linear = if p == Precision::F32 {
                let c = &model.config;
                let (candle, packed) =
                    linear_layers(tokens, c.hidden_size, c.intermediate_size, c.num_hidden_layers, o.reps.min(10))?;
                (format!("{candle:.1}"), format!("{packed:.1}"))
            } else {
                ("".into(), "".into())
            };
            let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
            let load: Vec<&str> = load.split_whitespace().take(3).collect();
            println!(
                "| {precision} | {tokens} | {s:.1} | {l:.1} | {:.1} | {:.2} | {} | {} | {} |",
                s - l,
                s / l,
                linear.0,
                linear.1,
                load.join(" ")
            );
        }
        server.shutdown()?;
    }
    Ok(())
}
