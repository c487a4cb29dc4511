//! Whole residual sub-layers as single custom ops:
//! `h + dropout(Wo · attention(Wqkv · LN₀(h)))` and `h + Wo · dropout(GeGLU(Wi · LN₀(h)))`.
//!
//! Fusing keeps the big intermediates (the normalised input, `qkv`, the attention output,
//! `Wi·h`, the GeGLU output) out of candle's autograd graph: candle allocates a zero gradient and
//! adds into it for every input of every node, which a LayerNorm, a block and a residual add would
//! pay four times over `[T, D]` per sub-layer. Here the forward stashes the intermediates it
//! computes anyway and the backward produces `dh`, `dW_in`, `dW_out` with three GEMMs each plus
//! the attention / GeGLU and LayerNorm backward passes.
//!
//! `LN₀` is the LayerNorm without its weight: the caller folds the weight `w` into the input
//! projection, `W_in · (LN₀(h) ∘ w) = (W_in ∘ w) · LN₀(h)`, a weight-sized candle product whose
//! backward gives `dw`. Only bias-free layers (no LayerNorm bias either) with exact-erf GELU use
//! these ops (every released ModernBERT); the model falls back to separate ops otherwise.

use crate::ops::{f32_data, saved, with_f32, AttentionOp};
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use modernbert_kernels::matmul::{product, Arithmetic, Mat};
use modernbert_kernels::{geglu_backward, layer_norm, layer_norm_backward};
use rayon::prelude::*;
use std::borrow::Cow;
use std::sync::{Arc, Mutex};

/// Values per rayon task of the element-wise residual passes.
const CHUNK: usize = 1 << 14;

/// What one sub-layer's forward pass keeps for its backward pass: the normalised input (when
/// the sub-layer normalises) and two intermediates of the block.
#[derive(Clone)]
struct Stash {
    input: Option<Arc<Vec<f32>>>,
    first: Arc<Vec<f32>>,
    second: Arc<Vec<f32>>,
}

/// The residual frame around a block: the weightless LayerNorm of its input (`None` on layer 0,
/// whose attention norm is the identity) and the inverted-dropout multipliers of its output.
pub(crate) struct Residual {
    /// `Some(eps)`: the block sees `LN₀(h)`; `None`: it sees `h`.
    pub norm_eps: Option<f32>,
    /// Multipliers of the block's `[T, D]` output before it is added to `h`.
    pub out_mask: Option<Arc<Vec<f32>>>,
}

impl Residual {
    /// `LN₀(h)`, or `None` when the block sees `h` itself.
    fn normalize(&self, h: &[f32], d: usize) -> Option<Vec<f32>> {
        self.norm_eps.map(|eps| {
            let mut u = vec![0f32; h.len()];
            layer_norm(h, &vec![1.0; d], eps, &mut u);
            u
        })
    }

    /// `y ← h + mask ∘ y`: the sub-layer's output from the block's.
    fn output(&self, h: &[f32], y: &mut [f32]) {
        let ys = y.par_chunks_mut(CHUNK).zip(h.par_chunks(CHUNK));
        match &self.out_mask {
            Some(m) => ys.zip(m.par_chunks(CHUNK)).for_each(|((y, h), m)| {
                y.iter_mut().zip(h).zip(m).for_each(|((y, &h), &m)| *y = h + *y * m);
            }),
            None => ys.for_each(|(y, h)| y.iter_mut().zip(h).for_each(|(y, &h)| *y += h)),
        }
    }

    /// The block output's gradient from the sub-layer's, `mask ∘ dy`.
    fn block_grad<'a>(&self, dy: &'a [f32]) -> Cow<'a, [f32]> {
        match &self.out_mask {
            Some(m) => Cow::Owned(dy.par_iter().zip(m.par_iter()).map(|(g, m)| g * m).collect()),
            None => Cow::Borrowed(dy),
        }
    }

    /// `dh = dy + LN₀'(h)ᵀ · du` (or `dy + du`), from the gradient `du` of the block's input.
    fn input_grad(&self, h: &[f32], d: usize, dy: &[f32], du: Vec<f32>) -> Vec<f32> {
        let mut dh = match self.norm_eps {
            Some(eps) => {
                let mut dh = vec![0f32; h.len()];
                layer_norm_backward(h, &vec![1.0; d], eps, &du, &mut dh);
                dh
            }
            None => du,
        };
        dh.par_chunks_mut(CHUNK)
            .zip(dy.par_chunks(CHUNK))
            .for_each(|(a, b)| a.iter_mut().zip(b).for_each(|(a, &b)| *a += b));
        dh
    }
}

