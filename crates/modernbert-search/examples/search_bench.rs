//! Query latency of a code-search index, for `bench/code_search.sh` (not a test).
//!
//! ```text
//! cargo run --release -p modernbert-search --example search_bench -- \
//!     --index DIR --queries Q.jsonl [--modes bm25,dense,hybrid] [--warmup 5] [--top-k 10]
//! cargo run --release -p modernbert-search --example search_bench -- --scan 100000x256
//! ```
//!
//! With `--index`: opens the index, then per mode runs the queries of the JSONL file (rows
//! `{"query": ...}`) after `--warmup` untimed ones, and prints one JSON line per mode:
//! `first_ms` (the first query of the process in that mode: with dense/hybrid it loads the
//! model), and p50 / p99 / mean / max of the warm queries; for dense and hybrid also the query
//! embedding alone (`embed_p50_ms`). With `--scan ROWSxDIM`: the exact dense scan plus top-10 on a
//! random unit matrix of that size (the cost of a dense query over an index that large, without
//! embedding it), p50 / p99 over 200 queries.

use anyhow::{bail, Context, Result};
use modernbert_search::search::{Mode, OpenOptions, Query, Searcher};
use serde_json::json;
use std::path::PathBuf;
use std::time::Instant;

fn stats(ms: &mut [f64]) -> serde_json::Value {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((p * (ms.len() - 1) as f64).round() as usize).min(ms.len() - 1)];
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    json!({
        "p50_ms": round(pct(0.50)),
        "p99_ms": round(pct(0.99)),
        "mean_ms": round(ms.iter().sum::<f64>() / ms.len() as f64),
        "max_ms": round(ms[ms.len() - 1]),
    })
}

fn scan(spec: &str) -> Result<()> {
    let (rows, dim) = spec.split_once('x').context("--scan ROWSxDIM, e.g. 100000x256")?;
    let (rows, dim): (usize, usize) = (rows.parse()?, dim.parse()?);
    let mut rng = modernbert::rng::Rng::new(13);
    let mut unit = |n: usize| {
        let mut v: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
        for row in v.chunks_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            row.iter_mut().for_each(|x| *x /= norm);
        }
        v
    };
    let matrix = unit(rows * dim);
    let queries: Vec<Vec<f32>> = (0..210).map(|_| unit(dim)).collect();
    let mut ms = Vec::new();
    for (i, q) in queries.iter().enumerate() {
        let t = Instant::now();
        let scores = modernbert_search::dense::scores(&matrix, q);
        let top = modernbert::retrieval::top_k(&scores, 10);
        std::hint::black_box(top);
        if i >= 10 {
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut out =
        json!({ "scan_rows": rows, "dim": dim, "queries": ms.len(), "threads": rayon::current_num_threads() });
    out.as_object_mut().unwrap().extend(stats(&mut ms).as_object().unwrap().clone());
    println!("{out}");
    Ok(())
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut index, mut queries, mut modes, mut warmup, mut top_k) =
        (None::<PathBuf>, None::<PathBuf>, "bm25,dense,hybrid".to_string(), 5usize, 10usize);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--index" => index = Some(value()?.into()),
            "--queries" => queries = Some(value()?.into()),
            "--modes" => modes = value()?,
            "--warmup" => warmup = value()?.parse()?,
            "--top-k" => top_k = value()?.parse()?,
            "--scan" => return scan(&value()?),
            other => bail!("unknown argument {other}"),
        }
    }
    let (Some(index), Some(queries)) = (index, queries) else {
        bail!("--index DIR --queries FILE, or --scan ROWSxDIM")
    };
    let rows = modernbert_search::eval::read_queries(&queries)?;
    anyhow::ensure!(
        rows.len() > warmup,
        "{} has {} queries; more than --warmup {warmup} needed",
        queries.display(),
        rows.len()
    );
    let t = Instant::now();
    let searcher = Searcher::open(&index, OpenOptions::default())?;
    let snap = searcher.snapshot()?;
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    for mode in modes.split(',') {
        let mode: Mode = mode.parse()?;
        let query = |text: &str| Query { text: text.into(), top_k, mode, rerank: false };
        let t = Instant::now();
        searcher.search(&query(&rows[0].query))?;
        let first_ms = t.elapsed().as_secs_f64() * 1e3;
        for r in &rows[1..warmup] {
            searcher.search(&query(&r.query))?;
        }
        let mut ms = Vec::new();
        for r in &rows[warmup..] {
            let t = Instant::now();
            std::hint::black_box(searcher.search(&query(&r.query))?);
            ms.push(t.elapsed().as_secs_f64() * 1e3);
        }
        let mut out = json!({
            "mode": mode,
            "chunks": snap.len(),
            "queries": ms.len(),
            "open_ms": (open_ms * 1000.0).round() / 1000.0,
            "first_ms": (first_ms * 1000.0).round() / 1000.0,
        });
        let o = out.as_object_mut().unwrap();
        o.extend(stats(&mut ms).as_object().unwrap().clone());
        if mode != Mode::Bm25 {
            let embedder = searcher.embedder()?;
            let mut embed: Vec<f64> = rows[warmup..]
                .iter()
                .map(|r| {
                    let t = Instant::now();
                    embedder.embed_query(&r.query).map(|_| t.elapsed().as_secs_f64() * 1e3)
                })
                .collect::<Result<_>>()?;
            o.insert("embed_p50_ms".into(), stats(&mut embed)["p50_ms"].clone());
        }
        println!("{out}");
    }
    Ok(())
}
