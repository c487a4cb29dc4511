//! Safetensors checkpoints: single file or sharded, f32/bf16/f16, with or without the `model.` prefix.

use crate::error::{Error, Result};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// Where the tensors come from.
enum Source {
    /// A checkpoint directory, memory-mapped.
    Mapped(MmapedSafetensors),
    /// Tensors built in memory (random init for benchmarks, tests).
    Memory(HashMap<String, Tensor>),
}

/// The tensors of a checkpoint.
pub struct Weights {
    source: Source,
    names: BTreeSet<String>,
    /// `"model."` for task checkpoints, `""` for a bare backbone.
    backbone_prefix: &'static str,
    device: Device,
}

impl Weights {
    /// Opens `model.safetensors`, or the shards listed in `model.safetensors.index.json`.
    pub fn from_dir(dir: &Path, device: &Device) -> Result<Self> {
        let files = checkpoint_files(dir)?;
        for f in &files {
            if !f.is_file() {
                return Err(Error::Weights(format!("{} does not exist", f.display())));
            }
        }
        // SAFETY: the files are only read; modifying a checkpoint while it is mapped is the
        // caller's problem, as with every mmap-based loader.
        let st = unsafe {
            if files.len() == 1 {
                MmapedSafetensors::new(&files[0])
            } else {
                MmapedSafetensors::multi(&files)
            }
        }
        .map_err(|e| Error::Weights(format!("cannot read safetensors: {e}")))?;
        let names: BTreeSet<String> = st.tensors().into_iter().map(|(n, _)| n).collect();
        let backbone_prefix = if names.contains("model.embeddings.tok_embeddings.weight") {
            "model."
        } else if names.contains("embeddings.tok_embeddings.weight") {
            ""
        } else {
            return Err(Error::Weights(format!(
                "no ModernBERT backbone in {}: missing tensor `model.embeddings.tok_embeddings.weight` \
                 (or `embeddings.tok_embeddings.weight`)",
                dir.display()
            )));
        };
        Ok(Self { source: Source::Mapped(st), names, backbone_prefix, device: device.clone() })
    }

    /// Wraps tensors held in memory, named like a checkpoint's.
    pub fn from_tensors(tensors: HashMap<String, Tensor>, device: &Device) -> Result<Self> {
        let names: BTreeSet<String> = tensors.keys().cloned().collect();
        let backbone_prefix = if names.contains("model.embeddings.tok_embeddings.weight") { "model." } else { "" };
        Ok(Self { source: Source::Memory(tensors), names, backbone_prefix, device: device.clone() })
    }

    /// Whether a head tensor (no prefix) exists.
    pub fn contains(&self, name: &str) -> bool {
        self.names.contains(name)
    }

    /// Whether a backbone tensor (prefix added) exists.
    pub fn contains_backbone(&self, name: &str) -> bool {
        self.names.contains(&format!("{}{name}", self.backbone_prefix))
    }

    /// A backbone tensor (`embeddings.…`, `layers.…`, `final_norm.…`) as f32 with the expected shape.
    pub fn backbone(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.get(&format!("{}{name}", self.backbone_prefix), shape)
    }

    /// A tensor by its full name as f32, checking its shape.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        if !self.names.contains(name) {
            return Err(Error::Weights(format!("missing tensor `{name}` (expected shape {shape:?})")));
        }
        let tensor = match &self.source {
            Source::Mapped(st) => {
                let view = st.get(name).map_err(|e| Error::Weights(format!("tensor `{name}`: {e}")))?;
                check_shape(name, view.shape(), shape)?;
                view.load(&self.device).map_err(|e| Error::Weights(format!("tensor `{name}`: {e}")))?
            }
            Source::Memory(tensors) => {
                let t = &tensors[name];
                check_shape(name, t.dims(), shape)?;
                t.to_device(&self.device)?
            }
        };
        let tensor = match tensor.dtype() {
            DType::F32 => tensor,
            DType::BF16 | DType::F16 | DType::F64 => tensor.to_dtype(DType::F32)?,
            other => return Err(Error::Weights(format!("tensor `{name}` has dtype {other:?}, expected a float type"))),
        };
        let finite = crate::ops::with_f32(&tensor, |d| d.iter().all(|x| x.is_finite()))?;
        if !finite {
            return Err(Error::Weights(format!("tensor `{name}` holds NaN or infinite values")));
        }
        Ok(tensor)
    }

    /// An optional tensor: `None` if absent, an error if present with the wrong shape.
    pub fn get_opt(&self, name: &str, shape: &[usize]) -> Result<Option<Tensor>> {
        if self.names.contains(name) {
            self.get(name, shape).map(Some)
        } else {
            Ok(None)
        }
    }

    /// Device the tensors are loaded to.
    pub fn device(&self) -> &Device {
        &self.device
    }
}

fn check_shape(name: &str, found: &[usize], expected: &[usize]) -> Result<()> {
    if found != expected {
        return Err(Error::Weights(format!("tensor `{name}` has shape {found:?}, expected {expected:?}")));
    }
    Ok(())
}

/// The safetensors files of a checkpoint directory.
fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    if single.is_file() || !index.is_file() {
        return Ok(vec![single]);
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::Weights(format!("{}: not valid JSON: {e}", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Weights(format!("{}: no `weight_map` object", index.display())))?;
    let files: BTreeSet<&str> = map
        .values()
        .map(|v| {
            v.as_str()
                .ok_or_else(|| Error::Weights(format!("{}: weight_map value {v} is not a file name", index.display())))
        })
        .collect::<Result<_>>()?;
    if files.is_empty() {
        return Err(Error::Weights(format!("{}: empty weight_map", index.display())));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}

impl Weights {
    /// Random weights for `cfg` with the head `cfg.architecture` names (default: masked LM), named
    /// like an HF checkpoint (normal, σ = 0.02; norms = 1). For benchmarks and tests: speed does
    /// not depend on the values.
    pub fn random(cfg: &crate::Config, device: &Device) -> Result<Self> {
        let head = match &cfg.architecture {
            Some(arch) => crate::params::HeadKind::from_architecture(arch)?,
            None => crate::params::HeadKind::MaskedLm,
        };
        let tensors = crate::params::param_specs(cfg, head)
            .into_iter()
            .map(|spec| {
                let t = if spec.shape.len() == 1 {
                    Tensor::ones(spec.shape, candle_core::DType::F32, device)?
                } else {
                    Tensor::randn(0f32, 0.02, spec.shape, device)?
                };
                Ok((spec.name, t))
            })
            .collect::<Result<HashMap<_, _>>>()?;
        Self::from_tensors(tensors, device)
    }
}
