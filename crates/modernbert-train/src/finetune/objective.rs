//! The fine-tuning losses (HF's, per `problem_type`) on an unpadded micro-batch, written as
//! *sums* over their units so that micro-batches of one step add up to the step's mean:
//! cross-entropy over sequences or labelled tokens, binary cross-entropy over every
//! (sequence, label) pair, squared error over sequences.

use super::encode::Example;
use super::labels::Target;
use crate::losses::cross_entropy_sum;
use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

/// A micro-batch's summed loss and how many units (sequences, tokens or elements) it sums over.
pub struct LossSum {
    /// Scalar with a gradient graph.
    pub sum: Tensor,
    pub units: usize,
}

/// Binary cross-entropy with logits, summed: `max(x, 0) − x·y + log(1 + e^(−|x|))`.
pub fn bce_with_logits_sum(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let soft = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(((logits.relu()? - (logits * targets)?)? + soft)?.sum_all()?)
}

/// The units a batch of examples is averaged over (for the step's total).
pub fn units(examples: &[&Example]) -> usize {
    examples
        .iter()
        .map(|e| match &e.target {
            Target::Class(_) | Target::Value(_) => 1,
            Target::MultiHot(h) => h.len(),
            Target::Tokens(t) => t.iter().filter(|&&l| l >= 0).count(),
        })
        .sum()
}

/// The loss of `logits` (`[sequences, labels]`, or `[tokens, labels]` for token targets).
pub fn loss_sum(logits: &Tensor, examples: &[&Example]) -> Result<LossSum> {
    let dev = &Device::Cpu;
    let units = units(examples);
    let sum = match &examples[0].target {
        Target::Class(_) => {
            let ids: Vec<u32> = examples
                .iter()
                .map(|e| match e.target {
                    Target::Class(c) => Ok(c),
                    _ => bail!("mixed targets in one batch"),
                })
                .collect::<Result<_>>()?;
            cross_entropy_sum(logits, &ids)?
        }
        Target::MultiHot(_) => {
            let hot: Vec<f32> = examples
                .iter()
                .flat_map(|e| match &e.target {
                    Target::MultiHot(h) => h.clone(),
                    _ => Vec::new(),
                })
                .collect();
            bce_with_logits_sum(logits, &Tensor::from_vec(hot, logits.shape(), dev)?)?
        }
        Target::Value(_) => {
            let v: Vec<f32> = examples.iter().map(|e| if let Target::Value(v) = e.target { v } else { 0.0 }).collect();
            let n = v.len();
            (logits.reshape(n)? - Tensor::from_vec(v, n, dev)?)?.sqr()?.sum_all()?
        }
        Target::Tokens(_) => {
            let (rows, tags): (Vec<u32>, Vec<u32>) = examples
                .iter()
                .flat_map(|e| match &e.target {
                    Target::Tokens(t) => t.clone(),
                    _ => Vec::new(),
                })
                .enumerate()
                .filter(|(_, l)| *l >= 0)
                .map(|(i, l)| (i as u32, l as u32))
                .unzip();
            if rows.is_empty() {
                Tensor::zeros((), candle_core::DType::F32, dev)?
            } else {
                let n = rows.len();
                cross_entropy_sum(&logits.index_select(&Tensor::from_vec(rows, n, dev)?, 0)?, &tags)?
            }
        }
    };
    Ok(LossSum { sum, units })
}
