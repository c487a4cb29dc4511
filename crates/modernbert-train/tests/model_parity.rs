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
    let mut correct = Vec::new();
    for kernels in [Kernels::Composed, Kernels::Fused] {
        let model = TrainModel::load(&dir).unwrap().with_kernels(kernels);
        let dropout = Some((
            DropoutConfig { embedding: 0.1, attn_out: 0.1, mlp: 0.1, classifier: 0.0 },
            DropoutKey { seed: 1, step: 2, micro: 3 },
        ));
        let out = model.mlm_loss(&batch, dropout).unwrap();
        losses.push(out.loss.to_scalar::<f32>().unwrap());
        correct.push(out.correct);
        let g = out.loss.backward().unwrap();
        grads.push(
            model.vars().iter().map(|(n, v)| (n.clone(), g.get(v.as_tensor()).expect(n).clone())).collect::<Vec<_>>(),
        );
    }
    let rel = (losses[0] - losses[1]).abs() / losses[0].abs();
    assert!(rel <= 1e-6, "loss {} vs {}", losses[0], losses[1]);
    assert_eq!(correct[0], correct[1], "arg-max accuracy differs");
    let mut worst = 0f32;
    for ((name, a), (_, b)) in grads[0].iter().zip(&grads[1]) {
        let r = max_abs_diff(a, b) / max_abs(a).max(1e-30);
        worst = worst.max(r);
        eprintln!("{name}: rel {r:.2e}");
        assert!(r <= 1e-4, "{name}: fused gradient differs, rel {r:.2e}");
    }
    eprintln!("fused vs composed: loss rel {rel:.2e}, worst gradient rel {worst:.2e}");
}

/// Configs with biases (and a non-GELU MLP) take the separate fused ops instead of the block
/// ops; their gradients must match the composed model too.
#[test]
fn fused_ops_with_biases_match_composed() {
    use modernbert_train::init::{init_params, InitConfig};
    let cfg = modernbert::Config::from_json(
        r#"{"model_type":"modernbert","vocab_size":96,"hidden_size":24,"intermediate_size":40,"num_hidden_layers":3,
            "num_attention_heads":2,"local_attention":6,"attention_bias":true,"mlp_bias":true,"norm_bias":true,
            "classifier_bias":true,"global_attn_every_n_layers":2}"#,
    )
    .unwrap();
    let mut params = init_params(&cfg, &InitConfig { initializer_range: 0.3, cutoff: 2.0 }, 9);
    let mut rng = Rng::new(4);
    for t in params.values_mut() {
        // random biases and norm weights too, so every gradient path carries signal
        t.data.iter_mut().for_each(|v| *v += 0.05 * rng.normal() as f32);
    }
    let tensors = params
        .into_iter()
        .map(|(n, t)| (n, Tensor::from_vec(t.data, t.shape, &candle_core::Device::Cpu).unwrap()))
        .collect();
    let batch = random_batch(96, &[20, 7, 1, 13], 8);
    let mut results = Vec::new();
    for kernels in [Kernels::Composed, Kernels::Fused] {
        let model = TrainModel::from_tensors(cfg.clone(), &tensors).unwrap().with_kernels(kernels);
        let out = model.mlm_loss(&batch, None).unwrap();
        let g = out.loss.backward().unwrap();
        let grads: Vec<(String, Tensor)> =
            model.vars().iter().map(|(n, v)| (n.clone(), g.get(v.as_tensor()).expect(n).clone())).collect();
        results.push((out.loss.to_scalar::<f32>().unwrap(), grads));
    }
    assert!((results[0].0 - results[1].0).abs() <= 1e-5 * results[0].0.abs());
    for ((name, a), (_, b)) in results[0].1.iter().zip(&results[1].1) {
        let r = max_abs_diff(a, b) / max_abs(a).max(1e-30);
        assert!(r <= 1e-4, "{name}: rel {r:.2e}");
    }
}
