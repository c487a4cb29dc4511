//! Gradient parity with sentence-transformers for `finetune --task embedding` (issue 12):
//! MultipleNegativesRankingLoss with and without a hard negative, its cached (GradCache) form,
//! MatryoshkaLoss, and MNRL plus MSELoss to teacher embeddings (distillation), computed by sentence-transformers 6.3 on `tests/fixtures/retrieval-step`
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
    // (case, hard negatives, GradCache mini-batch, Matryoshka dimensions, rows)
    type Case = (&'static str, Option<usize>, Option<usize>, Option<Vec<usize>>, &'static str);
    let cases: [Case; 6] = [
        ("mnrl", Some(0), None, None, "pairs.jsonl"),
        ("mnrl-hard", None, None, None, "pairs.jsonl"),
        ("cached", None, Some(4), None, "pairs.jsonl"),
        ("matryoshka", None, None, Some(vec![32, 16, 8]), "pairs.jsonl"),
        ("distill", None, None, None, "pairs-distill.jsonl"),
        // The same loss through GradCache.
        ("distill", None, Some(5), None, "pairs-distill.jsonl"),
    ];
    for (case, hard, mini, dims, rows_file) in cases {
        let cfg = FinetuneConfig {
            task: Task::Embedding,
            model: model_dir.display().to_string(),
            train: fixture.join(rows_file),
            distill_weight: 100.0,
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
        eprintln!(
            "{case} (GradCache {mini:?}): loss rel {loss_rel:.2e}, worst gradient rel {:.2e} ({})",
            worst.0, worst.1
        );
    }
}

#[test]
fn teacher_vectors_must_match_the_model_and_cover_every_row() {
    let model_dir = root().join("tests/fixtures/tiny-mlm");
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("rows.jsonl");
    let cfg = FinetuneConfig {
        task: Task::Embedding,
        model: model_dir.display().to_string(),
        train: train.clone(),
        validation: Some(root().join("tests/fixtures/retrieval-step/pairs.jsonl")),
        output: PathBuf::from("unused"),
        ..Default::default()
    };
    let error = |rows: &str| {
        std::fs::write(&train, rows).unwrap();
        EmbeddingJob::new(&cfg, &model_dir).err().map(|e| format!("{e:#}")).unwrap_or_default()
    };
    let narrow = "{\"query\": \"a\", \"positive\": \"b\", \"teacher_vectors\": [[1, 0], [0, 1]]}\n";
    assert!(error(narrow).contains("rows.jsonl:1: teacher vectors are 2 wide, the model's embeddings 32"));
    let wide = format!("[{}]", vec!["0.1"; 32].join(", "));
    let some = format!(
        "{{\"query\": \"a\", \"positive\": \"b\", \"teacher_vectors\": [{wide}, {wide}]}}\n\
         {{\"query\": \"c\", \"positive\": \"d\"}}\n"
    );
    assert!(error(&some).contains("rows.jsonl:2: no `teacher_vectors`"), "{}", error(&some));
}
