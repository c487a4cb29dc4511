//! `config.json`: both the original ModernBERT keys and the transformers-5 form.
//!
//! Original form (all official checkpoints): `global_attn_every_n_layers`, `global_rope_theta`,
//! `local_rope_theta`, `norm_eps` / `layer_norm_eps`. Transformers 5 form: `layer_types` and
//! `rope_parameters`. When both are present the transformers-5 keys win (spec §1.2).

use crate::error::{Error, Result};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Attention type of one encoder layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerType {
    /// Every token attends to every token of its sequence.
    Global,
    /// Each token attends to tokens within `local_attention / 2` positions.
    Local,
}

/// Activation functions that ModernBERT configs name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// Exact erf GELU (`"gelu"`).
    Gelu,
    /// tanh-approximated GELU (`"gelu_new"`, `"gelu_pytorch_tanh"`, `"gelu_fast"`).
    GeluTanh,
    Relu,
    /// `"silu"` / `"swish"`.
    Silu,
    Tanh,
    /// Logistic sigmoid (cross-encoder output functions).
    Sigmoid,
}

impl Activation {
    fn parse(field: &str, name: &str) -> Result<Self> {
        Ok(match name {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
            "relu" => Activation::Relu,
            "silu" | "swish" => Activation::Silu,
            "tanh" => Activation::Tanh,
            "sigmoid" => Activation::Sigmoid,
            other => return Err(Error::config(field, format!("unsupported activation {other:?}"))),
        })
    }

    /// The HF name of the activation.
    pub fn hf_name(self) -> &'static str {
        match self {
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_pytorch_tanh",
            Activation::Relu => "relu",
            Activation::Silu => "silu",
            Activation::Tanh => "tanh",
            Activation::Sigmoid => "sigmoid",
        }
    }
}

/// How a sequence is reduced to one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pooling {
    /// The first token ([CLS]).
    Cls,
    /// Mean over the sequence's tokens.
    Mean,
}

impl Pooling {
    /// Parses `"cls"` or `"mean"`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "cls" => Some(Pooling::Cls),
            "mean" => Some(Pooling::Mean),
            _ => None,
        }
    }

    /// The name [`Pooling::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            Pooling::Cls => "cls",
            Pooling::Mean => "mean",
        }
    }
}

/// What a classifier's outputs mean (`problem_type`), which decides its loss and output function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemType {
    /// One class per input: softmax, cross-entropy.
    SingleLabel,
    /// Any number of classes per input: sigmoid per label, binary cross-entropy.
    MultiLabel,
    /// Real-valued outputs: identity, mean squared error.
    Regression,
}

impl ProblemType {
    /// Parses HF's `problem_type` string.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "single_label_classification" => Some(ProblemType::SingleLabel),
            "multi_label_classification" => Some(ProblemType::MultiLabel),
            "regression" => Some(ProblemType::Regression),
            _ => None,
        }
    }

    /// HF's name of the problem type.
    pub fn hf_name(self) -> &'static str {
        match self {
            ProblemType::SingleLabel => "single_label_classification",
            ProblemType::MultiLabel => "multi_label_classification",
            ProblemType::Regression => "regression",
        }
    }
}

/// Dropout probabilities of `config.json` (training only; inference never drops).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Dropouts {
    /// After the embedding LayerNorm (`embedding_dropout`).
    pub embedding: f64,
    /// After the attention output projection (`attention_dropout`).
    pub attention: f64,
    /// Between the GeGLU and the MLP output projection (`mlp_dropout`).
    pub mlp: f64,
    /// Between the classifier's prediction head and its output layer (`classifier_dropout`).
    pub classifier: f64,
}

