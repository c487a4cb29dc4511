//! Fused CPU ops for training, each a candle custom op with an analytic backward pass.
//!
//! Forward passes reuse the inference kernels of `modernbert-kernels` (LayerNorm, GeGLU,
//! varlen local/global attention with RoPE inside), and so do the backward passes of GeGLU and
//! attention; the cross-entropy is written here. Every op
//! is checked against the composed-primitive model (`Kernels::Composed`) in the tests, and that
//! one against PyTorch (`tests/fixtures/train-step`).

use anyhow::Result;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};
use modernbert_kernels::{fast_exp, geglu_backward, RopeTable};
use rayon::prelude::*;
use std::sync::{Arc, Mutex, MutexGuard};

pub use modernbert::ops::layer_norm;
pub(crate) use modernbert::ops::{f32_data, rows_per_task, tensor, with_f32};

/// Runs `f` on the contiguous f32 data of a CPU tensor (a variable's, say), changing it in place:
/// no copy and no allocation, and every tensor sharing the storage sees the new values.
pub(crate) fn update_in_place(t: &Tensor, f: impl FnMut(&mut [f32])) -> Result<()> {
    // candle's in-place op takes `&self`; the lock (taken once) lets `f` keep state of its own.
    struct InPlace<F>(Mutex<F>);
    impl<F: FnMut(&mut [f32])> candle_core::InplaceOp1 for InPlace<F> {
        fn name(&self) -> &'static str {
            "update-in-place"
        }

        fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> candle_core::Result<()> {
            let CpuStorage::F32(data) = storage else { candle_core::bail!("update-in-place: expected f32 data") };
            let (a, b) = layout
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("update-in-place: tensor is not contiguous".into()))?;
            (saved(&self.0))(&mut data[a..b]);
            Ok(())
        }
    }
    Ok(t.inplace_op1(&InPlace(Mutex::new(f)))?)
}

/// State a custom op saved in its forward pass for its backward pass. It is replaced whole, so a
/// panic elsewhere cannot leave it half-written: a poisoned lock is still usable.
pub(crate) fn saved<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ---------------------------------------------------------------- GeGLU

/// `gelu_erf(u) · g` for rows `[u | g]` of `[T, 2I]` → `[T, I]`.
pub fn geglu(x: &Tensor) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(GegluOp)?)
}

struct GegluOp;

impl CustomOp1 for GegluOp {
    fn name(&self) -> &'static str {
        "train-geglu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(self.name(), s, l)?;
        let (rows, width) = l.shape().dims2()?;
        let mut out = vec![0f32; rows * width / 2];
        modernbert_kernels::geglu(x, width / 2, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, width / 2))))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dy: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let (_, width) = x.dims2()?;
        let dx = with_f32(x, |x| with_f32(dy, |dy| geglu_backward(x, dy, width / 2)))??;
        Ok(Some(tensor(dx, x.shape(), x)?))
    }
}

// ---------------------------------------------------------------- attention

/// Self-attention over an unpadded batch with RoPE applied inside: `[T, 3D]` → `[T, D]`.
/// Tokens attend only within their document; `window = Some(w)` keeps `|i − j| ≤ w`.
pub fn attention(
    qkv: &Tensor,
    cu_seqlens: &[u32],
    heads: usize,
    head_dim: usize,
    rope: Arc<RopeTable>,
    window: Option<usize>,
) -> Result<Tensor> {
    Ok(qkv.contiguous()?.apply_op1(AttentionOp::new(cu_seqlens, heads, head_dim, rope, window))?)
}

pub(crate) struct AttentionOp {
    cu_seqlens: Arc<Vec<u32>>,
    heads: usize,
    head_dim: usize,
    rope: Arc<RopeTable>,
    window: Option<usize>,
}

impl CustomOp1 for AttentionOp {
    fn name(&self) -> &'static str {
        "train-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let qkv = f32_data(self.name(), s, l)?;
        let (tokens, width) = l.shape().dims2()?;
        let hd = self.heads * self.head_dim;
        if width != 3 * hd || self.cu_seqlens.last().copied() != Some(tokens as u32) {
            candle_core::bail!("attention: qkv {:?} does not match the batch", l.dims())
        }
        let mut out = vec![0f32; tokens * hd];
        self.forward_all(qkv, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((tokens, hd))))
    }

    fn bwd(&self, qkv: &Tensor, res: &Tensor, dres: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let dqkv =
            with_f32(qkv, |qkv| with_f32(res, |out| with_f32(dres, |dout| self.backward_all(qkv, out, dout))))???;
        Ok(Some(tensor(dqkv, qkv.shape(), qkv)?))
    }
}

