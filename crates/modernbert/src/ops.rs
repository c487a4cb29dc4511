//! candle custom ops that run the fused kernels of `modernbert-kernels` on CPU tensors.
//!
//! Inference only: no `bwd` (modernbert-train has its own ops with backward passes, and shares
//! [`f32_data`]).

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};
use modernbert_kernels::{Bf16Linear, Int8Linear, RopeTable};
use std::sync::Arc;

/// The contiguous f32 data behind a CPU storage (for `CustomOp::cpu_fwd`); errors name `op`.
pub fn f32_data<'a>(op: &str, storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        candle_core::bail!("{op}: expected f32 input, found {:?}", storage.dtype())
    };
    let (start, end) =
        layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    Ok(&data[start..end])
}

/// Bias-free LayerNorm over the last dimension.
pub struct LayerNormOp<'w> {
    pub weight: &'w [f32],
    pub eps: f32,
}

impl CustomOp1 for LayerNormOp<'_> {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), storage, layout)?;
        if layout.dims().last() != Some(&self.weight.len()) {
            candle_core::bail!("layer-norm: input {:?} does not end in {}", layout.dims(), self.weight.len())
        }
        let mut out = vec![0f32; x.len()];
        modernbert_kernels::layer_norm(x, self.weight, self.eps, &mut out);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// GeGLU on `[tokens, 2 * inter]` → `[tokens, inter]`.
pub struct GegluOp;

impl CustomOp1 for GegluOp {
    fn name(&self) -> &'static str {
        "geglu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), storage, layout)?;
        let (rows, width) = layout.shape().dims2()?;
        let inter = width / 2;
        let mut out = vec![0f32; rows * inter];
        modernbert_kernels::geglu(x, inter, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, inter))))
    }
}

/// Self-attention with RoPE over an unpadded batch: `[tokens, 3 * hidden]` → `[tokens, hidden]`.
pub struct AttentionOp<'a> {
    pub cu_seqlens: &'a [u32],
    pub num_heads: usize,
    pub head_dim: usize,
    pub rope: Arc<RopeTable>,
    pub window: Option<usize>,
    /// Round Q, K, V and probabilities to bf16 (AVX512-BF16 dot products) instead of f32.
    pub bf16: bool,
}

impl CustomOp1 for AttentionOp<'_> {
    fn name(&self) -> &'static str {
        "attention-varlen"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_data(self.name(), storage, layout)?;
        let (tokens, width) = layout.shape().dims2()?;
        let hidden = self.num_heads * self.head_dim;
        if width != 3 * hidden || self.cu_seqlens.last().copied() != Some(tokens as u32) {
            candle_core::bail!("attention-varlen: qkv {:?} does not match the batch", layout.dims())
        }
        let mut out = vec![0f32; tokens * hidden];
        let kernel =
            if self.bf16 { modernbert_kernels::attention_varlen_bf16 } else { modernbert_kernels::attention_varlen };
        kernel(qkv, self.cu_seqlens, self.num_heads, self.head_dim, &self.rope, self.window, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// `[rows, in]` → `[rows, out]` through a packed bf16 or int8 weight.
pub enum PackedLinearOp<'w> {
    Bf16(&'w Bf16Linear),
    Int8(&'w Int8Linear),
}

impl CustomOp1 for PackedLinearOp<'_> {
    fn name(&self) -> &'static str {
        "packed-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), storage, layout)?;
        let (rows, inp) = layout.shape().dims2()?;
        let (out, expected_in) = match self {
            PackedLinearOp::Bf16(w) => (w.out_features(), w.in_features()),
            PackedLinearOp::Int8(w) => (w.out_features(), w.in_features()),
        };
        if inp != expected_in {
            candle_core::bail!("packed-linear: input has {inp} features, the weight {expected_in}")
        }
        let mut y = vec![0f32; rows * out];
        match self {
            PackedLinearOp::Bf16(w) => w.forward(x, rows, &mut y),
            PackedLinearOp::Int8(w) => w.forward(x, rows, &mut y),
        }
        Ok((CpuStorage::F32(y), Shape::from((rows, out))))
    }
}

/// Applies a custom op that borrows data (candle's `apply_op1` needs `'static`).
pub fn apply<C: CustomOp1>(x: &Tensor, op: &C) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(op)
}
