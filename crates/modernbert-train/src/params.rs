//! The trainable parameters of `ModernBertForMaskedLM`, named exactly like HF checkpoints.
//!
//! The decoder weight is tied to `model.embeddings.tok_embeddings.weight` and is not a separate
//! parameter; `model.layers.0.attn_norm` does not exist (layer 0's input is the embedding norm).

use modernbert::Config;

/// How a parameter is initialised (spec §6.1) and which optimizer group it falls in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// The token embedding (also the tied decoder): `σ = initializer_range`.
    Embedding,
    /// "in" projections (`Wqkv`, `Wi`, `head.dense`): `σ = initializer_range`.
    In,
    /// "out" projections (attention and MLP `Wo`): `σ = initializer_range / √(2L)`.
    Out,
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

/// Every parameter of a `ModernBertForMaskedLM` with this config, in a fixed order.
pub fn param_specs(cfg: &Config) -> Vec<ParamSpec> {
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
    linear(&mut push, "head.dense", d, d, ParamKind::In, cfg.classifier_bias);
    norm(&mut push, "head.norm");
    if cfg.decoder_bias {
        push("decoder.bias".into(), vec![v], ParamKind::Bias);
    }
    out
}

/// Number of scalar parameters (the tied decoder counted once).
pub fn num_params(cfg: &Config) -> usize {
    param_specs(cfg).iter().map(|p| p.shape.iter().product::<usize>()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_has_the_released_tensor_count_and_size() {
        let cfg = Config::from_json(r#"{"model_type":"modernbert"}"#).unwrap();
        // spec §2.2: 137 tensors, 149,655,232 parameters for ModernBERT-base MLM.
        assert_eq!(param_specs(&cfg).len(), 137);
        assert_eq!(num_params(&cfg), 149_655_232);
    }
}
