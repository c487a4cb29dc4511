//! `modernbert index` and `modernbert search`: thin wrappers over `modernbert_search`.

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use modernbert_search::indexer::{self, IndexOptions};
use modernbert_search::search::{Mode, OpenOptions, Query, Response, Searcher};
use modernbert_search::walk::WalkOptions;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Code-search subcommands.
#[derive(Subcommand)]
pub enum Commands {
    /// Index a source tree for `modernbert search`: files by .gitignore (no vendored, generated or
    /// binary files), code chunked by syntax, BM25 + embeddings. Re-running updates changed files only.
    Index(IndexArgs),
    /// Search an index built by `modernbert index` (hybrid BM25 + dense by default).
    Search(SearchArgs),
}

#[derive(Args)]
pub struct IndexArgs {
    /// The directory (or file) to index.
    path: PathBuf,
    /// Where the index lives (created if missing; must be empty or an index).
    #[arg(long)]
    index: PathBuf,
    /// Embedding model: a directory or Hub id. Default: the model the index was built with, else
    /// $MODERNBERT_MODEL, else models/modernbert-mini-embed (else models/modernbert-mini).
    #[arg(long, short)]
    model: Option<String>,
    /// Arithmetic of the encoder's linear layers: f32, bf16 or int8.
    #[arg(long, default_value = "f32")]
    precision: modernbert::Precision,
    /// Token budget of a code chunk (default: the model's maximum, at most 512).
    #[arg(long, default_value_t = 0)]
    max_tokens: usize,
    /// Token budget of a Markdown/prose section (default: the model's maximum length).
    #[arg(long, default_value_t = 0)]
    prose_max_tokens: usize,
    /// Leave out paths matching this gitignore-style glob (repeatable), e.g. --exclude 'tests/**'.
    #[arg(long)]
    exclude: Vec<String>,
    /// Skip files larger than this many bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_file_bytes: u64,
    /// Ignore the existing index (another model, a damaged index) and build it afresh.
    #[arg(long)]
    rebuild: bool,
    /// Commit finished work every N seconds, so that a killed run keeps it (0 = only at the end).
    #[arg(long, default_value_t = 300)]
    checkpoint_secs: u64,
    /// No progress bar.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Args)]
pub struct SearchArgs {
    /// The index directory.
    #[arg(long)]
    index: PathBuf,
    /// Results per query.
    #[arg(long, short = 'k', default_value_t = 10)]
    top_k: usize,
    /// hybrid (BM25 + dense, reciprocal-rank fusion), dense, or bm25 (needs no model).
    #[arg(long, default_value = "hybrid")]
    mode: Mode,
    /// Queries from a JSONL file (`-` for stdin), rows {"query": ...}: one JSON line per query,
    /// in order.
    #[arg(long)]
    queries: Option<PathBuf>,
    /// JSON output ({"query", "results": [{"path", "start_line", "end_line", "score", "text"}]}).
    #[arg(long)]
    json: bool,
    /// Rerank the best candidates with a cross-encoder or ColBERT model.
    #[arg(long)]
    rerank: Option<String>,
    /// How many candidates --rerank sees.
    #[arg(long, default_value_t = 50)]
    rerank_candidates: usize,
    /// Query model (default: the one recorded in the index; another model is refused).
    #[arg(long, short)]
    model: Option<String>,
    #[arg(long, default_value = "f32")]
    precision: modernbert::Precision,
    /// With --queries whose rows carry answers ({"query", "path", "line"}): print MRR@10,
    /// Recall@10/100 and nDCG@10 instead of results.
    #[arg(long)]
    evaluate: bool,
    /// Print query latencies (p50/p99, milliseconds) on stderr.
    #[arg(long)]
    timings: bool,
    /// The query (words are joined by spaces).
    query: Vec<String>,
}

pub fn run(command: Commands) -> Result<()> {
    match command {
        Commands::Index(a) => index(a),
        Commands::Search(a) => search(a),
    }
}

fn index(a: IndexArgs) -> Result<()> {
    let mut opts = IndexOptions::new(a.path, a.index);
    opts.model = a.model;
    opts.precision = a.precision;
    opts.max_tokens = a.max_tokens;
    opts.prose_max_tokens = a.prose_max_tokens;
    opts.walk = WalkOptions { max_file_bytes: a.max_file_bytes, exclude: a.exclude };
    opts.rebuild = a.rebuild;
    opts.progress = !a.quiet;
    opts.checkpoint = if a.checkpoint_secs == 0 { Duration::MAX } else { Duration::from_secs(a.checkpoint_secs) };
    let summary = indexer::index(&opts)?;
    crate::emit(&mut std::io::stdout().lock(), &summary)
}

fn search(a: SearchArgs) -> Result<()> {
    if a.top_k == 0 {
        bail!("--top-k must be at least 1");
    }
    let text = a.query.join(" ");
    let rows = match (&a.queries, text.trim().is_empty()) {
        (Some(_), false) => bail!("give either a QUERY or --queries FILE, not both"),
        (Some(f), true) => modernbert_search::eval::read_queries(f)?,
        (None, true) => bail!("empty query: give some words or code to search for (or --queries FILE)"),
        (None, false) => {
            vec![modernbert_search::eval::QueryRow { query: text, path: None, line: None, answers: Vec::new() }]
        }
    };
    if a.evaluate && a.queries.is_none() {
        bail!("--evaluate needs --queries FILE with answers");
    }
    let rerank_name = a.rerank.clone();
    let opts = OpenOptions {
        model: a.model,
        precision: a.precision,
        rerank: a.rerank,
        rerank_candidates: a.rerank_candidates,
        ..Default::default()
    };
    let searcher = Searcher::open(&a.index, opts)?;
    let snap = searcher.snapshot()?;
    if !snap.manifest.complete {
        eprintln!(
            "warning: the index is partial (an indexing run was interrupted); re-run `modernbert index` to finish it"
        );
    }
    let top_k = if a.evaluate { a.top_k.max(100) } else { a.top_k };
    let mut out = std::io::stdout().lock();
    let json_out = a.json || a.queries.is_some();
    let mut responses = Vec::with_capacity(rows.len());
    let mut latencies = Vec::with_capacity(rows.len());
    for row in &rows {
        let q = Query { text: row.query.clone(), top_k, mode: a.mode, rerank: true };
        let t = Instant::now();
        let r = searcher.search(&q)?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        if a.evaluate {
            responses.push(r);
        } else if json_out {
            crate::emit(&mut out, &r)?;
        } else {
            print_readable(&mut out, &r)?;
        }
    }
    if a.timings {
        eprintln!("{}", json!(timing_stats(&latencies)));
    }
    if a.evaluate {
        let m = modernbert_search::eval::score(&rows, &responses)?;
        let mode = serde_json::to_value(a.mode)?;
        crate::emit(
            &mut out,
            &json!({
                "mode": mode,
                "rerank": rerank_name,
                "queries": m.queries,
                "mrr_at_10": m.mrr_at_10,
                "recall_at_10": m.recall_at_10,
                "recall_at_100": m.recall_at_100,
                "ndcg_at_10": m.ndcg_at_10,
            }),
        )?;
    }
    Ok(())
}

/// p50 / p99 / mean / first / max of the per-query latencies (milliseconds).
fn timing_stats(ms: &[f64]) -> serde_json::Value {
    if ms.is_empty() {
        return json!({ "queries": 0 });
    }
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let pct = |p: f64| sorted[((p * (sorted.len() - 1) as f64).round() as usize).min(sorted.len() - 1)];
    json!({
        "queries": ms.len(),
        "first_ms": ms[0],
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "mean_ms": ms.iter().sum::<f64>() / ms.len() as f64,
        "max_ms": sorted[sorted.len() - 1],
    })
}

/// `path:start-end  score` and the first lines, for a terminal.
fn print_readable(out: &mut impl Write, r: &Response) -> Result<()> {
    let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let (bold, dim, reset) = if color { ("\x1b[1m", "\x1b[2m", "\x1b[0m") } else { ("", "", "") };
    if r.results.is_empty() {
        writeln!(out, "no results for {:?}", r.query)?;
        return Ok(());
    }
    for (i, h) in r.results.iter().enumerate() {
        writeln!(
            out,
            "{bold}{:>2}. {}:{}-{}{reset}  {dim}score {:.4}{reset}",
            i + 1,
            h.path,
            h.start_line,
            h.end_line,
            h.score
        )?;
        let lines: Vec<&str> = h.text.lines().collect();
        for (j, l) in lines.iter().take(4).enumerate() {
            let l: String = l.chars().take(120).collect();
            writeln!(out, "    {dim}{:>5}{reset}  {l}", h.start_line as usize + j)?;
        }
        if lines.len() > 4 {
            writeln!(out, "    {dim}  ... {} more lines{reset}", lines.len() - 4)?;
        }
        writeln!(out)?;
    }
    Ok(())
}
