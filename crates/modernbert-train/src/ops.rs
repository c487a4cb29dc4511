//! Fused CPU ops for training, each a candle custom op with an analytic backward pass.
//!
//! Forward passes reuse the inference kernels of `modernbert-kernels` (LayerNorm, GeGLU,
//! varlen local/global attention with RoPE inside); backward passes are written here. Every op
//! is checked against the composed-primitive model (`Kernels::Composed`) in the tests, and that
//! one against PyTorch (`tests/fixtures/train-step`).

use anyhow::Result;
use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Storage, Tensor};
use modernbert_kernels::RopeTable;
use rayon::prelude::*;
use std::sync::Arc;

/// Runs `f` on the contiguous f32 data of a CPU tensor.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(CpuStorage::F32(data)) = &*storage else {
        candle_core::bail!("expected an f32 CPU tensor, found {:?}", t.dtype())
    };
    let (a, b) = layout.contiguous_offsets().expect("contiguous");
    Ok(f(&data[a..b]))
}

fn slice<'a>(op: &str, s: &'a CpuStorage, l: &Layout) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(data) = s else { candle_core::bail!("{op}: expected f32, found {:?}", s.dtype()) };
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{op}: input is not contiguous")))?;
    Ok(&data[a..b])
}

fn tensor(data: Vec<f32>, shape: &Shape, like: &Tensor) -> candle_core::Result<Tensor> {
    Tensor::from_vec(data, shape.clone(), like.device())
}

/// Rows per rayon task so that each task has roughly `64k` floats of work.
fn rows_per_task(width: usize) -> usize {
    (65_536 / width.max(1)).max(1)
}

// ---------------------------------------------------------------- LayerNorm

/// Bias-free LayerNorm `[.., D]` with weight `[D]`; gradients for both.
pub fn layer_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op2(&weight.contiguous()?, LayerNormOp { eps })?)
}

struct LayerNormOp {
    eps: f32,
}

/// Mean and 1/std of one row (f64 accumulation, biased variance).
fn row_stats(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f64;
    let mean = x.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = x.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
    (mean as f32, (1.0 / (var + eps as f64).sqrt()) as f32)
}

impl CustomOp2 for LayerNormOp {
    fn name(&self) -> &'static str {
        "train-layer-norm"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(self.name(), s1, l1)?;
        let w = slice(self.name(), s2, l2)?;
        if l1.dims().last() != Some(&w.len()) {
            candle_core::bail!("layer-norm: input {:?} does not end in {}", l1.dims(), w.len())
        }
        let mut out = vec![0f32; x.len()];
        modernbert_kernels::layer_norm(x, w, self.eps, &mut out);
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, w: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let d = w.elem_count();
        let eps = self.eps;
        let (dx, dw) = with_f32(x, |x| {
            with_f32(w, |w| {
                with_f32(dy, |dy| {
                    let mut dx = vec![0f32; x.len()];
                    let rows = rows_per_task(d);
                    let partial: Vec<Vec<f64>> = dx
                        .par_chunks_mut(rows * d)
                        .zip(x.par_chunks(rows * d).zip(dy.par_chunks(rows * d)))
                        .map(|(dxc, (xc, dyc))| {
                            let mut dw = vec![0f64; d];
                            let mut xhat = vec![0f32; d];
                            for ((dxr, xr), dyr) in dxc.chunks_exact_mut(d).zip(xc.chunks_exact(d)).zip(dyc.chunks_exact(d)) {
                                let (mean, rstd) = row_stats(xr, eps);
                                let (mut sum_g, mut sum_gx) = (0f64, 0f64);
                                for k in 0..d {
                                    xhat[k] = (xr[k] - mean) * rstd;
                                    let g = (dyr[k] * w[k]) as f64;
                                    sum_g += g;
                                    sum_gx += g * xhat[k] as f64;
                                    dw[k] += (dyr[k] * xhat[k]) as f64;
                                }
                                let (mg, mgx) = ((sum_g / d as f64) as f32, (sum_gx / d as f64) as f32);
                                for k in 0..d {
                                    dxr[k] = rstd * (dyr[k] * w[k] - mg - xhat[k] * mgx);
                                }
                            }
                            dw
                        })
                        .collect();
                    let mut dw = vec![0f64; d];
                    for p in partial {
                        for (a, b) in dw.iter_mut().zip(p) {
                            *a += b;
                        }
                    }
                    (dx, dw.into_iter().map(|v| v as f32).collect::<Vec<f32>>())
                })
            })
        })???;
        Ok((Some(tensor(dx, x.shape(), x)?), Some(tensor(dw, w.shape(), w)?)))
    }
}

