//! Sentence embeddings from the encoder's token states: the sentence-transformers module chain
//! (pooling modes, `Dense`, `Normalize`) and the Matryoshka / L2 post-processing, computed exactly
//! as sentence-transformers 6 does (docs/formats.md §1). The file formats that declare a chain
//! live in [`crate::formats`]; this module only computes.

use crate::config::Activation;
use crate::error::{Error, Result};
use crate::model::nn::activate;
use candle_core::{Device, Tensor};

/// One way of reducing a sequence's token states to a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolingMode {
    /// The first pooled position (`[CLS]`, or the first token after an excluded prompt).
    Cls,
    /// Element-wise maximum.
    Max,
    /// Mean.
    Mean,
    /// Sum divided by √n.
    MeanSqrtLen,
    /// Mean weighted by 1-based position (prompt positions keep their weight slots).
    WeightedMean,
    /// The last position (`[SEP]` with ModernBERT's template).
    LastToken,
}

impl PoolingMode {
    /// Parses sentence-transformers' mode names (`cls`, `max`, `mean`, `mean_sqrt_len_tokens`,
    /// `weightedmean`, `lasttoken`).
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "cls" => PoolingMode::Cls,
            "max" => PoolingMode::Max,
            "mean" => PoolingMode::Mean,
            "mean_sqrt_len_tokens" => PoolingMode::MeanSqrtLen,
            "weightedmean" => PoolingMode::WeightedMean,
            "lasttoken" => PoolingMode::LastToken,
            _ => return None,
        })
    }

    /// The name [`PoolingMode::parse`] reads.
    pub fn name(self) -> &'static str {
        match self {
            PoolingMode::Cls => "cls",
            PoolingMode::Max => "max",
            PoolingMode::Mean => "mean",
            PoolingMode::MeanSqrtLen => "mean_sqrt_len_tokens",
            PoolingMode::WeightedMean => "weightedmean",
            PoolingMode::LastToken => "lasttoken",
        }
    }
}

/// A linear layer with an activation on vectors (`N_Dense` of sentence-transformers / PyLate).
#[derive(Debug, Clone)]
pub struct Dense {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Tensor>,
    /// `None` = identity.
    pub activation: Option<Activation>,
}

impl Dense {
    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `act(x Wᵀ + b)` for every row of `x`.
    pub fn forward_rows(&self, rows: &[Vec<f32>]) -> Result<Vec<Vec<f32>>> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let n = self.in_features();
        if let Some(bad) = rows.iter().find(|r| r.len() != n) {
            return Err(Error::Input(format!("Dense expects {n} features, got a vector of {}", bad.len())));
        }
        let x = Tensor::from_vec(rows.concat(), (rows.len(), n), &Device::Cpu)?;
        let mut y = x.matmul(&self.weight.t()?)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if let Some(act) = self.activation {
            y = activate(act, &y)?;
        }
        Ok(y.to_vec2::<f32>()?)
    }
}

/// One step of a sentence-transformers chain after the Transformer.
#[derive(Debug, Clone)]
pub enum Module {
    /// Concatenation of one vector per mode, in order; `include_prompt = false` leaves the
    /// prompt's tokens out of the pooled positions.
    Pooling {
        modes: Vec<PoolingMode>,
        include_prompt: bool,
    },
    Dense(Dense),
    /// L2 normalisation.
    Normalize,
}

/// Token states of one sequence, for pooling.
pub struct Tokens<'a> {
    /// `len × dim`, row-major.
    pub states: &'a [f32],
    pub dim: usize,
    /// Leading tokens excluded from pooling (`[CLS]` + prompt with `include_prompt = false`).
    pub prompt_len: usize,
}

/// Pools one sequence with `modes` (concatenated in order), as sentence-transformers 6.
pub fn pool(t: &Tokens, modes: &[PoolingMode], include_prompt: bool) -> Vec<f32> {
    let (d, len) = (t.dim, t.states.len() / t.dim.max(1));
    let row = |i: usize| &t.states[i * d..(i + 1) * d];
    // Pooled positions: all, or those after the prompt (an all-prompt input keeps nothing: ST
    // divides by max(count, 1e-9), giving zeros).
    let first = if include_prompt { 0 } else { t.prompt_len.min(len) };
    let n = len - first;
    let mut out = Vec::with_capacity(modes.len() * d);
    for &mode in modes {
        match mode {
            PoolingMode::Cls => out.extend_from_slice(if n > 0 { row(first) } else { row(0) }),
            PoolingMode::LastToken => out.extend_from_slice(row(len - 1)),
            PoolingMode::Max => {
                let mut m = vec![f32::NEG_INFINITY; d];
                for i in first..len {
                    for (a, &b) in m.iter_mut().zip(row(i)) {
                        *a = a.max(b);
                    }
                }
                out.extend(m);
            }
            PoolingMode::Mean | PoolingMode::MeanSqrtLen | PoolingMode::WeightedMean => {
                let mut sum = vec![0f32; d];
                let mut total = 0f32;
                for i in first..len {
                    // Weighted mean: position i (0-based) has weight i + 1, prompt or not.
                    let w = if mode == PoolingMode::WeightedMean { (i + 1) as f32 } else { 1.0 };
                    for (a, &b) in sum.iter_mut().zip(row(i)) {
                        *a += w * b;
                    }
                    total += w;
                }
                let denom = match mode {
                    PoolingMode::MeanSqrtLen => total.max(1e-9).sqrt(),
                    _ => total.max(1e-9),
                };
                out.extend(sum.into_iter().map(|s| s / denom));
            }
        }
    }
    out
}

