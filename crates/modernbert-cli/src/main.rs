//! `modernbert`: run ModernBERT checkpoints from the command line. Output is JSON on stdout,
//! one object per input; errors are one line on stderr with a non-zero exit code.

mod bench;
#[cfg(feature = "train")]
mod data_cmd;
#[cfg(feature = "train")]
mod finetune;
mod input;
mod readable;
#[cfg(feature = "search")]
mod search;
#[cfg(feature = "serve")]
mod serve;
#[cfg(feature = "train")]
mod train;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use modernbert::embedding::PoolingMode;
use modernbert::pipelines::{EmbedOptions, Output, Want};
use modernbert::Model;
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
    /// Sentence embeddings as the model's format computes them (sentence-transformers pooling,
    /// Dense, Normalize, prompts; PyLate token vectors), or per-token states with --pooling none.
    /// Without --model: $MODERNBERT_MODEL, else the shipped embedder models/modernbert-mini-embed.
    Embed {
        #[command(flatten)]
        model: ModelArgs,
        /// Replace the model's pooling (cls, mean, max, mean_sqrt_len_tokens, weightedmean,
        /// lasttoken), or `none` for every token's final hidden state.
        #[arg(long)]
        pooling: Option<String>,
        /// Do not L2-normalise the final vectors (then they equal sentence-transformers' encode()).
        #[arg(long)]
        no_normalize: bool,
        /// A prompt of the model's config_sentence_transformers.json, by name.
        #[arg(long)]
        prompt_name: Option<String>,
        /// A prompt string prepended to every text (wins over --prompt-name).
        #[arg(long)]
        prompt: Option<String>,
        /// Keep the first N dimensions (Matryoshka), before normalisation.
        #[arg(long)]
        dimensions: Option<usize>,
        /// ColBERT models: embed the texts as queries or as documents.
        #[arg(long, value_enum, default_value_t = InputType::Document)]
        input_type: InputType,
        /// Embed only part I (0-based) of N: the input's texts split into N contiguous ranges
        /// whose sizes differ by at most one, in order (for array jobs: SLURM, Kubernetes indexed
        /// Jobs). Each output line then carries `"index"`, the text's position in the whole
        /// input (blank lines skipped); the parts' outputs concatenated in order of I are the
        /// unsharded output.
        #[arg(long, value_name = "I/N")]
        shard: Option<input::Shard>,
        /// Write the JSON lines to FILE instead of stdout, resumably: if FILE exists, its complete
        /// lines are kept, a partial last line (an interrupted write) is dropped, and only the
        /// remaining texts are embedded. Remove FILE to start over.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Read texts from a file (`-` for stdin): JSONL strings or {"text": ...} objects, or
        /// plain text lines; blank lines are skipped.
        #[arg(long)]
        input: Option<PathBuf>,
        texts: Vec<String>,
    },
    /// Score documents against a query with a cross-encoder (or a ColBERT model's MaxSim),
    /// most relevant first.
    Rerank {
        #[command(flatten)]
        model: ModelArgs,
        #[arg(long, short)]
        query: String,
        /// Report the raw logits instead of the activation's scores.
        #[arg(long)]
        raw_scores: bool,
        /// Read documents from a JSONL file (`-` for stdin): strings or {"text": ...} objects.
        #[arg(long)]
        input: Option<PathBuf>,
        documents: Vec<String>,
    },
    /// Sequence or token classification.
    Classify {
        #[command(flatten)]
        model: ModelArgs,
        /// Inputs are text pairs: consecutive TEXT arguments, or {"text", "text_pair"} lines.
        #[arg(long)]
        pair: bool,
        /// Token classifiers: group B-/I- tagged tokens into entities (HF's aggregation "simple").
        #[arg(long)]
        aggregate: bool,
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
    #[cfg(feature = "search")]
    #[command(flatten)]
    Search(search::Commands),
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum InputType {
    Query,
    Document,
}

fn main() {
    modernbert::threads::keep_candle_on_one_thread();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,modernbert_server=info".into()),
        )
        .init();
    // Usage errors as one line too (help and version print as usual).
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("error: invalid arguments");
            eprintln!("{} (see --help)", first.trim());
            std::process::exit(2);
        }
    };
    if let Err(e) = run(cli) {
        // A reader that closed the pipe (`| head`) is not an error.
        let broken_pipe = e
            .chain()
            .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe));
        if broken_pipe {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    let mut out = std::io::stdout().lock();
    // On a terminal, results print as readable lines; piped or redirected, as JSON lines.
    let readable = std::io::IsTerminal::is_terminal(&out);
    match cli.command {
        Command::FillMask { model, top_k, input, texts } => {
            let texts = input::texts(input.as_deref(), texts)?;
            let m = load(&model)?;
            input::in_chunks(&texts, &mut out, readable, |chunk| {
                let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
                let results = m.fill_mask(&refs, top_k, model.max_length)?;
                Ok(chunk.iter().zip(results).map(|(text, masks)| json!({ "text": text, "masks": masks })).collect())
            })?;
        }
        Command::Embed {
            model,
            pooling,
            no_normalize,
            prompt_name,
            prompt,
            dimensions,
            input_type,
            shard,
            output,
            input,
            texts,
        } => {
            let (texts, first, total) = input::texts_of_shard(input.as_deref(), texts, shard)?;
            let (mut sink, done, readable): (Box<dyn Write>, usize, bool) = match &output {
                Some(path) => {
                    let (file, done) = input::resume(path, first, texts.len(), shard.is_some())?;
                    (Box::new(file), done, false)
                }
                None => (Box::new(out), 0, readable),
            };
            // With --output, one line on stderr says where the file stands (job logs).
            let report = |what: &str| {
                if let Some(path) = &output {
                    let part = shard.map_or(String::new(), |s| format!(", shard {}/{}", s.index, s.count));
                    let range = format!("texts {}..{} of {total}{part}", first, first + texts.len());
                    eprintln!("{}: {what} ({range})", path.display());
                }
            };
            if done == texts.len() {
                report("already complete");
                return Ok(());
            }
            if done > 0 {
                report(&format!("resuming after {done} of {} lines", texts.len()));
            }
            let m = load_embedder(model.model.as_deref(), model.precision)?;
            let token_states = pooling.as_deref() == Some("none");
            let opts = EmbedOptions {
                prompt_name,
                prompt,
                truncate_dim: dimensions,
                normalize: !no_normalize,
                truncation: model.max_length.map(modernbert::Truncation::right),
                is_query: input_type == InputType::Query,
                pooling: match pooling.as_deref() {
                    None | Some("none") => None,
                    Some(p) => Some(PoolingMode::parse(p).with_context(|| {
                        format!("--pooling {p:?}: expected cls, mean, max, mean_sqrt_len_tokens, weightedmean, lasttoken or none")
                    })?),
                },
            };
            let want = if token_states { Want::TokenStates } else { Want::Embedding };
            let refs: Vec<&str> = texts[done..].iter().map(String::as_str).collect();
            // The index of the next text in the whole input (errors name it, shards print it).
            let mut next = first + done;
            input::in_chunks(&refs, &mut sink, readable, |chunk| {
                let prepared = chunk
                    .iter()
                    .enumerate()
                    .map(|(j, t)| m.prepare(t, &opts).map_err(|e| at_input(next + j, e)))
                    .collect::<Result<Vec<_>>>()?;
                let inputs: Vec<_> = prepared.iter().map(|p| (p, want)).collect();
                let mut lines: Vec<serde_json::Value> = m
                    .run(&inputs, opts.pooling)?
                    .into_iter()
                    .map(|o| match o {
                        Output::Vector(v) => json!({ "embedding": m.finish(v, &opts) }),
                        Output::Vectors(v) if token_states => json!({ "embedding": v }),
                        Output::Vectors(v) => json!({ "token_embeddings": v }),
                        Output::Logits(l) => json!({ "embedding": l }),
                    })
                    .collect();
                if shard.is_some() {
                    for (j, line) in lines.iter_mut().enumerate() {
                        line["index"] = json!(next + j);
                    }
                }
                next += chunk.len();
                Ok(lines)
            })?;
            report("complete");
        }
        Command::Rerank { model, query, raw_scores, input, documents } => {
            let documents = input::texts(input.as_deref(), documents)?;
            let m = load(&model)?;
            let refs: Vec<&str> = documents.iter().map(String::as_str).collect();
            let scores =
                m.score_pairs(&query, &refs, raw_scores, model.max_length.map(modernbert::Truncation::right))?;
            let mut order: Vec<usize> = (0..scores.len()).collect();
            order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
            for i in order {
                write_line(&mut out, i, &json!({ "index": i, "score": scores[i], "text": documents[i] }), readable)?;
            }
        }
        Command::Classify { model, pair, aggregate, input, texts } => {
            let inputs = input::pairs(input.as_deref(), texts, pair)?;
            let m = load(&model)?;
            let refs: Vec<(&str, Option<&str>)> = inputs.iter().map(|(a, b)| (a.as_str(), b.as_deref())).collect();
            input::in_chunks(&refs, &mut out, readable, |chunk| {
                m.classify(chunk, model.max_length)?
                    .into_iter()
                    .zip(chunk)
                    .map(|(r, (text, _))| match (aggregate, r) {
                        (true, modernbert::tasks::ClassifyOutput::Tokens(tokens)) => {
                            Ok(json!({ "entities": modernbert::tasks::group_entities(text, &tokens) }))
                        }
                        (true, _) => anyhow::bail!("--aggregate groups the tokens of a token-classification model"),
                        (false, r) => Ok(serde_json::to_value(r)?),
                    })
                    .collect()
            })?;
        }
        Command::Tokenize { model, texts } => {
            anyhow::ensure!(!texts.is_empty(), "no input text given");
            let m = load(&model)?;
            let inputs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| (t.as_str(), None)).collect();
            let encodings =
                m.tokenizer()?.encode_batch(&inputs, model.max_length.map(modernbert::Truncation::right))?;
            for (i, e) in encodings.into_iter().enumerate() {
                write_line(&mut out, i, &json!({ "ids": e.ids, "tokens": e.tokens, "offsets": e.offsets }), readable)?;
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
        #[cfg(feature = "search")]
        Command::Search(command) => search::run(command)?,
    }
    Ok(())
}

fn load(args: &ModelArgs) -> Result<Model> {
    load_model(args.model.as_deref(), args.precision)
}

/// Loads a model directory or hub id; `None` means the default model.
fn load_model(spec: Option<&str>, precision: modernbert::Precision) -> Result<Model> {
    load_or(spec, precision, default_model)
}

/// [`load_model`] for embedding and retrieval commands: `None` means the default embedding model
/// (see [`modernbert::hub::default_embedding_model`]).
fn load_embedder(spec: Option<&str>, precision: modernbert::Precision) -> Result<Model> {
    load_or(spec, precision, modernbert::hub::default_embedding_model)
}

fn load_or(spec: Option<&str>, precision: modernbert::Precision, default: fn() -> Option<String>) -> Result<Model> {
    let spec = match spec {
        Some(spec) => spec.to_string(),
        None => default().context(NO_MODEL)?,
    };
    let dir = modernbert::hub::resolve(&spec)?;
    Ok(Model::load_with(&dir, precision)?)
}

/// The error when no model was given and there is no default.
const NO_MODEL: &str = "no --model given (a model directory or a Hugging Face Hub id)";

/// The model used when `--model` is not given (see [`modernbert::hub::default_model`]).
fn default_model() -> Option<String> {
    modernbert::hub::default_model()
}

/// A library error about the `i`-th text of the whole input, named as the library names an
/// input of one call (`input 3: empty text`).
fn at_input(i: usize, e: modernbert::Error) -> anyhow::Error {
    use modernbert::Error;
    match e {
        Error::TooLong { tokens, max } => anyhow::anyhow!(
            "input {i} has {tokens} tokens, more than the model's maximum of {max}; truncate it (--max-length)"
        ),
        Error::Input(m) => anyhow::anyhow!("input {i}: {m}"),
        Error::Tokenizer(m) => anyhow::anyhow!("tokenizer: input {i}: {m}"),
        other => other.into(),
    }
}

/// Writes `value` as one JSON line.
fn emit(out: &mut impl Write, value: &impl Serialize) -> Result<()> {
    write_line(out, 0, value, false)
}

/// Writes result `index` as a JSON line, or as a [`readable`] line for a terminal; one write per
/// line, so a line reaches the output whole or (on a crash) as its tail.
fn write_line(out: &mut (impl Write + ?Sized), index: usize, value: &impl Serialize, readable: bool) -> Result<()> {
    let mut line = if readable {
        readable::line(index, &serde_json::to_value(value)?).into_bytes()
    } else {
        serde_json::to_vec(value)?
    };
    line.push(b'\n');
    out.write_all(&line)?;
    Ok(())
}
