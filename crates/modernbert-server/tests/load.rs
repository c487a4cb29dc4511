//! Overload test: 20× more concurrent clients than `--max-concurrent-requests`, on loopback,
//! bounded in count and time. Checks: no crash, only 200/429, every 200 correct, the queue
//! and in-flight gauges back to zero, and resident memory back near its baseline.

mod common;

use common::*;
use modernbert::Model;
use modernbert_server::client::{self, Connection};
use modernbert_server::metrics::rss_bytes;
use modernbert_server::ServeArgs;
use serde_json::json;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

const LIMIT: usize = 4;
const CLIENTS: usize = 20 * LIMIT;
const REQUESTS_PER_CLIENT: usize = 5;
const ROUNDS: usize = 3;

/// One round: every client opens a connection, waits at the barrier, then sends its requests
/// back to back. Returns (200s, 429s).
fn round(addr: std::net::SocketAddr, inputs: &[Vec<String>], expected: &[Vec<Vec<f32>>]) -> (usize, usize) {
    let barrier = Barrier::new(CLIENTS);
    let counts: Vec<(usize, usize)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..CLIENTS)
            .map(|c| {
                let barrier = &barrier;
                s.spawn(move || {
                    let mut conn = Connection::open(addr).expect("connect");
                    barrier.wait();
                    let (mut ok, mut overloaded) = (0, 0);
                    for r in 0..REQUESTS_PER_CLIENT {
                        let k = (c + r) % inputs.len();
                        let resp = conn.post_json("/embed", &json!({ "inputs": inputs[k] })).expect("answered");
                        match resp.status {
                            200 => {
                                ok += 1;
                                let body = resp.json();
                                let got = body.as_array().expect("list of vectors");
                                assert_eq!(got.len(), expected[k].len());
                                for (g, e) in got.iter().zip(&expected[k]) {
                                    assert_close(&floats(g), e, 1e-5);
                                }
                            }
                            429 => {
                                overloaded += 1;
                                assert_eq!(resp.json()["error_type"], "overloaded");
                            }
                            other => panic!("unexpected status {other}: {}", resp.text()),
                        }
                    }
                    (ok, overloaded)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    counts.into_iter().fold((0, 0), |(a, b), (x, y)| (a + x, b + y))
}

fn gauge(addr: std::net::SocketAddr, name: &str) -> i64 {
    let text = client::get(addr, "/metrics").unwrap().text();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name} missing"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn overload_answers_200_or_429_and_memory_returns_to_baseline() {
    let started = Instant::now();
    let mut args = ServeArgs::for_model(&tiny());
    args.max_concurrent_requests = LIMIT;
    let server = start(args);
    let addr = server.addr();

    // Eight request bodies of four texts each (~10 to ~300 tokens), with library answers.
    let model = Model::load(Path::new(&tiny())).unwrap();
    let all = texts(32);
    let inputs: Vec<Vec<String>> = all.chunks(4).map(|c| c.iter().map(|t| t.repeat(2)).collect()).collect();
    let expected: Vec<Vec<Vec<f32>>> = inputs.iter().map(|batch| library_embeddings(&model, batch, true)).collect();

    // Warm-up at the allowed concurrency, then the baseline.
    std::thread::scope(|s| {
        for c in 0..LIMIT {
            let (inputs, addr) = (&inputs, addr);
            s.spawn(move || {
                for k in 0..inputs.len() {
                    let r = client::post_json(addr, "/embed", &json!({ "inputs": inputs[(c + k) % inputs.len()] }))
                        .unwrap();
                    assert_eq!(r.status, 200);
                }
            });
        }
    });
    let baseline = rss_bytes().unwrap();

    let mut totals = (0, 0);
    let mut after = Vec::new();
    for _ in 0..ROUNDS {
        let (ok, overloaded) = round(addr, &inputs, &expected);
        totals = (totals.0 + ok, totals.1 + overloaded);
        assert_eq!(ok + overloaded, CLIENTS * REQUESTS_PER_CLIENT);
        after.push(rss_bytes().unwrap());
    }
    let (ok, overloaded) = totals;
    eprintln!(
        "overload: {CLIENTS} clients x {REQUESTS_PER_CLIENT} requests x {ROUNDS} rounds, limit {LIMIT}: \
         {ok} x 200, {overloaded} x 429; RSS baseline {} MiB, after rounds {:?} MiB; {:.1}s",
        baseline >> 20,
        after.iter().map(|b| b >> 20).collect::<Vec<_>>(),
        started.elapsed().as_secs_f64()
    );
    assert!(ok > 0, "no request succeeded");
    assert!(overloaded > 0, "the limit never triggered");

    // Nothing left queued or in flight; the server still answers correctly.
    assert_eq!(gauge(addr, "te_in_flight_requests"), 0);
    assert_eq!(gauge(addr, "te_queue_size"), 0);
    let r = ok_body(client::post_json(addr, "/embed", &json!({ "inputs": inputs[0] })).unwrap());
    assert_close(&floats(&r[0]), &expected[0][0], 1e-5);

    // Memory: back near the baseline, and not growing from round to round.
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let last = *after.last().unwrap();
    assert!(mib(last) < mib(baseline) + 64.0, "RSS {} MiB vs baseline {} MiB", mib(last), mib(baseline));
    assert!(mib(last) < mib(after[0]) + 16.0, "RSS grows per round: {after:?}");
    server.shutdown().unwrap();
    assert!(started.elapsed() < Duration::from_secs(60));
}

fn ok_body(r: client::Response) -> serde_json::Value {
    ok(r)
}
