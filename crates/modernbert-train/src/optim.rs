//! AdamW with fully decoupled weight decay; StableAdamW (spec §7.4, exactly as FlexBERT/optimī
//! run it for ModernBERT) when [`OptimizerConfig::update_clipping`] is on:
//!
//! ```text
//! β̂1 = (β1^t − β1)/(β1^t − 1)      β̂2 = (β2^t − β2)/(β2^t − 1)      (bias correction in the betas)
//! m ← m + (1 − β̂1)(g − m)          v ← β̂2·v + (1 − β̂2)·g²
//! RMS = sqrt(mean(g² / max(v, ε²)))                                   (per tensor)
//! η = lr_t / max(1, RMS)                                              (update clipping; else η = lr_t)
//! p ← p·(1 − (η / max_lr)·wd)                                         (fully decoupled weight decay)
//! p ← p − η·m / (sqrt(v) + ε)
//! ```
//!
//! Parameter groups: no weight decay for tensors with ndim ≤ 1 or names ending in `.bias`
//! (LayerNorm weights, `decoder.bias`), and — by default, as the issue asks — none for the token
//! embedding either ([`OptimizerConfig::decay_embeddings`] = false; the authors' code decays it).
//!
//! The betas' bias correction makes `m` and `v` the bias-corrected moments of Adam, so without
//! update clipping this is PyTorch's AdamW with `weight_decay = wd / max_lr` (what fine-tuning
//! uses, with HF Trainer's groups: embeddings decayed).

use crate::model::TrainModel;
use crate::ops::{update_in_place, with_f32};
use crate::st::{self, HostTensor};
use anyhow::{bail, Context, Result};
use candle_core::Tensor;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Hyper-parameters of StableAdamW (learning rate and weight decay come from the phase schedule).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// β1 (0.9).
    pub beta1: f64,
    /// β2 (0.98).
    pub beta2: f64,
    /// ε (1e-6).
    pub eps: f64,
    /// Whether `model.embeddings.tok_embeddings.weight` is weight-decayed (the authors: yes; issue 4: no).
    pub decay_embeddings: bool,
    /// StableAdamW's per-tensor update clipping by RMS (pretraining: yes; fine-tuning: plain AdamW).
    pub update_clipping: bool,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.98, eps: 1e-6, decay_embeddings: false, update_clipping: true }
    }
}

impl OptimizerConfig {
    /// Fine-tuning's AdamW: the GLUE recipe's betas and ε, no update clipping, HF Trainer's groups.
    pub fn adamw() -> Self {
        Self { decay_embeddings: true, update_clipping: false, ..Self::default() }
    }
}

/// Adds one backward pass's gradients of `model`'s variables into `grads` (by name).
pub fn accumulate(
    grads: &mut BTreeMap<String, Tensor>,
    model: &TrainModel,
    store: &candle_core::backprop::GradStore,
) -> Result<()> {
    for (name, var) in model.vars() {
        if let Some(g) = store.get(var.as_tensor()) {
            let acc = match grads.remove(name) {
                Some(a) => (a + g)?,
                None => g.clone(),
            };
            grads.insert(name.clone(), acc);
        }
    }
    Ok(())
}

/// The global L2 norm of `grads` (f64 sums over fixed chunks, added in order).
pub fn grad_norm(grads: &BTreeMap<String, Tensor>) -> Result<f64> {
    let mut sq = 0f64;
    for g in grads.values() {
        let parts: Vec<f64> =
            with_f32(g, |g| g.par_chunks(1 << 14).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum()).collect())?;
        sq += parts.iter().sum::<f64>();
    }
    Ok(sq.sqrt())
}

/// The factor that brings the global gradient norm `norm` to at most `max_norm`, as PyTorch's
/// `clip_grad_norm_` computes it (`max_norm / (norm + 1e-6)` when below 1; `max_norm` 0: off).
pub fn clip_factor(norm: f64, max_norm: f64) -> f32 {
    let factor = max_norm / (norm + 1e-6);
    if max_norm > 0.0 && factor < 1.0 {
        factor as f32
    } else {
        1.0
    }
}

/// Whether a parameter gets weight decay.
pub fn decays(name: &str, ndim: usize, cfg: &OptimizerConfig) -> bool {
    if ndim <= 1 || name.ends_with(".bias") {
        return false;
    }
    cfg.decay_embeddings || name != "model.embeddings.tok_embeddings.weight"
}

struct State {
    m: Vec<f32>,
    v: Vec<f32>,
    /// Per [`BLOCK`] of values: whether `m` or `v` may be non-zero there. A block that is not
    /// live and gets a zero gradient keeps `m = v = 0`, and its AdamW update is the weight decay
    /// alone (bit for bit), so it is neither read nor written: the rows of a token embedding
    /// that no batch has used yet, most of a fine-tuning run's vocabulary.
    live: Vec<bool>,
    decay: bool,
}

