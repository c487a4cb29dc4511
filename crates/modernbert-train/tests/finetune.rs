//! `modernbert finetune` end to end on a tiny model (tests/fixtures/tiny-mlm, real tokenizer):
//! the loss falls and the metric rises on learnable synthetic data, the output directory loads
//! through `Model::load` with the trained model's logits, resume after a stop is bit-exact, and
//! bad input is a clear error.

use modernbert_train::finetune::evaluate::evaluate_file;
use modernbert_train::finetune::{finetune, FinetuneConfig, Task};
use modernbert_train::model::TrainModel;
use modernbert_train::rng::Rng;
use modernbert_train::st;
use std::path::{Path, PathBuf};

fn tiny() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-mlm").display().to_string()
}

const GOOD: [&str; 4] = ["great", "wonderful", "good", "superb"];
const BAD: [&str; 4] = ["awful", "terrible", "bad", "boring"];
const FILLER: [&str; 8] = ["the", "film", "was", "really", "quite", "plot", "acting", "overall"];

/// Sentences whose label is whether a "good" word or a "bad" word appears.
fn sentiment_jsonl(path: &Path, n: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    for i in 0..n {
        let positive = i % 2 == 0;
        let mut words: Vec<&str> = (0..1 + rng.below(3) as usize).map(|_| FILLER[rng.below(8) as usize]).collect();
        let key = if positive { GOOD[rng.below(4) as usize] } else { BAD[rng.below(4) as usize] };
        let at = rng.below(words.len() as u64 + 1) as usize;
        words.insert(at, key);
        let label = if positive { "pos" } else { "neg" };
        out += &serde_json::json!({"text": words.join(" "), "label": label}).to_string();
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

/// Sentences tagged B-NAME / I-NAME / O: a first name from a fixed list, sometimes followed by a
/// surname from another.
fn names_conll(path: &Path, n: usize, seed: u64) {
    let (first, last) = (["Alice", "Bob", "Carol", "Dave"], ["Smith", "Jones", "Brown", "Lee"]);
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    for _ in 0..n {
        for k in 0..5 + rng.below(4) {
            if k % 3 == 1 {
                out += &format!("{}\tB-NAME\n", first[rng.below(4) as usize]);
                if rng.below(2) == 0 {
                    out += &format!("{}\tI-NAME\n", last[rng.below(4) as usize]);
                }
            } else {
                out += &format!("{}\tO\n", FILLER[rng.below(8) as usize]);
            }
        }
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

fn config(dir: &Path, task: Task, train: PathBuf, validation: PathBuf) -> FinetuneConfig {
    FinetuneConfig {
        task,
        model: tiny(),
        train,
        validation: Some(validation),
        output: dir.join("out"),
        epochs: 4,
        learning_rate: 3e-3,
        batch_size: 8,
        warmup_ratio: 0.1,
        seed: 5,
        ..Default::default()
    }
}

fn losses(metrics: &Path, kind: &str) -> Vec<f64> {
    std::fs::read_to_string(metrics)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == kind)
        .map(|v| v["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn classification_learns_and_exports_an_hf_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("train.jsonl"), dir.path().join("val.jsonl"));
    sentiment_jsonl(&train, 96, 1);
    sentiment_jsonl(&val, 40, 2);
    let cfg = config(dir.path(), Task::Classification, train, val.clone());
    let summary = finetune(cfg.clone(), None, false).unwrap();
    let out = &cfg.output;
    let best = summary.best.unwrap();
    let train_loss = losses(&out.join("metrics.jsonl"), "train");
    let first: f64 = train_loss[..4].iter().sum::<f64>() / 4.0;
    let last: f64 = train_loss[train_loss.len() - 4..].iter().sum::<f64>() / 4.0;
    eprintln!("train loss {first:.4} -> {last:.4}; best accuracy {:.3} at step {}", best.metric, best.step);
    assert!(last < 0.5 * first, "training loss did not fall: {first} -> {last}");
    assert!(best.metric >= 0.8, "validation accuracy {} (chance: 0.5)", best.metric);

    // The output is an HF directory the library loads, with the labels and the best model.
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["architectures"][0], "ModernBertForSequenceClassification");
    assert_eq!(config["id2label"], serde_json::json!({"0": "neg", "1": "pos"}));
    assert_eq!(config["label2id"], serde_json::json!({"neg": 0, "pos": 1}));
    assert_eq!(config["problem_type"], "single_label_classification");
    for f in ["model.safetensors", "tokenizer.json", "README.md", "training_curve.png", "metrics.jsonl"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    assert!(!out.join("best").exists());
    let model = modernbert::Model::load(out).unwrap();
    let r = evaluate_file(&model, &val, None, 512).unwrap();
    assert!((r.evaluation.metric - best.metric).abs() < 1e-9, "{} vs {}", r.evaluation.metric, best.metric);
    assert!((r.evaluation.loss - best.loss).abs() < 1e-5, "{} vs {}", r.evaluation.loss, best.loss);
    // The training model on the exported weights gives the inference model's logits.
    let trained = TrainModel::load(out).unwrap();
    let enc = model.encode(&[("the plot was superb", None), ("awful acting", None)], None).unwrap();
    let ids: Vec<u32> = enc.iter().flat_map(|e| e.ids.clone()).collect();
    let cu = vec![0, enc[0].ids.len() as u32, ids.len() as u32];
    let ours = trained.classifier_logits(&ids, &cu, None).unwrap().to_vec2::<f32>().unwrap();
    let seqs: Vec<&[u32]> = enc.iter().map(|e| e.ids.as_slice()).collect();
    let lib = model.classifier_logits(&seqs).unwrap();
    for (a, b) in ours.iter().zip(&lib) {
        for (x, y) in a.iter().zip(&b[0]) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }
    // A second run into the same directory is refused (it would mix two runs' histories).
    let err = finetune(cfg, None, false).unwrap_err().to_string();
    assert!(err.contains("already holds a fine-tuning run"), "{err}");
}

#[test]
fn resume_after_a_stop_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("train.jsonl"), dir.path().join("val.jsonl"));
    sentiment_jsonl(&train, 48, 3);
    sentiment_jsonl(&val, 8, 4);
    let mut cfg = config(dir.path(), Task::Classification, train, val);
    cfg.eval_every = 2;
    cfg.epochs = 2;
    cfg.max_steps = Some(5);
    let straight = FinetuneConfig { output: dir.path().join("straight"), ..cfg.clone() };
    finetune(straight.clone(), None, false).unwrap();
    let split = FinetuneConfig { output: dir.path().join("split"), max_steps: Some(2), ..cfg.clone() };
    finetune(split.clone(), None, false).unwrap();
    let resumed = FinetuneConfig { max_steps: Some(5), ..FinetuneConfig::default() };
    finetune(resumed, Some(&split.output), false).unwrap();
    let ckpt = |o: &Path, f: &str| st::load(&o.join("checkpoints/step-00000005").join(f)).unwrap();
    for f in ["model.safetensors", "optimizer.safetensors"] {
        let (a, meta_a) = ckpt(&straight.output, f);
        let (b, meta_b) = ckpt(&split.output, f);
        assert!(a == b, "{f} differs after resume");
        assert_eq!(meta_a, meta_b);
    }
    assert_eq!(
        losses(&straight.output.join("metrics.jsonl"), "train"),
        losses(&split.output.join("metrics.jsonl"), "train")
    );
}

#[test]
fn token_classification_learns_entities() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("train.conll"), dir.path().join("val.conll"));
    names_conll(&train, 80, 5);
    names_conll(&val, 20, 6);
    // f32, and mixed precision (bf16 products, f32 weights): both learn the task.
    for precision in [modernbert::Precision::F32, modernbert::Precision::Bf16] {
        let cfg = FinetuneConfig {
            precision,
            output: dir.path().join(format!("{precision:?}")),
            ..config(dir.path(), Task::TokenClassification, train.clone(), val.clone())
        };
        let summary = finetune(cfg.clone(), None, false).unwrap();
        let best = summary.best.unwrap();
        eprintln!("{precision:?}: entity f1 {:.3}: {}", best.metric, best.metrics);
        assert_eq!(summary.metric_name, "f1");
        assert!(best.metric >= 0.8, "{precision:?}: entity F1 {}", best.metric);
        let model = modernbert::Model::load(&cfg.output).unwrap();
        assert_eq!(model.head.name(), "ModernBertForTokenClassification");
        let r = evaluate_file(&model, &val, None, 512).unwrap();
        assert!((r.evaluation.metric - best.metric).abs() < 1e-9);
    }
    let cfg = FinetuneConfig {
        precision: modernbert::Precision::Int8,
        ..config(dir.path(), Task::TokenClassification, train, val)
    };
    let err = format!("{:#}", finetune(cfg, None, false).unwrap_err());
    assert!(err.contains("precision") && err.contains("f32 or bf16"), "{err}");
}

/// One step's gradients with the linear layers in bf16 against f32: the same direction (cosine
/// ≥ 0.999 per tensor; seen ≥ 0.99936) and size (norms within 3%; seen ≤ 1.9%, the embedding norm).
#[test]
fn bf16_products_give_gradients_close_to_f32_ones() {
    use modernbert_train::finetune::classify::ClassifyJob;
    use modernbert_train::finetune::job::{Job, StepContext};
    use modernbert_train::model::Arithmetic;
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    sentiment_jsonl(&train, 16, 3);
    let cfg = config(dir.path(), Task::Classification, train.clone(), train);
    let model_dir = PathBuf::from(tiny());
    let job = ClassifyJob::new(&cfg, &model_dir).unwrap();
    let grads: Vec<_> = [Arithmetic::F32, Arithmetic::Bf16]
        .into_iter()
        .map(|arith| {
            let model = job.start_model(&cfg, &model_dir).unwrap().0.with_arithmetic(arith);
            let mut grads = modernbert_train::grads::Gradients::new();
            let dropout = modernbert_train::model::DropoutConfig::none();
            let mut ctx = StepContext { cfg: &cfg, dropout, step: 0, grads: &mut grads };
            job.step(&model, &(0..16).collect::<Vec<_>>(), &mut ctx).unwrap();
            grads.to_dense(&model).unwrap()
        })
        .collect();
    let flat = |t: &candle_core::Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut worst = 1f64;
    for (name, a) in &grads[0] {
        let (a, b) = (flat(a), flat(&grads[1][name]));
        let dot: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
        let (na, nb) = (
            a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt(),
            b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt(),
        );
        if na == 0.0 {
            continue;
        }
        let cos = dot / (na * nb);
        worst = worst.min(cos);
        assert!(cos >= 0.999 && (na - nb).abs() <= 0.03 * na, "{name}: cosine {cos}, norms {na} vs {nb}");
    }
    eprintln!("bf16 vs f32 gradients: worst cosine {worst:.6}");
}

#[test]
fn regression_and_multi_label_export_their_problem_type() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("train.jsonl"), dir.path().join("val.jsonl"));
    let rows = |n: usize, multi: bool| {
        (0..n)
            .map(|i| {
                let label = if multi {
                    serde_json::json!(if i % 3 == 0 { vec!["a", "b"] } else { vec!["c"] })
                } else {
                    serde_json::json!(i as f64 / 4.0)
                };
                serde_json::json!({"text": format!("row {i} {}", GOOD[i % 4]), "label": label}).to_string() + "\n"
            })
            .collect::<String>()
    };
    for (multi, problem, metric) in [(false, "regression", "pearson"), (true, "multi_label_classification", "macro_f1")]
    {
        std::fs::write(&train, rows(24, multi)).unwrap();
        std::fs::write(&val, rows(6, multi)).unwrap();
        let cfg = FinetuneConfig {
            output: dir.path().join(problem),
            epochs: 1,
            ..config(dir.path(), Task::Classification, train.clone(), val.clone())
        };
        let s = finetune(cfg.clone(), None, false).unwrap();
        assert_eq!(s.metric_name, metric);
        let c: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(cfg.output.join("config.json")).unwrap()).unwrap();
        assert_eq!(c["problem_type"], problem);
        let model = modernbert::Model::load(&cfg.output).unwrap();
        let out = model.classify(&[("row 1 good", None)], None).unwrap();
        let modernbert::tasks::ClassifyOutput::Sequence(c) = &out[0] else { panic!() };
        if multi {
            assert_eq!(c.logits.len(), 3);
            assert!((0.0..=1.0).contains(&c.score), "sigmoid score {}", c.score);
        } else {
            assert_eq!(c.logits.len(), 1);
            assert_eq!(c.score, c.logits[0], "regression reports the value");
        }
    }
}