/// A validated ModernBERT configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub hidden_activation: Activation,
    pub max_position_embeddings: usize,
    pub norm_eps: f64,
    pub norm_bias: bool,
    pub attention_bias: bool,
    pub mlp_bias: bool,
    /// Total local window; each side sees `local_attention / 2` tokens.
    pub local_attention: usize,
    /// One entry per layer.
    pub layer_types: Vec<LayerType>,
    /// RoPE base of global layers.
    pub global_rope_theta: f64,
    /// RoPE base of local layers.
    pub local_rope_theta: f64,
    pub decoder_bias: bool,
    pub tie_word_embeddings: bool,
    pub classifier_pooling: Pooling,
    pub classifier_activation: Activation,
    pub classifier_bias: bool,
    /// Label names by class index (`id2label`), if any.
    pub id2label: BTreeMap<usize, String>,
    pub num_labels: usize,
    /// `problem_type`, if the config names one.
    pub problem_type: Option<ProblemType>,
    /// Training-time dropout probabilities.
    pub dropout: Dropouts,
    pub pad_token_id: u32,
    pub cls_token_id: u32,
    pub sep_token_id: u32,
    /// `architectures[0]`, e.g. `ModernBertForMaskedLM`.
    pub architecture: Option<String>,
}

impl Config {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&text)
    }

    /// Parses and validates the text of a `config.json`.
    pub fn from_json(text: &str) -> Result<Self> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| Error::config("<json>", format!("not valid JSON: {e}")))?;
        let map = value.as_object().ok_or_else(|| Error::config("<json>", "expected a JSON object"))?;
        Self::from_map(map)
    }

    fn from_map(map: &Map<String, Value>) -> Result<Self> {
        let f = Fields(map);
        match f.opt_str("model_type")? {
            Some("modernbert") => {}
            Some(other) => {
                return Err(Error::config("model_type", format!("expected \"modernbert\", found {other:?}")))
            }
            None => return Err(Error::config("model_type", "missing (expected \"modernbert\")")),
        }
        let hidden_size = f.size("hidden_size", 768, 1, 1 << 16)?;
        let num_attention_heads = f.usize_or("num_attention_heads", 12)?;
        let num_hidden_layers = f.size("num_hidden_layers", 22, 1, 1024)?;
        if hidden_size == 0 || num_attention_heads == 0 || hidden_size % num_attention_heads != 0 {
            return Err(Error::config(
                "num_attention_heads",
                format!("{num_attention_heads} heads do not divide hidden_size {hidden_size}"),
            ));
        }
        if (hidden_size / num_attention_heads) % 2 != 0 {
            return Err(Error::config(
                "num_attention_heads",
                format!("head dim {} must be even for RoPE", hidden_size / num_attention_heads),
            ));
        }
        let layer_types = match map.get("layer_types") {
            Some(Value::Array(items)) => {
                let types = items
                    .iter()
                    .map(|t| match t.as_str() {
                        Some("full_attention") => Ok(LayerType::Global),
                        Some("sliding_attention") => Ok(LayerType::Local),
                        _ => Err(Error::config(
                            "layer_types",
                            format!("expected \"full_attention\" or \"sliding_attention\", found {t}"),
                        )),
                    })
                    .collect::<Result<Vec<_>>>()?;
                if types.len() != num_hidden_layers {
                    return Err(Error::config(
                        "layer_types",
                        format!("has {} entries but num_hidden_layers is {num_hidden_layers}", types.len()),
                    ));
                }
                types
            }
            Some(Value::Null) | None => {
                let every = f.usize_or("global_attn_every_n_layers", 3)?;
                if every == 0 {
                    return Err(Error::config("global_attn_every_n_layers", "must be at least 1"));
                }
                (0..num_hidden_layers)
                    .map(|i| if i % every == 0 { LayerType::Global } else { LayerType::Local })
                    .collect()
            }
            Some(other) => return Err(Error::config("layer_types", format!("expected a list, found {other}"))),
        };
        let (global_rope_theta, local_rope_theta) = match map.get("rope_parameters") {
            Some(Value::Object(rope)) => (
                rope_theta(rope, "full_attention", f.f64_or("global_rope_theta", 160_000.0)?)?,
                rope_theta(rope, "sliding_attention", f.f64_or("local_rope_theta", 10_000.0)?)?,
            ),
            Some(Value::Null) | None => {
                (f.f64_or("global_rope_theta", 160_000.0)?, f.f64_or("local_rope_theta", 10_000.0)?)
            }
            Some(other) => return Err(Error::config("rope_parameters", format!("expected an object, found {other}"))),
        };
        let norm_eps = match (map.get("norm_eps"), map.get("layer_norm_eps")) {
            (Some(v), _) if !v.is_null() => f.f64_or("norm_eps", 1e-5)?,
            _ => f.f64_or("layer_norm_eps", 1e-5)?,
        };
        let local_attention = f.usize_or("local_attention", 128)?;
        if local_attention < 2 {
            return Err(Error::config("local_attention", format!("{local_attention} is too small")));
        }
        let id2label = match map.get("id2label") {
            Some(Value::Object(labels)) => labels
                .iter()
                .map(|(k, v)| {
                    let id = k
                        .parse::<usize>()
                        .map_err(|_| Error::config("id2label", format!("key {k:?} is not an integer")))?;
                    let name = v
                        .as_str()
                        .ok_or_else(|| Error::config("id2label", format!("value for {k} is not a string")))?;
                    Ok((id, name.to_string()))
                })
                .collect::<Result<BTreeMap<_, _>>>()?,
            Some(Value::Null) | None => BTreeMap::new(),
            Some(other) => return Err(Error::config("id2label", format!("expected an object, found {other}"))),
        };
        let num_labels = match map.get("num_labels") {
            Some(v) if !v.is_null() => f.usize_or("num_labels", 2)?,
            _ if !id2label.is_empty() => id2label.len(),
            _ => 2,
        };
        let classifier_pooling_name = f.opt_str("classifier_pooling")?.unwrap_or("cls");
        let classifier_pooling = Pooling::parse(classifier_pooling_name).ok_or_else(|| {
            Error::config(
                "classifier_pooling",
                format!("expected \"cls\" or \"mean\", found {classifier_pooling_name:?}"),
            )
        })?;
        let problem_type = match f.opt_str("problem_type")? {
            None => None,
            Some(name) => Some(ProblemType::parse(name).ok_or_else(|| {
                Error::config(
                    "problem_type",
                    format!(
                        "expected \"single_label_classification\", \"multi_label_classification\" or \"regression\", \
                         found {name:?}"
                    ),
                )
            })?),
        };
        let dropout = Dropouts {
            embedding: f.probability("embedding_dropout")?,
            attention: f.probability("attention_dropout")?,
            mlp: f.probability("mlp_dropout")?,
            classifier: f.probability("classifier_dropout")?,
        };
        let architecture = match map.get("architectures") {
            Some(Value::Array(a)) => a.first().and_then(|v| v.as_str()).map(str::to_string),
            _ => None,
        };
        Ok(Config {
            vocab_size: f.size("vocab_size", 50368, 1, 1 << 24)?,
            hidden_size,
            intermediate_size: f.size("intermediate_size", 1152, 1, 1 << 18)?,
            num_hidden_layers,
            num_attention_heads,
            hidden_activation: Activation::parse(
                "hidden_activation",
                f.opt_str("hidden_activation")?.unwrap_or("gelu"),
            )?,
            max_position_embeddings: f.size("max_position_embeddings", 8192, 1, 1 << 20)?,
            norm_eps,
            norm_bias: f.bool_or("norm_bias", false)?,
            attention_bias: f.bool_or("attention_bias", false)?,
            mlp_bias: f.bool_or("mlp_bias", false)?,
            local_attention,
            layer_types,
            global_rope_theta,
            local_rope_theta,
            decoder_bias: f.bool_or("decoder_bias", true)?,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", true)?,
            classifier_pooling,
            classifier_activation: Activation::parse(
                "classifier_activation",
                f.opt_str("classifier_activation")?.unwrap_or("gelu"),
            )?,
            classifier_bias: f.bool_or("classifier_bias", false)?,
            id2label,
            num_labels,
            problem_type,
            dropout,
            pad_token_id: f.usize_or("pad_token_id", 50283)? as u32,
            cls_token_id: f.usize_or("cls_token_id", f.usize_or("bos_token_id", 50281)?)? as u32,
            sep_token_id: f.usize_or("sep_token_id", f.usize_or("eos_token_id", 50282)?)? as u32,
            architecture,
        })
    }

    /// The released configuration of `answerdotai/ModernBERT-base` (`"base"`) or `-large` (`"large"`).
    pub fn preset(name: &str) -> Option<Self> {
        let json = match name {
            "base" => {
                r#"{"model_type":"modernbert","architectures":["ModernBertForMaskedLM"],"classifier_pooling":"mean"}"#
            }
            "large" => {
                r#"{"model_type":"modernbert","architectures":["ModernBertForMaskedLM"],"classifier_pooling":"mean",
                "hidden_size":1024,"intermediate_size":2624,"num_hidden_layers":28,"num_attention_heads":16}"#
            }
            _ => return None,
        };
        Some(Self::from_json(json).expect("preset configs are valid"))
    }

    /// Dimension of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    /// Label name for class `index` (`LABEL_{index}` when the config has none, like HF).
    pub fn label(&self, index: usize) -> String {
        self.id2label.get(&index).cloned().unwrap_or_else(|| format!("LABEL_{index}"))
    }
}

