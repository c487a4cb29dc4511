//! Property tests of loading (issue 15): a model directory whose `config.json`, `model.safetensors`
//! or `tokenizer.json` was damaged at random — any field set to an absurd value, bytes flipped,
//! the file cut short — must load with an `Err` (or load and run), never panic, abort or
//! allocate without bound. A fixed number of cases keeps it to seconds in CI; raise
//! `PROPTEST_CASES` for a longer run.

use modernbert::pipelines::EmbedOptions;
use modernbert::Model;
use proptest::prelude::*;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/tiny-mlm")
}

/// A copy of tiny-mlm whose `file` is replaced by `bytes`.
fn damaged(file: &str, bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in
        ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]
    {
        std::fs::copy(tiny().join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join(file), bytes).unwrap();
    dir
}

/// Loads and, when that works, embeds a short text; a panic fails the test, an `Err` is fine.
fn load_and_run(dir: &Path) -> Result<(), String> {
    let outcome = std::panic::catch_unwind(|| match Model::load(dir) {
        Ok(model) => model.embed(&["hello world"], &EmbedOptions::default()).map(|_| ()).map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    });
    match outcome {
        Ok(Err(message)) => {
            assert!(!message.trim().is_empty(), "an error without a message");
            Ok(())
        }
        Ok(Ok(())) => Ok(()),
        Err(_) => Err("panicked".into()),
    }
}

/// 64 cases per property, or `$PROPTEST_CASES`.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
}

fn absurd_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        Just(Value::Bool(true)),
        Just(Value::from("x")),
        Just(serde_json::json!([])),
        Just(serde_json::json!({})),
        Just(Value::from(0)),
        Just(Value::from(-1)),
        Just(Value::from(1.5)),
        Just(Value::from(1u64 << 20)),
        Just(Value::from(1u64 << 31)),
        Just(Value::from(1_000_000_000_000u64)),
        Just(Value::from(u64::MAX)),
        Just(Value::from(1e300)),
        (1u64..100_000).prop_map(Value::from),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_config_field_set_to_anything_is_an_error_or_works(field in 0usize..64, value in absurd_value()) {
        let mut config: Value = serde_json::from_slice(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap();
        let object = config.as_object_mut().unwrap();
        let key = object.keys().nth(field % object.len()).unwrap().clone();
        object.insert(key.clone(), value.clone());
        let dir = damaged("config.json", config.to_string().as_bytes());
        prop_assert!(load_and_run(dir.path()).is_ok(), "config {key} = {value}");
    }

    #[test]
    fn a_damaged_safetensors_file_is_an_error_or_works(
        flips in proptest::collection::vec((0usize..4096, any::<u8>()), 0..8),
        cut in proptest::option::of(0usize..1 << 20),
    ) {
        let mut bytes = std::fs::read(tiny().join("model.safetensors")).unwrap();
        // Mostly the 8-byte length and the JSON header, where a damaged byte changes shapes and offsets.
        for &(at, byte) in &flips {
            let n = bytes.len();
            bytes[at % n] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let dir = damaged("model.safetensors", &bytes);
        prop_assert!(load_and_run(dir.path()).is_ok(), "flips {flips:?} cut {cut:?}");
    }

    #[test]
    fn a_damaged_tokenizer_file_is_an_error_or_works(
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in proptest::option::of(any::<usize>()),
    ) {
        let mut bytes = std::fs::read(tiny().join("tokenizer.json")).unwrap();
        for &(at, byte) in &flips {
            let n = bytes.len();
            bytes[at % n] = byte;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % (bytes.len() + 1));
        }
        let dir = damaged("tokenizer.json", &bytes);
        prop_assert!(load_and_run(dir.path()).is_ok(), "flips {flips:?} cut {cut:?}");
    }
}