#[test]
fn bad_data_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("train.jsonl"), dir.path().join("val.jsonl"));
    sentiment_jsonl(&train, 20, 1);
    std::fs::write(&val, "{\"text\": \"fine\", \"label\": \"pos\"}\n{\"text\": \"meh\", \"label\": \"neutral\"}\n")
        .unwrap();
    let cfg = config(dir.path(), Task::Classification, train.clone(), val.clone());
    let err = format!("{:#}", finetune(cfg.clone(), None, false).unwrap_err());
    assert!(err.contains("val.jsonl:2: label \"neutral\" is not one of the 2 training labels"), "{err}");
    let tokens = dir.path().join("t.jsonl");
    std::fs::write(&tokens, "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n").unwrap();
    let err = format!(
        "{:#}",
        finetune(config(dir.path(), Task::TokenClassification, tokens.clone(), tokens), None, false).unwrap_err()
    );
    assert!(err.contains("t.jsonl:1: 2 tokens but 1 tags"), "{err}");
    let bad = FinetuneConfig { learning_rate: -1.0, ..cfg };
    assert!(format!("{:#}", finetune(bad, None, false).unwrap_err()).contains("learning_rate"));
}

/// Query/document pairs where the document repeats the query's topic word.
fn pairs_jsonl(path: &Path, n: usize, seed: u64, negatives: bool) {
    let topics = [
        "apple", "river", "engine", "violin", "planet", "castle", "garden", "rocket", "pencil", "forest", "bridge",
        "window", "dragon", "winter", "silver", "coffee", "camera", "island", "ladder", "marble",
    ];
    let mut rng = Rng::new(seed);
    let mut out = String::new();
    for _ in 0..n {
        let t = topics[rng.below(topics.len() as u64) as usize];
        let other = topics[rng.below(topics.len() as u64) as usize];
        let filler: Vec<&str> = (0..3).map(|_| FILLER[rng.below(8) as usize]).collect();
        let mut row = serde_json::json!({
            "query": format!("tell me about the {t}"),
            "positive": format!("the {t} {} {t}", filler.join(" ")),
        });
        if negatives {
            row["negatives"] = serde_json::json!([format!("the {other} {} {other}", filler.join(" "))]);
        }
        out += &(row.to_string() + "\n");
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn embedding_learns_and_exports_a_sentence_transformers_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("pairs.jsonl"), dir.path().join("val.jsonl"));
    pairs_jsonl(&train, 120, 1, true);
    pairs_jsonl(&val, 30, 2, false);
    let cfg = FinetuneConfig {
        task: Task::Embedding,
        batch_size: 16,
        mini_batch_size: Some(12),
        matryoshka_dims: Some(vec![16, 32]),
        query_prompt: Some("query: ".into()),
        ..config(dir.path(), Task::Embedding, train, val)
    };
    let summary = finetune(cfg.clone(), None, false).unwrap();
    assert_eq!(summary.metric_name, "ndcg_at_10");
    let evals: Vec<f64> = std::fs::read_to_string(cfg.output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "eval")
        .map(|v| v["ndcg_at_10"].as_f64().unwrap())
        .collect();
    eprintln!("nDCG@10 per epoch: {evals:?}");
    assert!(evals.last().unwrap() > &(evals[0] + 0.1), "{evals:?}");
    // The output is a sentence-transformers directory the library loads as one.
    let model = modernbert::Model::load(&cfg.output).unwrap();
    assert_eq!(model.format.name(), "sentence-transformers");
    let opts = modernbert::pipelines::EmbedOptions { prompt_name: Some("query".into()), ..Default::default() };
    let e = model.embed(&["tell me about the river"], &opts).unwrap();
    let modernbert::tasks::Embedding::Pooled(v) = &e[0] else { panic!() };
    let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "Normalize module: norm {norm}");
    // The library's retrieval evaluation of the exported model equals the trainer's last one.
    let set = pairs_set_for_test(&cfg.validation.clone().unwrap());
    let m = modernbert::retrieval::evaluate(&model, &set, 512).unwrap();
    assert!((m.ndcg_at_10 - summary.best.unwrap().metric).abs() < 1e-6, "{m:?}");
}