fn rope_theta(rope: &Map<String, Value>, layer_type: &str, fallback: f64) -> Result<f64> {
    let field = format!("rope_parameters.{layer_type}");
    match rope.get(layer_type) {
        None | Some(Value::Null) => Ok(fallback),
        Some(Value::Object(p)) => {
            if let Some(kind) = p.get("rope_type").and_then(Value::as_str) {
                if kind != "default" {
                    return Err(Error::config(
                        &field,
                        format!("rope_type {kind:?} is not supported (only \"default\")"),
                    ));
                }
            }
            match p.get("rope_theta") {
                None | Some(Value::Null) => Ok(fallback),
                Some(v) => v.as_f64().filter(|t| *t > 0.0).ok_or_else(|| {
                    Error::config(&format!("{field}.rope_theta"), format!("expected a positive number, found {v}"))
                }),
            }
        }
        Some(other) => Err(Error::config(&field, format!("expected an object, found {other}"))),
    }
}

impl Config {
    /// `config.json` in the original ModernBERT key form (`global_attn_every_n_layers`,
    /// `global_rope_theta`, …), which HF transformers 4.48+ and 5 load: the architecture (default
    /// `ModernBertForMaskedLM`), the labels of a classifier, the dropouts; the init keys are HF's
    /// defaults (writers of training checkpoints override them).
    pub fn to_hf_json(&self) -> Value {
        let every = (1..=self.num_hidden_layers.max(1))
            .find(|&n| self.layer_types.iter().enumerate().all(|(i, t)| (*t == LayerType::Global) == (i % n == 0)));
        let mut v = serde_json::json!({
            "architectures": [self.architecture.as_deref().unwrap_or("ModernBertForMaskedLM")],
            "model_type": "modernbert",
            "attention_bias": self.attention_bias,
            "attention_dropout": self.dropout.attention,
            "bos_token_id": self.cls_token_id,
            "classifier_activation": self.classifier_activation.hf_name(),
            "classifier_bias": self.classifier_bias,
            "classifier_dropout": self.dropout.classifier,
            "classifier_pooling": self.classifier_pooling.name(),
            "cls_token_id": self.cls_token_id,
            "decoder_bias": self.decoder_bias,
            "deterministic_flash_attn": false,
            "embedding_dropout": self.dropout.embedding,
            "eos_token_id": self.sep_token_id,
            "global_attn_every_n_layers": every.unwrap_or(1),
            "global_rope_theta": self.global_rope_theta,
            "gradient_checkpointing": false,
            "hidden_activation": self.hidden_activation.hf_name(),
            "hidden_size": self.hidden_size,
            "initializer_cutoff_factor": 2.0,
            "initializer_range": 0.02,
            "intermediate_size": self.intermediate_size,
            "layer_norm_eps": self.norm_eps,
            "local_attention": self.local_attention,
            "local_rope_theta": self.local_rope_theta,
            "max_position_embeddings": self.max_position_embeddings,
            "mlp_bias": self.mlp_bias,
            "mlp_dropout": self.dropout.mlp,
            "norm_bias": self.norm_bias,
            "norm_eps": self.norm_eps,
            "num_attention_heads": self.num_attention_heads,
            "num_hidden_layers": self.num_hidden_layers,
            "pad_token_id": self.pad_token_id,
            "position_embedding_type": "absolute",
            "sep_token_id": self.sep_token_id,
            "sparse_pred_ignore_index": -100,
            "sparse_prediction": false,
            "tie_word_embeddings": true,
            "torch_dtype": "float32",
            "vocab_size": self.vocab_size,
        });
        if every.is_none() {
            // Not expressible with the legacy key: add the transformers-5 list (it wins when present).
            let types: Vec<&str> = self
                .layer_types
                .iter()
                .map(|t| if *t == LayerType::Global { "full_attention" } else { "sliding_attention" })
                .collect();
            v["layer_types"] = serde_json::json!(types);
        }
        if !self.id2label.is_empty() || self.architecture.as_deref().is_some_and(|a| a.contains("Classification")) {
            let labels: Vec<String> = (0..self.num_labels).map(|i| self.label(i)).collect();
            v["id2label"] = labels.iter().enumerate().map(|(i, l)| (i.to_string(), Value::from(l.as_str()))).collect();
            v["label2id"] = labels.iter().enumerate().map(|(i, l)| (l.clone(), Value::from(i))).collect();
            v["num_labels"] = Value::from(self.num_labels);
        }
        if let Some(p) = self.problem_type {
            v["problem_type"] = Value::from(p.hf_name());
        }
        v
    }
}

