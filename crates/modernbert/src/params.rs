//! The one table of ModernBERT parameters: names (as in HF checkpoints), shapes and init kinds of
//! the backbone and of each head. Loading, random weights, training init, optimizer groups and
//! export read it; [`Params`] is how modules get their tensors — frozen weights for inference
//! ([`Weights`]), trainable variables for training — so a head is written once for both.

use crate::config::Config;
use crate::error::{Error, Result};
use crate::weights::Weights;
use candle_core::Tensor;

/// The task head on top of the backbone (HF's `architectures[0]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeadKind {
    /// `ModernBertModel`: the backbone alone.
    None,
    /// `ModernBertForMaskedLM`.
    MaskedLm,
    /// `ModernBertForSequenceClassification`.
    SequenceClassification,
    /// `ModernBertForTokenClassification`.
    TokenClassification,
}

impl HeadKind {
    /// Every head, in a fixed order.
    pub const ALL: [HeadKind; 4] =
        [HeadKind::None, HeadKind::MaskedLm, HeadKind::SequenceClassification, HeadKind::TokenClassification];

    /// The HF architecture name.
    pub fn architecture(self) -> &'static str {
        match self {
            HeadKind::None => "ModernBertModel",
            HeadKind::MaskedLm => "ModernBertForMaskedLM",
            HeadKind::SequenceClassification => "ModernBertForSequenceClassification",
            HeadKind::TokenClassification => "ModernBertForTokenClassification",
        }
    }

    /// Parses an HF architecture name.
    pub fn from_architecture(name: &str) -> Result<Self> {
        Self::ALL.into_iter().find(|h| h.architecture() == name).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|h| h.architecture()).collect();
            Error::config("architectures", format!("{name:?} is not supported ({})", known.join(", ")))
        })
    }

    /// The head of a config (`architectures[0]`), else guessed from which tensors exist.
    pub fn of(cfg: &Config, has_tensor: impl Fn(&str) -> bool) -> Result<Self> {
        match &cfg.architecture {
            Some(arch) => Self::from_architecture(arch),
            None if has_tensor("classifier.weight") => Ok(HeadKind::SequenceClassification),
            None if has_tensor("head.dense.weight") => Ok(HeadKind::MaskedLm),
            None => Ok(HeadKind::None),
        }
    }

    /// Whether the head ends in a `classifier` layer.
    pub fn is_classifier(self) -> bool {
        matches!(self, HeadKind::SequenceClassification | HeadKind::TokenClassification)
    }
}

/// How a parameter is initialised (spec §6.1, HF `_init_weights`) and which optimizer group it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// The token embedding (also the tied decoder): `σ = initializer_range`.
    Embedding,
    /// "in" projections (`Wqkv`, `Wi`, `head.dense`): `σ = initializer_range`.
    In,
    /// "out" projections (attention and MLP `Wo`): `σ = initializer_range / √(2L)`.
    Out,
    /// A classifier's output layer: `σ = hidden_size^-½` (HF's "final_out").
    Classifier,
    /// LayerNorm weights: ones.
    NormWeight,
    /// Biases (linear, norm, `decoder.bias`): zeros.
    Bias,
}

/// One parameter: HF name, shape, kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Full HF name, e.g. `model.layers.3.attn.Wqkv.weight`.
    pub name: String,
    /// PyTorch shape (`[out, in]` for linear weights).
    pub shape: Vec<usize>,
    /// Init / optimizer class.
    pub kind: ParamKind,
}

