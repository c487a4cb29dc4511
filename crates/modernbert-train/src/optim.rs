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

use crate::grads::{Gradients, RowGradient, NORM_CHUNK};
use crate::model::TrainModel;
use crate::ops::{update_in_place, with_f32};
use crate::st::{self, HostTensor};
use anyhow::{bail, Context, Result};
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
    cfg.decay_embeddings || name != crate::model::TOKEN_EMBEDDING
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
const CHUNK: usize = NORM_CHUNK;

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

/// A parameter's gradient as the update reads it.
#[derive(Clone, Copy)]
enum Grad<'a> {
    Dense(&'a [f32]),
    /// Row-sparse: the update never reads (or makes) the zeros of the other rows.
    Rows(&'a RowGradient),
    Zero,
}

/// Zeros standing for the gradient of a chunk no row-sparse gradient reaches.
static ZERO_CHUNK: [f32; CHUNK] = [0.0; CHUNK];

impl Grad<'_> {
    /// The gradient of values `start .. start + len` (`len ≤ CHUNK`).
    fn chunk(&self, start: usize, len: usize) -> std::borrow::Cow<'_, [f32]> {
        use std::borrow::Cow;
        match *self {
            Grad::Dense(g) => Cow::Borrowed(&g[start..start + len]),
            Grad::Zero => Cow::Borrowed(&ZERO_CHUNK[..len]),
            Grad::Rows(g) => {
                let w = g.width;
                let first = g.ids.partition_point(|&id| (id as usize + 1) * w <= start);
                let last = g.ids.partition_point(|&id| (id as usize) * w < start + len);
                if first == last {
                    return Cow::Borrowed(&ZERO_CHUNK[..len]);
                }
                let mut out = vec![0f32; len];
                for r in first..last {
                    let row_start = g.ids[r] as usize * w;
                    let (lo, hi) = (row_start.max(start), (row_start + w).min(start + len));
                    out[lo - start..hi - start].copy_from_slice(&g.values[r * w + lo - row_start..][..hi - lo]);
                }
                Cow::Owned(out)
            }
        }
    }
}

/// Plain AdamW in one pass over `p`, `m`, `v` and the gradient `g`, skipping the moments of
/// blocks that are not live and get a zero gradient; in parallel over chunks.
fn fused_update(p: &mut [f32], m: &mut [f32], v: &mut [f32], live: &mut [bool], g: Grad, c: Coeffs) {
    p.par_chunks_mut(CHUNK)
        .zip(m.par_chunks_mut(CHUNK))
        .zip(v.par_chunks_mut(CHUNK))
        .zip(live.par_chunks_mut(CHUNK / BLOCK))
        .enumerate()
        .for_each(|(i, (((p, m), v), live))| {
            let len = p.len();
            update_chunk(p, m, v, live, &g.chunk(i * CHUNK, len), c)
        });
}

