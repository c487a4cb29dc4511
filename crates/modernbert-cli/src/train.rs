//! `modernbert train` and `modernbert plot`: thin wrappers over `modernbert-train`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use modernbert_train::checkpoint;
use modernbert_train::config::RunConfig;
use modernbert_train::eval::{evaluate_mlm, EvalOptions};
use modernbert_train::trainer::{self, TrainOptions};
use std::path::PathBuf;

/// Training-related subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Pretrain or continue pretraining a ModernBERT model from a TOML run config (see configs/).
    Train(TrainArgs),
    /// Draw the loss curve of a run's metrics.jsonl as a PNG.
    Plot(PlotArgs),
    /// Held-out masked-token accuracy and loss of a model on prepared shards (masked like training),
    /// next to a unigram baseline that always predicts the most frequent training token.
    Eval(EvalArgs),
}

/// Arguments of `modernbert train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Run config (TOML). With --resume it may be left out: the checkpoint's copy is used.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Continue exactly from a checkpoint directory, or from a run directory's latest checkpoint.
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Stop after this many optimizer steps (total, counting resumed ones).
    #[arg(long)]
    pub max_steps: Option<u64>,
    /// Do not draw a progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Also write every step's packed micro-batches to this JSONL file (benchmarks).
    #[arg(long)]
    pub dump_batches: Option<PathBuf>,
    /// Start afresh in a run directory that already holds checkpoints (they are deleted).
    #[arg(long)]
    pub overwrite: bool,
}

/// Arguments of `modernbert plot`.
#[derive(Args)]
pub struct PlotArgs {
    /// A run's metrics.jsonl.
    pub metrics: PathBuf,
    /// Output PNG.
    #[arg(long, short, default_value = "loss.png")]
    pub output: PathBuf,
}

/// Arguments of `modernbert eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model directory or Hugging Face Hub id (default: $MODERNBERT_MODEL, else models/modernbert-mini).
    #[arg(long, short)]
    pub model: Option<String>,
    /// Shard directory from `modernbert data prepare` (its held-out split is scored).
    #[arg(long)]
    pub data: PathBuf,
    /// Share of maskable tokens to predict (0.3 = the training rule; 80% [MASK], 10% random, 10% kept).
    #[arg(long, default_value_t = 0.3)]
    pub mlm_probability: f64,
    /// Longest sequence in tokens; longer documents are split into chunks as in training.
    #[arg(long, default_value_t = 1024)]
    pub max_seq_len: usize,
    /// Masking seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Arithmetic of the encoder's linear layers.
    #[arg(long, default_value = "f32")]
    pub precision: modernbert::Precision,
}

/// Runs a training-related subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Train(a) => {
            prepare_training_process();
            let cfg = match (&a.config, &a.resume) {
                (Some(path), _) => RunConfig::load(path)?,
                (None, Some(resume)) => checkpoint::load_state(&checkpoint::resolve_resume(resume)?)?.1,
                (None, None) => bail!("give a run config (--config FILE) or a checkpoint to --resume"),
            };
            let opts = TrainOptions {
                resume: a.resume,
                max_steps: a.max_steps,
                progress: a.no_progress.then_some(false),
                dump_batches: a.dump_batches,
                overwrite: a.overwrite,
            };
            let s = trainer::train(cfg, &opts)?;
            let fmt = |e: Option<trainer::Eval>| {
                e.map_or("n/a".to_string(), |e| {
                    format!("loss {:.4}, accuracy {:.4} ({} tokens)", e.loss, e.accuracy, e.predicted)
                })
            };
            eprintln!("done: {} steps, {} tokens, last training loss {:.4}", s.steps, s.tokens, s.last_loss);
            eprintln!(
                "throughput: {:.0} tokens/s; packing efficiency {:.2}%",
                s.tokens_per_sec,
                100.0 * s.packing_efficiency
            );
            eprintln!("held-out at start: {}", fmt(s.eval_start));
            eprintln!("held-out at end:   {}", fmt(s.eval_end));
            if let Some(c) = s.checkpoint {
                eprintln!("checkpoint: {}", c.display());
            }
            Ok(())
        }
        Commands::Eval(a) => {
            let model = crate::load_model(a.model.as_deref(), a.precision)?;
            let opts = EvalOptions { mlm_probability: a.mlm_probability, max_seq_len: a.max_seq_len, seed: a.seed };
            let e = evaluate_mlm(&model, &a.data, opts)?;
            eprintln!(
                "{}: {} masked of {} held-out tokens ({} sequences): accuracy {:.2}%, loss {:.4}; \
                 unigram baseline (always token {}) {:.2}%",
                model.dir().display(),
                e.predicted,
                e.tokens,
                e.sequences,
                100.0 * e.accuracy,
                e.loss,
                e.unigram_token_id,
                100.0 * e.unigram_accuracy
            );
            println!("{}", serde_json::to_string(&e)?);
            Ok(())
        }
        Commands::Plot(a) => {
            modernbert_train::plot::plot_metrics(&a.metrics, &a.output)?;
            eprintln!("wrote {}", a.output.display());
            Ok(())
        }
    }
}

/// Process settings for training: freed memory kept by the allocator. (candle's element-wise ops
/// already run on the calling thread: `main` calls [`modernbert::threads`] first thing.)
pub fn prepare_training_process() {
    keep_freed_memory();
}

/// mimalloc hands freed memory back to the OS after 10 ms; a training step frees and reallocates
/// the same large buffers (activations, logits) every step, and the kernel zeroes every returned
/// page again when it is touched (`clear_page_erms`, ~10% of a step in perf). Never purging keeps
/// them: peak memory is unchanged. `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn keep_freed_memory() {
    // `mi_option_purge_delay` in mimalloc's `mi_option_e` (libmimalloc-sys 0.1 names no constant for it).
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option; mimalloc reads options atomically at each purge decision.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
    }
}
