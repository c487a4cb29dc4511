//! `modernbert`: run ModernBERT checkpoints from the command line. Output is JSON on stdout,
//! one object per input; errors are one line on stderr with a non-zero exit code.

mod bench;
#[cfg(feature = "train")]
mod data_cmd;
#[cfg(feature = "train")]
mod finetune;
mod input;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "train")]
mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use modernbert::{Model, Pooling};
use serde::Serialize;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;

// mimalloc keeps freed activation buffers for reuse; glibc returns large blocks to the OS after
// every op, so each layer would page-fault its buffers in again.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "modernbert", version, about = "Fast ModernBERT inference")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Options shared by every command that runs a model.
#[derive(clap::Args)]
struct ModelArgs {
    /// Model directory (config.json, model.safetensors, tokenizer.json) or Hugging Face Hub id.
    /// Default: $MODERNBERT_MODEL, else the model shipped in this repository (models/modernbert-mini).
    #[arg(long, short)]
    model: Option<String>,
    /// Truncate every input to this many tokens (special tokens included). Without it, an input
    /// longer than the model's maximum is an error.
    #[arg(long)]
    max_length: Option<usize>,
    /// Arithmetic of the encoder's linear layers: f32 (exact), bf16 or int8 (faster, approximate).
    #[arg(long, default_value = "f32")]
    precision: modernbert::Precision,
}

#[derive(Subcommand)]
enum Command {
    /// Predict the tokens hidden behind [MASK].
    FillMask {
        #[command(flatten)]
        model: ModelArgs,
        /// Number of candidates per mask.
        #[arg(long, default_value_t = 5)]
        top_k: usize,
        /// Read inputs from a JSONL file (`-` for stdin): strings or {"text": ...} objects.
        #[arg(long)]
        input: Option<PathBuf>,
        texts: Vec<String>,
    },
    /// Sentence embeddings (or per-token vectors with --pooling none).
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, value_enum, default_value_t = PoolingArg::Mean)]
        pooling: PoolingArg,
        /// Do not L2-normalise the vectors.
        #[arg(long)]
        no_normalize: bool,
        #[arg(long)]
        input: Option<PathBuf>,
        texts: Vec<String>,
    },
    /// Sequence or token classification.
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        /// Inputs are text pairs: consecutive TEXT arguments, or {"text", "text_pair"} lines.
        #[arg(long)]
        pair: bool,
        #[arg(long)]
        input: Option<PathBuf>,
        texts: Vec<String>,
    },
    /// Show the token ids and tokens the model sees (special tokens included).
    Tokenize {
        #[command(flatten)]
        model: ModelArgs,
        texts: Vec<String>,
    },
    /// Throughput benchmark on the paper's synthetic sets (random weights by default).
    Bench(bench::BenchArgs),
    #[cfg(feature = "train")]
    #[command(flatten)]
    Data(data_cmd::Commands),
    #[cfg(feature = "train")]
    #[command(flatten)]
    Train(train::Commands),
    #[cfg(feature = "train")]
    #[command(flatten)]
    Finetune(finetune::Commands),
    #[cfg(feature = "serve")]
    #[command(flatten)]
    Serve(serve::Commands),
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Mean,
    Cls,
    None,
}

fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,modernbert_server=info".into()),
        )
        .init();
    if let Err(e) = run(Cli::parse()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::FillMask { model, top_k, input, texts } => {
            let texts = input::texts(input.as_deref(), texts)?;
            let m = load(&model)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let results = m.fill_mask(&refs, top_k, model.max_length)?;
            for (text, masks) in texts.iter().zip(results) {
                emit(&mut out, &json!({ "text": text, "masks": masks }))?;
            }
        }
        Command::Embed { model, pooling, no_normalize, input, texts } => {
            let texts = input::texts(input.as_deref(), texts)?;
            let m = load(&model)?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let pooling = match pooling {
                PoolingArg::Mean => Some(Pooling::Mean),
                PoolingArg::Cls => Some(Pooling::Cls),
                PoolingArg::None => None,
            };
            for e in m.embed(&refs, pooling, !no_normalize, model.max_length)? {
                emit(&mut out, &json!({ "embedding": e }))?;
            }
        }
        Command::Classify { model, pair, input, texts } => {
            let inputs = input::pairs(input.as_deref(), texts, pair)?;
            let m = load(&model)?;
            let refs: Vec<(&str, Option<&str>)> = inputs.iter().map(|(a, b)| (a.as_str(), b.as_deref())).collect();
            for r in m.classify(&refs, model.max_length)? {
                emit(&mut out, &r)?;
            }
        }
        Command::Tokenize { model, texts } => {
            anyhow::ensure!(!texts.is_empty(), "no input text given");
            let m = load(&model)?;
            let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (t.as_str(), None)).collect();
            for e in m.tokenizer()?.encode_batch(&inputs, model.max_length.map(modernbert::Truncation::right))? {
                emit(&mut out, &json!({ "ids": e.ids, "tokens": e.tokens, "offsets": e.offsets }))?;
            }
        }
        Command::Bench(args) => bench::run(args)?,
        #[cfg(feature = "train")]
        Command::Data(command) => data_cmd::run(command)?,
        #[cfg(feature = "train")]
        Command::Train(command) => train::run(command)?,
        #[cfg(feature = "train")]
        Command::Finetune(command) => finetune::run(command)?,
        #[cfg(feature = "serve")]
        Command::Serve(command) => serve::run(command)?,
    }
    Ok(())
}

fn load(args: &ModelArgs) -> Result<Model> {
    load_model(args.model.as_deref(), args.precision)
}

/// Loads a model directory or hub id; `None` means the default model.
fn load_model(spec: Option<&str>, precision: modernbert::Precision) -> Result<Model> {
    let spec = match spec {
        Some(spec) => spec.to_string(),
        None => default_model().context(NO_MODEL)?,
    };
    let dir = modernbert::hub::resolve(&spec)?;
    Ok(Model::load_with(&dir, precision)?)
}

/// The error when no model was given and there is no default.
const NO_MODEL: &str = "no --model given (a model directory or a Hugging Face Hub id)";

/// The model used when `--model` is not given: `$MODERNBERT_MODEL`, else the repository's own.
fn default_model() -> Option<String> {
    if let Ok(spec) = std::env::var("MODERNBERT_MODEL") {
        return Some(spec);
    }
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/../../models/modernbert-mini");
    std::path::Path::new(shipped).join("config.json").is_file().then(|| shipped.to_string())
}

fn emit(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    serde_json::to_writer(&mut *out, value)?;
    out.write_all(b"\n")?;
    Ok(())
}
