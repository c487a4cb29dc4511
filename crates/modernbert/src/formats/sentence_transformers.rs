//! sentence-transformers bi-encoders: `modules.json` and the module folders, in the three file
//! generations (ST ≤ 5.3 "legacy", 5.4 – 5.7, ≥ 6.0; docs/formats.md §1), read into an
//! [`embedding::Chain`](crate::embedding::Chain) plus prompts and the maximum length.

use super::{read_json, ModuleEntry};
use crate::config::Activation;
use crate::embedding::{Chain, Dense, Module, PoolingMode};
use crate::error::{Error, Result};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

/// Prompts of `config_sentence_transformers.json`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prompts {
    /// Name → prefix prepended to the text before tokenisation.
    pub prompts: BTreeMap<String, String>,
    /// Used when the caller names no prompt.
    pub default_prompt_name: Option<String>,
}

impl Prompts {
    /// Reads `prompts` and `default_prompt_name` (absent file or keys: none).
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("config_sentence_transformers.json");
        if !path.is_file() {
            return Ok(Self::default());
        }
        let v = read_json(&path)?;
        let prompts = match v.get("prompts") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, p)| match p.as_str() {
                    Some(s) => Ok((k.clone(), s.to_string())),
                    None => Err(Error::Input(format!("{}: prompt {k:?} is not a string", path.display()))),
                })
                .collect::<Result<_>>()?,
            _ => BTreeMap::new(),
        };
        let default_prompt_name = v.get("default_prompt_name").and_then(Value::as_str).map(str::to_string);
        if let Some(d) = &default_prompt_name {
            if !prompts.contains_key(d) {
                return Err(Error::Input(format!(
                    "{}: default_prompt_name {d:?} is not one of the prompts {:?}",
                    path.display(),
                    prompts.keys().collect::<Vec<_>>()
                )));
            }
        }
        Ok(Self { prompts, default_prompt_name })
    }

    /// The prefix for an explicit `prompt` (wins, even empty), else `prompt_name`, else the default
    /// prompt; `None` when nothing (or an empty string) applies. An unknown name is an error.
    pub fn resolve<'a>(&'a self, prompt_name: Option<&str>, prompt: Option<&'a str>) -> Result<Option<&'a str>> {
        let p = match (prompt, prompt_name) {
            (Some(p), _) => Some(p),
            (None, Some(name)) => Some(self.prompts.get(name).map(String::as_str).ok_or_else(|| {
                if self.prompts.is_empty() {
                    Error::Input(format!("prompt name {name:?} given, but the model has no prompts"))
                } else {
                    Error::Input(format!(
                        "prompt name {name:?} is not one of the model's prompts {:?}",
                        self.prompts.keys().collect::<Vec<_>>()
                    ))
                }
            })?),
            (None, None) => self.default_prompt_name.as_ref().and_then(|d| self.prompts.get(d)).map(String::as_str),
        };
        Ok(p.filter(|p| !p.is_empty()))
    }
}

/// A sentence-transformers bi-encoder's pipeline after the encoder.
#[derive(Debug, Clone)]
pub struct SentenceTransformer {
    pub chain: Chain,
    pub prompts: Prompts,
    /// Inputs are cut to this many tokens (specials included).
    pub max_seq_length: Option<usize>,
    /// `truncate_dim` saved with the model (ST 6), used when a call gives none.
    pub truncate_dim: Option<usize>,
    /// `cosine`, `dot`, … (informational).
    pub similarity_fn_name: Option<String>,
    /// `do_lower_case` of `sentence_bert_config.json`.
    pub lower_case: bool,
}

/// Maps an activation class path (`torch.nn.modules.activation.Tanh`, `…linear.Identity`, …).
pub fn activation(path: &str, at: &str) -> Result<Option<Activation>> {
    let name = path.rsplit('.').next().unwrap_or(path);
    Ok(match name {
        "Identity" => None,
        "Tanh" => Some(Activation::Tanh),
        "ReLU" => Some(Activation::Relu),
        "GELU" => Some(Activation::Gelu),
        "SiLU" => Some(Activation::Silu),
        "Sigmoid" => Some(Activation::Sigmoid),
        _ => return Err(Error::Input(format!("{at}: activation {path:?} is not supported"))),
    })
}

