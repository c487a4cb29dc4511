//! The committed tokenizer gives exactly the ids HF `tokenizers` gives (tests/fixtures/tokenizer_cases.json,
//! written by scripts/build_tokenizer fixtures from Python).

use modernbert::{Tokenizer, Truncation, TruncationSide};
use serde_json::Value;
use std::path::PathBuf;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn tokenizer() -> Tokenizer {
    Tokenizer::from_file(&root().join("assets/tokenizer/tokenizer.json"), 8192).unwrap()
}

#[test]
fn matches_hf_tokenizers_on_every_case() {
    let t = tokenizer();
    assert_eq!(t.vocab_size(), 50368);
    let text = std::fs::read_to_string(root().join("tests/fixtures/tokenizer_cases.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    for case in &cases {
        let text = case["text"].as_str().unwrap();
        let pair = case["pair"].as_str();
        let add = case["add_special_tokens"].as_bool().unwrap();
        let max = case["max_length"].as_u64().map(|n| modernbert::Truncation::right(n as usize));
        let enc = t.encode(text, pair, add, max).unwrap();
        let ids: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(enc.ids, ids, "ids of {text:?} / {pair:?}");
        let tokens: Vec<&str> = case["tokens"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(enc.tokens, tokens, "tokens of {text:?}");
        let offsets: Vec<(usize, usize)> = case["offsets"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| (o[0].as_u64().unwrap() as usize, o[1].as_u64().unwrap() as usize))
            .collect();
        assert_eq!(enc.offsets, offsets, "offsets of {text:?}");
    }
}

#[test]
fn known_ids() {
    let t = tokenizer();
    let enc = t.encode("The capital of France is [MASK].", None, true, None).unwrap();
    assert_eq!(enc.ids, vec![50281, 510, 5347, 273, 6181, 310, 50284, 15, 50282]);
    let enc = t.encode("a [MASK] b  [MASK]c", None, false, None).unwrap();
    assert_eq!(enc.ids, vec![66, 50284, 270, 50284, 68]);
}

#[test]
fn truncation_and_limits() {
    let t = Tokenizer::from_file(&root().join("assets/tokenizer/tokenizer.json"), 10).unwrap();
    let long = "one two three four five six seven eight nine ten eleven";
    let err = t.encode_batch(&[(long, None)], None).unwrap_err().to_string();
    assert!(err.contains("more than the model's maximum of 10"), "{err}");
    // Truncation is capped by the model maximum, keeps [CLS] ... [SEP].
    let enc = &t.encode_batch(&[(long, None)], Some(Truncation::right(100))).unwrap()[0];
    assert_eq!(enc.ids.len(), 10);
    assert_eq!((enc.ids[0], enc.ids[9]), (50281, 50282));
    let enc = &t.encode_batch(&[(long, Some("short"))], Some(Truncation::right(8))).unwrap()[0];
    assert_eq!(enc.ids.len(), 8);
    assert!(t.encode_batch(&[(long, None)], Some(Truncation::right(2))).is_err());
}

#[test]
fn left_truncation_keeps_the_end() {
    let t = tokenizer();
    let text = "one two three four five six seven eight nine ten";
    let full = t.encode(text, None, true, None).unwrap();
    let left = Truncation { max_length: 5, side: TruncationSide::Left };
    let cut = t.encode(text, None, true, Some(left)).unwrap();
    assert_eq!(cut.ids.len(), 5);
    // [CLS] + the last three words + [SEP]
    assert_eq!(&cut.ids[1..4], &full.ids[full.ids.len() - 4..full.ids.len() - 1]);
    // The cached encoder gives the same result again, and right truncation still works.
    assert_eq!(t.encode(text, None, true, Some(left)).unwrap().ids, cut.ids);
    assert_eq!(t.encode(text, None, true, Some(Truncation::right(5))).unwrap().ids[1..4], full.ids[1..4]);
}
