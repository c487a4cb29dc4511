//! Shared helpers of the server tests: fixtures, a server per test, JSON requests.
#![allow(dead_code)]

use modernbert::pipelines::EmbedOptions;
use modernbert::tasks::Embedding;
use modernbert::Model;
use modernbert_server::client::{self, Response};
use modernbert_server::{ServeArgs, ServerHandle};
use serde_json::Value;
use std::path::PathBuf;
use std::time::Duration;

/// `tests/fixtures/<name>` of the workspace.
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

/// The tiny-mlm fixture (real ModernBERT tokenizer, hidden size 32).
pub fn tiny() -> String {
    fixture("tiny-mlm").to_string_lossy().into_owned()
}

/// tiny-mlm turned into a sequence classifier with `labels` labels and a random head.
pub fn classifier(labels: usize) -> tempfile::TempDir {
    let src = fixture("tiny-mlm");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["architectures"] = serde_json::json!(["ModernBertForSequenceClassification"]);
    let names = ["negative", "neutral", "positive", "other"];
    let id2label: serde_json::Map<String, Value> =
        (0..labels).map(|i| (i.to_string(), Value::from(names[i % names.len()]))).collect();
    config["id2label"] = Value::Object(id2label);
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    // The backbone's tensors as they are, plus a classifier head: weights from a fixed
    // pseudo-random sequence (uniform in [-1, 1)), zero bias.
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let weight: Vec<u8> = (0..labels * 32)
        .flat_map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            ((state >> 40) as f32 / (1u64 << 23) as f32 - 1.0).to_le_bytes()
        })
        .collect();
    let bias = vec![0u8; labels * 4];
    let mut tensors: Vec<(String, safetensors::tensor::TensorView)> = st.tensors();
    let f32 = safetensors::Dtype::F32;
    tensors.push((
        "classifier.weight".into(),
        safetensors::tensor::TensorView::new(f32, vec![labels, 32], &weight).unwrap(),
    ));
    tensors.push(("classifier.bias".into(), safetensors::tensor::TensorView::new(f32, vec![labels], &bias).unwrap()));
    safetensors::serialize_to_file(tensors, None, &dir.path().join("model.safetensors")).unwrap();
    dir
}

/// Starts a server for `args` and waits until it is ready.
pub fn start(args: ServeArgs) -> ServerHandle {
    let server = modernbert_server::spawn(args).expect("server starts");
    server.wait_ready(Duration::from_secs(30)).expect("server gets ready");
    server
}

/// POSTs JSON to the server.
pub fn post(server: &ServerHandle, path: &str, body: Value) -> Response {
    client::post_json(server.addr(), path, &body).expect("request answered")
}

/// A 200 answer's JSON (panics with the body otherwise).
pub fn ok(r: Response) -> Value {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Asserts a TEI error answer: status, `error_type`, and a message containing `needle`.
pub fn assert_error(r: &Response, status: u16, error_type: &str, needle: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let body = r.json();
    assert_eq!(body["error_type"], error_type, "{body}");
    let msg = body["error"].as_str().unwrap_or_default();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

/// A JSON array of numbers as f32.
pub fn floats(v: &Value) -> Vec<f32> {
    v.as_array().expect("array").iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

/// The largest absolute difference of two vectors of the same length.
pub fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Asserts two vectors agree to `tol` per component.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "component {i}: {x} vs {y}");
    }
}

/// Texts of different lengths (a few to ~150 tokens).
pub fn texts(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let words = ["alpha", "beta", "gamma", "delta", "rust", "model", "Paris", "token"];
            let len = 1 + (i * 37) % 150;
            (0..len).map(|j| words[(i + j) % words.len()]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

/// Embeddings of `texts` computed by the library (what the server must answer).
pub fn library_embeddings(model: &Model, texts: &[String], normalize: bool) -> Vec<Vec<f32>> {
    library_embeddings_with(model, texts, &EmbedOptions { normalize, ..Default::default() })
}

/// [`library_embeddings`] with any options.
pub fn library_embeddings_with(model: &Model, texts: &[String], options: &EmbedOptions) -> Vec<Vec<f32>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model
        .embed(&refs, options)
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Embedding::Pooled(v) => v,
            Embedding::Tokens(_) => unreachable!(),
        })
        .collect()
}
