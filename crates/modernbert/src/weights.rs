//! Safetensors checkpoints: single file or sharded, f32/bf16/f16, with or without the `model.` prefix.

use crate::error::{Error, Result};
use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// The tensors of a checkpoint directory, memory-mapped.
pub struct Weights {
    st: MmapedSafetensors,
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
        Ok(Self { st, names, backbone_prefix, device: device.clone() })
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
        let view = self.st.get(name).map_err(|e| Error::Weights(format!("tensor `{name}`: {e}")))?;
        if view.shape() != shape {
            return Err(Error::Weights(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let tensor = view
            .load(&self.device)
            .map_err(|e| Error::Weights(format!("tensor `{name}`: {e}")))?;
        match tensor.dtype() {
            DType::F32 => Ok(tensor),
            DType::BF16 | DType::F16 | DType::F64 => Ok(tensor.to_dtype(DType::F32)?),
            other => Err(Error::Weights(format!("tensor `{name}` has dtype {other:?}, expected a float type"))),
        }
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

/// The safetensors files of a checkpoint directory.
fn checkpoint_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    let single = dir.join("model.safetensors");
    if single.is_file() || !index.is_file() {
        return Ok(vec![single]);
    }
    let text = std::fs::read_to_string(&index).map_err(|e| Error::io(&index, e))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| Error::Weights(format!("{}: not valid JSON: {e}", index.display())))?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Weights(format!("{}: no `weight_map` object", index.display())))?;
    let files: BTreeSet<&str> = map
        .values()
        .map(|v| v.as_str().ok_or_else(|| Error::Weights(format!("{}: weight_map value {v} is not a file name", index.display()))))
        .collect::<Result<_>>()?;
    if files.is_empty() {
        return Err(Error::Weights(format!("{}: empty weight_map", index.display())));
    }
    Ok(files.into_iter().map(|f| dir.join(f)).collect())
}
