//! Checkpoint loading errors name the tensor and both shapes; nothing panics.

use candle_core::{Device, Tensor};
use modernbert::Model;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name)
}

/// A copy of the `seqcls-mean` fixture whose tensors went through `edit`.
fn edited(edit: impl FnOnce(&mut HashMap<String, Tensor>)) -> tempfile::TempDir {
    let src = fixture("seqcls-mean");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    dir
}

fn load_error(dir: &Path) -> String {
    match Model::load(dir) {
        Ok(_) => panic!("loading {} should fail", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_tensor_is_named() {
    let dir = edited(|t| {
        t.remove("model.layers.1.mlp.Wo.weight").unwrap();
    });
    let err = load_error(dir.path());
    assert!(err.contains("missing tensor `model.layers.1.mlp.Wo.weight`"), "{err}");
}

#[test]
fn wrong_shape_names_both_shapes() {
    let dir = edited(|t| {
        let w = t["model.layers.0.attn.Wqkv.weight"].clone();
        let (rows, cols) = w.dims2().unwrap();
        t.insert("model.layers.0.attn.Wqkv.weight".into(), w.narrow(0, 0, rows - 3).unwrap());
        assert!(cols > 0);
    });
    let err = load_error(dir.path());
    assert!(err.contains("`model.layers.0.attn.Wqkv.weight` has shape"), "{err}");
    assert!(err.contains("expected"), "{err}");
}

#[test]
fn no_backbone_is_an_error() {
    let dir = edited(|t| t.retain(|k, _| !k.starts_with("model.")));
    let err = load_error(dir.path());
    assert!(err.contains("no ModernBERT backbone"), "{err}");
}

#[test]
fn integer_weights_are_refused() {
    let dir = edited(|t| {
        let w = t["model.final_norm.weight"].to_dtype(candle_core::DType::I64).unwrap();
        t.insert("model.final_norm.weight".into(), w);
    });
    let err = load_error(dir.path());
    assert!(err.contains("model.final_norm.weight") && err.contains("dtype"), "{err}");
}

#[test]
fn present_decoder_weight_is_used() {
    // An untied export that stores decoder.weight: loading it must use that tensor.
    let src = fixture("odd-dims");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let mut tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let emb = tensors["model.embeddings.tok_embeddings.weight"].clone();
    tensors.insert("decoder.weight".into(), emb.zeros_like().unwrap());
    candle_core::safetensors::save(&tensors, dir.path().join("model.safetensors")).unwrap();
    let model = Model::load(dir.path()).unwrap();
    let modernbert::Head::MaskedLm(mlm) = &model.head else { panic!("not an MLM") };
    let batch = modernbert::Batch::new(&[vec![1u32, 5, 2]]).unwrap();
    let logits = mlm.forward(&model.backbone.forward(&batch).unwrap()).unwrap();
    // With a zero decoder the logits equal the decoder bias in every row.
    let bias = tensors["decoder.bias"].unsqueeze(0).unwrap();
    let diff = logits.broadcast_sub(&bias).unwrap().abs().unwrap().max_all().unwrap();
    assert!(diff.to_scalar::<f32>().unwrap() < 1e-6);
}

#[test]
fn f16_checkpoint_loads_as_its_rounded_f32_values() {
    use candle_core::DType;
    let src = fixture("seqcls-mean");
    let tensors = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu).unwrap();
    let half: HashMap<String, Tensor> =
        tensors.iter().map(|(k, v)| (k.clone(), v.to_dtype(DType::F16).unwrap())).collect();
    let dir = edited(|t| *t = half.clone());
    let from_file = Model::load(dir.path()).unwrap();
    // The same weights rounded to f16 and back, held in memory as f32.
    let rounded = half.iter().map(|(k, v)| (k.clone(), v.to_dtype(DType::F32).unwrap())).collect();
    let config = modernbert::Config::from_file(&src.join("config.json")).unwrap();
    let weights = modernbert::weights::Weights::from_tensors(rounded, &Device::Cpu).unwrap();
    let in_memory = Model::from_weights(config, &weights, None, dir.path(), modernbert::Precision::F32).unwrap();
    let batch = modernbert::Batch::new(&[vec![1u32, 7, 9, 2], vec![1, 5, 2]]).unwrap();
    let a = from_file.backbone.forward(&batch).unwrap();
    let b = in_memory.backbone.forward(&batch).unwrap();
    let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff, 0.0);
}
