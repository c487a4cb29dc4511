//! Gradient parity with PyTorch for the fine-tuning heads and losses (issue 10): HF transformers'
//! ModernBertFor{Sequence,Token}Classification computes logits, its own loss and every
//! parameter's gradient on a batch (`scripts/finetune_reference.py`, committed in
//! `tests/fixtures/finetune-step/`); ours must match from the same weights, on the unpadded batch.
//!
//! "rel" is per tensor: `max|ours − ref| / max|ref|`.

use candle_core::{Device, Tensor};
use modernbert_train::finetune::encode::Example;
use modernbert_train::finetune::labels::Target;
use modernbert_train::finetune::objective::loss_sum;
use modernbert_train::model::TrainModel;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

fn dir(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/finetune-step").join(case)
}

fn max_abs(t: &Tensor) -> f32 {
    t.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn rel(ours: &Tensor, reference: &Tensor) -> f32 {
    max_abs(&(ours - reference).unwrap()) / max_abs(reference).max(1e-30)
}

/// The examples of the fixture batch, with their targets.
fn examples(r: &HashMap<String, Tensor>, case: &str) -> Vec<Example> {
    let ids: Vec<u32> = r["input_ids"].to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect();
    let cu: Vec<usize> = r["cu_seqlens"].to_vec1::<i64>().unwrap().iter().map(|&v| v as usize).collect();
    let labels = &r["labels"];
    cu.windows(2)
        .enumerate()
        .map(|(b, w)| {
            let target = match case {
                "seqcls-ce" => Target::Class(labels.to_vec1::<i64>().unwrap()[b] as u32),
                "seqcls-bce" => Target::MultiHot(labels.to_vec2::<f32>().unwrap()[b].clone()),
                "seqcls-mse" => Target::Value(labels.to_vec1::<f32>().unwrap()[b]),
                _ => Target::Tokens(labels.to_vec1::<i64>().unwrap()[w[0]..w[1]].to_vec()),
            };
            Example { ids: ids[w[0]..w[1]].to_vec(), target }
        })
        .collect()
}

#[test]
fn heads_and_losses_match_pytorch() {
    for case in ["seqcls-ce", "seqcls-bce", "seqcls-mse", "tokencls-ce"] {
        let r = candle_core::safetensors::load(dir(case).join("reference.safetensors"), &Device::Cpu).unwrap();
        let model = TrainModel::load(&dir(case)).unwrap();
        let ex = examples(&r, case);
        let refs: Vec<&Example> = ex.iter().collect();
        let ids: Vec<u32> = ex.iter().flat_map(|e| e.ids.clone()).collect();
        let cu: Vec<u32> = r["cu_seqlens"].to_vec1::<i64>().unwrap().iter().map(|&v| v as u32).collect();

        let logits = model.classifier_logits(&ids, &cu, None).unwrap();
        let logits_rel = rel(&logits, &r["logits"]);
        assert!(logits_rel <= 1e-5, "{case}: logits rel {logits_rel:.2e}");

        let part = loss_sum(&logits, &refs).unwrap();
        let loss = (part.sum / part.units as f64).unwrap();
        let (ours, want) = (loss.to_scalar::<f32>().unwrap(), r["loss"].to_scalar::<f32>().unwrap());
        let loss_rel = (ours - want).abs() / want.abs();
        assert!(loss_rel <= 1e-5, "{case}: loss {ours} vs PyTorch {want} (rel {loss_rel:.2e})");

        let grads = loss.backward().unwrap();
        let mut worst = (0f32, String::new());
        for (name, var) in model.vars() {
            let reference = &r[&format!("grad.{name}")];
            let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("{case}: no gradient for {name}"));
            let e = rel(g, reference);
            assert!(e <= 1e-4, "{case}: gradient of {name} rel {e:.2e}");
            if e > worst.0 {
                worst = (e, name.clone());
            }
        }
        assert_eq!(model.vars().len(), r.keys().filter(|k| k.starts_with("grad.")).count(), "{case}: parameter count");
        eprintln!(
            "{case}: logits rel {logits_rel:.2e}, loss rel {loss_rel:.2e}, worst gradient rel {:.2e} ({})",
            worst.0, worst.1
        );
    }
}
