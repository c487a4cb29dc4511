//! Building blocks: Linear, bias-free LayerNorm, activations.

use crate::config::Activation;
use crate::error::{Error, Result};
use crate::ops::{self, PackedLinearOp};
use crate::params::Params;
use candle_core::Tensor;
use modernbert_kernels::{Bf16Linear, F32Linear, Int8Linear};
use std::sync::Arc;

/// Arithmetic of the encoder's linear layers (Wqkv, Wo, Wi, mlp Wo). Everything else
/// (embeddings, norms, attention, heads) always runs in f32.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// f32 weights and activations (exact parity with HF).
    #[default]
    F32,
    /// bf16 weights and activations, f32 accumulation (AVX512-BF16 where present).
    Bf16,
    /// int8 weights (per output channel) and dynamically quantised int8 activations (VNNI).
    Int8,
}

impl std::str::FromStr for Precision {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            other => Err(Error::Input(format!("unknown precision {other:?} (f32, bf16, int8)"))),
        }
    }
}

/// The weight of a linear layer in the form its precision needs.
enum LinearWeight {
    /// A tensor: trainable weights (autograd sees them), and the tied MLM decoder.
    F32(Tensor),
    /// A frozen f32 weight packed once, so a call reads it once (candle's matmul would repack it
    /// on every call, which dominates short inputs).
    F32Packed(Arc<F32Linear>),
    Bf16(Arc<Bf16Linear>),
    Int8(Arc<Int8Linear>),
}

/// `y = x · Wᵀ (+ b)` with `W` stored `[out, in]` as in PyTorch.
pub struct Linear {
    weight: LinearWeight,
    bias: Option<Tensor>,
}

impl Linear {
    /// Wraps an f32 weight (and optional bias).
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight: LinearWeight::F32(weight), bias }
    }

    /// Loads `{name}.weight` `[out, in]` and, if `bias`, `{name}.bias` `[out]` (full HF names),
    /// packing the weight for `precision` (at f32, a trainable variable stays a tensor).
    pub fn load(
        p: &dyn Params,
        name: &str,
        (out, inp): (usize, usize),
        bias: bool,
        precision: Precision,
    ) -> Result<Self> {
        let weight = p.tensor(&format!("{name}.weight"), &[out, inp])?;
        let bias = if bias { Some(p.tensor(&format!("{name}.bias"), &[out])?) } else { None };
        let weight = match precision {
            Precision::F32 if weight.is_variable() => LinearWeight::F32(weight),
            Precision::F32 => LinearWeight::F32Packed(Arc::new(F32Linear::new(&flat(&weight)?, out, inp))),
            Precision::Bf16 => LinearWeight::Bf16(Arc::new(Bf16Linear::new(&flat(&weight)?, out, inp))),
            Precision::Int8 => LinearWeight::Int8(Arc::new(Int8Linear::new(&flat(&weight)?, out, inp))),
        };
        Ok(Self { weight, bias })
    }

    /// Applies the layer to `[tokens, in]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = match &self.weight {
            LinearWeight::F32(w) => x.matmul(&w.t()?)?,
            LinearWeight::F32Packed(w) => ops::apply(x, &PackedLinearOp::F32(w))?,
            LinearWeight::Bf16(w) => ops::apply(x, &PackedLinearOp::Bf16(w))?,
            LinearWeight::Int8(w) => ops::apply(x, &PackedLinearOp::Int8(w))?,
        };
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

fn flat(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.flatten_all()?.to_vec1::<f32>()?)
}

/// LayerNorm over the last dimension (ModernBERT checkpoints have no bias); differentiable.
pub struct LayerNorm {
    weight: Tensor,
    bias: Option<Tensor>,
    eps: f32,
}

impl LayerNorm {
    /// Loads `{name}.weight` (and `{name}.bias` if `bias`) of width `dim` (full HF names).
    pub fn load(p: &dyn Params, name: &str, dim: usize, eps: f64, bias: bool) -> Result<Self> {
        let weight = p.tensor(&format!("{name}.weight"), &[dim])?;
        let bias = if bias { Some(p.tensor(&format!("{name}.bias"), &[dim])?) } else { None };
        Ok(Self { weight, bias, eps: eps as f32 })
    }

    /// Normalises `[.., dim]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let y = ops::layer_norm(x, &self.weight, self.eps)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }
}

/// Applies an activation element-wise. GELU is `0.5·x·(1 + erf(x/√2))` composed from primitives,
/// so that its gradient is exact too (candle's `gelu_erf` backward uses 6-digit constants).
pub fn activate(act: Activation, x: &Tensor) -> Result<Tensor> {
    Ok(match act {
        Activation::Gelu => ((x * 0.5)? * ((x * std::f64::consts::FRAC_1_SQRT_2)?.erf()? + 1.0)?)?,
        Activation::GeluTanh => x.gelu()?,
        Activation::Relu => x.relu()?,
        Activation::Silu => x.silu()?,
        Activation::Tanh => x.tanh()?,
        Activation::Sigmoid => (x.neg()?.exp()? + 1.0)?.recip()?,
    })
}
