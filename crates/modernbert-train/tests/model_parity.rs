//! The differentiable training model against the inference library, and the fused ops against
//! the composed (primitive-only) model.

use candle_core::Tensor;
use modernbert::heads::Head;
use modernbert::Batch;
use modernbert_train::model::{DropoutConfig, DropoutKey, Kernels, TrainModel};
use modernbert_train::rng::Rng;
use modernbert_train::MlmBatch;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

/// Random documents (ids in `[4, vocab)`) with ~30% of positions predicted.
fn random_batch(vocab: u32, lengths: &[usize], seed: u64) -> MlmBatch {
    let mut rng = Rng::new(seed);
    let mut b = MlmBatch { input_ids: vec![], cu_seqlens: vec![0], labels: vec![] };
    for &n in lengths {
        for _ in 0..n {
            let id = 4 + rng.below(vocab as u64 - 4) as u32;
            let predicted = rng.uniform() < 0.3;
            b.labels.push(if predicted { id as i64 } else { -100 });
            b.input_ids.push(if predicted && rng.uniform() < 0.8 { 4 + (id + 7) % (vocab - 4) } else { id });
        }
        b.cu_seqlens.push(b.input_ids.len() as u32);
    }
    b
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn max_abs(a: &Tensor) -> f32 {
    a.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn check_forward(name: &str, lengths: &[usize]) {
    let dir = fixture(name);
    let reference = modernbert::Model::load(&dir).unwrap();
    let vocab = reference.config.vocab_size as u32;
    let batch = random_batch(vocab.min(50000), lengths, 11);
    let seqs: Vec<Vec<u32>> =
        batch.cu_seqlens.windows(2).map(|w| batch.input_ids[w[0] as usize..w[1] as usize].to_vec()).collect();
    let want = reference.backbone.forward(&Batch::new(&seqs).unwrap()).unwrap();
    let Head::MaskedLm(head) = &reference.head else { panic!("{name} is not an MLM checkpoint") };
    let want_logits = head.forward(&want).unwrap();
    for kernels in [Kernels::Composed, Kernels::Fused] {
        let model = TrainModel::load(&dir).unwrap().with_kernels(kernels);
        let got = model.forward_hidden(&batch.input_ids, &batch.cu_seqlens, None).unwrap();
        let d = max_abs_diff(&got, &want);
        assert!(d <= 1e-5, "{name} {kernels:?}: hidden differs by {d}");
        let logits = model.mlm_logits(&got).unwrap();
        let dl = max_abs_diff(&logits, &want_logits);
        assert!(dl <= 1e-5 * max_abs(&want_logits).max(1.0), "{name} {kernels:?}: logits differ by {dl}");
        eprintln!("{name} {kernels:?}: max |Δhidden| {d:.2e}, max |Δlogits| {dl:.2e}");
    }
}

#[test]
fn forward_matches_inference_library_tiny_mlm() {
    // Window 16 (±8): documents longer and shorter than the window, and a 1-token document.
    check_forward("tiny-mlm", &[40, 9, 1, 23, 17]);
}

#[test]
fn forward_matches_inference_library_odd_dims() {
    // head_dim 20, window 8 (±4), θ 80000 / 5000.
    check_forward("odd-dims", &[40, 17, 9, 3, 2, 30]);
}

#[test]
fn fused_gradients_match_composed() {
    let dir = fixture("odd-dims");
    let batch = random_batch(300, &[40, 17, 9, 3, 2, 30, 600], 5);
    let mut grads = Vec::new();
    let mut losses = Vec::new();
    for kernels in [Kernels::Composed, Kernels::Fused] {
        let model = TrainModel::load(&dir).unwrap().with_kernels(kernels);
        let dropout = Some((DropoutConfig { embedding: 0.1, attn_out: 0.1, mlp: 0.1 }, DropoutKey { seed: 1, step: 2, micro: 3 }));
        let out = model.mlm_loss(&batch, dropout).unwrap();
        losses.push(out.loss.to_scalar::<f32>().unwrap());
        let g = out.loss.backward().unwrap();
        grads.push(
            model.vars().iter().map(|(n, v)| (n.clone(), g.get(v.as_tensor()).expect(n).clone())).collect::<Vec<_>>(),
        );
    }
    let rel = (losses[0] - losses[1]).abs() / losses[0].abs();
    assert!(rel <= 1e-6, "loss {} vs {}", losses[0], losses[1]);
    let mut worst = 0f32;
    for ((name, a), (_, b)) in grads[0].iter().zip(&grads[1]) {
        let r = max_abs_diff(a, b) / max_abs(a).max(1e-30);
        worst = worst.max(r);
        eprintln!("{name}: rel {r:.2e}");
        assert!(r <= 1e-4, "{name}: fused gradient differs, rel {r:.2e}");
    }
    eprintln!("fused vs composed: loss rel {rel:.2e}, worst gradient rel {worst:.2e}");
}