// ---------------------------------------------------------------- GeGLU

/// `gelu_erf(u) · g` for rows `[u | g]` of `[T, 2I]` → `[T, I]`.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(GegluOp)?)
}

struct GegluOp;

/// `Φ(u)` (standard normal CDF) and `φ(u)` (density), from the kernels' exact-erf GELU.
#[inline]
fn cdf_pdf(u: f32) -> (f32, f32) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let pdf = INV_SQRT_2PI * (-0.5 * u * u).exp();
    let cdf = if u.abs() < 1e-3 { 0.5 + u * INV_SQRT_2PI } else { modernbert_kernels::gelu_erf(u) / u };
    (cdf, pdf)
}

impl CustomOp1 for GegluOp {
    fn name(&self) -> &'static str {
        "train-geglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(self.name(), s, l)?;
        let (rows, width) = l.shape().dims2()?;
        let mut out = vec![0f32; rows * width / 2];
        modernbert_kernels::geglu(x, width / 2, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, width / 2))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, width) = x.dims2()?;
        let inter = width / 2;
        let dx = with_f32(x, |x| {
            with_f32(dy, |dy| {
                let mut dx = vec![0f32; x.len()];
                let rows = rows_per_task(width);
                dx.par_chunks_mut(rows * width)
                    .zip(x.par_chunks(rows * width).zip(dy.par_chunks(rows * inter)))
                    .for_each(|(dxc, (xc, dyc))| {
                        for ((dxr, xr), dyr) in dxc.chunks_exact_mut(width).zip(xc.chunks_exact(width)).zip(dyc.chunks_exact(inter)) {
                            let (u, g) = xr.split_at(inter);
                            let (du, dg) = dxr.split_at_mut(inter);
                            for k in 0..inter {
                                let (cdf, pdf) = cdf_pdf(u[k]);
                                du[k] = dyr[k] * g[k] * (cdf + u[k] * pdf);
                                dg[k] = dyr[k] * u[k] * cdf;
                            }
                        }
                    });
                dx
            })
        })??;
        Ok(Some(tensor(dx, x.shape(), x)?))
    }
}

// ---------------------------------------------------------------- attention

/// Self-attention over an unpadded batch with RoPE applied inside: `[T, 3D]` → `[T, D]`.
/// Tokens attend only within their document; `window = Some(w)` keeps `|i − j| ≤ w`.
pub fn attention(qkv: &Tensor, cu_seqlens: &[u32], heads: usize, head_dim: usize, rope: Arc<RopeTable>, window: Option<usize>) -> Result<Tensor> {
    let op = AttentionOp { cu_seqlens: Arc::new(cu_seqlens.to_vec()), heads, head_dim, rope, window };
    Ok(qkv.contiguous()?.apply_op1(op)?)
}

struct AttentionOp {
    cu_seqlens: Arc<Vec<u32>>,
    heads: usize,
    head_dim: usize,
    rope: Arc<RopeTable>,
    window: Option<usize>,
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, ar) = a.split_at(a.len() / 8 * 8);
    let (bc, br) = b.split_at(ac.len());
    for (x, y) in ac.chunks_exact(8).zip(bc.chunks_exact(8)) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    let mut s = (acc[0] + acc[4]) + (acc[1] + acc[5]) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (x, y) in ar.iter().zip(br) {
        s += x * y;
    }
    s
}

