//! Whole sub-layers as single custom ops: `Wo(attention(Wqkv·x))` and `Wo(GeGLU(Wi·x))`.
//!
//! Fusing the projections with the non-GEMM part keeps the big intermediates (`qkv`, the
//! attention output, `Wi·x`, the GeGLU output) out of candle's autograd graph: candle would
//! allocate a zero gradient and add into it for each of them, and transpose-copy every weight
//! gradient. Here the forward stashes the intermediates it computes anyway and the backward
//! produces `dx`, `dW_in`, `dW_out` with three GEMMs each plus the attention / GeGLU backward
//! of [`crate::ops`]. Only bias-free layers with exact-erf GELU use these ops (every released
//! ModernBERT); the model falls back to separate ops otherwise.

use crate::ops::{f32_data, saved, with_f32, AttentionOp};
use anyhow::Result;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
use modernbert_kernels::geglu_backward;
use modernbert_kernels::matmul::{product, Arithmetic, Mat};
use std::sync::{Arc, Mutex};

/// Two intermediates a forward pass keeps for its backward pass.
type Saved = Mutex<Option<(Arc<Vec<f32>>, Arc<Vec<f32>>)>>;

fn dims2(l: &Layout) -> candle_core::Result<(usize, usize)> {
    l.shape().dims2()
}

/// `y = (x·W_inᵀ) → f → ·W_outᵀ` pieces shared by both blocks: checks and the three GEMMs of the backward.
fn linear_backward(
    arith: Arithmetic,
    x: &Tensor,
    w_in: &Tensor,
    w_out: &Tensor,
    mid: &[f32],
    dy: &Tensor,
    mid_backward: &dyn Fn(&[f32]) -> Vec<f32>,
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let (t, d) = x.dims2()?;
    let (n_in, _) = w_in.dims2()?;
    let (_, m) = w_out.dims2()?;
    let dev = x.device();
    let (dx, dw_in, dw_out) = with_f32(x, |x| {
        with_f32(w_in, |w_in| {
            with_f32(w_out, |w_out| {
                with_f32(dy, |dy| {
                    // dW_out [D, m] = dyᵀ · mid ; d_mid [T, m] = dy · W_out
                    let mut dw_out = vec![0f32; d * m];
                    product(arith, &mut dw_out, Mat::cols(dy, d), Mat::rows(mid, m), d, m, t);
                    let mut dmid = vec![0f32; t * m];
                    product(arith, &mut dmid, Mat::rows(dy, d), Mat::rows(w_out, m), t, m, d);
                    // d_pre [T, n_in] = f'(pre) · d_mid
                    let dpre = mid_backward(&dmid);
                    drop(dmid);
                    // dW_in [n_in, D] = d_preᵀ · x ; dx [T, D] = d_pre · W_in
                    let mut dw_in = vec![0f32; n_in * d];
                    product(arith, &mut dw_in, Mat::cols(&dpre, n_in), Mat::rows(x, d), n_in, d, t);
                    let mut dx = vec![0f32; t * d];
                    product(arith, &mut dx, Mat::rows(&dpre, n_in), Mat::rows(w_in, d), t, d, n_in);
                    (dx, dw_in, dw_out)
                })
            })
        })
    })????;
    Ok((
        Some(Tensor::from_vec(dx, (t, d), dev)?),
        Some(Tensor::from_vec(dw_in, w_in.shape(), dev)?),
        Some(Tensor::from_vec(dw_out, w_out.shape(), dev)?),
    ))
}

// ---------------------------------------------------------------- attention block

/// `Wo · attention(Wqkv · x)` over an unpadded batch (no biases): `[T, D]` → `[T, D]`.
pub(crate) fn attention_block(
    x: &Tensor,
    wqkv: &Tensor,
    wo: &Tensor,
    attn: AttentionOp,
    arith: Arithmetic,
) -> Result<Tensor> {
    let op = AttentionBlock { attn, arith, saved: Mutex::new(None) };
    Ok(x.contiguous()?.apply_op3(&wqkv.contiguous()?, &wo.contiguous()?, op)?)
}

struct AttentionBlock {
    attn: AttentionOp,
    /// Arithmetic of the four projections (forward and backward).
    arith: Arithmetic,
    /// `(qkv, attention output)` of the forward pass, taken by the backward.
    saved: Saved,
}

