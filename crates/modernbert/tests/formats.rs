//! Deployment formats against the Python libraries' own outputs (`tests/fixtures/formats/`,
//! written by `scripts/make_format_fixtures.py` with sentence-transformers 6.3 / 5.3 and PyLate
//! 1.6): every bi-encoder case's vectors, every cross-encoder's scores and raw logits, every
//! ColBERT query/document token vectors and MaxSim score within 1e-4 of the library's, the
//! token ids as the library fed them, and clear errors for malformed directories.

use modernbert::formats::Format;
use modernbert::pipelines::{EmbedOptions, Output, Want};
use modernbert::tasks::Embedding;
use modernbert::Model;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/formats")
}

fn expected(dir: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn matrix(v: &Value) -> Vec<Vec<f32>> {
    v.as_array().unwrap().iter().map(floats).collect()
}

fn ids(v: &Value) -> Vec<Vec<u32>> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect())
        .collect()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

fn names(kind: &str) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(fixtures())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| expected(p)["kind"] == kind)
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}

/// The options of one expected case.
pub fn case_options(case: &Value) -> EmbedOptions {
    EmbedOptions {
        prompt_name: case["prompt_name"].as_str().map(str::to_string),
        prompt: case["prompt"].as_str().map(str::to_string),
        truncate_dim: case["truncate_dim"].as_u64().map(|d| d as usize),
        normalize: case["normalize_embeddings"].as_bool().unwrap_or(false),
        ..Default::default()
    }
}

/// Every case of a bi-encoder's `expected.json` through the library; the largest difference.
fn check_bi_encoder(name: &str, dir: &Path, e: &Value) -> f32 {
    let model = Model::load(dir).unwrap();
    assert!(matches!(model.format, Format::SentenceTransformer(_)), "{name}: {}", model.format.name());
    let mut worst = 0f32;
    for (k, case) in e["cases"].as_array().unwrap().iter().enumerate() {
        let texts: Vec<&str> = case["texts"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
        let opts = case_options(case);
        let want_ids = ids(&case["input_ids"]);
        for (t, want) in texts.iter().zip(&want_ids) {
            let p = model.prepare(t, &opts).unwrap();
            assert_eq!(&p.ids, want, "{name} case {k}: token ids of {t:?}");
            if let Some(n) = case["prompt_length"].as_u64() {
                assert_eq!(p.prompt_len, n as usize, "{name} case {k}: prompt length");
            }
        }
        let got = model.embed(&texts, &opts).unwrap();
        for (g, want) in got.iter().zip(matrix(&case["embeddings"])) {
            let Embedding::Pooled(g) = g else { panic!("{name}: token vectors from a bi-encoder") };
            let d = max_diff(g, &want);
            assert!(d <= 1e-4, "{name} case {k}: max diff {d}");
            worst = worst.max(d);
        }
    }
    worst
}

#[test]
fn bi_encoders_match_sentence_transformers() {
    let all = names("bi-encoder");
    assert!(all.len() >= 5, "{all:?}");
    for name in all {
        let dir = fixtures().join(&name);
        let worst = check_bi_encoder(&name, &dir, &expected(&dir));
        eprintln!("{name}: max |diff| {worst:.2e}");
    }
}

/// The shipped embedder (`models/modernbert-mini-embed`, bf16) against sentence-transformers on
/// it (`tests/fixtures/shipped-modernbert-mini-embed`, written by scripts/ship_embedder.py).
#[test]
fn shipped_embedder_matches_sentence_transformers() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let e = expected(&root.join("tests/fixtures/shipped-modernbert-mini-embed"));
    let dir = root.join(e["model"].as_str().unwrap());
    let worst = check_bi_encoder("modernbert-mini-embed", &dir, &e);
    eprintln!("shipped modernbert-mini-embed: max |diff| {worst:.2e}");
}