impl AttentionOp {
    /// A new op description.
    pub(crate) fn new(
        cu_seqlens: &[u32],
        heads: usize,
        head_dim: usize,
        rope: Arc<RopeTable>,
        window: Option<usize>,
    ) -> Self {
        Self { cu_seqlens: Arc::new(cu_seqlens.to_vec()), heads, head_dim, rope, window }
    }

    /// Forward on slices: `qkv [T, 3D]` → `out [T, D]`.
    pub(crate) fn forward_all(&self, qkv: &[f32], out: &mut [f32]) {
        modernbert_kernels::attention_varlen(
            qkv,
            &self.cu_seqlens,
            self.heads,
            self.head_dim,
            &self.rope,
            self.window,
            out,
        );
    }

    /// `dqkv [T, 3D]` from `qkv`, the forward output `out` and its gradient `dout`.
    pub(crate) fn backward_all(&self, qkv: &[f32], out: &[f32], dout: &[f32]) -> Vec<f32> {
        modernbert_kernels::attention_varlen_backward(
            qkv,
            out,
            dout,
            &self.cu_seqlens,
            self.heads,
            self.head_dim,
            &self.rope,
            self.window,
        )
    }
}

// ---------------------------------------------------------------- cross-entropy

/// Mean cross-entropy of `logits + bias` (`logits [M, V]`, `bias [V]` added to every row) against
/// `targets` (one class id per row), and how many rows have the target as arg-max.
///
/// The decoder bias, the loss and the accuracy come out of one read of the logits; the backward
/// pass reuses the forward's log-sum-exp, writes `softmax − one-hot` in one more pass and sums it
/// over rows for the bias gradient. (Composed candle ops take five passes and two more `[M, V]`
/// buffers; on the 50k vocabulary that was ~40% of a training step.)
pub fn cross_entropy(logits: &Tensor, bias: Option<&Tensor>, targets: &[u32]) -> Result<(Tensor, usize)> {
    let op = CrossEntropyOp { targets: Arc::new(targets.to_vec()), stats: Arc::default() };
    let stats = op.stats.clone();
    let logits = logits.contiguous()?;
    let loss = match bias {
        Some(b) => logits.apply_op2(&b.contiguous()?, op)?,
        None => logits.apply_op1(op)?,
    };
    let correct = saved(&stats).correct;
    Ok((loss, correct))
}

#[derive(Default)]
struct CeStats {
    /// Log-sum-exp of every row (of `logits + bias`).
    lse: Vec<f32>,
    correct: usize,
}

struct CrossEntropyOp {
    targets: Arc<Vec<u32>>,
    stats: Arc<Mutex<CeStats>>,
}

/// Max and arg-max of `row + bias` (8 lanes; NaN propagates).
fn row_max_arg(row: &[f32], bias: Option<&[f32]>) -> (f32, usize) {
    let z = |j: usize| row[j] + bias.map_or(0.0, |b| b[j]);
    let (mut best, mut arg) = ([f32::NEG_INFINITY; 8], [0usize; 8]);
    let full = row.len() / 8 * 8;
    for c in (0..full).step_by(8) {
        for l in 0..8 {
            let v = z(c + l);
            if v > best[l] || v.is_nan() {
                (best[l], arg[l]) = (v, c + l);
            }
        }
    }
    let (mut m, mut a) = (f32::NEG_INFINITY, 0);
    for (v, j) in best.into_iter().zip(arg).chain((full..row.len()).map(|j| (z(j), j))) {
        if v > m || v.is_nan() || (v == m && j < a) {
            (m, a) = (v, j);
        }
    }
    (m, a)
}

/// `Σ exp(row + bias − max)` (8 lanes so the exponentials vectorize).
fn row_sum_exp(row: &[f32], bias: Option<&[f32]>, max: f32) -> f32 {
    let mut acc = [0f32; 8];
    let full = row.len() / 8 * 8;
    match bias {
        Some(b) => {
            for c in (0..full).step_by(8) {
                for l in 0..8 {
                    acc[l] += fast_exp(row[c + l] + b[c + l] - max);
                }
            }
        }
        None => {
            for c in (0..full).step_by(8) {
                for l in 0..8 {
                    acc[l] += fast_exp(row[c + l] - max);
                }
            }
        }
    }
    let rest: f32 = (full..row.len()).map(|j| fast_exp(row[j] + bias.map_or(0.0, |b| b[j]) - max)).sum();
    acc.iter().sum::<f32>() + rest
}

