//! `modernbert bench`: the paper's efficiency protocol (spec §8) at sizes a CPU can run.
//!
//! Four synthetic sets (token ids uniform in [100, 16000), seed 42): fixed 512, variable
//! N(256, 64) clamped to [16, 512], fixed 8192, variable N(4096, 1024) clamped to [16, 8192].
//! Throughput counts real tokens only; FLOPs are 2 × non-embedding parameters per token plus
//! attention (4·keys·hidden per token and layer, keys limited to the window in local layers).

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use modernbert::config::LayerType;
use modernbert::rng::Rng;
use modernbert::weights::Weights;
use modernbert::{Config, Model};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Instant;

/// Options of `modernbert bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Model directory; without it, random weights of `--config`.
    #[arg(long, short)]
    model: Option<String>,
    /// Released configuration to instantiate with random weights.
    #[arg(long, default_value = "base")]
    config: String,
    /// Datasets to run (comma-separated).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [Dataset::Fixed512, Dataset::Var256])]
    dataset: Vec<Dataset>,
    /// Documents per dataset (default: 64 for the short sets, 4 for the long ones).
    #[arg(long)]
    docs: Option<usize>,
    /// Timed passes over each dataset (the best is reported).
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Arithmetic of the encoder's linear layers: f32, bf16 or int8.
    #[arg(long, default_value = "f32")]
    precision: modernbert::Precision,
    /// Write the generated token ids as JSON (for the peer scripts under bench/).
    #[arg(long)]
    dump_inputs: Option<PathBuf>,
}

/// A synthetic dataset of the efficiency benchmark.
#[derive(Clone, Copy, ValueEnum, Serialize, PartialEq, Eq, Debug)]
pub enum Dataset {
    #[value(name = "fixed-512")]
    Fixed512,
    #[value(name = "var-256")]
    Var256,
    #[value(name = "fixed-8192")]
    Fixed8192,
    #[value(name = "var-4096")]
    Var4096,
}

impl Dataset {
    fn name(self) -> &'static str {
        match self {
            Dataset::Fixed512 => "fixed-512",
            Dataset::Var256 => "var-256",
            Dataset::Fixed8192 => "fixed-8192",
            Dataset::Var4096 => "var-4096",
        }
    }

    /// `(mean, std, max)` of the document length; std 0 means fixed.
    fn lengths(self) -> (f64, f64, usize) {
        match self {
            Dataset::Fixed512 => (512.0, 0.0, 512),
            Dataset::Var256 => (256.0, 64.0, 512),
            Dataset::Fixed8192 => (8192.0, 0.0, 8192),
            Dataset::Var4096 => (4096.0, 1024.0, 8192),
        }
    }

    /// The documents: token ids uniform in [100, 16000), deterministic.
    pub fn generate(self, docs: usize) -> Vec<Vec<u32>> {
        let (mean, std, max) = self.lengths();
        let mut rng = Rng::new(42);
        (0..docs)
            .map(|_| {
                let len =
                    if std == 0.0 { max } else { (mean + std * rng.normal()).round().clamp(16.0, max as f64) as usize };
                (0..len).map(|_| 100 + rng.below(15_900) as u32).collect()
            })
            .collect()
    }

    fn default_docs(self) -> usize {
        match self {
            Dataset::Fixed512 | Dataset::Var256 => 64,
            Dataset::Fixed8192 | Dataset::Var4096 => 4,
        }
    }
}

/// One line of the benchmark report.
#[derive(Serialize)]
struct Row {
    dataset: &'static str,
    docs: usize,
    tokens: usize,
    seconds: f64,
    tokens_per_second: f64,
    gflops_per_second: f64,
    peak_rss_mib: f64,
}

/// Runs the benchmark and prints one JSON line per dataset plus a table on stderr.
pub fn run(args: BenchArgs) -> Result<()> {
    let model = match &args.model {
        Some(spec) => Model::load_with(&modernbert::hub::resolve(spec)?, args.precision)?,
        None => {
            let config = Config::preset(&args.config)
                .with_context(|| format!("unknown --config {:?} (base, large)", args.config))?;
            let weights = Weights::random(&config, &candle_core::Device::Cpu)?;
            Model::from_weights(config, &weights, None, std::path::Path::new("<random>"), args.precision)?
        }
    };
    if args.repeat == 0 {
        bail!("--repeat must be at least 1");
    }
    let threads = rayon::current_num_threads();
    eprintln!(
        "model: {} layers, hidden {}, {:?} linear layers, {} threads, weights {:.0} MiB resident",
        model.config.num_hidden_layers,
        model.config.hidden_size,
        args.precision,
        threads,
        peak_rss_mib()
    );
    let mut dumped = serde_json::Map::new();
    let mut out = std::io::stdout().lock();
    for &dataset in &args.dataset {
        let docs = dataset.generate(args.docs.unwrap_or(dataset.default_docs()));
        if args.dump_inputs.is_some() {
            dumped.insert(dataset.name().into(), serde_json::to_value(&docs)?);
        }
        let tokens: usize = docs.iter().map(Vec::len).sum();
        let flops: f64 = docs.iter().map(|d| forward_flops(&model.config, d.len())).sum();
        let seqs: Vec<&[u32]> = docs.iter().map(Vec::as_slice).collect();
        // Warm-up on a slice of the set (page in weights, size the allocator).
        model.map_batches(&seqs[..seqs.len().min(2)], |b, _| Ok(vec![(); b.num_sequences()]))?;
        let mut best = f64::INFINITY;
        for _ in 0..args.repeat {
            let start = Instant::now();
            model.map_batches(&seqs, |b, _| Ok(vec![(); b.num_sequences()]))?;
            best = best.min(start.elapsed().as_secs_f64());
        }
        let row = Row {
            dataset: dataset.name(),
            docs: docs.len(),
            tokens,
            seconds: best,
            tokens_per_second: tokens as f64 / best,
            gflops_per_second: flops / best / 1e9,
            peak_rss_mib: peak_rss_mib(),
        };
        eprintln!(
            "{:<11} {:>4} docs {:>7} tokens  {:>8.3} s  {:>8.0} tokens/s  {:>6.1} GFLOP/s  peak {:>6.0} MiB",
            row.dataset,
            row.docs,
            row.tokens,
            row.seconds,
            row.tokens_per_second,
            row.gflops_per_second,
            row.peak_rss_mib
        );
        serde_json::to_writer(&mut out, &row)?;
        use std::io::Write;
        writeln!(out)?;
    }
    if let Some(path) = args.dump_inputs {
        std::fs::write(&path, serde_json::to_string(&dumped)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Forward FLOPs of one sequence of `n` tokens: 2 × non-embedding params per token + attention.
pub fn forward_flops(cfg: &Config, n: usize) -> f64 {
    let (d, i) = (cfg.hidden_size as f64, cfg.intermediate_size as f64);
    let per_token_linear = 2.0 * (4.0 * d * d + 3.0 * i * d);
    let half = cfg.local_attention / 2;
    let mut attention = 0.0;
    for t in &cfg.layer_types {
        let keys: f64 = match t {
            LayerType::Global => (n * n) as f64,
            // keys within ±half of each query, clipped at the sequence ends
            LayerType::Local => (0..n).map(|q| (q.min(half) + (n - 1 - q).min(half) + 1) as f64).sum(),
        };
        attention += 4.0 * keys * d;
    }
    per_token_linear * cfg.num_hidden_layers as f64 * n as f64 + attention
}

/// Peak resident memory of this process (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<f64>().ok()))
        .map_or(0.0, |kb| kb / 1024.0)
}