/// Typed access to optional JSON fields with errors that name the field.
struct Fields<'a>(&'a Map<String, Value>);

impl Fields<'_> {
    fn present(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_u64()
                .map(|n| n as usize)
                .ok_or_else(|| Error::config(key, format!("expected a non-negative integer, found {v}"))),
        }
    }

    /// A size within `[min, max]` (sizes are checked before anything is allocated from them).
    fn size(&self, key: &str, default: usize, min: usize, max: usize) -> Result<usize> {
        let n = self.usize_or(key, default)?;
        if !(min..=max).contains(&n) {
            return Err(Error::config(key, format!("{n} is outside the supported range {min}..={max}")));
        }
        Ok(n)
    }

    fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .ok_or_else(|| Error::config(key, format!("expected a positive number, found {v}"))),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.present(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| Error::config(key, format!("expected true or false, found {v}"))),
        }
    }

    /// A dropout probability in `[0, 1)`; absent means 0.
    fn probability(&self, key: &str) -> Result<f64> {
        match self.present(key) {
            None => Ok(0.0),
            Some(v) => v
                .as_f64()
                .filter(|p| (0.0..1.0).contains(p))
                .ok_or_else(|| Error::config(key, format!("expected a probability in [0, 1), found {v}"))),
        }
    }

    fn opt_str(&self, key: &str) -> Result<Option<&str>> {
        match self.present(key) {
            None => Ok(None),
            Some(v) => v.as_str().map(Some).ok_or_else(|| Error::config(key, format!("expected a string, found {v}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_json_round_trips() {
        let mut odd = Config::preset("base").unwrap();
        odd.layer_types[4] = LayerType::Global; // not "every n": needs the layer_types list
        let mut classifier = Config::preset("base").unwrap();
        classifier.architecture = Some("ModernBertForSequenceClassification".into());
        classifier.num_labels = 3;
        classifier.id2label = [(0, "neg".to_string()), (1, "neu".into()), (2, "pos".into())].into();
        classifier.problem_type = Some(ProblemType::MultiLabel);
        classifier.dropout.classifier = 0.1;
        for cfg in [Config::preset("base").unwrap(), Config::preset("large").unwrap(), odd, classifier] {
            let back = Config::from_json(&cfg.to_hf_json().to_string()).unwrap();
            assert_eq!(format!("{back:?}"), format!("{cfg:?}"));
        }
    }

    #[test]
    fn legacy_keys_give_alternating_layers() {
        let c = Config::from_json(
            r#"{"model_type":"modernbert","num_hidden_layers":22,"global_attn_every_n_layers":3,
                "global_rope_theta":160000.0,"local_rope_theta":10000.0,"layer_norm_eps":2e-5}"#,
        )
        .unwrap();
        let globals: Vec<usize> = (0..22).filter(|&i| c.layer_types[i] == LayerType::Global).collect();
        assert_eq!(globals, vec![0, 3, 6, 9, 12, 15, 18, 21]);
        assert_eq!(c.norm_eps, 2e-5);
        assert_eq!((c.global_rope_theta, c.local_rope_theta), (160000.0, 10000.0));
        assert_eq!(c.classifier_pooling, Pooling::Cls);
    }

    #[test]
    fn transformers5_keys_win() {
        let c = Config::from_json(
            r#"{"model_type":"modernbert","num_hidden_layers":3,"global_attn_every_n_layers":3,
                "layer_types":["sliding_attention","full_attention","sliding_attention"],
                "rope_parameters":{"full_attention":{"rope_type":"default","rope_theta":5.0},
                                   "sliding_attention":{"rope_type":"default","rope_theta":7.0}}}"#,
        )
        .unwrap();
        assert_eq!(c.layer_types, vec![LayerType::Local, LayerType::Global, LayerType::Local]);
        assert_eq!((c.global_rope_theta, c.local_rope_theta), (5.0, 7.0));
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"model_type":"bert"}"#, "model_type"),
            (r#"{}"#, "model_type"),
            (r#"{"model_type":"modernbert","hidden_size":"big"}"#, "hidden_size"),
            (r#"{"model_type":"modernbert","hidden_size":100,"num_attention_heads":3}"#, "num_attention_heads"),
            (r#"{"model_type":"modernbert","num_hidden_layers":2,"layer_types":["full_attention"]}"#, "layer_types"),
            (r#"{"model_type":"modernbert","layer_types":["dense"]}"#, "layer_types"),
            (r#"{"model_type":"modernbert","classifier_pooling":"max"}"#, "classifier_pooling"),
            (r#"{"model_type":"modernbert","hidden_activation":"mish"}"#, "hidden_activation"),
            (r#"{"model_type":"modernbert","norm_eps":-1}"#, "norm_eps"),
            (r#"{"model_type":"modernbert","problem_type":"ranking"}"#, "problem_type"),
            (r#"{"model_type":"modernbert","hidden_size":1000000000000}"#, "hidden_size"),
            (r#"{"model_type":"modernbert","max_position_embeddings":1000000000}"#, "max_position_embeddings"),
            (r#"{"model_type":"modernbert","num_hidden_layers":0}"#, "num_hidden_layers"),
            (r#"{"model_type":"modernbert","classifier_dropout":1.5}"#, "classifier_dropout"),
            (
                r#"{"model_type":"modernbert","rope_parameters":{"full_attention":{"rope_type":"yarn"}}}"#,
                "rope_parameters.full_attention",
            ),
            ("not json", "<json>"),
        ];
        for (json, field) in cases {
            let err = Config::from_json(json).unwrap_err().to_string();
            assert!(err.contains(&format!("`{field}`")), "{json} -> {err}");
        }
    }
}