fn dims2(l: &Layout) -> candle_core::Result<(usize, usize)> {
    l.shape().dims2()
}

/// The backward pass shared by both sub-layers: with `u` the block's input and `mid` the input
/// of `W_out` saved by the forward, `dW_out = dblockᵀ·mid`, `d_mid = dblock·W_out`,
/// `d_pre = f'(d_mid)`, `dW_in = d_preᵀ·u`, `du = d_pre·W_in`, then the residual frame's `dh`.
#[allow(clippy::too_many_arguments)]
fn sublayer_backward(
    arith: Arithmetic,
    residual: &Residual,
    input: Option<&[f32]>,
    h: &Tensor,
    w_in: &Tensor,
    w_out: &Tensor,
    mid: &[f32],
    dy: &Tensor,
    mid_backward: &dyn Fn(&[f32]) -> Vec<f32>,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (t, d) = h.dims2()?;
    let (n_in, _) = w_in.dims2()?;
    let (_, m) = w_out.dims2()?;
    let dev = h.device();
    let (dh, dw_in, dw_out) = with_f32(h, |h| {
        with_f32(w_in, |w_in| {
            with_f32(w_out, |w_out| {
                with_f32(dy, |dy| {
                    let u = input.unwrap_or(h);
                    let dblock = residual.block_grad(dy);
                    let mut dw_out = vec![0f32; d * m];
                    product(arith, &mut dw_out, Mat::cols(&dblock, d), Mat::rows(mid, m), d, m, t);
                    let mut dmid = vec![0f32; t * m];
                    product(arith, &mut dmid, Mat::rows(&dblock, d), Mat::rows(w_out, m), t, m, d);
                    drop(dblock);
                    let dpre = mid_backward(&dmid);
                    drop(dmid);
                    let mut dw_in = vec![0f32; n_in * d];
                    product(arith, &mut dw_in, Mat::cols(&dpre, n_in), Mat::rows(u, d), n_in, d, t);
                    let mut du = vec![0f32; t * d];
                    product(arith, &mut du, Mat::rows(&dpre, n_in), Mat::rows(w_in, d), t, d, n_in);
                    (residual.input_grad(h, d, dy, du), dw_in, dw_out)
                })
            })
        })
    })????;
    Ok((
        Some(Tensor::from_vec(dh, (t, d), dev)?),
        Some(Tensor::from_vec(dw_in, w_in.shape(), dev)?),
        Some(Tensor::from_vec(dw_out, w_out.shape(), dev)?),
    ))
}

/// The stash of the forward pass.
fn stashed(stash: &Mutex<Option<Stash>>, what: &str) -> candle_core::Result<Stash> {
    saved(stash).clone().ok_or_else(|| candle_core::Error::Msg(format!("{what}: backward without forward")))
}

// ---------------------------------------------------------------- folded LayerNorm weight

/// `W_in ∘ w` (each row of `[n, D]` times the LayerNorm weight `[D]`), with a backward that
/// gives `dw = Σ_rows dW' ∘ W_in` in one pass (candle's broadcast product would reduce over rows
/// with a strided single-threaded sum).
pub(crate) fn fold_norm_weight(w_in: &Tensor, w: &Tensor) -> Result<Tensor> {
    Ok(w_in.contiguous()?.apply_op2(&w.contiguous()?, FoldNormWeight)?)
}

struct FoldNormWeight;

