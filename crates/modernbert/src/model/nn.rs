//! Building blocks: Linear, bias-free LayerNorm, activations.

use crate::config::Activation;
use crate::error::Result;
use crate::ops::{self, LayerNormOp};
use crate::weights::Weights;
use candle_core::Tensor;

/// `y = x · Wᵀ (+ b)` with `W` stored `[out, in]` as in PyTorch.
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// Wraps a weight (and optional bias).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias }
    }

    /// Loads `{name}.weight` `[out, in]` and, if `bias`, `{name}.bias` `[out]` from the backbone.
    pub fn load_backbone(w: &Weights, name: &str, out: usize, inp: usize, bias: bool) -> Result<Self> {
        let weight = w.backbone(&format!("{name}.weight"), &[out, inp])?;
        let bias = if bias { Some(w.backbone(&format!("{name}.bias"), &[out])?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Loads a head linear layer (no prefix).
    pub fn load_head(w: &Weights, name: &str, out: usize, inp: usize, bias: bool) -> Result<Self> {
        let weight = w.get(&format!("{name}.weight"), &[out, inp])?;
        let bias = if bias { Some(w.get(&format!("{name}.bias"), &[out])?) } else { None };
        Ok(Self { weight, bias })
    }

    /// Applies the layer to `[tokens, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// LayerNorm over the last dimension; ModernBERT checkpoints have no bias.
pub struct LayerNorm {
    weight: Vec<f32>,
    bias: Option<Tensor>,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{name}.weight` (and `{name}.bias` if `bias`) of width `dim`.
    pub fn load(w: &Weights, name: &str, dim: usize, eps: f64, bias: bool, backbone: bool) -> Result<Self> {
        let get = |n: &str| if backbone { w.backbone(n, &[dim]) } else { w.get(n, &[dim]) };
        let weight = get(&format!("{name}.weight"))?.to_vec1::<f32>()?;
        let bias = if bias { Some(get(&format!("{name}.bias"))?) } else { None };
        Ok(Self { weight, bias, eps: eps as f32 })
    }

    /// Normalises `[.., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = ops::apply(x, &LayerNormOp { weight: &self.weight, eps: self.eps })?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Applies an activation element-wise.
pub fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match act {
        Activation::Gelu => x.gelu_erf()?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
        Activation::Silu => x.silu()?,
        Activation::Tanh => x.tanh()?,
    })
}
