//! The deployment-format fixtures (`tests/fixtures/formats/`, written by sentence-transformers
//! 6.3 / 5.3 and PyLate 1.6, see docs/fixtures.md) served over HTTP: what the server answers must
//! be what the Python libraries computed, within 1e-4 — sentence-transformers bi-encoders on
//! `/embed` (`normalize: false` = `encode()`, with `prompt_name` and `dimensions`),
//! `/v1/embeddings` (unit vectors) and `/tokenize` (prompted ids), cross-encoders on `/rerank`
//! (activated and raw scores) and `/predict`, PyLate ColBERT models on `/embed_all` (document
//! token vectors) and `/rerank` (MaxSim). A malformed directory stops the server with the
//! loader's message.

mod common;

use common::*;
use modernbert_server::{client, ServeArgs, ServerHandle};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::time::{Duration, Instant};

const TOLERANCE: f32 = 1e-4;

fn dir(name: &str) -> PathBuf {
    fixture("formats").join(name)
}

fn read_json(path: PathBuf) -> Value {
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn expected(name: &str) -> Value {
    read_json(dir(name).join("expected.json"))
}

/// The fixtures of one kind (`bi-encoder`, `cross-encoder`, `colbert`, `malformed`), sorted.
fn names(kind: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixture("formats"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| dir(n).join("expected.json").is_file() && expected(n)["kind"] == kind)
        .collect();
    out.sort();
    out
}

fn serve(name: &str) -> ServerHandle {
    start(ServeArgs::for_model(dir(name).to_str().unwrap()))
}

fn info(server: &ServerHandle) -> Value {
    ok(client::get(server.addr(), "/info").unwrap())
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().expect("array").iter().map(floats).collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().expect("array").iter().map(|s| s.as_str().unwrap().to_string()).collect()
}

fn unit(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter().map(|x| x / norm).collect()
}

#[test]
fn bi_encoders_are_served_as_sentence_transformers_computes_them() {
    let all = names("bi-encoder");
    assert!(all.len() >= 5, "{all:?}");
    let (mut served, mut skipped) = (0, 0);
    for name in all {
        let e = expected(&name);
        let server = serve(&name);
        let info = info(&server);
        assert_eq!(info["format"], "sentence-transformers", "{name}");
        let prompts = read_json(dir(&name).join("config_sentence_transformers.json"))["prompts"].clone();
        let max_seq_length = e["max_seq_length"].as_u64().unwrap_or(u64::MAX) as usize;
        let (mut embed_worst, mut openai_worst) = (0f32, 0f32);
        for (k, case) in e["cases"].as_array().unwrap().iter().enumerate() {
            // A prompt string goes over HTTP only as the name of one of the model's prompts.
            let prompt_name = match case["prompt"].as_str() {
                Some(p) => match prompts.as_object().into_iter().flatten().find(|(_, v)| v.as_str() == Some(p)) {
                    Some((n, _)) => Some(n.clone()),
                    None => {
                        skipped += 1;
                        continue;
                    }
                },
                None => case["prompt_name"].as_str().map(str::to_string),
            };
            let texts = strings(&case["texts"]);
            let want = matrix(&case["embeddings"]);
            let dimensions = case["truncate_dim"].as_u64();
            let normalize = case["normalize_embeddings"].as_bool().unwrap_or(false);

            let mut body = json!({ "inputs": texts, "normalize": normalize });
            let mut openai = json!({ "input": texts, "model": name });
            for b in [&mut body, &mut openai] {
                if let Some(d) = dimensions {
                    b["dimensions"] = json!(d);
                }
                if let Some(n) = &prompt_name {
                    b["prompt_name"] = json!(n);
                }
            }
            let got = ok(post(&server, "/embed", body));
            for (g, w) in got.as_array().unwrap().iter().zip(&want) {
                let d = max_diff(&floats(g), w);
                assert!(d <= TOLERANCE, "{name} case {k} /embed: max diff {d}");
                embed_worst = embed_worst.max(d);
            }
            let got = ok(post(&server, "/v1/embeddings", openai));
            for (g, w) in got["data"].as_array().unwrap().iter().zip(&want) {
                let d = max_diff(&floats(&g["embedding"]), &unit(w));
                assert!(d <= TOLERANCE, "{name} case {k} /v1/embeddings: max diff {d}");
                openai_worst = openai_worst.max(d);
            }
            // /tokenize applies the same prompt (the default one without a name); it does not
            // cut, so compare the inputs the model did not truncate.
            let mut body = json!({ "inputs": texts });
            if let Some(n) = &prompt_name {
                body["prompt_name"] = json!(n);
            }
            let tokens = ok(post(&server, "/tokenize", body));
            for (t, want_ids) in tokens.as_array().unwrap().iter().zip(case["input_ids"].as_array().unwrap()) {
                let want_ids = want_ids.as_array().unwrap();
                if want_ids.len() < max_seq_length {
                    let ids: Vec<&Value> = t.as_array().unwrap().iter().map(|t| &t["id"]).collect();
                    assert_eq!(ids, want_ids.iter().collect::<Vec<_>>(), "{name} case {k}: /tokenize ids");
                }
            }
            served += 1;
        }
        eprintln!("{name}: /embed max |diff| {embed_worst:.2e}, /v1/embeddings {openai_worst:.2e}");
    }
    eprintln!("bi-encoders: {served} cases served, {skipped} skipped (a prompt string that names no prompt)");
    assert!(served >= 15, "{served} cases served");
}

#[test]
fn cross_encoders_are_served_as_sentence_transformers_scores_them() {
    let all = names("cross-encoder");
    assert!(all.len() >= 3, "{all:?}");
    for name in all {
        let e = expected(&name);
        let server = serve(&name);
        let info = info(&server);
        assert_eq!(info["format"], "cross-encoder", "{name}");
        let pairs: Vec<(String, String)> = e["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
            .collect();
        let mut worst = 0f32;
        if e["num_labels"] == 1 {
            assert!(info["model_type"]["reranker"].is_object(), "{name}: {info}");
            // One /rerank per query, with that query's documents in fixture order.
            let mut groups: Vec<(&str, Vec<usize>)> = Vec::new();
            for (i, (q, _)) in pairs.iter().enumerate() {
                match groups.iter_mut().find(|(g, _)| g == q) {
                    Some((_, members)) => members.push(i),
                    None => groups.push((q, vec![i])),
                }
            }
            for (raw, key) in [(false, "scores"), (true, "raw_scores")] {
                let want = floats(&e[key]);
                for (query, members) in &groups {
                    let texts: Vec<&str> = members.iter().map(|&i| pairs[i].1.as_str()).collect();
                    let ranks =
                        ok(post(&server, "/rerank", json!({ "query": query, "texts": texts, "raw_scores": raw })));
                    let ranks = ranks.as_array().unwrap();
                    assert_eq!(ranks.len(), texts.len());
                    for r in ranks {
                        let i = members[r["index"].as_u64().unwrap() as usize];
                        let d = (r["score"].as_f64().unwrap() as f32 - want[i]).abs();
                        assert!(d <= TOLERANCE, "{name} {key} of pair {i}: diff {d}");
                        worst = worst.max(d);
                    }
                }
            }
        } else {
            // Several labels: /predict's raw scores are the logits, by label name.
            let id2label = info["model_type"]["classifier"]["id2label"].clone();
            let index = |label: &Value| {
                id2label.as_object().unwrap().iter().find(|(_, l)| *l == label).unwrap().0.parse::<usize>().unwrap()
            };
            let want = matrix(&e["logits_per_label"]);
            let batch: Vec<[&str; 2]> = pairs.iter().map(|(q, d)| [q.as_str(), d.as_str()]).collect();
            let got = ok(post(&server, "/predict", json!({ "inputs": batch, "raw_scores": true })));
            for (i, predictions) in got.as_array().unwrap().iter().enumerate() {
                for p in predictions.as_array().unwrap() {
                    let d = (p["score"].as_f64().unwrap() as f32 - want[i][index(&p["label"])]).abs();
                    assert!(d <= TOLERANCE, "{name} logits of pair {i}: diff {d}");
                    worst = worst.max(d);
                }
            }
            assert_error(&post(&server, "/rerank", json!({ "query": "q", "texts": ["t"] })), 424, "backend", "labels");
        }
        eprintln!("{name}: max |diff| {worst:.2e}");
    }
}

#[test]
fn colbert_models_are_served_as_pylate_computes_them() {
    let all = names("colbert");
    assert!(all.len() >= 2, "{all:?}");
    for name in all {
        let e = expected(&name);
        let server = serve(&name);
        let info = info(&server);
        assert_eq!((info["format"].as_str(), info["pooling"].as_str()), (Some("colbert"), Some("none")), "{name}");
        let (queries, documents) = (strings(&e["queries"]), strings(&e["documents"]));

        // Document token vectors (skiplist applied, Dense, L2).
        let got = ok(post(&server, "/embed_all", json!({ "inputs": documents })));
        let mut vectors_worst = 0f32;
        for (k, (g, w)) in got.as_array().unwrap().iter().zip(e["document_embeddings"].as_array().unwrap()).enumerate()
        {
            let (g, w) = (matrix(g), matrix(w));
            assert_eq!(g.len(), w.len(), "{name}: number of vectors of document {k}");
            for (a, b) in g.iter().zip(&w) {
                vectors_worst = vectors_worst.max(max_diff(a, b));
            }
        }
        assert!(vectors_worst <= TOLERANCE, "{name}: document vectors max diff {vectors_worst}");

        // MaxSim of every query against every document.
        let want = matrix(&e["scores"]);
        let mut scores_worst = 0f32;
        for (qi, query) in queries.iter().enumerate() {
            let ranks = ok(post(&server, "/rerank", json!({ "query": query, "texts": documents })));
            let ranks = ranks.as_array().unwrap();
            assert_eq!(ranks.len(), documents.len());
            for r in ranks {
                let d = (r["score"].as_f64().unwrap() as f32 - want[qi][r["index"].as_u64().unwrap() as usize]).abs();
                scores_worst = scores_worst.max(d);
            }
        }
        assert!(scores_worst <= TOLERANCE, "{name}: MaxSim max diff {scores_worst}");

        // One vector per input does not exist for ColBERT: a clear error, not a wrong answer.
        assert_error(&post(&server, "/embed", json!({ "inputs": "x" })), 424, "backend", "/embed_all");
        let r = post(&server, "/v1/embeddings", json!({ "input": "x" }));
        assert_eq!((r.status, r.json()["error"]["type"].as_str()), (424, Some("backend")), "{}", r.text());
        // POST / on a ColBERT model: /rerank with a query, else /embed_all.
        let root = ok(post(&server, "/", json!({ "query": "x", "texts": ["y", "z"] })));
        assert_eq!(root.as_array().map(Vec::len), Some(2));
        let root = ok(post(&server, "/", json!({ "inputs": ["y"] })));
        assert_eq!(root, ok(post(&server, "/embed_all", json!({ "inputs": ["y"] }))));
        eprintln!("{name}: document vectors max |diff| {vectors_worst:.2e}, MaxSim {scores_worst:.2e}");
    }
}

#[test]
fn a_malformed_model_directory_stops_the_server_with_the_loader_message() {
    let all = names("malformed");
    assert!(!all.is_empty());
    for name in all {
        let want = expected(&name)["error"].as_str().unwrap().to_string();
        let server = modernbert_server::spawn(ServeArgs::for_model(dir(&name).to_str().unwrap())).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !server.is_finished() {
            assert!(Instant::now() < deadline, "{name}: the server kept running");
            std::thread::sleep(Duration::from_millis(10));
        }
        let err = format!("{:#}", server.shutdown().unwrap_err());
        assert!(err.contains(&want), "{name}: {err:?} does not name {want:?}");
        eprintln!("{name}: {err}");
    }
}
