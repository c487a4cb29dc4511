//! The attention block: fused Wqkv, RoPE, local (banded) or global attention, Wo.

use super::nn::{Linear, Precision};
use crate::batch::Batch;
use crate::config::{Config, LayerType};
use crate::error::Result;
use crate::ops::{self, AttentionOp};
use crate::params::Params;
use candle_core::Tensor;
use modernbert_kernels::RopeTable;
use std::sync::Arc;

/// Multi-head self-attention of one layer.
pub struct Attention {
    wqkv: Linear,
    wo: Linear,
    num_heads: usize,
    head_dim: usize,
    /// `Some(local_attention / 2)` for local layers.
    window: Option<usize>,
    rope: Arc<RopeTable>,
    /// bf16 attention arithmetic (with the reduced-precision linear layers).
    bf16: bool,
}

impl Attention {
    /// Loads `model.layers.{index}.attn`; `rope` is the table for this layer's type.
    pub fn load(
        w: &dyn Params,
        cfg: &Config,
        index: usize,
        rope: Arc<RopeTable>,
        precision: Precision,
    ) -> Result<Self> {
        let d = cfg.hidden_size;
        let name = format!("model.layers.{index}.attn");
        let bias = cfg.attention_bias;
        Ok(Self {
            wqkv: Linear::load(w, &format!("{name}.Wqkv"), (3 * d, d), bias, precision)?,
            wo: Linear::load(w, &format!("{name}.Wo"), (d, d), bias, precision)?,
            num_heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
            window: match cfg.layer_types[index] {
                LayerType::Global => None,
                LayerType::Local => Some(cfg.local_attention / 2),
            },
            rope,
            bf16: precision != Precision::F32,
        })
    }

    /// `[tokens, hidden]` → `[tokens, hidden]`; tokens attend only within their sequence.
    pub fn forward(&self, x: &Tensor, batch: &Batch) -> Result<Tensor> {
        let qkv = self.wqkv.forward(x)?;
        let op = AttentionOp {
            cu_seqlens: &batch.cu_seqlens,
            num_heads: self.num_heads,
            head_dim: self.head_dim,
            rope: self.rope.clone(),
            window: self.window,
            bf16: self.bf16,
            key_limits: batch.key_limits.as_deref(),
        };
        let attended = ops::apply(&qkv, &op)?;
        self.wo.forward(&attended)
    }
}
