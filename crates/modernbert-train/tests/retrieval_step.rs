//! Gradient parity with sentence-transformers for `finetune --task embedding` (issue 12):
//! MultipleNegativesRankingLoss with and without a hard negative, its cached (GradCache) form and
//! MatryoshkaLoss, computed by sentence-transformers 6.3 on `tests/fixtures/retrieval-step`
//! (`scripts/retrieval_loss_reference.py`) from tiny-mlm; ours from the same weights and rows.
//! "rel" is per tensor: `max|ours − ref| / max|ref|`.

use candle_core::{Device, Tensor};
use modernbert_train::finetune::embedding::EmbeddingJob;
use modernbert_train::finetune::job::{Job, StepContext};
use modernbert_train::finetune::{FinetuneConfig, Task};
use modernbert_train::grads::Gradients;
use modernbert_train::model::DropoutConfig;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

#[test]
fn embedding_losses_and_gradients_match_sentence_transformers() {
    let fixture = root().join("tests/fixtures/retrieval-step");
    let r = candle_core::safetensors::load(fixture.join("reference.safetensors"), &Device::Cpu).unwrap();
    let rows: Vec<u32> = r["token_rows"].to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect();
    let model_dir = root().join("tests/fixtures/tiny-mlm");
    // (case, hard negatives, GradCache mini-batch, Matryoshka dimensions)
    type Case = (&'static str, Option<usize>, Option<usize>, Option<Vec<usize>>);
    let cases: [Case; 4] = [
        ("mnrl", Some(0), None, None),
        ("mnrl-hard", None, None, None),
        ("cached", None, Some(4), None),
        ("matryoshka", None, None, Some(vec![32, 16, 8])),
    ];
    for (case, hard, mini, dims) in cases {
        let cfg = FinetuneConfig {
            task: Task::Embedding,
            model: model_dir.display().to_string(),
            train: fixture.join("pairs.jsonl"),
            validation: Some(fixture.join("pairs.jsonl")),
            output: PathBuf::from("unused"),
            hard_negatives: hard,
            mini_batch_size: mini,
            matryoshka_dims: dims,
            ..Default::default()
        };
        let job = EmbeddingJob::new(&cfg, &model_dir).unwrap();
        // The row-sparse embedding lookup that fine-tuning runs.
        let model = job.start_model(&cfg, &model_dir).unwrap().0.with_row_sparse_embedding();
        let mut grads = Gradients::new();
        let mut ctx = StepContext { cfg: &cfg, dropout: DropoutConfig::none(), step: 0, grads: &mut grads };
        let loss = job.step(&model, &(0..6).collect::<Vec<_>>(), &mut ctx).unwrap();
        let grads = grads.to_dense(&model).unwrap();
        let want = r[&format!("loss.{case}")].to_scalar::<f32>().unwrap() as f64;
        let loss_rel = (loss - want).abs() / want;
        assert!(loss_rel <= 1e-5, "{case}: loss {loss} vs {want}");
        let mut worst = (0f32, String::new());
        for (name, g) in &grads {
            let hf = name.strip_prefix("model.").unwrap();
            let (ours, reference) = if hf == "embeddings.tok_embeddings.weight" {
                let index = Tensor::new(rows.as_slice(), &Device::Cpu).unwrap();
                let picked = g.index_select(&index, 0).unwrap();
                // Every other row is zero.
                let total: f32 = g.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
                let kept: f32 = picked.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
                assert!((total - kept).abs() <= 1e-6 * total, "{case}: gradient outside the batch's rows");
                (picked, r[&format!("grad.{case}.embeddings.tok_embeddings.rows")].clone())
            } else {
                (g.clone(), r[&format!("grad.{case}.{hf}")].clone())
            };
            let rel = max_abs(&(&ours - &reference).unwrap()) / max_abs(&reference).max(1e-30);
            assert!(rel <= 1e-4, "{case}: gradient of {name} rel {rel:.2e}");
            if rel > worst.0 {
                worst = (rel, name.clone());
            }
        }
        assert_eq!(grads.len(), 26, "{case}: every parameter has a gradient");
        eprintln!("{case}: loss rel {loss_rel:.2e}, worst gradient rel {:.2e} ({})", worst.0, worst.1);
    }
}