/// The validation pairs as the trainer turns them into a retrieval set (queries → positives).
fn pairs_set_for_test(path: &Path) -> modernbert::retrieval::RetrievalSet {
    let mut set = modernbert::retrieval::RetrievalSet::default();
    let mut ids = std::collections::HashMap::new();
    for (i, line) in std::fs::read_to_string(path).unwrap().lines().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let p = v["positive"].as_str().unwrap().to_string();
        let n = ids.len();
        let id = ids.entry(p.clone()).or_insert_with(|| format!("d{n}")).clone();
        if id == format!("d{n}") {
            set.corpus.push((id.clone(), p));
        }
        set.qrels.entry(format!("q{i}")).or_default().insert(id);
        set.queries.push((format!("q{i}"), v["query"].as_str().unwrap().to_string()));
    }
    set
}

#[test]
fn grad_cache_gives_the_same_gradients() {
    use modernbert_train::finetune::job::{Job, StepContext};
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("pairs.jsonl");
    pairs_jsonl(&train, 10, 3, true);
    let base = FinetuneConfig {
        task: Task::Embedding,
        matryoshka_dims: Some(vec![8, 32]),
        ..config(dir.path(), Task::Embedding, train.clone(), train)
    };
    let model_dir = PathBuf::from(tiny());
    let mut results = Vec::new();
    // One pass and GradCache chunks of 3, each with a dense and a row-sparse embedding lookup.
    for (mini, sparse) in [(None, false), (Some(3), false), (None, true), (Some(3), true)] {
        let cfg = FinetuneConfig { mini_batch_size: mini, ..base.clone() };
        let job = modernbert_train::finetune::embedding::EmbeddingJob::new(&cfg, &model_dir).unwrap();
        let (model, _) = job.start_model(&cfg, &model_dir).unwrap();
        let model = if sparse { model.with_row_sparse_embedding() } else { model };
        let mut grads = modernbert_train::grads::Gradients::new();
        let dropout = modernbert_train::model::DropoutConfig::none();
        let mut ctx = StepContext { cfg: &cfg, dropout, step: 0, grads: &mut grads };
        let loss = job.step(&model, &(0..8).collect::<Vec<_>>(), &mut ctx).unwrap();
        let emb = modernbert_train::model::TOKEN_EMBEDDING;
        assert_eq!(grads.rows(emb).is_some(), sparse, "row-sparse gradient exactly when asked for");
        let norm = modernbert_train::grads::grad_norm(&grads).unwrap();
        results.push((loss, norm, grads.to_dense(&model).unwrap()));
    }
    let (l0, n0, g0) = &results[0];
    for (i, (l1, n1, g1)) in results.iter().enumerate().skip(1) {
        assert!((l0 - l1).abs() < 1e-5 * l0.abs(), "{i}: loss {l0} vs {l1}");
        assert!((n0 - n1).abs() < 1e-5 * n0, "{i}: gradient norm {n0} vs {n1}");
        assert_eq!(g0.len(), g1.len());
        for (name, a) in g0 {
            let b = &g1[name];
            let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            let scale = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap().max(1e-12);
            assert!(diff <= 1e-4 * scale, "{i} {name}: {diff} of {scale}");
        }
    }
    // A row-sparse lookup changes nothing else: the same gradients bit for bit.
    for (dense, sparse) in [(0, 2), (1, 3)] {
        assert_eq!(results[dense].1.to_bits(), results[sparse].1.to_bits(), "gradient norm");
        for (name, a) in &results[dense].2 {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                results[sparse].2[name].flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()), "{name}: dense and row-sparse differ");
        }
    }
}

