//! Parity with HF transformers: every fixture under tests/fixtures (written by
//! scripts/make_fixtures.py from random-init checkpoints) must match HF's outputs to 1e-4.

use candle_core::{Device, Tensor};
use modernbert::pooling::pool;
use modernbert::{Batch, Head, Model, Pooling};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

const TOLERANCE: f32 = 1e-4;

fn fixture_dir(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn max_abs_diff(ours: &Tensor, theirs: &Tensor) -> f32 {
    assert_eq!(ours.dims(), theirs.dims(), "shape mismatch");
    let d = (ours - theirs).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    d.to_scalar::<f32>().unwrap()
}

/// Runs the model in `model_dir` on the inputs of `expected_dir/expected.safetensors` and returns
/// `(output name, max abs diff)` for everything it checks.
fn check(model_dir: &Path, expected_dir: &Path) -> Vec<(String, f32)> {
    let model = Model::load(model_dir).unwrap_or_else(|e| panic!("{}: {e}", model_dir.display()));
    let expected: HashMap<String, Tensor> =
        candle_core::safetensors::load(expected_dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    let name = expected_dir.display();
    let mut sequences = Vec::new();
    while let Some(ids) = expected.get(&format!("input_ids.{}", sequences.len())) {
        let ids: Vec<u32> = ids.to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect();
        sequences.push(ids);
    }
    assert!(!sequences.is_empty(), "{name}: no inputs");
    let batch = Batch::new(&sequences).unwrap();
    let hidden = model.backbone.forward(&batch).unwrap();
    let rows = |t: &Tensor, b: usize| {
        let r = batch.range(b);
        t.narrow(0, r.start, r.len()).unwrap()
    };
    let mut diffs = Vec::new();
    let mut record = |what: &str, ours: &Tensor, theirs: &Tensor| {
        let d = max_abs_diff(ours, theirs);
        diffs.push((what.to_string(), d));
    };
    for b in 0..sequences.len() {
        record(&format!("hidden.{b}"), &rows(&hidden, b), &expected[&format!("hidden.{b}")]);
    }
    record("mean_pooled", &pool(&hidden, &batch.cu_seqlens, Pooling::Mean).unwrap(), &expected["mean_pooled"]);
    record("cls_pooled", &pool(&hidden, &batch.cu_seqlens, Pooling::Cls).unwrap(), &expected["cls_pooled"]);
    match &model.head {
        Head::MaskedLm(mlm) => {
            let cols = expected["mlm_logits_cols"].to_dtype(candle_core::DType::U32).unwrap();
            let logits = mlm.forward(&hidden).unwrap().index_select(&cols, 1).unwrap();
            for b in 0..sequences.len() {
                record(&format!("mlm_logits.{b}"), &rows(&logits, b), &expected[&format!("mlm_logits.{b}")]);
            }
        }
        Head::SequenceClassification(head) => {
            record("seq_logits", &head.sequence_logits(&hidden, &batch.cu_seqlens).unwrap(), &expected["seq_logits"]);
        }
        Head::TokenClassification(head) => {
            let logits = head.token_logits(&hidden).unwrap();
            for b in 0..sequences.len() {
                record(&format!("token_logits.{b}"), &rows(&logits, b), &expected[&format!("token_logits.{b}")]);
            }
        }
        Head::None => {}
    }
    // Every sequence alone must give what it gives inside the batch (no cross-sequence leaks).
    for (b, seq) in sequences.iter().enumerate() {
        let alone = model.backbone.forward(&Batch::new(&[seq]).unwrap()).unwrap();
        record(&format!("alone.{b}"), &alone, &expected[&format!("hidden.{b}")]);
    }
    diffs
}

fn assert_fixture(name: &str) {
    assert_matches_hf(&fixture_dir(name), &fixture_dir(name));
}

fn assert_matches_hf(model_dir: &Path, expected_dir: &Path) {
    let diffs = check(model_dir, expected_dir);
    let name = expected_dir.file_name().unwrap().to_string_lossy();
    let worst = diffs.iter().map(|(_, d)| *d).fold(0f32, f32::max);
    println!("{name}: max abs diff {worst:.3e} over {} outputs", diffs.len());
    for (what, d) in &diffs {
        assert!(*d <= TOLERANCE, "{name}: {what} differs from HF by {d:e} (> {TOLERANCE:e})");
    }
}

macro_rules! fixtures {
    ($($test:ident => $dir:literal),* $(,)?) => {
        $(#[test] fn $test() { assert_fixture($dir); })*
    };
}

fixtures! {
    tiny_mlm => "tiny-mlm",
    long_window => "long-window",
    odd_dims => "odd-dims",
    seqcls_mean => "seqcls-mean",
    seqcls_cls => "seqcls-cls",
    tokencls => "tokencls",
    bf16 => "bf16",
    backbone_sharded => "backbone-sharded",
}

/// The model shipped in models/ (bf16 weights) against HF transformers run on the same directory
/// (fp32 compute, reference written by scripts/export_model.py).
#[test]
fn shipped_modernbert_mini() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/modernbert-mini");
    assert_matches_hf(&shipped, &fixture_dir("shipped-modernbert-mini"));
}

/// Reduced precision stays close to f32: cosine of mean-pooled embeddings per sequence.
#[test]
fn reduced_precision_tracks_f32() {
    use modernbert::Precision;
    for name in ["tiny-mlm", "long-window", "odd-dims", "seqcls-mean", "tokencls", "backbone-sharded"] {
        let dir = fixture_dir(name);
        let expected: HashMap<String, Tensor> =
            candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
        let reference = expected["mean_pooled"].to_vec2::<f32>().unwrap();
        let mut sequences = Vec::new();
        while let Some(ids) = expected.get(&format!("input_ids.{}", sequences.len())) {
            sequences.push(ids.to_vec1::<i64>().unwrap().into_iter().map(|i| i as u32).collect::<Vec<_>>());
        }
        let batch = Batch::new(&sequences).unwrap();
        for (precision, min_cosine) in [(Precision::Bf16, 0.999), (Precision::Int8, 0.99)] {
            let model = Model::load_with(&dir, precision).unwrap();
            let hidden = model.backbone.forward(&batch).unwrap();
            let pooled = pool(&hidden, &batch.cu_seqlens, Pooling::Mean).unwrap().to_vec2::<f32>().unwrap();
            for (ours, theirs) in pooled.iter().zip(&reference) {
                let dot: f32 = ours.iter().zip(theirs).map(|(a, b)| a * b).sum();
                let norm = |v: &[f32]| v.iter().map(|x| x * x).sum::<f32>().sqrt();
                let cosine = dot / (norm(ours) * norm(theirs));
                println!("{name} {precision:?}: cosine {cosine:.6}");
                assert!(cosine >= min_cosine, "{name} {precision:?}: cosine {cosine} < {min_cosine}");
            }
        }
    }
}
