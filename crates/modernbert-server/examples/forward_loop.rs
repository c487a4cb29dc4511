//! One input through the library, again and again: the loop to put under `perf record` when a
//! forward pass is slower than it should be (`latency` mixes in the server and the floors).
//!
//! ```text
//! cargo build --release -p modernbert-server --example forward_loop
//! perf record ./target/release/examples/forward_loop /tmp/mb-base int8 128 200
//! ```
//!
//! The text cycles through ten different words: one word repeated makes a random model's
//! activations denormal, which slows f32 FMAs several-fold and measures the wrong thing.

use anyhow::{Context, Result};
use modernbert::pipelines::{EmbedOptions, Want};
use modernbert::{Model, Precision};
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> Result<()> {
    modernbert::threads::keep_candle_on_one_thread();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, precision, tokens, reps] = &args[..] else {
        anyhow::bail!("usage: forward_loop MODEL_DIR f32|bf16|int8 TOKENS REPS");
    };
    let precision: Precision = precision.parse()?;
    let tokens: usize = tokens.parse().context("TOKENS")?;
    let reps: usize = reps.parse().context("REPS")?;
    let model = Model::load_with(Path::new(model), precision)?;
    let words = ["the", "model", "reads", "a", "long", "document", "about", "rivers", "and", "mountains"];
    let text: Vec<&str> = (0..tokens.saturating_sub(2)).map(|i| words[i % words.len()]).collect();
    let prepared = model.prepare(&text.join(" "), &EmbedOptions::default())?;
    let mut ms: Vec<f64> = (0..reps.max(1))
        .map(|_| {
            let start = Instant::now();
            model.run(&[(&prepared, Want::Embedding)], None)?;
            Ok(start.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<Result<_>>()?;
    ms.sort_by(f64::total_cmp);
    println!(
        "{} tokens: p50 {:.2} ms, min {:.2} ms over {} runs",
        prepared.ids.len(),
        ms[ms.len() / 2],
        ms[0],
        ms.len()
    );
    Ok(())
}