#[test]
fn rerankers_learn_listwise_and_from_labels_and_export_a_cross_encoder() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("pairs.jsonl"), dir.path().join("val.jsonl"));
    pairs_jsonl(&train, 64, 4, true);
    pairs_jsonl(&val, 16, 5, true);
    let cfg = FinetuneConfig { batch_size: 8, ..config(dir.path(), Task::Reranker, train.clone(), val.clone()) };
    let s = finetune(cfg.clone(), None, false).unwrap();
    let best = s.best.unwrap();
    eprintln!("listwise reranker: nDCG@10 {:.3}", best.metric);
    assert!(best.metric > 0.9, "{best:?}");
    let model = modernbert::Model::load(&cfg.output).unwrap();
    assert_eq!(model.format.name(), "cross-encoder");
    let scores =
        model.score_pairs("tell me about the river", &["the river flows", "the camera clicks"], false, None).unwrap();
    assert!(scores.iter().all(|s| (0.0..=1.0).contains(s)), "sigmoid scores {scores:?}");
    // Labelled pairs: binary cross-entropy.
    let labelled: String = std::fs::read_to_string(&train)
        .unwrap()
        .lines()
        .flat_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            [(v["positive"].clone(), 1.0), (v["negatives"][0].clone(), 0.0)]
                .map(|(d, y)| serde_json::json!({"query": v["query"], "document": d, "label": y}).to_string() + "\n")
        })
        .collect();
    std::fs::write(&train, labelled).unwrap();
    let cfg = FinetuneConfig { output: dir.path().join("bce"), ..cfg };
    let s = finetune(cfg, None, false).unwrap();
    eprintln!("BCE reranker: nDCG@10 {:.3}", s.best.as_ref().unwrap().metric);
    assert!(s.best.unwrap().metric > 0.8);
}

