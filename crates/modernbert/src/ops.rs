//! candle custom ops that run the fused kernels of `modernbert-kernels` on CPU tensors.
//!
//! Inference ops have no `bwd`; [`layer_norm`] has one, since the task heads (shared by inference
//! and training) use it. modernbert-train adds the other ops with backward passes and shares the
//! helpers here.

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Storage, Tensor};
use modernbert_kernels::{Bf16Linear, F32Linear, Int8Linear, RopeTable};
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

/// Runs `f` on the contiguous f32 data of a CPU tensor.
pub fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("expected an f32 CPU tensor, found {:?}", t.dtype())
    };
    let (a, b) = layout.contiguous_offsets().expect("contiguous");
    Ok(f(&data[a..b]))
}

/// A tensor of `data` with `shape` on the device of `like`.
pub fn tensor(data: Vec<f32>, shape: &Shape, like: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, shape.clone(), like.device())
}

/// Rows per rayon task so that each task has roughly `64k` floats of work.
pub fn rows_per_task(width: usize) -> usize {
    (65_536 / width.max(1)).max(1)
}

// ---------------------------------------------------------------- LayerNorm

/// Bias-free LayerNorm `[.., D]` with weight `[D]` (the fused kernel); gradients for both.
pub fn layer_norm(x: &Tensor, weight: &Tensor, eps: f32) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2(&weight.contiguous()?, LayerNormOp { eps })
}

struct LayerNormOp {
    eps: f32,
}

impl CustomOp2 for LayerNormOp {
    fn name(&self) -> &'static str {
        "layer-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), s1, l1)?;
        let w = f32_data(self.name(), s2, l2)?;
        if l1.dims().last() != Some(&w.len()) {
            candle_core::bail!("layer-norm: input {:?} does not end in {}", l1.dims(), w.len())
        }
        let mut out = vec![0f32; x.len()];
        modernbert_kernels::layer_norm(x, w, self.eps, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, dw) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(dy, |dy| {
                    let mut dx = vec![0f32; x.len()];
                    let dw = modernbert_kernels::layer_norm_backward(x, w, self.eps, dy, &mut dx);
                    (dx, dw)
                })
            })
        })???;
        Ok((Some(tensor(dx, x.shape(), x)?), Some(tensor(dw, w.shape(), w)?)))
    }
}

// ---------------------------------------------------------------- mean pooling

/// Mean of each sequence's rows: `[tokens, hidden]` → `[sequences, hidden]` for the sequences
/// `cu_seqlens` describes (an empty sequence gives zeros). Its backward spreads each mean's
/// gradient over the sequence's tokens in one pass, where per-sequence `narrow`s would each
/// cost candle a zero-padded copy of the whole batch's gradient.
pub fn mean_pool(hidden: &Tensor, cu_seqlens: &[u32]) -> candle_core::Result<Tensor> {
    hidden.contiguous()?.apply_op1(MeanPoolOp { cu_seqlens: cu_seqlens.to_vec() })
}

struct MeanPoolOp {
    cu_seqlens: Vec<u32>,
}

impl MeanPoolOp {
    /// `(start, end, 1 / length)` of each sequence, checked against `tokens`.
    fn sequences(&self, tokens: usize) -> candle_core::Result<Vec<(usize, usize, f32)>> {
        let cu = &self.cu_seqlens;
        if cu.first().is_some_and(|&c| c != 0)
            || cu.last().is_some_and(|&c| c as usize != tokens)
            || cu.windows(2).any(|w| w[0] > w[1])
        {
            candle_core::bail!("mean-pool: sequence offsets {cu:?} do not split {tokens} tokens")
        }
        Ok(cu.windows(2).map(|w| (w[0] as usize, w[1] as usize, (1.0 / (w[1] - w[0]) as f64) as f32)).collect())
    }
}

impl CustomOp1 for MeanPoolOp {
    fn name(&self) -> &'static str {
        "mean-pool"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), storage, layout)?;
        let (tokens, h) = layout.shape().dims2()?;
        let sequences = self.sequences(tokens)?;
        let mut out = vec![0f32; sequences.len() * h];
        for (&(start, end, scale), o) in sequences.iter().zip(out.chunks_exact_mut(h)) {
            for row in x[start * h..end * h].chunks_exact(h) {
                o.iter_mut().zip(row).for_each(|(a, &v)| *a += v);
            }
            o.iter_mut().for_each(|a| *a = if end > start { *a * scale } else { 0.0 });
        }
        Ok((CpuStorage::F32(out), Shape::from((sequences.len(), h))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (tokens, h) = arg.dims2()?;
        let sequences = self.sequences(tokens)?;
        let dx = with_f32(grad, |g| {
            let mut dx = vec![0f32; tokens * h];
            for (s, &(start, end, scale)) in sequences.iter().enumerate() {
                let row: Vec<f32> = g[s * h..(s + 1) * h].iter().map(|v| v * scale).collect();
                dx[start * h..end * h].chunks_exact_mut(h).for_each(|r| r.copy_from_slice(&row));
            }
            dx
        })?;
        Ok(Some(tensor(dx, arg.shape(), arg)?))
    }
}

// ---------------------------------------------------------------- inference-only ops

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
    /// Per sequence, how many leading tokens are keys (dense f32 kernel; short sequences only).
    pub key_limits: Option<&'a [u32]>,
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
        if let Some(keys) = self.key_limits {
            let (h, d, rope, w) = (self.num_heads, self.head_dim, &self.rope, self.window);
            modernbert_kernels::attention_key_prefix(qkv, self.cu_seqlens, Some(keys), h, d, rope, w, &mut out);
        } else {
            let kernel = if self.bf16 {
                modernbert_kernels::attention_varlen_bf16
            } else {
                modernbert_kernels::attention_varlen
            };
            kernel(qkv, self.cu_seqlens, self.num_heads, self.head_dim, &self.rope, self.window, &mut out);
        }
        Ok((CpuStorage::F32(out), Shape::from((tokens, hidden))))
    }
}

/// `[rows, in]` → `[rows, out]` through a weight packed once (f32, bf16 or int8).
pub enum PackedLinearOp<'w> {
    F32(&'w F32Linear),
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
            PackedLinearOp::F32(w) => (w.out_features(), w.in_features()),
            PackedLinearOp::Bf16(w) => (w.out_features(), w.in_features()),
            PackedLinearOp::Int8(w) => (w.out_features(), w.in_features()),
        };
        if inp != expected_in {
            candle_core::bail!("packed-linear: input has {inp} features, the weight {expected_in}")
        }
        let mut y = vec![0f32; rows * out];
        match self {
            PackedLinearOp::F32(w) => w.forward(x, rows, &mut y),
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
