//! Cross-encoders (rerankers): a sequence classifier on `[CLS] query [SEP] document [SEP]` whose
//! logits go through an activation, found where each sentence-transformers generation stores it
//! (docs/formats.md §2).

use super::read_json;
use super::sentence_transformers::{activation, max_length};
use crate::config::{Activation, Config};
use crate::error::Result;
use serde_json::Value;
use std::path::Path;

/// A cross-encoder's output function and input limit.
#[derive(Debug, Clone, PartialEq)]
pub struct CrossEncoder {
    /// Applied to the logits (`None` = identity).
    pub activation: Option<Activation>,
    /// Pairs are cut to this many tokens (longest first), when the model says.
    pub max_length: Option<usize>,
}

impl CrossEncoder {
    /// The scores of one pair's logits: the activation applied to each.
    pub fn scores(&self, logits: &[f32]) -> Vec<f32> {
        logits.iter().map(|&x| apply(self.activation, x)).collect()
    }
}

/// An activation on one value (the element-wise functions cross-encoders use).
pub fn apply(act: Option<Activation>, x: f32) -> f32 {
    match act {
        None => x,
        Some(Activation::Sigmoid) => 1.0 / (1.0 + (-x).exp()),
        Some(Activation::Tanh) => x.tanh(),
        Some(Activation::Relu) => x.max(0.0),
        Some(Activation::Silu) => x / (1.0 + (-x).exp()),
        Some(Activation::Gelu) => {
            0.5 * x * (1.0 + modernbert_kernels::reference::erf((x / std::f32::consts::SQRT_2) as f64) as f32)
        }
        Some(Activation::GeluTanh) => 0.5 * x * (1.0 + (0.797_884_6 * (x + 0.044_715 * x * x * x)).tanh()),
    }
}

/// Reads the activation: ST ≥ 5.4 `config_sentence_transformers.json` `activation_fn`; ST 4 – 5.3
/// `config.json` `sentence_transformers.activation_fn`; ST < 4 `config.json`
/// `sbert_ce_default_activation_function`; else Sigmoid for one label, Identity for more.
pub fn read(dir: &Path, config: &Config) -> Result<CrossEncoder> {
    let st = dir.join("config_sentence_transformers.json");
    let hf = read_json(&dir.join("config.json"))?;
    let st = if st.is_file() { read_json(&st)? } else { Value::Null };
    let stored = st
        .get("activation_fn")
        .and_then(Value::as_str)
        .map(|s| (s, "config_sentence_transformers.json"))
        .or_else(|| {
            hf.get("sentence_transformers")
                .and_then(|v| v.get("activation_fn"))
                .and_then(Value::as_str)
                .map(|s| (s, "config.json"))
        })
        .or_else(|| hf.get("sbert_ce_default_activation_function").and_then(Value::as_str).map(|s| (s, "config.json")));
    let activation = match stored {
        Some((path, file)) => activation(path, &dir.join(file).display().to_string())?,
        None if config.num_labels == 1 => Some(Activation::Sigmoid),
        None => None,
    };
    Ok(CrossEncoder { activation, max_length: max_length(dir, config.max_position_embeddings)? })
}

/// Writes the sentence-transformers files (ST 6 contents) of a cross-encoder with a sigmoid output
/// whose transformer files (a one-label sequence classifier) are already in `dir`.
pub fn write(dir: &Path, max_length: usize) -> Result<()> {
    use serde_json::json;
    super::write_json(
        dir,
        "modules.json",
        &json!([{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}]),
    )?;
    super::write_json(
        dir,
        "sentence_bert_config.json",
        &json!({"transformer_task": "sequence-classification",
                "modality_config": {"text": {"method": "forward", "method_output_name": "logits"}},
                "module_output_name": "scores"}),
    )?;
    super::write_json(
        dir,
        "config_sentence_transformers.json",
        &json!({"__version__": super::written_versions(), "model_type": "CrossEncoder",
                "activation_fn": "torch.nn.modules.activation.Sigmoid", "default_prompt_name": null, "prompts": {}}),
    )?;
    super::set_max_length(dir, max_length)
}
