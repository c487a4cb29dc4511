//! End-to-end trainer tests on a tiny synthetic corpus: checkpoints load in the inference
//! library with the same logits, a SIGKILLed run resumes exactly, NaN stops the run.

use modernbert::heads::Head;
use modernbert::Batch;
use modernbert_train::config::RunConfig;
use modernbert_train::data::bpe::{train_from_texts, BpeConfig};
use modernbert_train::data::prepare::{prepare, PrepareConfig};
use modernbert_train::model::TrainModel;
use modernbert_train::rng::Rng;
use modernbert_train::trainer::{train, TrainOptions};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Pseudo-English documents with some structure for the model to learn.
fn corpus(n: usize, seed: u64) -> Vec<String> {
    let subjects = ["the cat", "a dog", "my friend", "the teacher", "our model", "the river", "this code"];
    let verbs = ["sees", "likes", "writes", "finds", "carries", "moves", "reads"];
    let objects = ["the ball", "a letter", "some bread", "the answer", "a tree", "the data", "its name"];
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|_| {
            let sentences = 1 + rng.below(12) as usize;
            (0..sentences)
                .map(|_| {
                    let s = subjects[rng.below(7) as usize];
                    let v = verbs[rng.below(7) as usize];
                    let o = objects[rng.below(7) as usize];
                    format!("{s} {v} {o} and {s} {v} it again.")
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// Writes a corpus, trains a 384-id BPE, prepares shards; returns the run config for `out`.
fn setup(dir: &Path, steps: u64) -> RunConfig {
    let docs = dir.join("corpus");
    std::fs::create_dir_all(&docs).unwrap();
    let texts = corpus(300, 1);
    for (i, t) in texts.iter().enumerate() {
        std::fs::write(docs.join(format!("doc{i:04}.txt")), t).unwrap();
    }
    let tok =
        train_from_texts(&BpeConfig { vocab_size: 384, min_frequency: 2, show_progress: false }, texts.into_iter())
            .unwrap();
    let tok_path = dir.join("tokenizer.json");
    tok.save(&tok_path, false).unwrap();
    let mut p = PrepareConfig::new(tok_path.clone(), dir.join("shards"), vec![docs]);
    p.heldout_fraction = 0.1;
    p.progress = false;
    prepare(&p).unwrap();
    let toml = format!(
        r#"
        out_dir = "{out}"
        seed = 5
        [model]
        config = {{ vocab_size = 384, hidden_size = 32, num_hidden_layers = 3, num_attention_heads = 2, intermediate_size = 48, local_attention = 16 }}
        [data]
        dir = "{shards}"
        tokenizer = "{tok}"
        row_tokens = 256
        [dropout]
        attn_out = 0.1
        mlp = 0.05
        [train]
        eval_rows = 2
        eval_every = 4
        checkpoint_every = 2
        progress = false
        max_steps = {steps}
        [[phase]]
        name = "short"
        tokens = 2500
        max_seq_len = 64
        rows_per_step = 2
        lr = {{ lr = 3e-3, warmup_tokens = 500 }}
        weight_decay = 0.01
        batch_warmup = {{ min_rows = 1, tokens = 600 }}
        [[phase]]
        name = "long"
        tokens = 100000
        max_seq_len = 128
        rope_theta_global = 160000.0
        rows_per_step = 2
        lr = {{ lr = 2e-3, decay_tokens = 100000 }}
        "#,
        out = dir.join("run").display(),
        shards = dir.join("shards").display(),
        tok = tok_path.display(),
    );
    RunConfig::from_toml(&toml).unwrap()
}

fn train_losses(out: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["type"] == "train")
        .map(|v| (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn checkpoint_loads_in_the_inference_library_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let run = setup(dir.path(), 8);
    let s = train(run.clone(), &TrainOptions::default()).unwrap();
    assert_eq!(s.steps, 8);
    let ckpt = s.checkpoint.unwrap();
    assert!(ckpt.ends_with("step-00000008"));
    for f in ["config.json", "model.safetensors", "tokenizer.json", "optimizer.safetensors", "trainer_state.json"] {
        assert!(ckpt.join(f).is_file(), "{f} missing");
    }
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("config.json")).unwrap()).unwrap();
    assert_eq!(cfg["global_attn_every_n_layers"], 3);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(ckpt.join("trainer_state.json")).unwrap()).unwrap();
    assert_eq!(state["phase"], 1, "the run should be in phase 2 by step 8");
    assert_eq!(cfg["global_rope_theta"], 160000.0, "phase 2's θ is recorded");
    let (st, _) = modernbert_train::st::load(&ckpt.join("model.safetensors")).unwrap();
    assert!(!st.contains_key("decoder.weight") && !st.contains_key("model.layers.0.attn_norm.weight"));

    let reference = modernbert::Model::load(&ckpt).unwrap();
    let ours = TrainModel::load(&ckpt).unwrap();
    let seqs = vec![
        vec![1u32, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 2],
        vec![1, 100, 4, 200, 2],
        vec![1, 2],
    ];
    let batch = Batch::new(&seqs).unwrap();
    let want = reference.backbone.forward(&batch).unwrap();
    let Head::MaskedLm(head) = &reference.head else { panic!("not an MLM checkpoint") };
    let want = head.forward(&want).unwrap();
    let got = ours.mlm_logits(&ours.forward_hidden(&batch.input_ids, &batch.cu_seqlens, None).unwrap()).unwrap();
    let diff =
        (&got - &want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert!(diff <= 1e-5, "logits differ by {diff}");
    // Tokens/s and packing efficiency are reported.
    assert!(s.tokens_per_sec > 0.0 && s.packing_efficiency > 0.5);
    assert!(s.eval_start.is_some() && s.eval_end.is_some());
    assert!(run.out_dir.join("loss.png").is_file());
}

/// The child half of `sigkilled_run_resumes_exactly`: trains when asked to by the parent.
#[test]
fn child_trainer() {
    let Ok(config) = std::env::var("MODERNBERT_TRAIN_CHILD") else { return };
    let run: RunConfig = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    train(run, &TrainOptions::default()).unwrap();
}

#[test]
fn sigkilled_run_resumes_exactly() {
    const STEPS: u64 = 24;
    // Uninterrupted reference run.
    let a = tempfile::tempdir().unwrap();
    let run_a = setup(a.path(), STEPS);
    train(run_a.clone(), &TrainOptions::default()).unwrap();
    let want = train_losses(&run_a.out_dir);
    assert_eq!(want.len() as u64, STEPS);
    assert!(want[STEPS as usize - 1].1 < want[0].1, "loss should fall: {want:?}");

    // Same run in a child process, SIGKILLed after its checkpoint of step 4.
    let b = tempfile::tempdir().unwrap();
    let run_b = setup(b.path(), STEPS);
    let cfg_path = b.path().join("run.json");
    std::fs::write(&cfg_path, serde_json::to_string(&run_b).unwrap()).unwrap();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["child_trainer", "--exact", "--nocapture", "--test-threads", "1"])
        .env("MODERNBERT_TRAIN_CHILD", &cfg_path)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let ckpt4 = run_b.out_dir.join("checkpoints/step-00000004");
    let start = Instant::now();
    while !ckpt4.is_dir() {
        assert!(start.elapsed() < Duration::from_secs(300), "the child never wrote step 4");
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited ({status}) before step 4");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child finished before it could be killed");
    let last: PathBuf = run_b.out_dir.join("checkpoints");
    let killed_at = std::fs::read_to_string(last.join("latest")).unwrap();
    assert!(!run_b.out_dir.join(format!("checkpoints/step-{STEPS:08}")).exists(), "killed after the end");

    // Resume from the run directory (its latest complete checkpoint).
    let s = train(run_b.clone(), &TrainOptions { resume: Some(run_b.out_dir.clone()), ..Default::default() }).unwrap();
    assert_eq!(s.steps, STEPS);
    let got = train_losses(&run_b.out_dir);
    assert_eq!(got.len(), want.len(), "metrics after resume (killed at {killed_at})");
    for ((sa, la), (sb, lb)) in want.iter().zip(&got) {
        assert_eq!(sa, sb);
        assert_eq!(
            la.to_bits(),
            lb.to_bits(),
            "step {sa}: loss {la} uninterrupted vs {lb} resumed (killed at {killed_at})"
        );
    }
    // Final weights are bitwise equal too.
    let wa = modernbert_train::st::load(&run_a.out_dir.join(format!("checkpoints/step-{STEPS:08}/model.safetensors")))
        .unwrap()
        .0;
    let wb = modernbert_train::st::load(&run_b.out_dir.join(format!("checkpoints/step-{STEPS:08}/model.safetensors")))
        .unwrap()
        .0;
    assert_eq!(wa, wb);
}

#[test]
fn nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let mut run = setup(dir.path(), 20);
    run.phases[0].lr.lr = 1e30;
    run.phases[0].lr.warmup_tokens = 0;
    run.phases[0].batch_warmup = None;
    run.train.checkpoint_every = 1;
    let err = format!("{:#}", train(run.clone(), &TrainOptions::default()).unwrap_err());
    assert!(err.contains("at step 2") || err.contains("at step 3"), "{err}");
    let step: u64 = err.split("at step ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    let ckpts = run.out_dir.join("checkpoints");
    assert!(ckpts.join(format!("step-{:08}", step - 1)).is_dir());
    assert!(!ckpts.join(format!("step-{step:08}")).exists());
    // The message recommends only a checkpoint whose weights are finite (never the one holding the NaN).
    match err.split("the newest checkpoint with finite weights is ").nth(1) {
        Some(rest) => {
            let named = PathBuf::from(rest.split(' ').next().unwrap());
            TrainModel::load(&named).unwrap();
        }
        None => assert!(err.contains("no checkpoint with finite weights was written yet"), "{err}"),
    }
}

#[test]
fn run_directories_keep_their_history() {
    let dir = tempfile::tempdir().unwrap();
    let run = setup(dir.path(), 2);
    train(run.clone(), &TrainOptions::default()).unwrap();
    let metrics = std::fs::read_to_string(run.out_dir.join("metrics.jsonl")).unwrap();
    // A second fresh run into the same directory is refused, history untouched; --overwrite starts afresh.
    let err = format!("{:#}", train(run.clone(), &TrainOptions::default()).unwrap_err());
    assert!(err.contains("already holds a run"), "{err}");
    assert_eq!(std::fs::read_to_string(run.out_dir.join("metrics.jsonl")).unwrap(), metrics);
    // A copied run resumes into the copy, not into the original.
    let copy = dir.path().join("copy");
    copy_tree(&run.out_dir, &copy);
    let before: Vec<_> =
        std::fs::read_dir(run.out_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    let mut longer = run.clone();
    longer.train.max_steps = Some(4);
    std::fs::create_dir_all(copy.join("checkpoints/.tmp-step-00000009-1")).unwrap();
    train(longer.clone(), &TrainOptions { resume: Some(copy.clone()), ..Default::default() }).unwrap();
    assert!(copy.join("checkpoints/step-00000004").is_dir());
    assert!(!copy.join("checkpoints/.tmp-step-00000009-1").exists(), "leftovers are removed");
    let after: Vec<_> =
        std::fs::read_dir(run.out_dir.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after, "the original run is untouched");
    // A changed [model] on resume is refused, naming the field.
    let mut wider = longer.clone();
    wider.model.config.as_mut().unwrap().insert("hidden_size".into(), serde_json::json!(64));
    wider.model.config.as_mut().unwrap().insert("num_attention_heads".into(), serde_json::json!(2));
    let err =
        format!("{:#}", train(wider, &TrainOptions { resume: Some(copy.clone()), ..Default::default() }).unwrap_err());
    assert!(err.contains("hidden_size is 64, but the checkpoint's model has 32"), "{err}");
    // A corrupt trainer_state.json is an error, not a panic.
    let state = copy.join("checkpoints/step-00000004/trainer_state.json");
    let text = std::fs::read_to_string(&state).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["data"]["position"]["cursor"] = serde_json::json!(99_999_999);
    std::fs::write(&state, v.to_string()).unwrap();
    let mut more = longer.clone();
    more.train.max_steps = Some(6);
    let err =
        format!("{:#}", train(more, &TrainOptions { resume: Some(copy.clone()), ..Default::default() }).unwrap_err());
    assert!(err.contains("past the") || err.contains("data source state"), "{err}");
    // --overwrite starts afresh.
    train(run.clone(), &TrainOptions { overwrite: true, ..Default::default() }).unwrap();
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let p = e.unwrap().path();
        let dst = to.join(p.file_name().unwrap());
        if p.is_dir() {
            copy_tree(&p, &dst);
        } else {
            std::fs::copy(&p, &dst).unwrap();
        }
    }
}