/// Values per liveness flag (one embedding row of a 256-wide model).
const BLOCK: usize = 256;
/// Values per parallel task of the update; a multiple of [`BLOCK`].
const CHUNK: usize = 1 << 14;

impl State {
    fn new(n: usize, decay: bool) -> Self {
        State { m: vec![0.0; n], v: vec![0.0; n], live: vec![false; n.div_ceil(BLOCK)], decay }
    }

    /// Recomputes the liveness flags from the moments (after loading them).
    fn relive(&mut self) {
        for ((live, m), v) in self.live.iter_mut().zip(self.m.chunks(BLOCK)).zip(self.v.chunks(BLOCK)) {
            *live = m.iter().chain(v).any(|&x| x != 0.0);
        }
    }
}

/// One step's scalars: the moments' coefficients, the step size and the weight-decay factor.
#[derive(Clone, Copy)]
struct Coeffs {
    grad_scale: f32,
    one_m_b1: f32,
    b2: f32,
    one_m_b2: f32,
    eps: f32,
    eta: f32,
    keep: f32,
}

impl Coeffs {
    /// Updates one value's moments from its raw gradient; returns the scaled gradient.
    #[inline(always)]
    fn moments(&self, g: f32, m: &mut f32, v: &mut f32) -> f32 {
        let g = g * self.grad_scale;
        *m += self.one_m_b1 * (g - *m);
        *v = self.b2 * *v + self.one_m_b2 * (g * g);
        g
    }

    /// One weight after decay and the AdamW step with its (already updated) moments.
    #[inline(always)]
    fn weight(&self, p: f32, m: f32, v: f32) -> f32 {
        p * self.keep - self.eta * m / (v.sqrt() + self.eps)
    }
}

/// Plain AdamW in one pass over `p`, `m`, `v` and the gradient `g`, skipping the moments of
/// blocks that are not live and get a zero gradient. Returns Σ (scaled g)² in f64, summed per
/// chunk in order.
fn fused_update(p: &mut [f32], m: &mut [f32], v: &mut [f32], live: &mut [bool], g: &[f32], c: Coeffs) -> f64 {
    let update = |p: &mut [f32], m: &mut [f32], v: &mut [f32], live: &mut [bool], g: &[f32]| -> f64 {
        let mut sq = 0f64;
        for (b, live) in live.iter_mut().enumerate() {
            let r = b * BLOCK..((b + 1) * BLOCK).min(p.len());
            if !*live {
                if g[r.clone()].iter().all(|&x| x == 0.0) {
                    if c.keep != 1.0 {
                        p[r].iter_mut().for_each(|x| *x *= c.keep);
                    }
                    continue;
                }
                *live = true;
            }
            let (p, m, v, g) = (&mut p[r.clone()], &mut m[r.clone()], &mut v[r.clone()], &g[r]);
            for i in 0..p.len() {
                let gi = c.moments(g[i], &mut m[i], &mut v[i]);
                sq += (gi as f64) * (gi as f64);
                p[i] = c.weight(p[i], m[i], v[i]);
            }
        }
        sq
    };
    let parts: Vec<f64> = p
        .par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(live.par_chunks_mut(CHUNK / BLOCK))
        .zip(g.par_chunks(CHUNK))
        .map(|((((p, m), v), live), g)| update(p, m, v, live, g))
        .collect();
    parts.iter().sum()
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
    /// Global L2 norm of the gradients.
    pub grad_norm: f64,
    /// Number of tensors whose update was clipped (RMS > 1).
    pub clipped: usize,
}

/// AdamW / StableAdamW with per-parameter state.
pub struct AdamW {
    cfg: OptimizerConfig,
    step: u64,
    state: BTreeMap<String, State>,
}

impl AdamW {
    /// Fresh state (zeros) for every variable of `model`.
    pub fn new(cfg: OptimizerConfig, model: &TrainModel) -> Self {
        let state = model
            .vars()
            .iter()
            .map(|(name, var)| {
                let n = var.elem_count();
                (name.clone(), State::new(n, decays(name, var.rank(), &cfg)))
            })
            .collect();
        Self { cfg, step: 0, state }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.step
    }

    /// Names of the parameters that are weight-decayed.
    pub fn decayed(&self) -> Vec<&str> {
        self.state.iter().filter(|(_, s)| s.decay).map(|(n, _)| n.as_str()).collect()
    }

    /// Applies one update to every variable of `model` from `grads` (by name). A parameter with
    /// no gradient is treated as having a zero gradient (its moments still decay).
    pub fn step(
        &mut self,
        model: &TrainModel,
        grads: &BTreeMap<String, Tensor>,
        lr: f64,
        max_lr: f64,
        weight_decay: f64,
    ) -> Result<StepStats> {
        self.step_scaled(model, grads, 1.0, lr, max_lr, weight_decay)
    }