impl CustomOp2 for FoldNormWeight {
    fn name(&self) -> &'static str {
        "fold-norm-weight"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (w_in, w) = (f32_data(self.name(), s1, l1)?, f32_data(self.name(), s2, l2)?);
        let (_, d) = dims2(l1)?;
        if w.len() != d {
            candle_core::bail!("fold-norm-weight: weight {:?} does not fit {:?}", l2.dims(), l1.dims())
        }
        let out: Vec<f32> = w_in.chunks_exact(d).flat_map(|row| row.iter().zip(w).map(|(a, b)| a * b)).collect();
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        w_in: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let (dw_in, dw) = with_f32(w_in, |w_in| {
            with_f32(w, |w| {
                with_f32(grad, |g| {
                    let mut dw = vec![0f32; d];
                    let mut dw_in = Vec::with_capacity(g.len());
                    for (gr, wr) in g.chunks_exact(d).zip(w_in.chunks_exact(d)) {
                        dw_in.extend(gr.iter().zip(w).map(|(a, b)| a * b));
                        dw.iter_mut().zip(gr.iter().zip(wr)).for_each(|(s, (a, b))| *s += a * b);
                    }
                    (dw_in, dw)
                })
            })
        })???;
        Ok((
            Some(Tensor::from_vec(dw_in, w_in.shape(), w_in.device())?),
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
        ))
    }
}

// ---------------------------------------------------------------- attention sub-layer

/// `h + dropout(Wo · attention(Wqkv · LN₀(h)))` over an unpadded batch (no biases): `[T, D]` →
/// `[T, D]`; `wqkv` carries the LayerNorm weight already (see the module notes).
pub(crate) fn attention_sublayer(
    h: &Tensor,
    wqkv: &Tensor,
    wo: &Tensor,
    attn: AttentionOp,
    residual: Residual,
    arith: Arithmetic,
) -> Result<Tensor> {
    let op = AttentionSublayer { attn, residual, arith, stash: Mutex::new(None) };
    Ok(h.contiguous()?.apply_op3(&wqkv.contiguous()?, &wo.contiguous()?, op)?)
}

struct AttentionSublayer {
    attn: AttentionOp,
    residual: Residual,
    /// Arithmetic of the four projections (forward and backward).
    arith: Arithmetic,
    /// Stash of the forward pass: `(qkv, attention output)`.
    stash: Mutex<Option<Stash>>,
}