#[test]
fn colbert_learns_and_exports_a_pylate_directory() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val) = (dir.path().join("pairs.jsonl"), dir.path().join("val.jsonl"));
    pairs_jsonl(&train, 64, 6, true);
    pairs_jsonl(&val, 24, 7, false);
    let cfg = FinetuneConfig {
        batch_size: 16,
        epochs: 3,
        query_length: 12,
        document_length: 24,
        colbert_dim: 16,
        ..config(dir.path(), Task::Colbert, train, val)
    };
    let s = finetune(cfg.clone(), None, false).unwrap();
    let evals: Vec<f64> = std::fs::read_to_string(cfg.output.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "eval")
        .map(|v| v["ndcg_at_10"].as_f64().unwrap())
        .collect();
    eprintln!("ColBERT nDCG@10 per epoch: {evals:?}");
    assert!(s.best.unwrap().metric > evals[0] || evals[0] > 0.9, "{evals:?}");
    let model = modernbert::Model::load(&cfg.output).unwrap();
    assert_eq!(model.format.name(), "colbert");
    assert_eq!(model.config.vocab_size, 50370, "[Q] and [D] were added");
    let tok = model.tokenizer().unwrap();
    assert_eq!((tok.token_to_id("[Q] "), tok.token_to_id("[D] ")), (Some(50368), Some(50369)));
    let scores =
        model.score_pairs("tell me about the river", &["the river river", "the camera camera"], false, None).unwrap();
    assert!(scores[0] > scores[1], "{scores:?}");
    // The library's evaluation of the export equals the trainer's last one.
    let set = pairs_set_for_test(&cfg.validation.clone().unwrap());
    let m = modernbert::retrieval::evaluate(&model, &set, 512).unwrap();
    assert!((m.ndcg_at_10 - evals.last().unwrap()).abs() < 1e-6, "{m:?} vs {evals:?}");
}