#[test]
fn cross_encoders_match_sentence_transformers() {
    for name in names("cross-encoder") {
        let dir = fixtures().join(&name);
        let e = expected(&dir);
        let model = Model::load(&dir).unwrap();
        assert!(matches!(model.format, Format::CrossEncoder(_)), "{name}");
        let pairs: Vec<(String, String)> = e["pairs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_str().unwrap().to_string()))
            .collect();
        let prepared: Vec<_> = pairs.iter().map(|(q, d)| model.prepare_pair(q, d, None).unwrap()).collect();
        for (p, want) in prepared.iter().zip(ids(&e["input_ids"])) {
            assert_eq!(p.ids, want, "{name}: pair token ids");
        }
        let inputs: Vec<_> = prepared.iter().map(|p| (p, Want::Logits)).collect();
        let logits: Vec<Vec<f32>> = model
            .run(&inputs, None)
            .unwrap()
            .into_iter()
            .map(|o| match o {
                Output::Logits(l) => l,
                _ => panic!("logits"),
            })
            .collect();
        let mut worst = 0f32;
        if e["num_labels"] == 1 {
            for (raw, key) in [(false, "scores"), (true, "raw_scores")] {
                let got: Vec<f32> =
                    pairs.iter().map(|(q, d)| model.score_pairs(q, &[d.as_str()], raw, None).unwrap()[0]).collect();
                let d = max_diff(&got, &floats(&e[key]));
                assert!(d <= 1e-4, "{name} {key}: max diff {d}");
                worst = worst.max(d);
            }
        } else {
            for (g, want) in logits.iter().zip(matrix(&e["logits_per_label"])) {
                worst = worst.max(max_diff(g, &want));
            }
            assert!(worst <= 1e-4, "{name}: logits max diff {worst}");
            let docs = ["x"];
            assert!(model.score_pairs("q", &docs, false, None).unwrap_err().to_string().contains("one output"));
        }
        eprintln!("{name}: max |diff| {worst:.2e}");
    }
}

#[test]
fn colbert_matches_pylate() {
    for name in names("colbert") {
        let dir = fixtures().join(&name);
        let e = expected(&dir);
        let model = Model::load(&dir).unwrap();
        assert!(matches!(model.format, Format::Colbert(_)), "{name}");
        let strs = |k: &str| -> Vec<String> {
            e[k].as_array().unwrap().iter().map(|t| t.as_str().unwrap().to_string()).collect()
        };
        let (queries, documents) = (strs("queries"), strs("documents"));
        let mut worst = 0f32;
        for (is_query, texts, ids_key, vec_key) in [
            (true, &queries, "query_ids", "query_embeddings"),
            (false, &documents, "document_ids", "document_embeddings"),
        ] {
            let opts = EmbedOptions { is_query, ..Default::default() };
            for (t, want) in texts.iter().zip(ids(&e[ids_key])) {
                assert_eq!(model.prepare(t, &opts).unwrap().ids, want, "{name}: ids of {t:?}");
            }
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            for (got, want) in model.embed(&refs, &opts).unwrap().iter().zip(e[vec_key].as_array().unwrap()) {
                let Embedding::Tokens(got) = got else { panic!("{name}: ColBERT gives token vectors") };
                let want = matrix(want);
                assert_eq!(got.len(), want.len(), "{name}: number of vectors");
                for (g, w) in got.iter().zip(&want) {
                    worst = worst.max(max_diff(g, w));
                }
            }
        }
        assert!(worst <= 1e-4, "{name}: token vectors max diff {worst}");
        let docs: Vec<&str> = documents.iter().map(String::as_str).collect();
        for (q, want) in queries.iter().zip(matrix(&e["scores"])) {
            let got = model.score_pairs(q, &docs, false, None).unwrap();
            let d = max_diff(&got, &want);
            assert!(d <= 1e-4, "{name}: MaxSim max diff {d}");
            worst = worst.max(d);
        }
        eprintln!("{name}: max |diff| {worst:.2e}");
    }
}

#[test]
fn malformed_directories_are_clear_errors() {
    let all = names("malformed");
    assert_eq!(all.len(), 3);
    for name in all {
        let dir = fixtures().join(&name);
        let want = expected(&dir)["error"].as_str().unwrap().to_string();
        let err = match Model::load(&dir) {
            Ok(_) => panic!("{name} loaded"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(&want), "{name}: {err:?} does not name {want:?}");
        eprintln!("{name}: {err}");
    }
}