/// Reads `N_Dense/` (config + `model.safetensors`, else `pytorch_model.bin`).
pub fn read_dense(dir: &Path, pooled_dim: usize) -> Result<Dense> {
    let cfg_path = dir.join("config.json");
    let cfg = read_json(&cfg_path)?;
    let at = cfg_path.display().to_string();
    let int = |k: &str| {
        cfg.get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| Error::Input(format!("{at}: `{k}` is missing or not an integer")))
    };
    let (inp, out) = (int("in_features")?, int("out_features")?);
    if inp != pooled_dim {
        return Err(Error::Input(format!(
            "{at}: the Dense layer takes {inp} features, but the module before it gives {pooled_dim}"
        )));
    }
    let bias = cfg.get("bias").and_then(Value::as_bool).unwrap_or(true);
    if cfg.get("use_residual").and_then(Value::as_bool) == Some(true) {
        return Err(Error::Input(format!("{at}: use_residual Dense layers are not supported")));
    }
    let act = activation(
        cfg.get("activation_function").and_then(Value::as_str).unwrap_or("torch.nn.modules.activation.Tanh"),
        &at,
    )?;
    let mut tensors = read_tensors(dir)?;
    let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
        let t = tensors.remove(name).ok_or_else(|| Error::Weights(format!("{}: no tensor `{name}`", dir.display())))?;
        if t.dims() != shape {
            return Err(Error::Weights(format!(
                "{}: `{name}` has shape {:?}, expected {shape:?}",
                dir.display(),
                t.dims()
            )));
        }
        Ok(t.to_dtype(DType::F32)?)
    };
    let weight = take("linear.weight", &[out, inp])?;
    let bias = if bias { Some(take("linear.bias", &[out])?) } else { None };
    Ok(Dense { weight, bias, activation: act })
}

/// Every tensor of a module folder's `model.safetensors` or `pytorch_model.bin`.
fn read_tensors(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let st = dir.join("model.safetensors");
    let bin = dir.join("pytorch_model.bin");
    let list = if st.is_file() {
        candle_core::safetensors::load(&st, &Device::Cpu)
            .map_err(|e| Error::Weights(format!("{}: {e}", st.display())))?
            .into_iter()
            .collect()
    } else if bin.is_file() {
        candle_core::pickle::read_all(&bin)
            .map_err(|e| Error::Weights(format!("{}: {e}", bin.display())))?
            .into_iter()
            .collect()
    } else {
        return Err(Error::Weights(format!("{} has no model.safetensors or pytorch_model.bin", dir.display())));
    };
    Ok(list)
}

/// Reads `N_Pooling/config.json` (either generation) into its modes.
fn read_pooling(path: &Path, hidden: usize) -> Result<Module> {
    if !path.is_file() {
        return Err(Error::Input(format!("{} is missing: a Pooling module needs its config", path.display())));
    }
    let cfg = read_json(path)?;
    let at = path.display();
    let dim = cfg.get("embedding_dimension").or_else(|| cfg.get("word_embedding_dimension")).and_then(Value::as_u64);
    if let Some(d) = dim {
        if d as usize != hidden {
            return Err(Error::Input(format!(
                "{at}: embedding dimension {d}, but the model's hidden size is {hidden}"
            )));
        }
    }
    let include_prompt = cfg.get("include_prompt").and_then(Value::as_bool).unwrap_or(true);
    let modes = match cfg.get("pooling_mode") {
        Some(Value::String(s)) => vec![parse_mode(s, &at)?],
        Some(Value::Array(items)) => {
            items.iter().map(|i| parse_mode(i.as_str().unwrap_or_default(), &at)).collect::<Result<Vec<_>>>()?
        }
        Some(other) => return Err(Error::Input(format!("{at}: `pooling_mode` {other} is not a string or list"))),
        None => {
            // Legacy booleans, computed in this fixed order whatever the key order.
            let flags = [
                ("pooling_mode_cls_token", PoolingMode::Cls),
                ("pooling_mode_max_tokens", PoolingMode::Max),
                ("pooling_mode_mean_tokens", PoolingMode::Mean),
                ("pooling_mode_mean_sqrt_len_tokens", PoolingMode::MeanSqrtLen),
                ("pooling_mode_weightedmean_tokens", PoolingMode::WeightedMean),
                ("pooling_mode_lasttoken", PoolingMode::LastToken),
            ];
            let modes: Vec<PoolingMode> = flags
                .iter()
                .filter(|(k, _)| cfg.get(*k).and_then(Value::as_bool) == Some(true))
                .map(|(_, m)| *m)
                .collect();
            if modes.is_empty() {
                vec![PoolingMode::Mean]
            } else {
                modes
            }
        }
    };
    if modes.is_empty() {
        return Err(Error::Input(format!("{at}: `pooling_mode` is an empty list")));
    }
    Ok(Module::Pooling { modes, include_prompt })
}

fn parse_mode(name: &str, at: &dyn std::fmt::Display) -> Result<PoolingMode> {
    PoolingMode::parse(name).ok_or_else(|| {
        Error::Input(format!(
            "{at}: pooling mode {name:?} is not one of cls, max, mean, mean_sqrt_len_tokens, weightedmean, lasttoken"
        ))
    })
}

