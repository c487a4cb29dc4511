//! Gradient parity with PyLate for `finetune --task colbert` (issue 12): the Contrastive and
//! Distillation losses of PyLate 1.6 on `tests/fixtures/retrieval-step/colbert`
//! (`scripts/retrieval_loss_reference.py`): token ids, loss and every parameter's gradient (the
//! Dense projection and the `[Q]`/`[D]` rows included) from the same ColBERT start model.

use candle_core::{Device, Tensor};
use modernbert_train::finetune::colbert::ColbertJob;
use modernbert_train::finetune::job::{Job, StepContext};
use modernbert_train::finetune::{FinetuneConfig, Task};
use modernbert_train::grads::Gradients;
use modernbert_train::model::DropoutConfig;
use std::path::{Path, PathBuf};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/retrieval-step")
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn colbert_losses_and_gradients_match_pylate() {
    let r = candle_core::safetensors::load(fixture().join("colbert/reference.safetensors"), &Device::Cpu).unwrap();
    let rows: Vec<u32> = r["token_rows"].to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect();
    let model_dir = fixture().join("colbert/colbert-model");
    for (case, train) in
        [("contrastive", fixture().join("pairs.jsonl")), ("distillation", fixture().join("colbert/distillation.jsonl"))]
    {
        let cfg = FinetuneConfig {
            task: Task::Colbert,
            model: model_dir.display().to_string(),
            train: train.clone(),
            validation: Some(train),
            output: PathBuf::from("unused"),
            query_length: 8,
            document_length: 16,
            colbert_dim: 8,
            ..Default::default()
        };
        let job = ColbertJob::new(&cfg, &model_dir).unwrap();
        // The row-sparse embedding lookup that fine-tuning runs.
        let model = job.start_model(&cfg, &model_dir).unwrap().0.with_row_sparse_embedding();
        let mut grads = Gradients::new();
        let mut ctx = StepContext { cfg: &cfg, dropout: DropoutConfig::none(), step: 0, grads: &mut grads };
        let loss = job.step(&model, &(0..6).collect::<Vec<_>>(), &mut ctx).unwrap();
        let grads = grads.to_dense(&model).unwrap();
        let want = r[&format!("loss.{case}")].to_scalar::<f32>().unwrap() as f64;
        let loss_rel = (loss - want).abs() / want;
        assert!(loss_rel <= 1e-5, "{case}: loss {loss} vs PyLate {want}");
        let mut worst = (0f32, String::new());
        for (name, g) in &grads {
            let (ours, reference) = if name == "model.embeddings.tok_embeddings.weight" {
                let picked = g.index_select(&Tensor::new(rows.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
                (picked, r[&format!("grad.{case}.embeddings.tok_embeddings.rows")].clone())
            } else if name == "colbert.dense.weight" {
                (g.clone(), r[&format!("grad.{case}.1_Dense.linear.weight")].clone())
            } else {
                (g.clone(), r[&format!("grad.{case}.{}", name.strip_prefix("model.").unwrap())].clone())
            };
            let rel = max_abs(&(&ours - &reference).unwrap()) / max_abs(&reference).max(1e-30);
            assert!(rel <= 1e-4, "{case}: gradient of {name} rel {rel:.2e}");
            if rel > worst.0 {
                worst = (rel, name.clone());
            }
        }
        eprintln!("{case}: loss rel {loss_rel:.2e}, worst gradient rel {:.2e} ({})", worst.0, worst.1);
    }
}