#[inline]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (v, &u) in y.iter_mut().zip(x) {
        *v += a * u;
    }
}

impl AttentionOp {
    /// Rotates `x` (one head vector) by the table row of `pos`; `inverse` applies Rᵀ.
    fn rotate(&self, x: &mut [f32], pos: usize, inverse: bool) {
        let half = self.head_dim / 2;
        let (cos, sin) = self.rope.row(pos);
        let (x1, x2) = x.split_at_mut(half);
        for k in 0..half {
            let (a, b, c, s) = (x1[k], x2[k], cos[k], sin[k]);
            if inverse {
                x1[k] = a * c + b * s;
                x2[k] = b * c - a * s;
            } else {
                x1[k] = a * c - b * s;
                x2[k] = b * c + a * s;
            }
        }
    }

    /// Gradients of one (document, head): returns `(dq, dk, dv)`, each `[n, d]`.
    #[allow(clippy::too_many_arguments)]
    fn backward_task(&self, qkv: &[f32], out: &[f32], dout: &[f32], start: usize, n: usize, h: usize) -> [Vec<f32>; 3] {
        let d = self.head_dim;
        let hd = self.heads * d;
        let scale = (d as f32).powf(-0.5);
        let mut q = vec![0f32; n * d];
        let mut k = vec![0f32; n * d];
        let mut v = vec![0f32; n * d];
        let mut go = vec![0f32; n * d];
        let mut delta = vec![0f32; n];
        for i in 0..n {
            let row = (start + i) * 3 * hd;
            q[i * d..(i + 1) * d].copy_from_slice(&qkv[row + h * d..row + (h + 1) * d]);
            k[i * d..(i + 1) * d].copy_from_slice(&qkv[row + hd + h * d..row + hd + (h + 1) * d]);
            v[i * d..(i + 1) * d].copy_from_slice(&qkv[row + 2 * hd + h * d..row + 2 * hd + (h + 1) * d]);
            self.rotate(&mut q[i * d..(i + 1) * d], i, false);
            self.rotate(&mut k[i * d..(i + 1) * d], i, false);
            let orow = (start + i) * hd + h * d;
            go[i * d..(i + 1) * d].copy_from_slice(&dout[orow..orow + d]);
            delta[i] = dot(&dout[orow..orow + d], &out[orow..orow + d]);
        }
        let mut dq = vec![0f32; n * d];
        let mut dk = vec![0f32; n * d];
        let mut dv = vec![0f32; n * d];
        let mut p = vec![0f32; n];
        for i in 0..n {
            let (lo, hi) = match self.window {
                Some(w) => (i.saturating_sub(w), (i + w + 1).min(n)),
                None => (0, n),
            };
            let qi = &q[i * d..(i + 1) * d];
            let mut max = f32::NEG_INFINITY;
            for j in lo..hi {
                let s = dot(qi, &k[j * d..(j + 1) * d]) * scale;
                p[j] = s;
                max = max.max(s);
            }
            let mut sum = 0f32;
            for pj in &mut p[lo..hi] {
                *pj = (*pj - max).exp();
                sum += *pj;
            }
            let inv = 1.0 / sum;
            let goi = &go[i * d..(i + 1) * d];
            let dqi = &mut dq[i * d..(i + 1) * d];
            for j in lo..hi {
                let pj = p[j] * inv;
                let dp = dot(goi, &v[j * d..(j + 1) * d]);
                let ds = pj * (dp - delta[i]) * scale;
                axpy(dqi, ds, &k[j * d..(j + 1) * d]);
                axpy(&mut dk[j * d..(j + 1) * d], ds, qi);
                axpy(&mut dv[j * d..(j + 1) * d], pj, goi);
            }
        }
        for i in 0..n {
            self.rotate(&mut dq[i * d..(i + 1) * d], i, true);
            self.rotate(&mut dk[i * d..(i + 1) * d], i, true);
        }
        [dq, dk, dv]
    }
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "train-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = slice(self.name(), s, l)?;
        let (tokens, width) = l.shape().dims2()?;
        let hd = self.heads * self.head_dim;
        if width != 3 * hd || self.cu_seqlens.last().copied() != Some(tokens as u32) {
            candle_core::bail!("attention: qkv {:?} does not match the batch", l.dims())
        }
        let mut out = vec![0f32; tokens * hd];
        modernbert_kernels::attention_varlen(qkv, &self.cu_seqlens, self.heads, self.head_dim, &self.rope, self.window, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((tokens, hd))))
    }

    fn bwd(&self, qkv: &Tensor, res: &Tensor, dres: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (tokens, width) = qkv.dims2()?;
        let (d, hd) = (self.head_dim, self.heads * self.head_dim);
        let cu = &self.cu_seqlens;
        let tasks: Vec<(usize, usize, usize)> = cu
            .windows(2)
            .flat_map(|w| (0..self.heads).map(move |h| (w[0] as usize, (w[1] - w[0]) as usize, h)))
            .collect();
        let dqkv = with_f32(qkv, |qkv| {
            with_f32(res, |out| {
                with_f32(dres, |dout| {
                    let grads: Vec<[Vec<f32>; 3]> = tasks
                        .par_iter()
                        .map(|&(start, n, h)| self.backward_task(qkv, out, dout, start, n, h))
                        .collect();
                    let mut dqkv = vec![0f32; tokens * width];
                    for (&(start, n, h), g) in tasks.iter().zip(&grads) {
                        for i in 0..n {
                            let row = (start + i) * width;
                            for (part, gp) in g.iter().enumerate() {
                                let at = row + part * hd + h * d;
                                dqkv[at..at + d].copy_from_slice(&gp[i * d..(i + 1) * d]);
                            }
                        }
                    }
                    dqkv
                })
            })
        })???;
        Ok(Some(tensor(dqkv, qkv.shape(), qkv)?))
    }
}