/// The maximum input length: legacy `sentence_bert_config.json` `max_seq_length`, else
/// `tokenizer_config.json` `model_max_length` capped by the model's `max_position_embeddings`.
pub fn max_length(dir: &Path, max_positions: usize) -> Result<Option<usize>> {
    for name in ["sentence_bert_config.json", "sentence_roberta_config.json", "sentence_distilbert_config.json"] {
        let p = dir.join(name);
        if p.is_file() {
            if let Some(n) = read_json(&p)?.get("max_seq_length").and_then(Value::as_u64) {
                return Ok(Some(n as usize));
            }
            break;
        }
    }
    let p = dir.join("tokenizer_config.json");
    if p.is_file() {
        if let Some(n) = read_json(&p)?.get("model_max_length").and_then(Value::as_u64) {
            return Ok(Some((n as usize).min(max_positions)));
        }
    }
    Ok(None)
}

/// Reads a bi-encoder directory whose `modules.json` lists `modules` (Transformer first).
pub fn read(dir: &Path, modules: &[ModuleEntry], hidden: usize, max_positions: usize) -> Result<SentenceTransformer> {
    let mut chain = Vec::new();
    let mut dim = hidden;
    for m in modules.iter().skip(1) {
        let folder = dir.join(&m.path);
        let module = match m.kind() {
            "Pooling" => read_pooling(&folder.join("config.json"), hidden)?,
            "Dense" => Module::Dense(read_dense(&folder, dim)?),
            "Normalize" => Module::Normalize,
            _ => return Err(m.unsupported()),
        };
        dim = match &module {
            Module::Pooling { modes, .. } => hidden * modes.len(),
            Module::Dense(d) => d.out_features(),
            Module::Normalize => dim,
        };
        chain.push(module);
    }
    if !chain.iter().any(|m| matches!(m, Module::Pooling { .. })) {
        return Err(Error::Input(format!("{}/modules.json lists no Pooling module", dir.display())));
    }
    let st_cfg = dir.join("config_sentence_transformers.json");
    let st = if st_cfg.is_file() { read_json(&st_cfg)? } else { Value::Null };
    let sbert = dir.join("sentence_bert_config.json");
    let lower_case = sbert.is_file() && read_json(&sbert)?.get("do_lower_case").and_then(Value::as_bool) == Some(true);
    Ok(SentenceTransformer {
        chain: Chain { modules: chain },
        prompts: Prompts::read(dir)?,
        max_seq_length: max_length(dir, max_positions)?,
        truncate_dim: st.get("truncate_dim").and_then(Value::as_u64).map(|v| v as usize),
        similarity_fn_name: st.get("similarity_fn_name").and_then(Value::as_str).map(str::to_string),
        lower_case,
    })
}

/// The modules of a bi-encoder written by [`write`]: one pooling mode, then optional L2.
#[derive(Debug, Clone, PartialEq)]
pub struct BiEncoderFiles {
    pub pooling: PoolingMode,
    pub normalize: bool,
    pub prompts: BTreeMap<String, String>,
    pub max_seq_length: usize,
    pub hidden_size: usize,
}

/// Writes the sentence-transformers files (ST 6 contents) of a bi-encoder whose transformer files
/// (`config.json`, weights, tokenizer) are already in `dir`.
pub fn write(dir: &Path, f: &BiEncoderFiles) -> Result<()> {
    use serde_json::json;
    let mut modules = vec![
        json!({"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.base.modules.transformer.Transformer"}),
        json!({"idx": 1, "name": "1", "path": "1_Pooling",
               "type": "sentence_transformers.sentence_transformer.modules.pooling.Pooling"}),
    ];
    if f.normalize {
        modules.push(json!({"idx": 2, "name": "2", "path": "2_Normalize",
                            "type": "sentence_transformers.base.modules.normalize.Normalize"}));
        super::write_json(
            &dir.join("2_Normalize"),
            "config.json",
            &json!({"module_input_name": "sentence_embedding", "module_output_name": "sentence_embedding"}),
        )?;
    }
    super::write_json(dir, "modules.json", &Value::from(modules))?;
    super::write_json(
        &dir.join("1_Pooling"),
        "config.json",
        &json!({"embedding_dimension": f.hidden_size, "pooling_mode": f.pooling.name(), "include_prompt": true}),
    )?;
    super::write_json(
        dir,
        "sentence_bert_config.json",
        &json!({"transformer_task": "feature-extraction",
                "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
                "module_output_name": "token_embeddings"}),
    )?;
    super::write_json(
        dir,
        "config_sentence_transformers.json",
        &json!({"__version__": super::written_versions(), "model_type": "SentenceTransformer",
                "prompts": f.prompts, "default_prompt_name": null, "similarity_fn_name": "cosine"}),
    )?;
    super::set_max_length(dir, f.max_seq_length)
}