impl CustomOp3 for AttentionBlock {
    fn name(&self) -> &'static str {
        "train-attention-block"
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
        let (x, wqkv, wo) =
            (f32_data(self.name(), s1, l1)?, f32_data(self.name(), s2, l2)?, f32_data(self.name(), s3, l3)?);
        let (t, d) = dims2(l1)?;
        if dims2(l2)? != (3 * d, d) || dims2(l3)? != (d, d) {
            candle_core::bail!("attention block: weights {:?} / {:?} do not fit hidden size {d}", l2.dims(), l3.dims())
        }
        let mut qkv = vec![0f32; t * 3 * d];
        product(self.arith, &mut qkv, Mat::rows(x, d), Mat::cols(wqkv, d), t, 3 * d, d);
        let mut o = vec![0f32; t * d];
        self.attn.forward_all(&qkv, &mut o);
        let mut y = vec![0f32; t * d];
        product(self.arith, &mut y, Mat::rows(&o, d), Mat::cols(wo, d), t, d, d);
        *saved(&self.saved) = Some((Arc::new(qkv), Arc::new(o)));
        Ok((CpuStorage::F32(y), Shape::from((t, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wqkv: &Tensor,
        wo: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (qkv, o) = saved(&self.saved)
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("attention block: backward without forward".into()))?;
        linear_backward(self.arith, x, wqkv, wo, &o, dy, &|d_o| self.attn.backward_all(&qkv, &o, d_o))
    }
}

// ---------------------------------------------------------------- MLP block

/// `Wo · (dropout(GeGLU(Wi · x)))` (no biases, exact-erf GELU): `[T, D]` → `[T, D]`. `mask`
/// holds the inverted-dropout multipliers of the `[T, I]` GeGLU output.
pub(crate) fn mlp_block(
    x: &Tensor,
    wi: &Tensor,
    wo: &Tensor,
    mask: Option<Arc<Vec<f32>>>,
    arith: Arithmetic,
) -> Result<Tensor> {
    let op = MlpBlock { mask, arith, saved: Mutex::new(None) };
    Ok(x.contiguous()?.apply_op3(&wi.contiguous()?, &wo.contiguous()?, op)?)
}

struct MlpBlock {
    mask: Option<Arc<Vec<f32>>>,
    /// Arithmetic of the projections (forward and backward).
    arith: Arithmetic,
    /// `(Wi·x, dropped GeGLU output)` of the forward pass.
    saved: Saved,
}

impl CustomOp3 for MlpBlock {
    fn name(&self) -> &'static str {
        "train-mlp-block"
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
        let (x, wi, wo) =
            (f32_data(self.name(), s1, l1)?, f32_data(self.name(), s2, l2)?, f32_data(self.name(), s3, l3)?);
        let (t, d) = dims2(l1)?;
        let (two_i, _) = dims2(l2)?;
        let inter = two_i / 2;
        if dims2(l2)? != (2 * inter, d) || dims2(l3)? != (d, inter) {
            candle_core::bail!("mlp block: weights {:?} / {:?} do not fit hidden size {d}", l2.dims(), l3.dims())
        }
        let mut h = vec![0f32; t * two_i];
        product(self.arith, &mut h, Mat::rows(x, d), Mat::cols(wi, d), t, two_i, d);
        let mut g = vec![0f32; t * inter];
        modernbert_kernels::geglu(&h, inter, &mut g);
        if let Some(mask) = &self.mask {
            if mask.len() != g.len() {
                candle_core::bail!("mlp block: dropout mask has {} values for {}", mask.len(), g.len())
            }
            g.iter_mut().zip(mask.iter()).for_each(|(v, m)| *v *= m);
        }
        let mut y = vec![0f32; t * d];
        product(self.arith, &mut y, Mat::rows(&g, inter), Mat::cols(wo, inter), t, d, inter);
        *saved(&self.saved) = Some((Arc::new(h), Arc::new(g)));
        Ok((CpuStorage::F32(y), Shape::from((t, d))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wi: &Tensor,
        wo: &Tensor,
        _res: &Tensor,
        dy: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (h, g) = saved(&self.saved)
            .clone()
            .ok_or_else(|| candle_core::Error::Msg("mlp block: backward without forward".into()))?;
        let inter = g.len() / x.dim(0)?;
        linear_backward(self.arith, x, wi, wo, &g, dy, &|dg| match &self.mask {
            Some(mask) => {
                let dg: Vec<f32> = dg.iter().zip(mask.iter()).map(|(a, m)| a * m).collect();
                geglu_backward(&h, &dg, inter)
            }
            None => geglu_backward(&h, dg, inter),
        })
    }
}
