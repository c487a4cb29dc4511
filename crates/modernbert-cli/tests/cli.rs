//! End-to-end tests of the `modernbert` binary on the committed fixture model.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modernbert")).args(args).env("HF_HUB_OFFLINE", "1").output().expect("binary runs")
}

fn tiny() -> String {
    fixture("tiny-mlm").to_string_lossy().into_owned()
}

/// Successful runs print one JSON object per input.
fn json_lines(out: &Output) -> Vec<Value> {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// Failed runs print exactly one line that contains `needle`, and exit non-zero.
fn assert_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "expected failure, got {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

#[test]
fn fill_mask_prints_top_k_per_mask() {
    let out = run(&["fill-mask", "--model", &tiny(), "--top-k", "3", "Paris is the [MASK] of [MASK].", "a [MASK]"]);
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["masks"].as_array().unwrap().len(), 2);
    let preds = lines[1]["masks"][0]["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let scores: Vec<f64> = preds.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]) && scores[0] > 0.0 && scores[0] <= 1.0);
    assert!(preds[0]["token_id"].as_u64().unwrap() < 50368);
}

#[test]
fn embed_is_normalized_and_sized() {
    let lines = json_lines(&run(&["embed", "--model", &tiny(), "hello world", "fn main() {}"]));
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let v: Vec<f64> = l["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(v.len(), 32);
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
    let tokens = json_lines(&run(&["embed", "--model", &tiny(), "--pooling", "none", "--no-normalize", "hello world"]));
    // [CLS] hello Ġworld [SEP]
    assert_eq!(tokens[0]["embedding"].as_array().unwrap().len(), 4);
}

#[test]
fn embed_reads_jsonl() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("in.jsonl");
    std::fs::write(&file, "\"one\"\n{\"text\": \"two\"}\n\n").unwrap();
    let lines = json_lines(&run(&["embed", "--model", &tiny(), "--input", file.to_str().unwrap()]));
    assert_eq!(lines.len(), 2);
    std::fs::write(&file, "{\"text\": 3}\n").unwrap();
    assert_error(&run(&["embed", "--model", &tiny(), "--input", file.to_str().unwrap()]), "line 1");
    std::fs::write(&file, "{not json\n").unwrap();
    assert_error(&run(&["embed", "--model", &tiny(), "--input", file.to_str().unwrap()]), "not valid JSON");
}

#[test]
fn tokenize_shows_special_tokens() {
    let lines = json_lines(&run(&["tokenize", "--model", &tiny(), "The capital of France is [MASK]."]));
    let ids: Vec<u64> = lines[0]["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(ids, vec![50281, 510, 5347, 273, 6181, 310, 50284, 15, 50282]);
}

/// The tiny-mlm fixture (real vocab and tokenizer) turned into a classifier with a random head.
fn classifier(architecture: &str) -> tempfile::TempDir {
    use candle_core::{Device, Tensor};
    let src = fixture("tiny-mlm");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["architectures"] = serde_json::json!([architecture]);
    config["id2label"] = serde_json::json!({"0": "negative", "1": "neutral", "2": "positive"});
    std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    tensors.insert("classifier.weight".into(), Tensor::randn(0f32, 1.0, (3, 32), &Device::Cpu).unwrap());
    tensors.insert("classifier.bias".into(), Tensor::zeros(3, candle_core::DType::F32, &Device::Cpu).unwrap());
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

#[test]
fn classify_sequences_and_pairs() {
    let dir = classifier("ModernBertForSequenceClassification");
    let model = dir.path().to_str().unwrap();
    let out = json_lines(&run(&["classify", "--model", model, "good", "bad movie"]));
    assert_eq!(out.len(), 2);
    for o in &out {
        let logits: Vec<f64> = o["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
        assert_eq!(logits.len(), 3);
        let best = (0..3).max_by(|&a, &b| logits[a].total_cmp(&logits[b])).unwrap();
        assert_eq!(o["label"], ["negative", "neutral", "positive"][best]);
        let p = 1.0 / logits.iter().map(|l| (l - logits[best]).exp()).sum::<f64>();
        assert!((o["score"].as_f64().unwrap() - p).abs() < 1e-5);
    }
    let pair = json_lines(&run(&["classify", "--model", model, "--pair", "a", "b"]));
    assert_eq!(pair.len(), 1);
    assert_error(&run(&["classify", "--model", model, "--pair", "a"]), "even number");
}

#[test]
fn classify_tokens_with_char_offsets() {
    let dir = classifier("ModernBertForTokenClassification");
    let text = "Zoë lives in Paris";
    let out = json_lines(&run(&["classify", "--model", dir.path().to_str().unwrap(), text]));
    let tokens = out[0].as_array().unwrap();
    // Specials are left out; offsets are character offsets into the text.
    let words: Vec<String> = tokens
        .iter()
        .map(|t| {
            let (s, e) = (t["start"].as_u64().unwrap() as usize, t["end"].as_u64().unwrap() as usize);
            text.chars().skip(s).take(e - s).collect::<String>()
        })
        .collect();
    assert_eq!(words.concat(), text);
    assert!(tokens.iter().all(|t| t["logits"].as_array().unwrap().len() == 3));
}

#[test]
fn bad_inputs_are_one_line_errors() {
    assert_error(&run(&["embed", "--model", "/nonexistent/model", "x"]), "does not exist");
    assert_error(&run(&["embed", "--model", &tiny(), ""]), "input 0: empty text");
    assert_error(&run(&["fill-mask", "--model", &tiny(), "no mask here"]), "no [MASK]");
    assert_error(&run(&["embed", "--model", &tiny()]), "no input text");
    assert_error(&run(&["classify", "--model", &tiny(), "x"]), "classification model");
    assert_error(&run(&["embed", "--model", "someorg/somemodel", "x"]), "HF_HUB_OFFLINE");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    assert_error(&run(&["embed", "--model", dir.path().to_str().unwrap(), "x"]), "model_type");
}

#[test]
fn truncated_weights_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixture("tiny-mlm"), dir.path());
    let weights = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&weights).unwrap();
    std::fs::write(&weights, &bytes[..bytes.len() / 2]).unwrap();
    assert_error(&run(&["embed", "--model", dir.path().to_str().unwrap(), "x"]), "safetensors");
}

#[test]
fn over_long_input_needs_max_length() {
    let long = "word ".repeat(9000);
    assert_error(&run(&["embed", "--model", &tiny(), &long]), "more than the model's maximum of 8192");
    let lines = json_lines(&run(&["tokenize", "--model", &tiny(), "--max-length", "16", &long]));
    assert_eq!(lines[0]["ids"].as_array().unwrap().len(), 16);
    assert_eq!(lines[0]["ids"][15].as_u64(), Some(50282));
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Without `--model` the CLI runs `$MODERNBERT_MODEL`, else the model shipped in models/.
#[test]
fn default_model_is_the_shipped_one_unless_the_environment_names_another() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/modernbert-mini");
    let text = "def add(a, b):\n    return a [MASK] b";
    let bare = |env: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_modernbert"));
        c.args(["fill-mask", "--top-k", "3", text]).env("HF_HUB_OFFLINE", "1").env_remove("MODERNBERT_MODEL");
        if let Some(model) = env {
            c.env("MODERNBERT_MODEL", model);
        }
        c.output().expect("binary runs")
    };
    let from_shipped = json_lines(&run(&["fill-mask", "--top-k", "3", "--model", shipped.to_str().unwrap(), text]));
    assert_eq!(json_lines(&bare(None)), from_shipped);
    let from_tiny = json_lines(&run(&["fill-mask", "--top-k", "3", "--model", &tiny(), text]));
    assert_eq!(json_lines(&bare(Some(&tiny()))), from_tiny);
    assert_ne!(from_tiny, from_shipped);
}

