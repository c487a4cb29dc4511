//! The `modernbert` binary on the deployment-format fixtures (`tests/fixtures/formats`): `embed`
//! gives sentence-transformers' vectors (with `--no-normalize`, `--prompt-name`, `--prompt`,
//! `--dimensions`), PyLate's token vectors (`--input-type`), and `rerank` the cross-encoder's or
//! ColBERT's scores, each within 1e-4 of the library that wrote the fixture.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats")
}

fn expected(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn cli(args: &[String]) -> Vec<Value> {
    let out = Command::new(env!("CARGO_BIN_EXE_modernbert")).args(args).env("HF_HUB_OFFLINE", "1").output().unwrap();
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn kind_dirs(kind: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| expected(p)["kind"] == kind)
        .collect();
    dirs.sort();
    dirs
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
}

#[test]
fn embed_gives_sentence_transformers_vectors() {
    for dir in kind_dirs("bi-encoder") {
        let e = expected(&dir);
        let mut worst = 0f32;
        for case in e["cases"].as_array().unwrap() {
            let mut args = vec!["embed".to_string(), "--model".into(), dir.display().to_string()];
            if case["normalize_embeddings"] != true {
                args.push("--no-normalize".into());
            }
            if let Some(p) = case["prompt_name"].as_str() {
                args.extend(["--prompt-name".into(), p.into()]);
            }
            if let Some(p) = case["prompt"].as_str() {
                args.push(format!("--prompt={p}"));
            }
            if let Some(d) = case["truncate_dim"].as_u64() {
                args.extend(["--dimensions".into(), d.to_string()]);
            }
            args.push("--".into());
            args.extend(strings(&case["texts"]));
            for (line, want) in cli(&args).iter().zip(case["embeddings"].as_array().unwrap()) {
                let d = max_diff(&floats(&line["embedding"]), &floats(want));
                assert!(d <= 1e-4, "{}: {args:?}: max diff {d}", dir.display());
                worst = worst.max(d);
            }
        }
        eprintln!("{}: CLI max |diff| {worst:.2e}", dir.file_name().unwrap().to_string_lossy());
    }
}

#[test]
fn rerank_gives_cross_encoder_and_colbert_scores() {
    for dir in kind_dirs("cross-encoder") {
        let e = expected(&dir);
        if e["num_labels"] != 1 {
            continue;
        }
        for (raw, key) in [(false, "scores"), (true, "raw_scores")] {
            for (pair, want) in e["pairs"].as_array().unwrap().iter().zip(floats(&e[key])) {
                let mut args = vec!["rerank".into(), "--model".into(), dir.display().to_string()];
                args.extend(["--query".into(), pair[0].as_str().unwrap().into()]);
                if raw {
                    args.push("--raw-scores".into());
                }
                args.extend(["--".into(), pair[1].as_str().unwrap().into()]);
                let got = cli(&args)[0]["score"].as_f64().unwrap() as f32;
                assert!((got - want).abs() <= 1e-4, "{}: {key} {got} vs {want}", dir.display());
            }
        }
    }
    for dir in kind_dirs("colbert") {
        let e = expected(&dir);
        let docs = strings(&e["documents"]);
        for (q, want) in strings(&e["queries"]).iter().zip(e["scores"].as_array().unwrap()) {
            let mut args =
                vec!["rerank".into(), "--model".into(), dir.display().to_string(), "--query".into(), q.clone()];
            args.push("--".into());
            args.extend(docs.iter().cloned());
            let lines = cli(&args);
            let want = floats(want);
            let scores: Vec<f32> = lines.iter().map(|l| l["score"].as_f64().unwrap() as f32).collect();
            assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted: {scores:?}");
            for l in &lines {
                let i = l["index"].as_u64().unwrap() as usize;
                assert!(
                    (l["score"].as_f64().unwrap() as f32 - want[i]).abs() <= 1e-4,
                    "{}: document {i}",
                    dir.display()
                );
                assert_eq!(l["text"], docs[i].as_str());
            }
        }
        // Token vectors of queries and documents.
        for (kind, texts, key) in
            [("query", "queries", "query_embeddings"), ("document", "documents", "document_embeddings")]
        {
            let mut args =
                vec!["embed".into(), "--model".into(), dir.display().to_string(), "--input-type".into(), kind.into()];
            args.push("--".into());
            args.extend(strings(&e[texts]));
            for (line, want) in cli(&args).iter().zip(e[key].as_array().unwrap()) {
                let got = line["token_embeddings"].as_array().unwrap();
                let want = want.as_array().unwrap();
                assert_eq!(got.len(), want.len());
                for (g, w) in got.iter().zip(want) {
                    assert!(max_diff(&floats(g), &floats(w)) <= 1e-4, "{}: {kind} vectors", dir.display());
                }
            }
        }
    }
}

#[test]
fn rerank_needs_a_reranking_model() {
    let tiny = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-mlm");
    let out = Command::new(env!("CARGO_BIN_EXE_modernbert"))
        .args(["rerank", "--model", &tiny.display().to_string(), "--query", "q", "doc"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reranking needs a cross-encoder or a ColBERT model"), "{err}");
}

/// The server on the same fixture, ready.
fn serve(dir: &Path) -> modernbert_server::ServerHandle {
    let server = modernbert_server::spawn(modernbert_server::ServeArgs::for_model(&dir.display().to_string())).unwrap();
    server.wait_ready(std::time::Duration::from_secs(60)).unwrap();
    server
}

fn post(server: &modernbert_server::ServerHandle, path: &str, body: Value) -> Value {
    let response = modernbert_server::client::post_json(server.addr(), path, &body).unwrap();
    assert_eq!(response.status, 200, "{path}: {}", response.text());
    response.json()
}

/// One model, two front ends: `embed`/`rerank` on the command line and `/embed`, `/embed_all`,
/// `/rerank` over HTTP give bit-identical numbers for every fixture (both run the library's pipeline).
#[test]
fn cli_and_server_give_identical_outputs() {
    let texts = ["hello world", "A longer sentence about Paris, the capital of France."];
    let args = |dir: &Path, head: &[&str]| -> Vec<String> {
        let mut a: Vec<String> = head.iter().map(|s| s.to_string()).collect();
        a.extend(["--model".into(), dir.display().to_string()]);
        a
    };
    for dir in kind_dirs("bi-encoder") {
        let server = serve(&dir);
        let mut a = args(&dir, &["embed", "--no-normalize"]);
        a.push("--".into());
        a.extend(texts.iter().map(|t| t.to_string()));
        let served = post(&server, "/embed", serde_json::json!({"inputs": texts, "normalize": false}));
        for (line, vector) in cli(&a).iter().zip(served.as_array().unwrap()) {
            assert_eq!(floats(&line["embedding"]), floats(vector), "{}", dir.display());
        }
        server.shutdown().unwrap();
    }
    for dir in kind_dirs("cross-encoder").into_iter().filter(|d| expected(d)["num_labels"] == 1) {
        let server = serve(&dir);
        let mut a = args(&dir, &["rerank", "--raw-scores", "--query", "where is Paris?"]);
        a.push("--".into());
        a.extend(texts.iter().map(|t| t.to_string()));
        let served = post(
            &server,
            "/rerank",
            serde_json::json!({"query": "where is Paris?", "texts": texts, "raw_scores": true}),
        );
        let lines = cli(&a);
        assert_eq!(lines.len(), texts.len());
        for (line, hit) in lines.iter().zip(served.as_array().unwrap()) {
            assert_eq!(line["index"], hit["index"], "{}", dir.display());
            assert_eq!(
                line["score"].as_f64().unwrap() as f32,
                hit["score"].as_f64().unwrap() as f32,
                "{}",
                dir.display()
            );
        }
        server.shutdown().unwrap();
    }
    for dir in kind_dirs("colbert") {
        let server = serve(&dir);
        let mut a = args(&dir, &["embed", "--input-type", "document"]);
        a.push("--".into());
        a.extend(texts.iter().map(|t| t.to_string()));
        let served = post(&server, "/embed_all", serde_json::json!({"inputs": texts}));
        for (line, tokens) in cli(&a).iter().zip(served.as_array().unwrap()) {
            let got: Vec<Vec<f32>> = line["token_embeddings"].as_array().unwrap().iter().map(floats).collect();
            let want: Vec<Vec<f32>> = tokens.as_array().unwrap().iter().map(floats).collect();
            assert_eq!(got, want, "{}", dir.display());
        }
        server.shutdown().unwrap();
    }
}