// ---------------------------------------------------------------- cross-entropy

/// Mean cross-entropy of `logits [M, V]` against `targets` (one class id per row): a scalar.
pub fn cross_entropy(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let op = CrossEntropyOp { targets: Arc::new(targets.to_vec()) };
    Ok(logits.contiguous()?.apply_op1(op)?)
}

struct CrossEntropyOp {
    targets: Arc<Vec<u32>>,
}

/// `(max, Σ exp(x − max))` of a row.
fn row_lse(x: &[f32]) -> (f32, f32) {
    let max = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (max, x.iter().map(|&v| (v - max).exp()).sum())
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "train-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(self.name(), s, l)?;
        let (m, v) = l.shape().dims2()?;
        if self.targets.len() != m {
            candle_core::bail!("cross-entropy: {} targets for {m} rows", self.targets.len())
        }
        let total: f64 = x
            .par_chunks(v)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let (max, sum) = row_lse(row);
                (sum.ln() + max - row[t as usize]) as f64
            })
            .sum();
        Ok((CpuStorage::F32(vec![(total / m as f64) as f32]), Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dres: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (m, v) = x.dims2()?;
        let g = dres.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / m as f32;
        let dx = with_f32(x, |x| {
            let mut dx = vec![0f32; x.len()];
            dx.par_chunks_mut(v).zip(x.par_chunks(v)).zip(self.targets.par_iter()).for_each(|((dr, xr), &t)| {
                let (max, sum) = row_lse(xr);
                let scale = g / sum;
                for (o, &xv) in dr.iter_mut().zip(xr) {
                    *o = (xv - max).exp() * scale;
                }
                dr[t as usize] -= g;
            });
            dx
        })?;
        Ok(Some(tensor(dx, x.shape(), x)?))
    }
}