impl CrossEntropyOp {
    fn forward(&self, x: &[f32], bias: Option<&[f32]>, (m, v): (usize, usize)) -> candle_core::Result<CpuStorage> {
        if self.targets.len() != m {
            candle_core::bail!("cross-entropy: {} targets for {m} rows", self.targets.len())
        }
        if bias.is_some_and(|b| b.len() != v) {
            candle_core::bail!("cross-entropy: bias does not have {v} entries")
        }
        let rows: Vec<(f32, f32, bool)> = x
            .par_chunks(v)
            .zip(self.targets.par_iter())
            .map(|(row, &t)| {
                let (max, arg) = row_max_arg(row, bias);
                let lse = max + row_sum_exp(row, bias, max).ln();
                let target = row[t as usize] + bias.map_or(0.0, |b| b[t as usize]);
                (lse, lse - target, arg == t as usize)
            })
            .collect();
        let total: f64 = rows.iter().map(|r| r.1 as f64).sum();
        let mut stats = saved(&self.stats);
        stats.lse = rows.iter().map(|r| r.0).collect();
        stats.correct = rows.iter().filter(|r| r.2).count();
        Ok(CpuStorage::F32(vec![(total / m as f64) as f32]))
    }

    /// `d loss / d logits` (and the bias gradient, its column sums, when there is a bias).
    fn backward(
        &self,
        x: &Tensor,
        bias: Option<&Tensor>,
        dres: &Tensor,
    ) -> candle_core::Result<(Tensor, Option<Tensor>)> {
        let (m, v) = x.dims2()?;
        let g = dres.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()? / m as f32;
        let lse = saved(&self.stats).lse.clone();
        if lse.len() != m {
            candle_core::bail!("cross-entropy: backward without a forward pass")
        }
        let b: Option<Vec<f32>> = bias.map(|b| b.flatten_all()?.to_vec1()).transpose()?;
        let (dx, dbias) = with_f32(x, |x| {
            let mut dx = vec![0f32; x.len()];
            let per = rows_per_task(v).max(16);
            let dbias = dx
                .par_chunks_mut(v * per)
                .zip(x.par_chunks(v * per))
                .enumerate()
                .fold(
                    || vec![0f32; if b.is_some() { v } else { 0 }],
                    |mut acc, (task, (dxs, xs))| {
                        for (r, (dr, xr)) in dxs.chunks_mut(v).zip(xs.chunks(v)).enumerate() {
                            let row = task * per + r;
                            let (l, t) = (lse[row], self.targets[row] as usize);
                            match &b {
                                Some(b) => {
                                    for ((o, &xv), &bv) in dr.iter_mut().zip(xr).zip(b) {
                                        *o = fast_exp(xv + bv - l) * g;
                                    }
                                }
                                None => {
                                    for (o, &xv) in dr.iter_mut().zip(xr) {
                                        *o = fast_exp(xv - l) * g;
                                    }
                                }
                            }
                            dr[t] -= g;
                            for (a, &d) in acc.iter_mut().zip(dr.iter()) {
                                *a += d;
                            }
                        }
                        acc
                    },
                )
                .reduce(
                    || vec![0f32; if b.is_some() { v } else { 0 }],
                    |mut a, c| {
                        for (x, y) in a.iter_mut().zip(c) {
                            *x += y;
                        }
                        a
                    },
                );
            (dx, dbias)
        })?;
        let dbias = match bias {
            Some(bt) => Some(tensor(dbias, bt.shape(), bt)?),
            None => None,
        };
        Ok((tensor(dx, x.shape(), x)?, dbias))
    }
}

impl CustomOp1 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "train-cross-entropy"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(CustomOp1::name(self), s, l)?;
        Ok((self.forward(x, None, l.shape().dims2()?)?, Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, dres: &Tensor) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(self.backward(x, None, dres)?.0))
    }
}