/// Every parameter of a ModernBERT with this config and head, in a fixed order. The MLM decoder
/// weight is tied to `model.embeddings.tok_embeddings.weight` and not listed; layer 0 has no
/// `attn_norm` (its input is the embedding norm).
pub fn param_specs(cfg: &Config, head: HeadKind) -> Vec<ParamSpec> {
    let (v, d, i) = (cfg.vocab_size, cfg.hidden_size, cfg.intermediate_size);
    let mut out = Vec::new();
    let mut push = |name: String, shape: Vec<usize>, kind| out.push(ParamSpec { name, shape, kind });
    let norm = |push: &mut dyn FnMut(String, Vec<usize>, ParamKind), name: &str| {
        push(format!("{name}.weight"), vec![d], ParamKind::NormWeight);
        if cfg.norm_bias {
            push(format!("{name}.bias"), vec![d], ParamKind::Bias);
        }
    };
    let linear =
        |push: &mut dyn FnMut(String, Vec<usize>, ParamKind), name: &str, o: usize, n: usize, k, bias: bool| {
            push(format!("{name}.weight"), vec![o, n], k);
            if bias {
                push(format!("{name}.bias"), vec![o], ParamKind::Bias);
            }
        };
    push("model.embeddings.tok_embeddings.weight".into(), vec![v, d], ParamKind::Embedding);
    norm(&mut push, "model.embeddings.norm");
    for l in 0..cfg.num_hidden_layers {
        let p = format!("model.layers.{l}");
        if l > 0 {
            norm(&mut push, &format!("{p}.attn_norm"));
        }
        linear(&mut push, &format!("{p}.attn.Wqkv"), 3 * d, d, ParamKind::In, cfg.attention_bias);
        linear(&mut push, &format!("{p}.attn.Wo"), d, d, ParamKind::Out, cfg.attention_bias);
        norm(&mut push, &format!("{p}.mlp_norm"));
        linear(&mut push, &format!("{p}.mlp.Wi"), 2 * i, d, ParamKind::In, cfg.mlp_bias);
        linear(&mut push, &format!("{p}.mlp.Wo"), d, i, ParamKind::Out, cfg.mlp_bias);
    }
    norm(&mut push, "model.final_norm");
    if head != HeadKind::None {
        linear(&mut push, "head.dense", d, d, ParamKind::In, cfg.classifier_bias);
        norm(&mut push, "head.norm");
    }
    match head {
        HeadKind::MaskedLm if cfg.decoder_bias => push("decoder.bias".into(), vec![v], ParamKind::Bias),
        HeadKind::SequenceClassification | HeadKind::TokenClassification => {
            linear(&mut push, "classifier", cfg.num_labels, d, ParamKind::Classifier, true)
        }
        _ => {}
    }
    out
}

/// Number of scalar parameters (the tied decoder counted once).
pub fn num_params(cfg: &Config, head: HeadKind) -> usize {
    param_specs(cfg, head).iter().map(|p| p.shape.iter().product::<usize>()).sum()
}

/// Whether a parameter is a head parameter (not under `model.`).
pub fn is_head_param(name: &str) -> bool {
    !name.starts_with("model.")
}

/// Where modules get their tensors: by full HF name, with the shape checked.
pub trait Params {
    /// The tensor `name`, which must have `shape` (f32).
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor>;
    /// Whether `name` exists.
    fn has(&self, name: &str) -> bool;
}

/// Frozen checkpoint weights; `model.*` names are found with or without the prefix.
impl Params for Weights {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match name.strip_prefix("model.") {
            Some(backbone) => self.backbone(backbone, shape),
            None => self.get(name, shape),
        }
    }

    fn has(&self, name: &str) -> bool {
        match name.strip_prefix("model.") {
            Some(backbone) => self.contains_backbone(backbone),
            None => self.contains(name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_has_the_released_tensor_count_and_size() {
        let cfg = Config::from_json(r#"{"model_type":"modernbert"}"#).unwrap();
        // spec §2.2: 137 tensors, 149,655,232 parameters for ModernBERT-base MLM.
        assert_eq!(param_specs(&cfg, HeadKind::MaskedLm).len(), 137);
        assert_eq!(num_params(&cfg, HeadKind::MaskedLm), 149_655_232);
        // A classifier drops decoder.bias (50,368) and adds classifier.weight + bias (2 labels).
        assert_eq!(num_params(&cfg, HeadKind::SequenceClassification), 149_655_232 - 50_368 + 2 * 768 + 2);
        assert_eq!(param_specs(&cfg, HeadKind::None).len(), 137 - 3);
    }

    #[test]
    fn architectures_round_trip() {
        for h in HeadKind::ALL {
            assert_eq!(HeadKind::from_architecture(h.architecture()).unwrap(), h);
        }
        assert!(HeadKind::from_architecture("BertModel").unwrap_err().to_string().contains("architectures"));
    }
}