impl CustomOp3 for AttentionSublayer {
    fn name(&self) -> &'static str {
        "train-attention-sublayer"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (h, wqkv, wo) =
            (f32_data(self.name(), s1, l1)?, f32_data(self.name(), s2, l2)?, f32_data(self.name(), s3, l3)?);
        let (t, d) = dims2(l1)?;
        if dims2(l2)? != (3 * d, d) || dims2(l3)? != (d, d) {
            candle_core::bail!(
                "attention sub-layer: weights {:?} / {:?} do not fit hidden size {d}",
                l2.dims(),
                l3.dims()
            )
        }
        if self.residual.out_mask.as_ref().is_some_and(|m| m.len() != t * d) {
            candle_core::bail!("attention sub-layer: the dropout mask does not cover [{t}, {d}]")
        }
        let input = self.residual.normalize(h, d);
        let u = input.as_deref().unwrap_or(h);
        let mut qkv = vec![0f32; t * 3 * d];
        product(self.arith, &mut qkv, Mat::rows(u, d), Mat::cols(wqkv, d), t, 3 * d, d);
        let mut o = vec![0f32; t * d];
        self.attn.forward_all(&qkv, &mut o);
        let mut y = vec![0f32; t * d];
        product(self.arith, &mut y, Mat::rows(&o, d), Mat::cols(wo, d), t, d, d);
        self.residual.output(h, &mut y);
        *saved(&self.stash) = Some(Stash { input: input.map(Arc::new), first: Arc::new(qkv), second: Arc::new(o) });
        Ok((CpuStorage::F32(y), Shape::from((t, d))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        wqkv: &Tensor,
        wo: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Stash { input, first: qkv, second: o } = stashed(&self.stash, self.name())?;
        sublayer_backward(
            self.arith,
            &self.residual,
            input.as_deref().map(|v| v.as_slice()),
            h,
            wqkv,
            wo,
            &o,
            dy,
            &|d_o| self.attn.backward_all(&qkv, &o, d_o),
        )
    }
}

// ---------------------------------------------------------------- MLP sub-layer

/// `h + Wo · dropout(GeGLU(Wi · LN₀(h)))` (no biases, exact-erf GELU): `[T, D]` → `[T, D]`;
/// `wi` carries the LayerNorm weight already. `mask` holds the inverted-dropout multipliers of
/// the `[T, I]` GeGLU output.
pub(crate) fn mlp_sublayer(
    h: &Tensor,
    wi: &Tensor,
    wo: &Tensor,
    mask: Option<Arc<Vec<f32>>>,
    residual: Residual,
    arith: Arithmetic,
) -> Result<Tensor> {
    let op = MlpSublayer { mask, residual, arith, stash: Mutex::new(None) };
    Ok(h.contiguous()?.apply_op3(&wi.contiguous()?, &wo.contiguous()?, op)?)
}

struct MlpSublayer {
    mask: Option<Arc<Vec<f32>>>,
    residual: Residual,
    /// Arithmetic of the projections (forward and backward).
    arith: Arithmetic,
    /// Stash of the forward pass: `(Wi·u, dropped GeGLU output)`.
    stash: Mutex<Option<Stash>>,
}

impl CustomOp3 for MlpSublayer {
    fn name(&self) -> &'static str {
        "train-mlp-sublayer"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (h, wi, wo) =
            (f32_data(self.name(), s1, l1)?, f32_data(self.name(), s2, l2)?, f32_data(self.name(), s3, l3)?);
        let (t, d) = dims2(l1)?;
        let (two_i, _) = dims2(l2)?;
        let inter = two_i / 2;
        if dims2(l2)? != (2 * inter, d) || dims2(l3)? != (d, inter) {
            candle_core::bail!("mlp sub-layer: weights {:?} / {:?} do not fit hidden size {d}", l2.dims(), l3.dims())
        }
        if self.residual.out_mask.as_ref().is_some_and(|m| m.len() != t * d) {
            candle_core::bail!("mlp sub-layer: the output dropout mask does not cover [{t}, {d}]")
        }
        let input = self.residual.normalize(h, d);
        let u = input.as_deref().unwrap_or(h);
        let mut pre = vec![0f32; t * two_i];
        product(self.arith, &mut pre, Mat::rows(u, d), Mat::cols(wi, d), t, two_i, d);
        let mut g = vec![0f32; t * inter];
        modernbert_kernels::geglu(&pre, inter, &mut g);
        if let Some(mask) = &self.mask {
            if mask.len() != g.len() {
                candle_core::bail!("mlp sub-layer: dropout mask has {} values for {}", mask.len(), g.len())
            }
            g.iter_mut().zip(mask.iter()).for_each(|(v, m)| *v *= m);
        }
        let mut y = vec![0f32; t * d];
        product(self.arith, &mut y, Mat::rows(&g, inter), Mat::cols(wo, inter), t, d, inter);
        self.residual.output(h, &mut y);
        *saved(&self.stash) = Some(Stash { input: input.map(Arc::new), first: Arc::new(pre), second: Arc::new(g) });
        Ok((CpuStorage::F32(y), Shape::from((t, d))))
    }

    fn bwd(
        &self,
        h: &Tensor,
        wi: &Tensor,
        wo: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let Stash { input, first: pre, second: g } = stashed(&self.stash, self.name())?;
        let inter = g.len() / h.dim(0)?.max(1);
        sublayer_backward(
            self.arith,
            &self.residual,
            input.as_deref().map(|v| v.as_slice()),
            h,
            wi,
            wo,
            &g,
            dy,
            &|dg| match &self.mask {
                Some(mask) => {
                    let dg: Vec<f32> = dg.iter().zip(mask.iter()).map(|(a, m)| a * m).collect();
                    geglu_backward(&pre, &dg, inter)
                }
                None => geglu_backward(&pre, dg, inter),
            },
        )
    }
}
