//! Load generator for `modernbert serve`: closed-loop clients on keep-alive connections, each
//! sending one-input `/embed` requests back to back; prints throughput and latency percentiles
//! as a Markdown table.
//!
//! ```text
//! modernbert serve --model /tmp/mb-base --hostname 127.0.0.1 --port 3000 &
//! cargo run --release -p modernbert-server --example loadgen -- \
//!     --addr 127.0.0.1:3000 --clients 1,8,32 --tokens 32,256 --seconds 20
//! ```
//!
//! Or with `--model DIR` it starts the server in-process on a free loopback port.
//! Only loopback addresses are accepted.

use anyhow::{ensure, Context, Result};
use modernbert_server::client::Connection;
use serde_json::json;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

struct Options {
    addr: Option<SocketAddr>,
    model: Option<String>,
    clients: Vec<usize>,
    tokens: Vec<usize>,
    seconds: f64,
    max_requests: usize,
}

fn parse() -> Result<Options> {
    let mut o = Options {
        addr: None,
        model: None,
        clients: vec![1, 8, 32],
        tokens: vec![32, 256],
        seconds: 20.0,
        max_requests: 2000,
    };
    let mut args = std::env::args().skip(1);
    let list =
        |s: String| -> Result<Vec<usize>> { s.split(',').map(|x| x.trim().parse().context("a number list")).collect() };
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--addr" => o.addr = Some(value()?.parse().context("--addr HOST:PORT")?),
            "--model" => o.model = Some(value()?),
            "--clients" => o.clients = list(value()?)?,
            "--tokens" => o.tokens = list(value()?)?,
            "--seconds" => o.seconds = value()?.parse()?,
            "--max-requests" => o.max_requests = value()?.parse()?,
            other => anyhow::bail!(
                "unknown option {other} (--addr, --model, --clients, --tokens, --seconds, --max-requests)"
            ),
        }
    }
    Ok(o)
}

/// A text of about `tokens` tokens ([CLS]/[SEP] included) that differs per `seed`.
fn text(tokens: usize, seed: usize) -> String {
    const WORDS: &[&str] =
        &["the", "model", "reads", "a", "long", "document", "about", "rivers", "and", "mountains", "in", "spring"];
    let mut words = vec![format!("{}", seed % 1000)];
    words.extend((0..tokens.saturating_sub(3)).map(|i| WORDS[(i * 7 + seed) % WORDS.len()].to_string()));
    words.join(" ")
}

struct Cell {
    requests: usize,
    tokens: usize,
    elapsed: f64,
    latencies: Vec<f64>,
}

fn run_cell(addr: SocketAddr, clients: usize, tokens: usize, seconds: f64, max_requests: usize) -> Result<Cell> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let per_client = max_requests.div_ceil(clients);
    let start = Instant::now();
    let results: Vec<Result<(usize, Vec<f64>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || -> Result<(usize, Vec<f64>)> {
                    let mut conn = Connection::open(addr)?;
                    let (mut toks, mut lat) = (0, Vec::new());
                    for r in 0..per_client {
                        if Instant::now() >= deadline {
                            break;
                        }
                        let body = json!({ "inputs": text(tokens, c * 100_003 + r) });
                        let t = Instant::now();
                        let resp = conn.post_json("/embed", &body)?;
                        lat.push(t.elapsed().as_secs_f64());
                        ensure!(resp.status == 200, "status {}: {}", resp.status, resp.text());
                        toks += resp.header("x-compute-tokens").and_then(|v| v.parse::<usize>().ok()).unwrap_or(0);
                    }
                    Ok((toks, lat))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut cell = Cell { requests: 0, tokens: 0, elapsed, latencies: Vec::new() };
    for r in results {
        let (toks, lat) = r?;
        cell.requests += lat.len();
        cell.tokens += toks;
        cell.latencies.extend(lat);
    }
    cell.latencies.sort_by(f64::total_cmp);
    Ok(cell)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() -> Result<()> {
    let o = parse()?;
    let _server;
    let addr = match (&o.addr, &o.model) {
        (Some(a), _) => *a,
        (None, Some(m)) => {
            let server = modernbert_server::spawn(modernbert_server::ServeArgs::for_model(m))?;
            server.wait_ready(Duration::from_secs(300))?;
            let a = server.addr();
            _server = server;
            a
        }
        (None, None) => anyhow::bail!("give --addr HOST:PORT of a running server, or --model DIR"),
    };
    ensure!(addr.ip().is_loopback(), "the load generator only targets loopback addresses");
    // Warm the server up (first allocations) before measuring.
    run_cell(addr, 2, 32, 5.0, 4)?;
    println!("| tokens/input | clients | requests | inputs/s | tokens/s | p50 ms | p99 ms | load avg (1/5/15 min) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---|");
    for &tokens in &o.tokens {
        for &clients in &o.clients {
            let c = run_cell(addr, clients, tokens, o.seconds, o.max_requests)?;
            println!(
                "| {} | {clients} | {} | {:.1} | {:.0} | {:.1} | {:.1} | {} |",
                c.tokens / c.requests.max(1),
                c.requests,
                c.requests as f64 / c.elapsed,
                c.tokens as f64 / c.elapsed,
                percentile(&c.latencies, 0.5) * 1e3,
                percentile(&c.latencies, 0.99) * 1e3,
                load_average(),
            );
        }
    }
    Ok(())
}