impl CustomOp2 for CrossEntropyOp {
    fn name(&self) -> &'static str {
        "train-cross-entropy-bias"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = f32_data(CustomOp2::name(self), s1, l1)?;
        let b = f32_data(CustomOp2::name(self), s2, l2)?;
        Ok((self.forward(x, Some(b), l1.shape().dims2()?)?, Shape::from(())))
    }

    fn bwd(
        &self,
        x: &Tensor,
        bias: &Tensor,
        _res: &Tensor,
        dres: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (dx, db) = self.backward(x, Some(bias), dres)?;
        Ok((Some(dx), db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_with_bias_matches_f64_and_counts_argmax_hits() {
        let (m, v) = (7, 37);
        let mut rng = crate::rng::Rng::new(3);
        let x: Vec<f32> = (0..m * v).map(|_| rng.normal() as f32 * 3.0).collect();
        let b: Vec<f32> = (0..v).map(|_| rng.normal() as f32).collect();
        let z = |r: usize, j: usize| (x[r * v + j] + b[j]) as f64;
        let argmax = |r: usize| (0..v).max_by(|&i, &j| z(r, i).total_cmp(&z(r, j))).unwrap();
        // Rows 0, 2, 4 target their arg-max; the others a fixed class.
        let targets: Vec<u32> = (0..m).map(|r| if r % 2 == 0 { argmax(r) as u32 } else { 5 }).collect();
        let hits = (0..m).filter(|&r| argmax(r) == targets[r] as usize).count();
        let xt = candle_core::Var::from_vec(x.clone(), (m, v), &candle_core::Device::Cpu).unwrap();
        let bt = candle_core::Var::from_vec(b.clone(), v, &candle_core::Device::Cpu).unwrap();
        let (loss, correct) = cross_entropy(xt.as_tensor(), Some(bt.as_tensor()), &targets).unwrap();
        assert_eq!(correct, hits);
        let lse = |r: usize| {
            let max = (0..v).map(|j| z(r, j)).fold(f64::NEG_INFINITY, f64::max);
            max + (0..v).map(|j| (z(r, j) - max).exp()).sum::<f64>().ln()
        };
        let want = (0..m).map(|r| lse(r) - z(r, targets[r] as usize)).sum::<f64>() / m as f64;
        assert!((loss.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
        let grads = loss.backward().unwrap();
        let dx = grads.get(xt.as_tensor()).unwrap().to_vec2::<f32>().unwrap();
        let db = grads.get(bt.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
        for j in 0..v {
            let mut col = 0f64;
            for r in 0..m {
                let want = ((z(r, j) - lse(r)).exp() - f64::from(u8::from(targets[r] as usize == j))) / m as f64;
                assert!((dx[r][j] as f64 - want).abs() < 1e-6, "dx[{r}][{j}]");
                col += want;
            }
            assert!((db[j] as f64 - col).abs() < 1e-6, "db[{j}]");
        }
        // Without a bias: same op, plain logits.
        let (plain, _) = cross_entropy(xt.as_tensor(), None, &targets).unwrap();
        let want: f64 = (0..m)
            .map(|r| {
                let row = &x[r * v..(r + 1) * v];
                let max = row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)) as f64;
                max + row.iter().map(|&y| (y as f64 - max).exp()).sum::<f64>().ln() - row[targets[r] as usize] as f64
            })
            .sum::<f64>()
            / m as f64;
        assert!((plain.to_scalar::<f32>().unwrap() as f64 - want).abs() < 1e-5 * want.abs().max(1.0));
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// `cargo test --release -p modernbert-train --lib timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn op_timings() {
        let dev = candle_core::Device::Cpu;
        let (t, i, d) = (4096usize, 256usize, 128usize);
        let x = Tensor::randn(0f32, 1.0, (t, 2 * i), &dev).unwrap();
        let dy = Tensor::randn(0f32, 1.0, (t, i), &dev).unwrap();
        let y = geglu(&x).unwrap();
        let time = |name: &str, f: &dyn Fn()| {
            f();
            let t0 = std::time::Instant::now();
            for _ in 0..10 {
                f();
            }
            eprintln!("{name}: {:.2} ms", t0.elapsed().as_secs_f64() * 100.0);
        };
        time("geglu fwd", &|| {
            geglu(&x).unwrap();
        });
        time("geglu bwd", &|| {
            GegluOp.bwd(&x, &y, &dy).unwrap();
        });
        let h = Tensor::randn(0f32, 1.0, (t, d), &dev).unwrap();
        let w = Tensor::ones(d, candle_core::DType::F32, &dev).unwrap();
        let dh = Tensor::randn(0f32, 1.0, (t, d), &dev).unwrap();
        let hv = candle_core::Var::from_tensor(&h).unwrap();
        time("layer-norm fwd+bwd", &|| {
            (layer_norm(hv.as_tensor(), &w, 1e-5).unwrap() * &dh).unwrap().sum_all().unwrap().backward().unwrap();
        });
        time("candle add [T, 2I]", &|| {
            (&x + &x).unwrap();
        });
        let qkv = Tensor::randn(0f32, 1.0, (t, 3 * d), &dev).unwrap();
        let cu: Vec<u32> = (0..=16).map(|k| k * 256).collect();
        for window in [None, Some(32)] {
            let rope = Arc::new(RopeTable::new(10000.0, 32, 256));
            let op = AttentionOp { cu_seqlens: Arc::new(cu.clone()), heads: 4, head_dim: 32, rope, window };
            let o = qkv.apply_op1_no_bwd(&op).unwrap();
            time(&format!("attention fwd {window:?}"), &|| {
                qkv.apply_op1_no_bwd(&op).unwrap();
            });
            time(&format!("attention bwd {window:?}"), &|| {
                op.bwd(&qkv, &o, &h).unwrap();
            });
        }
    }
}