    /// [`AdamW::step`] with every gradient multiplied by `grad_scale` first (gradient clipping
    /// without a scaled copy of the gradients). Runs in parallel over fixed chunks, with the
    /// chunks' partial sums added in order, so the result does not depend on the thread count.
    /// Without update clipping, one fused pass per tensor that skips what stays zero
    /// ([`State::live`]); with it, a pass for the moments and the clipping ratio, then the update.
    pub fn step_scaled(
        &mut self,
        model: &TrainModel,
        grads: &BTreeMap<String, Tensor>,
        grad_scale: f32,
        lr: f64,
        max_lr: f64,
        weight_decay: f64,
    ) -> Result<StepStats> {
        self.step += 1;
        let t = self.step as i32;
        let (b1, b2) = (self.cfg.beta1, self.cfg.beta2);
        let b1h = (b1.powi(t) - b1) / (b1.powi(t) - 1.0);
        let b2h = (b2.powi(t) - b2) / (b2.powi(t) - 1.0);
        let (one_m_b1, b2f, one_m_b2) = ((1.0 - b1h) as f32, b2h as f32, (1.0 - b2h) as f32);
        let eps = self.cfg.eps as f32;
        let eps2 = eps * eps;
        let mut stats = StepStats::default();
        let mut sq = 0f64;
        for (name, var) in model.vars() {
            let s = self.state.get_mut(name).with_context(|| format!("no optimizer state for `{name}`"))?;
            let n = s.m.len();
            let grad = match grads.get(name) {
                Some(g) if g.elem_count() == n => Some(g.flatten_all()?),
                Some(g) => bail!("gradient of `{name}` has {} values, expected {n}", g.elem_count()),
                None => None,
            };
            // The gradient's values; a parameter without one has a zero gradient.
            let with_grad = |f: &mut dyn FnMut(&[f32]) -> Result<()>| -> Result<()> {
                match &grad {
                    Some(g) => with_f32(g, |g| f(g))?,
                    None => f(&vec![0f32; n]),
                }
            };
            let keep =
                |eta: f64| if weight_decay > 0.0 && s.decay { (1.0 - eta / max_lr * weight_decay) as f32 } else { 1.0 };
            let c = Coeffs { grad_scale, one_m_b1, b2: b2f, one_m_b2, eps, eta: lr as f32, keep: keep(lr) };
            if !self.cfg.update_clipping {
                let State { m, v, live, .. } = s;
                with_grad(&mut |g| update_in_place(var.as_tensor(), |p| sq += fused_update(p, m, v, live, g, c)))?;
                continue;
            }
            // Moments, and per chunk Σ g²/max(v, ε²) (update clipping) and Σ g².
            let mut partial: Vec<(f64, f64)> = Vec::new();
            let (m, v) = (&mut s.m, &mut s.v);
            with_grad(&mut |g| {
                partial = m
                    .par_chunks_mut(CHUNK)
                    .zip(v.par_chunks_mut(CHUNK))
                    .zip(g.par_chunks(CHUNK))
                    .map(|((m, v), g)| {
                        let (mut ratio, mut sq) = (0f64, 0f64);
                        for ((m, v), &gi) in m.iter_mut().zip(v.iter_mut()).zip(g) {
                            let gi = c.moments(gi, m, v);
                            ratio += (gi * gi / v.max(eps2)) as f64;
                            sq += (gi as f64) * (gi as f64);
                        }
                        (ratio, sq)
                    })
                    .collect();
                Ok(())
            })?;
            let (ratio, tensor_sq) = partial.iter().fold((0f64, 0f64), |(r, q), (a, b)| (r + a, q + b));
            sq += tensor_sq;
            let rms = (ratio / n.max(1) as f64).sqrt();
            let eta = if rms > 1.0 {
                stats.clipped += 1;
                lr / rms
            } else {
                lr
            };
            let c = Coeffs { eta: eta as f32, keep: keep(eta), ..c };
            let (m, v) = (&s.m, &s.v);
            update_in_place(var.as_tensor(), |p| {
                p.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK).zip(v.par_chunks(CHUNK))).for_each(|(p, (m, v))| {
                    for ((x, &m), &v) in p.iter_mut().zip(m).zip(v) {
                        *x = c.weight(*x, m, v);
                    }
                })
            })?;
        }
        stats.grad_norm = sq.sqrt();
        Ok(stats)
    }

    /// Saves the moments and step count to a safetensors file.
    pub fn save(&self, path: &Path) -> Result<()> {
        let mut tensors = BTreeMap::new();
        for (name, s) in &self.state {
            tensors.insert(format!("{name}.exp_avg"), HostTensor { shape: vec![s.m.len()], data: s.m.clone() });
            tensors.insert(format!("{name}.exp_avg_sq"), HostTensor { shape: vec![s.v.len()], data: s.v.clone() });
        }
        let meta = HashMap::from([
            ("step".to_string(), self.step.to_string()),
            ("optimizer".to_string(), if self.cfg.update_clipping { "StableAdamW" } else { "AdamW" }.to_string()),
            ("config".to_string(), serde_json::to_string(&self.cfg)?),
        ]);
        st::save(path, &tensors, meta)
    }

    /// Restores state written by [`Self::save`] for the same parameters.
    pub fn load(&mut self, path: &Path) -> Result<()> {
        let (mut tensors, meta) = st::load(path)?;
        self.step = meta.get("step").and_then(|s| s.parse().ok()).context("optimizer state has no step")?;
        for (name, s) in &mut self.state {
            for (suffix, dst) in [("exp_avg", &mut s.m), ("exp_avg_sq", &mut s.v)] {
                let t = tensors
                    .remove(&format!("{name}.{suffix}"))
                    .with_context(|| format!("{}: no `{name}.{suffix}`", path.display()))?;
                if t.data.len() != dst.len() {
                    bail!("{}: `{name}.{suffix}` has {} values, expected {}", path.display(), t.data.len(), dst.len());
                }
                *dst = t.data;
            }
            s.relive();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PyTorch's AdamW element by element (bias correction folded into the betas as above).
    fn reference(p: &mut [f32], m: &mut [f32], v: &mut [f32], g: &[f32], c: Coeffs) {
        for i in 0..p.len() {
            let gi = g[i] * c.grad_scale;
            m[i] += c.one_m_b1 * (gi - m[i]);
            v[i] = c.b2 * v[i] + c.one_m_b2 * (gi * gi);
            p[i] = p[i] * c.keep - c.eta * m[i] / (v[i].sqrt() + c.eps);
        }
    }

    #[test]
    fn fused_update_equals_dense_adamw_bit_for_bit_and_skips_untouched_blocks() {
        // 3 chunks' worth of a 256-wide embedding (the last one partial), gradients on a few
        // rows per step, as a batch's tokens give; one step with a zero gradient.
        let n = 2 * CHUNK + 3 * BLOCK + 17;
        let mut rng = 0x9e3779b97f4a7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            (rng >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        };
        let p0: Vec<f32> = (0..n).map(|_| next()).collect();
        let (mut p, mut m, mut v, mut live) =
            (p0.clone(), vec![0f32; n], vec![0f32; n], vec![false; n.div_ceil(BLOCK)]);
        let (mut pr, mut mr, mut vr) = (p0.clone(), vec![0f32; n], vec![0f32; n]);
        let rows_per_step: [&[usize]; 4] = [&[0, 5, 70, 130], &[5, 66], &[], &[131, 2]];
        for (step, rows) in rows_per_step.iter().enumerate() {
            let mut g = vec![0f32; n];
            for &r in *rows {
                for x in &mut g[r * BLOCK..((r + 1) * BLOCK).min(n)] {
                    *x = next();
                }
            }
            let c = Coeffs {
                grad_scale: 0.7,
                one_m_b1: 0.1 + 0.01 * step as f32,
                b2: 0.98,
                one_m_b2: 0.02,
                eps: 1e-6,
                eta: 1e-3,
                keep: 1.0 - 1e-5,
            };
            let sq = fused_update(&mut p, &mut m, &mut v, &mut live, &g, c);
            reference(&mut pr, &mut mr, &mut vr, &g, c);
            let expected_sq: f64 = g.iter().map(|&x| ((x * c.grad_scale) as f64).powi(2)).sum();
            assert!((sq - expected_sq).abs() <= 1e-9 * expected_sq.max(1.0), "step {step}: {sq} vs {expected_sq}");
            for (name, a, b) in [("p", &p, &pr), ("m", &m, &mr), ("v", &v, &vr)] {
                let bad = a.iter().zip(b.iter()).position(|(x, y)| x.to_bits() != y.to_bits());
                assert_eq!(bad, None, "step {step}: {name} differs from dense AdamW");
            }
        }
        let live_rows: Vec<usize> = live.iter().enumerate().filter(|(_, &l)| l).map(|(i, _)| i).collect();
        assert_eq!(live_rows, vec![0, 2, 5, 66, 70, 130, 131]);
        // Untouched rows only decayed: p0 * keep^4.
        let keep = 1.0f32 - 1e-5;
        assert_eq!(p[BLOCK + 3], p0[BLOCK + 3] * keep * keep * keep * keep);
        // Loading moments recomputes the flags from them.
        let mut state = State { m: m.clone(), v: v.clone(), live: vec![false; live.len()], decay: true };
        state.relive();
        assert_eq!(state.live, live);
    }
}