/// [`fused_update`] of one chunk, in AVX-512 where the CPU has it (the same IEEE operations —
/// no fused multiply-adds — so the same results as the portable build, bit for bit).
fn update_chunk(p: &mut [f32], m: &mut [f32], v: &mut [f32], live: &mut [bool], g: &[f32], c: Coeffs) {
    #[inline(always)]
    fn body(p: &mut [f32], m: &mut [f32], v: &mut [f32], live: &mut [bool], g: &[f32], c: Coeffs) {
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
                c.moments(g[i], &mut m[i], &mut v[i]);
                p[i] = c.weight(p[i], m[i], v[i]);
            }
        }
    }
    #[cfg(target_arch = "x86_64")]
    if modernbert_kernels::Isa::active() == modernbert_kernels::Isa::Avx512 {
        #[target_feature(enable = "avx512f")]
        unsafe fn wide(p: &mut [f32], m: &mut [f32], v: &mut [f32], live: &mut [bool], g: &[f32], c: Coeffs) {
            body(p, m, v, live, g, c)
        }
        // SAFETY: the CPU has AVX-512F (Isa::active checked it).
        return unsafe { wide(p, m, v, live, g, c) };
    }
    body(p, m, v, live, g, c)
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, Default)]
pub struct StepStats {
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
        grads: &Gradients,
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
        grads: &Gradients,
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
        for (name, var) in model.vars() {
            let s = self.state.get_mut(name).with_context(|| format!("no optimizer state for `{name}`"))?;
            let n = s.m.len();
            let decay = s.decay;
            let keep =
                |eta: f64| if weight_decay > 0.0 && decay { (1.0 - eta / max_lr * weight_decay) as f32 } else { 1.0 };
            let c = Coeffs { grad_scale, one_m_b1, b2: b2f, one_m_b2, eps, eta: lr as f32, keep: keep(lr) };
            let rows = grads.rows(name);
            if let Some(g) = rows {
                if g.width == 0 || n % g.width != 0 || g.ids.last().is_some_and(|&r| (r as usize + 1) * g.width > n) {
                    bail!("row gradient of `{name}` (width {}) does not fit its {n} values", g.width);
                }
            }
            let grad = match grads.dense().get(name) {
                Some(g) if g.elem_count() == n => Some(g.flatten_all()?),
                Some(g) => bail!("gradient of `{name}` has {} values, expected {n}", g.elem_count()),
                None => None,
            };
            // The gradient's values; a parameter without one has a zero gradient.
            let with_grad = |f: &mut dyn FnMut(&[f32]) -> Result<()>| -> Result<()> {
                match (&grad, rows) {
                    (Some(g), _) => with_f32(g, |g| f(g))?,
                    (None, Some(g)) => f(&g.to_flat(n)),
                    (None, None) => f(&vec![0f32; n]),
                }
            };
            if !self.cfg.update_clipping {
                let State { m, v, live, .. } = s;
                let mut run = |g: Grad| update_in_place(var.as_tensor(), |p| fused_update(p, m, v, live, g, c));
                match (&grad, rows) {
                    (Some(g), _) => with_f32(g, |g| run(Grad::Dense(g)))??,
                    (None, Some(rows)) => run(Grad::Rows(rows))?,
                    (None, None) => run(Grad::Zero)?,
                }
                continue;
            }
            // Moments, and per chunk Σ g²/max(v, ε²) (update clipping).
            let mut partial: Vec<f64> = Vec::new();
            let (m, v) = (&mut s.m, &mut s.v);
            with_grad(&mut |g| {
                partial = m
                    .par_chunks_mut(CHUNK)
                    .zip(v.par_chunks_mut(CHUNK))
                    .zip(g.par_chunks(CHUNK))
                    .map(|((m, v), g)| {
                        let mut ratio = 0f64;
                        for ((m, v), &gi) in m.iter_mut().zip(v.iter_mut()).zip(g) {
                            let gi = c.moments(gi, m, v);
                            ratio += (gi * gi / v.max(eps2)) as f64;
                        }
                        ratio
                    })
                    .collect();
                Ok(())
            })?;
            let ratio: f64 = partial.iter().sum();
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
            fused_update(&mut p, &mut m, &mut v, &mut live, Grad::Dense(&g), c);
            reference(&mut pr, &mut mr, &mut vr, &g, c);
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

    #[test]
    fn a_row_sparse_gradient_updates_exactly_as_its_dense_form() {
        // A 3-wide parameter (rows cross chunk and block boundaries), gradients on a few rows.
        let (w, rows) = (3, CHUNK / 3 + 200);
        let n = w * rows;
        let p0: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
        let (mut p, mut m, mut v, mut live) =
            (p0.clone(), vec![0f32; n], vec![0f32; n], vec![false; n.div_ceil(BLOCK)]);
        let (mut pd, mut md, mut vd, mut lived) = (p0, vec![0f32; n], vec![0f32; n], vec![false; n.div_ceil(BLOCK)]);
        let steps: [&[u32]; 4] = [&[1, 85, (CHUNK / 3) as u32], &[], &[0, 5461, 5462, (rows - 1) as u32], &[85]];
        for (t, ids) in steps.iter().enumerate() {
            let c =
                Coeffs { grad_scale: 0.9, one_m_b1: 0.1, b2: 0.98, one_m_b2: 0.02, eps: 1e-6, eta: 1e-3, keep: 0.999 };
            let values = (0..ids.len() * w).map(|i| ((i + t) as f32 * 1.3).cos()).collect();
            let g = RowGradient { ids: ids.to_vec(), width: w, values };
            fused_update(&mut p, &mut m, &mut v, &mut live, Grad::Rows(&g), c);
            fused_update(&mut pd, &mut md, &mut vd, &mut lived, Grad::Dense(&g.to_flat(n)), c);
            for (name, x, y) in [("p", &p, &pd), ("m", &m, &md), ("v", &v, &vd)] {
                assert!(x.iter().zip(y.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "step {t}: {name}");
            }
            assert_eq!(live, lived);
        }
    }
}
