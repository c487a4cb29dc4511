//! `modernbert embed --shard i/n --output FILE`: the shards of an input together are the
//! unsharded output, in order, and an interrupted run resumes to the same file.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tiny() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-mlm").to_string_lossy().into_owned()
}

fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_modernbert")).args(args).env("HF_HUB_OFFLINE", "1").output().expect("binary runs")
}

fn ok(out: Output) -> Output {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn error(out: Output, needle: &str) {
    assert!(!out.status.success(), "expected failure, got {}", String::from_utf8_lossy(&out.stdout));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "not one line: {stderr}");
    assert!(stderr.contains(needle), "{stderr:?} lacks {needle:?}");
}

fn parse(text: &str) -> Vec<Value> {
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn vector(v: &Value) -> Vec<f64> {
    v["embedding"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// An input of `n` texts of different lengths, JSONL strings and objects, with blank lines
/// (which are not texts) in between.
fn corpus(dir: &Path, n: usize) -> PathBuf {
    let words = ["rust", "python", "über", "données", "🙂", "fn main() {}", "the", "of"];
    let mut s = String::new();
    for i in 0..n {
        let text: Vec<&str> = (0..1 + (i * 7) % 23).map(|j| words[(i + j) % words.len()]).collect();
        let text = format!("text {i}: {}", text.join(" "));
        if i % 2 == 0 {
            s += &serde_json::json!(text).to_string();
        } else {
            s += &serde_json::json!({ "id": i, "text": text }).to_string();
        }
        s += if i % 5 == 0 { "\n\n" } else { "\n" };
    }
    let path = dir.join("corpus.jsonl");
    std::fs::write(&path, s).unwrap();
    path
}

fn embed(input: &Path, extra: &[&str]) -> Output {
    run(&[&["embed", "--model", &tiny(), "--no-normalize", "--input", input.to_str().unwrap()][..], extra].concat())
}

fn assert_same_vectors(got: &[Value], want: &[Value]) {
    assert_eq!(got.len(), want.len());
    for (k, (g, w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (vector(g), vector(w));
        assert_eq!(g.len(), 32);
        let diff = g.iter().zip(&w).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
        assert!(diff <= 1e-6, "text {k}: differs by {diff}");
    }
}

#[test]
fn shards_together_are_the_unsharded_output_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let n = 23;
    let input = corpus(dir.path(), n);
    let whole = parse(&String::from_utf8(ok(embed(&input, &[])).stdout).unwrap());
    assert_eq!(whole.len(), n);
    // More shards than texts: some shards are empty (an empty file, success).
    for count in [1usize, 3, 4, 30] {
        let mut union = Vec::new();
        let mut sizes = Vec::new();
        for index in 0..count {
            let file = dir.path().join(format!("part-{index}-of-{count}.jsonl"));
            let shard = format!("{index}/{count}");
            let out = ok(embed(&input, &["--shard", &shard, "--output", file.to_str().unwrap()]));
            assert!(out.stdout.is_empty(), "--output writes nothing on stdout");
            let lines = parse(&std::fs::read_to_string(&file).unwrap());
            // Contiguous: shard i holds texts [n*i/count, n*(i+1)/count).
            let first: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
            let want: Vec<u64> = ((n * index / count) as u64..(n * (index + 1) / count) as u64).collect();
            assert_eq!(first, want, "shard {shard}");
            sizes.push(lines.len());
            union.extend(lines);
        }
        let indices: Vec<u64> = union.iter().map(|l| l["index"].as_u64().unwrap()).collect();
        assert_eq!(indices, (0..n as u64).collect::<Vec<_>>(), "{count} shards");
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        assert_same_vectors(&union, &whole);
    }
    // Sharded stdout (no --output) carries the indices too.
    let out = parse(&String::from_utf8(ok(embed(&input, &["--shard", "2/3"])).stdout).unwrap());
    assert_eq!(out.iter().map(|l| l["index"].as_u64().unwrap()).collect::<Vec<_>>(), (15..23).collect::<Vec<_>>());
    assert_same_vectors(&out, &whole[15..]);
}

#[test]
fn an_interrupted_run_resumes_to_the_complete_file() {
    let dir = tempfile::tempdir().unwrap();
    // More than one chunk (256 texts) per shard, so a resumed run starts mid-way.
    let input = corpus(dir.path(), 700);
    let full = dir.path().join("full.jsonl");
    ok(embed(&input, &["--shard", "1/2", "--output", full.to_str().unwrap()]));
    let want = std::fs::read_to_string(&full).unwrap();
    let want_lines = parse(&want);
    assert_eq!(want_lines.len(), 350);
    assert_eq!(want_lines[0]["index"], 350);

    // Cut after 300 complete lines and half of the next one: the partial line is dropped and
    // lines 301.. are written once.
    let cut: usize = want.split_inclusive('\n').take(300).map(str::len).sum();
    let half = want[cut..].find('\n').unwrap() / 2;
    let part = dir.path().join("part.jsonl");
    for keep in [cut + half, cut, 0] {
        std::fs::write(&part, &want.as_bytes()[..keep]).unwrap();
        ok(embed(&input, &["--shard", "1/2", "--output", part.to_str().unwrap()]));
        let got = std::fs::read_to_string(&part).unwrap();
        assert!(got.ends_with('\n'));
        // The lines already there stay byte for byte; the rest equal the uninterrupted run.
        assert_eq!(&got[..cut.min(keep)], &want[..cut.min(keep)]);
        let lines = parse(&got);
        let indices: Vec<u64> = lines.iter().map(|l| l["index"].as_u64().unwrap()).collect();
        assert_eq!(indices, (350..700).collect::<Vec<_>>(), "kept {keep} bytes");
        assert_same_vectors(&lines, &want_lines);
    }

    // A complete file is left alone.
    let before = std::fs::read(&part).unwrap();
    ok(embed(&input, &["--shard", "1/2", "--output", part.to_str().unwrap()]));
    assert_eq!(std::fs::read(&part).unwrap(), before);

    // Without --shard, --output resumes the same way (lines without an index).
    let plain = dir.path().join("plain.jsonl");
    ok(embed(&input, &["--output", plain.to_str().unwrap()]));
    let whole = std::fs::read_to_string(&plain).unwrap();
    let cut: usize = whole.split_inclusive('\n').take(500).map(str::len).sum();
    std::fs::write(&plain, &whole.as_bytes()[..cut + 10]).unwrap();
    ok(embed(&input, &["--output", plain.to_str().unwrap()]));
    let resumed = parse(&std::fs::read_to_string(&plain).unwrap());
    assert_eq!(resumed.len(), 700);
    assert!(resumed.iter().all(|l| l.get("index").is_none()));
    assert_same_vectors(&resumed, &parse(&whole));
}

#[test]
fn a_file_from_another_job_is_refused_and_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 20);
    let file = dir.path().join("out.jsonl");
    ok(embed(&input, &["--shard", "0/2", "--output", file.to_str().unwrap()]));
    let bytes = std::fs::read(&file).unwrap();
    // Shard 1's run on shard 0's file: the first line is input 0, not 10.
    error(embed(&input, &["--shard", "1/2", "--output", file.to_str().unwrap()]), "is not input 10");
    // More lines than the job has: shard 0/4 is inputs 0..5, the file holds 0..10.
    error(embed(&input, &["--shard", "0/4", "--output", file.to_str().unwrap()]), "more lines");
    assert_eq!(std::fs::read(&file).unwrap(), bytes);
    // A complete line that is not JSON.
    std::fs::write(&file, "{\"index\": 0, \"embedding\": [1]}\nnot json\n").unwrap();
    error(embed(&input, &["--shard", "0/2", "--output", file.to_str().unwrap()]), "line 2 is not a JSON line");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "{\"index\": 0, \"embedding\": [1]}\nnot json\n");
}

#[test]
fn shard_errors_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 5);
    for bad in ["2/2", "1/0", "1", "a/3"] {
        error(embed(&input, &["--shard", bad]), "not i/n");
    }
    // An error names the input by its index in the whole input, not in its shard or chunk.
    let file = dir.path().join("empty.jsonl");
    std::fs::write(&file, "\"a\"\n\"b\"\n\"c\"\n\"\"\n").unwrap();
    error(embed(&file, &["--shard", "1/2"]), "input 3: empty text");
}