/// Scales `v` to unit L2 norm (`x / max(‖x‖, 1e-12)`, as `F.normalize`).
pub fn l2_normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    for x in v {
        *x /= norm;
    }
}

/// Post-processing of a finished embedding: keep the first `truncate_dim` values (Matryoshka),
/// then L2-normalise if asked — sentence-transformers' `encode(truncate_dim, normalize_embeddings)`.
pub fn finish(mut v: Vec<f32>, truncate_dim: Option<usize>, normalize: bool) -> Vec<f32> {
    if let Some(k) = truncate_dim {
        v.truncate(k);
    }
    if normalize {
        l2_normalize(&mut v);
    }
    v
}

/// A sentence-transformers chain applied to pooled batches: the modules after the Transformer.
#[derive(Debug, Clone)]
pub struct Chain {
    pub modules: Vec<Module>,
}

impl Chain {
    /// Plain mean pooling, what sentence-transformers builds for a checkpoint without `modules.json`.
    pub fn mean() -> Self {
        Self { modules: vec![Module::Pooling { modes: vec![PoolingMode::Mean], include_prompt: true }] }
    }

    /// The pooling modules' modes replaced by `mode` (TEI's `--pooling`).
    pub fn with_pooling(mut self, mode: PoolingMode) -> Self {
        for m in &mut self.modules {
            if let Module::Pooling { modes, .. } = m {
                *modes = vec![mode];
            }
        }
        self
    }

    /// Whether the chain ends in L2 normalisation.
    pub fn normalizes(&self) -> bool {
        matches!(self.modules.last(), Some(Module::Normalize))
    }

    /// Whether a pooling module leaves the prompt out.
    pub fn excludes_prompt(&self) -> bool {
        self.modules.iter().any(|m| matches!(m, Module::Pooling { include_prompt: false, .. }))
    }

    /// The width of the vectors the chain produces from `hidden`-wide token states.
    pub fn dimension(&self, hidden: usize) -> usize {
        self.modules.iter().fold(hidden, |d, m| match m {
            Module::Pooling { modes, .. } => d * modes.len(),
            Module::Dense(dense) => dense.out_features(),
            Module::Normalize => d,
        })
    }

    /// Runs the chain on a batch of sequences' token states.
    pub fn forward(&self, sequences: &[Tokens]) -> Result<Vec<Vec<f32>>> {
        let mut pooled: Option<Vec<Vec<f32>>> = None;
        for m in &self.modules {
            let rows = match (m, pooled.take()) {
                (Module::Pooling { modes, include_prompt }, None) => {
                    sequences.iter().map(|t| pool(t, modes, *include_prompt)).collect()
                }
                (Module::Pooling { .. }, Some(_)) => {
                    return Err(Error::Input("a Pooling module after pooling is not supported".into()))
                }
                (_, None) => return Err(Error::Input("Dense/Normalize before a Pooling module".into())),
                (Module::Dense(dense), Some(rows)) => dense.forward_rows(&rows)?,
                (Module::Normalize, Some(mut rows)) => {
                    rows.iter_mut().for_each(|r| l2_normalize(r));
                    rows
                }
            };
            pooled = Some(rows);
        }
        pooled.ok_or_else(|| Error::Input("the embedding chain has no Pooling module".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pooling_modes_by_hand() {
        // 3 tokens × 2 dims; the first token is excluded as a prompt where asked.
        let states = [1.0, -1.0, 3.0, 0.0, 5.0, 2.0];
        let t = Tokens { states: &states, dim: 2, prompt_len: 1 };
        let all = |m| pool(&t, &[m], true);
        let after = |m| pool(&t, &[m], false);
        assert_eq!(all(PoolingMode::Cls), vec![1.0, -1.0]);
        assert_eq!(after(PoolingMode::Cls), vec![3.0, 0.0]);
        assert_eq!(all(PoolingMode::Max), vec![5.0, 2.0]);
        assert_eq!(all(PoolingMode::Mean), vec![3.0, 1.0 / 3.0]);
        assert_eq!(after(PoolingMode::Mean), vec![4.0, 1.0]);
        assert_eq!(all(PoolingMode::MeanSqrtLen), vec![9.0 / 3f32.sqrt(), 1.0 / 3f32.sqrt()]);
        // weights 1, 2, 3 (prompt excluded: 2, 3)
        assert_eq!(all(PoolingMode::WeightedMean), vec![(1.0 + 6.0 + 15.0) / 6.0, (-1.0 + 0.0 + 6.0) / 6.0]);
        assert_eq!(after(PoolingMode::WeightedMean), vec![(6.0 + 15.0) / 5.0, 6.0 / 5.0]);
        assert_eq!(all(PoolingMode::LastToken), vec![5.0, 2.0]);
        assert_eq!(pool(&t, &[PoolingMode::Cls, PoolingMode::Max], true), vec![1.0, -1.0, 5.0, 2.0]);
        assert_eq!(finish(vec![3.0, 4.0, 12.0], Some(2), true), vec![0.6, 0.8]);
    }
}
