//! `modernbert data prepare | data stats | tokenizer train`: thin wrappers over
//! `modernbert_train::data`.

use anyhow::Result;
use clap::{Args, Subcommand};
use modernbert_train::data::{bpe, measure_packing, prepare, Manifest, Split};
use std::path::PathBuf;
use std::time::Instant;

/// Data and tokenizer subcommands (flattened into the top-level command list).
#[derive(Subcommand)]
pub enum Commands {
    /// Tokenized training shards.
    #[command(subcommand)]
    Data(DataCommand),
    /// Tokenizers for new corpora.
    #[command(subcommand)]
    Tokenizer(TokenizerCommand),
}

/// `modernbert data ...`
#[derive(Subcommand)]
pub enum DataCommand {
    /// Tokenize text/code files, directories and JSONL ({"text": ...} per line) into memory-mapped
    /// shards with a held-out split.
    Prepare(PrepareArgs),
    /// Print a shard directory's manifest totals and the packing efficiency for given sizes.
    Stats(StatsArgs),
}

/// Packing sizes used to report efficiency.
#[derive(Args, Clone, Copy)]
pub struct PackArgs {
    /// Longest sequence (document chunk) in tokens.
    #[arg(long, default_value_t = 1024)]
    max_seq_len: usize,
    /// Token budget of one packed row (P).
    #[arg(long, default_value_t = 8192)]
    row_tokens: usize,
    /// Rows per optimizer step.
    #[arg(long, default_value_t = 1)]
    rows: usize,
}

/// Arguments of `data prepare`.
#[derive(Args)]
pub struct PrepareArgs {
    /// tokenizer.json to tokenize with.
    #[arg(long)]
    tokenizer: PathBuf,
    /// Output shard directory (a previous `data prepare` output there is replaced).
    #[arg(long, short)]
    output: PathBuf,
    /// Only files matching one of these globs (relative to a directory input, e.g. '*.rs').
    #[arg(long)]
    include: Vec<String>,
    /// Skip files matching these globs (relative to a directory input, e.g. '**/tests/**').
    #[arg(long)]
    exclude: Vec<String>,
    /// Fraction of documents held out (chosen by hashing each document's relative path).
    #[arg(long, default_value_t = 0.01)]
    heldout_fraction: f64,
    /// Longest stored document in tokens, [CLS]/[SEP] included; longer ones are split into chunks.
    #[arg(long, default_value_t = 8192)]
    max_doc_tokens: usize,
    /// Tokens per shard file.
    #[arg(long, default_value_t = 1 << 28)]
    shard_tokens: u64,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    #[command(flatten)]
    pack: PackArgs,
    /// Files and directories.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

/// Arguments of `data stats`.
#[derive(Args)]
pub struct StatsArgs {
    /// Shard directory.
    dir: PathBuf,
    /// Split to measure packing on.
    #[arg(long, default_value = "train")]
    split: String,
    #[command(flatten)]
    pack: PackArgs,
}

/// `modernbert tokenizer ...`
#[derive(Subcommand)]
pub enum TokenizerCommand {
    /// Train a byte-level BPE with the ModernBERT layout ([UNK] [CLS] [SEP] [PAD] [MASK], [unusedK]
    /// fillers to a multiple of 64, `[CLS] $A [SEP]` template).
    Train(TokenizerTrainArgs),
}

/// Arguments of `tokenizer train`.
#[derive(Args)]
pub struct TokenizerTrainArgs {
    /// Total vocabulary size, a multiple of 64.
    #[arg(long)]
    vocab_size: usize,
    /// Where to write tokenizer.json.
    #[arg(long, short)]
    output: PathBuf,
    /// Minimum frequency of a merged pair.
    #[arg(long, default_value_t = 2)]
    min_frequency: u64,
    /// Only files matching one of these globs (relative to a directory input).
    #[arg(long)]
    include: Vec<String>,
    /// Skip files matching these globs.
    #[arg(long)]
    exclude: Vec<String>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Text files, JSONL files and directories.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

/// Runs a data or tokenizer subcommand.
pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Data(DataCommand::Prepare(a)) => run_prepare(a),
        Commands::Data(DataCommand::Stats(a)) => {
            let split: Split = a.split.parse()?;
            let m = Manifest::load(&a.dir)?;
            print_manifest(&m);
            print_packing(&a.dir, split, a.pack)
        }
        Commands::Tokenizer(TokenizerCommand::Train(a)) => {
            let start = Instant::now();
            let cfg =
                bpe::BpeConfig { vocab_size: a.vocab_size, min_frequency: a.min_frequency, show_progress: !a.quiet };
            let tok = bpe::train(&cfg, &a.files, &a.include, &a.exclude, &a.output)?;
            eprintln!(
                "wrote {}: vocab {} ({} learned + 5 special + {} unused) in {:.1}s",
                a.output.display(),
                tok.get_vocab_size(true),
                tok.get_vocab_size(false),
                tok.get_vocab_size(true) - tok.get_vocab_size(false) - 5,
                start.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}

fn run_prepare(a: PrepareArgs) -> Result<()> {
    let start = Instant::now();
    let cfg = prepare::PrepareConfig {
        tokenizer: a.tokenizer,
        output: a.output.clone(),
        inputs: a.inputs,
        include: a.include,
        exclude: a.exclude,
        heldout_fraction: a.heldout_fraction,
        max_doc_tokens: a.max_doc_tokens,
        shard_tokens: a.shard_tokens,
        progress: !a.quiet,
    };
    let m = prepare::prepare(&cfg)?;
    eprintln!("wrote {} in {:.1}s", a.output.display(), start.elapsed().as_secs_f64());
    print_manifest(&m);
    print_packing(&a.output, Split::Train, a.pack)
}

fn print_manifest(m: &Manifest) {
    let i = &m.inputs;
    eprintln!(
        "inputs: {} files ({:.1} MB), {} JSONL lines, {} documents ({} chunked), skipped {} invalid UTF-8 and {} empty",
        i.files,
        i.bytes as f64 / 1e6,
        i.jsonl_lines,
        i.source_docs,
        i.chunked_docs,
        i.skipped_invalid_utf8,
        i.skipped_empty
    );
    for split in Split::ALL {
        let s = m.split(split);
        eprintln!("{split}: {} documents, {} tokens, {} shard(s)", s.docs, s.tokens, s.shards.len());
    }
}

fn print_packing(dir: &std::path::Path, split: Split, p: PackArgs) -> Result<()> {
    let stats = measure_packing(dir, split, p.max_seq_len, p.row_tokens, p.rows, 0)?;
    eprintln!(
        "packing efficiency ({split}, one epoch, P = {}, max_seq_len = {}, {} row(s)/step): {:.3}% ({} tokens in {} rows)",
        p.row_tokens,
        p.max_seq_len,
        p.rows,
        100.0 * stats.efficiency(),
        stats.tokens,
        stats.rows
    );
    Ok(())
}