/// Without `--model`, `embed` runs the shipped embedder (models/modernbert-mini-embed), with its
/// sentence-transformers pipeline and prompts.
#[test]
fn embed_defaults_to_the_shipped_embedder() {
    let shipped = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/modernbert-mini-embed");
    let args = ["embed", "--prompt-name", "query", "read a file line by line"];
    let mut bare = Command::new(env!("CARGO_BIN_EXE_modernbert"));
    bare.args(args).env("HF_HUB_OFFLINE", "1").env_remove("MODERNBERT_MODEL");
    let named = [&args[..], &["--model", shipped.to_str().unwrap()]].concat();
    assert_eq!(json_lines(&bare.output().unwrap()), json_lines(&run(&named)));
}

#[test]
fn finetune_then_evaluate_and_classify() {
    let dir = tempfile::tempdir().unwrap();
    let train = dir.path().join("train.jsonl");
    let rows: String = (0..40)
        .map(|i| {
            let (word, label) = if i % 2 == 0 { ("great", "pos") } else { ("awful", "neg") };
            format!("{{\"text\": \"the film was {word} {i}\", \"label\": \"{label}\"}}\n")
        })
        .collect();
    std::fs::write(&train, rows).unwrap();
    let out_dir = dir.path().join("out");
    let out = dir.path().join("out").display().to_string();
    let args = ["finetune", "--task", "classification", "--model", &tiny(), "--train", train.to_str().unwrap()];
    let done = run(&[
        &args[..],
        &["--output", &out, "--epochs", "2", "--batch-size", "8", "--learning-rate", "3e-3", "--no-progress"],
    ]
    .concat());
    let summary = json_lines(&done);
    assert_eq!(summary[0]["metric"], "accuracy");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert!(stderr.contains("settings:") && stderr.contains("learning_rate = 0.003"), "{stderr}");
    assert!(stderr.contains("36 training examples, 4 validation examples (10% of"), "{stderr}");
    for f in ["config.json", "model.safetensors", "tokenizer.json", "README.md", "training_curve.png"] {
        assert!(out_dir.join(f).is_file(), "{f}");
    }
    let eval = json_lines(&run(&["evaluate", "--model", &out, "--data", train.to_str().unwrap()]));
    assert_eq!(eval[0]["metrics"]["examples"], 40);
    let acc = eval[0]["metrics"]["accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc));
    let c = json_lines(&run(&["classify", "--model", &out, "the film was great"]));
    assert!(c[0]["label"] == "pos" || c[0]["label"] == "neg");
    // The same output directory again is refused; a bad setting names its field.
    assert_error(&run(&[&args[..], &["--output", &out, "--no-progress"]].concat()), "already holds a fine-tuning run");
    assert_error(&run(&[&args[..], &["--output", "/tmp/x", "--warmup-ratio", "2"]].concat()), "warmup_ratio");
}
