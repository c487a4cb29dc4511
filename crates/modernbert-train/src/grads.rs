//! A step's gradients by parameter name: whole tensors, or the rows of the token embedding that
//! the step's tokens used.
//!
//! Fine-tuning looks the token embedding up row-sparsely
//! ([`TrainModel::with_row_sparse_embedding`]): a 50k × 256 embedding's dense gradient is 51 MB
//! of almost only zeros that the backward pass zeroes, and the norm and the optimizer read, on
//! every step. The row-sparse gradient holds the same values for the rows that were used; the
//! norm below and the optimizer ([`crate::optim`], which reads no zeros for the other rows) give
//! the same numbers, bit for bit, as the dense gradient would.

use crate::model::TrainModel;
use crate::ops::with_f32;
use anyhow::{bail, Result};
use candle_core::Tensor;
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

/// Values per partial sum of the gradient norm (partials added in order: thread-count independent).
pub(crate) const NORM_CHUNK: usize = 1 << 14;

/// Some rows of a `[rows, width]` parameter's gradient; every other row is zero.
#[derive(Debug, Clone, PartialEq)]
pub struct RowGradient {
    /// Row indices, increasing.
    pub ids: Vec<u32>,
    pub width: usize,
    /// `ids.len() × width` values, row `i` the gradient of row `ids[i]`.
    pub values: Vec<f32>,
}

impl RowGradient {
    /// Adds `other` in: rows of both are summed (`self + other`, as the dense sum is), the rest kept.
    fn add(&mut self, other: RowGradient) -> Result<()> {
        if self.width != other.width {
            bail!("row gradients of widths {} and {}", self.width, other.width);
        }
        if self.ids == other.ids {
            self.values.iter_mut().zip(&other.values).for_each(|(a, b)| *a += b);
            return Ok(());
        }
        let w = self.width;
        let (mut ids, mut values) = (Vec::new(), Vec::new());
        let (mut i, mut j) = (0, 0);
        while i < self.ids.len() || j < other.ids.len() {
            let (a, b) = (self.ids.get(i).copied().unwrap_or(u32::MAX), other.ids.get(j).copied().unwrap_or(u32::MAX));
            let (take_a, take_b) = (a <= b && i < self.ids.len(), b <= a && j < other.ids.len());
            ids.push(if take_a { a } else { b });
            match (take_a, take_b) {
                (true, true) => {
                    values.extend(self.values[i * w..][..w].iter().zip(&other.values[j * w..][..w]).map(|(x, y)| x + y))
                }
                (true, false) => values.extend_from_slice(&self.values[i * w..][..w]),
                _ => values.extend_from_slice(&other.values[j * w..][..w]),
            }
            i += take_a as usize;
            j += take_b as usize;
        }
        *self = RowGradient { ids, width: w, values };
        Ok(())
    }

    /// The whole gradient, `n` values (zeros for the other rows).
    pub fn to_flat(&self, n: usize) -> Vec<f32> {
        let mut flat = vec![0f32; n];
        for (r, &id) in self.ids.iter().enumerate() {
            flat[id as usize * self.width..][..self.width]
                .copy_from_slice(&self.values[r * self.width..][..self.width]);
        }
        flat
    }

    /// Σ g², summed as [`grad_norm`] sums a dense gradient: per [`NORM_CHUNK`] of the flat
    /// tensor, in order, then the chunks in order (zeros add nothing, so this is the same number).
    fn sum_sq(&self) -> f64 {
        let mut total = 0f64;
        let (mut chunk, mut part) = (usize::MAX, 0f64);
        for (r, &id) in self.ids.iter().enumerate() {
            for (j, &x) in self.values[r * self.width..][..self.width].iter().enumerate() {
                let c = (id as usize * self.width + j) / NORM_CHUNK;
                if c != chunk {
                    total += part;
                    (chunk, part) = (c, 0.0);
                }
                part += (x as f64) * (x as f64);
            }
        }
        total + part
    }
}

/// Gradients by parameter name, added up over a step's backward passes.
#[derive(Debug, Default)]
pub struct Gradients {
    dense: BTreeMap<String, Tensor>,
    rows: BTreeMap<String, RowGradient>,
}

impl Gradients {
    pub fn new() -> Self {
        Self::default()
    }

    /// The whole-tensor gradients.
    pub fn dense(&self) -> &BTreeMap<String, Tensor> {
        &self.dense
    }

    /// The row-sparse gradient of `name`, if it has one.
    pub fn rows(&self, name: &str) -> Option<&RowGradient> {
        self.rows.get(name)
    }

    /// Names of every parameter with a gradient, in order.
    pub fn names(&self) -> BTreeSet<&str> {
        self.dense.keys().chain(self.rows.keys()).map(String::as_str).collect()
    }

    /// Adds a whole-tensor gradient of `name`.
    pub fn add_dense(&mut self, name: &str, g: &Tensor) -> Result<()> {
        if self.rows.contains_key(name) {
            bail!("`{name}` has both a row-sparse and a whole gradient");
        }
        let sum = match self.dense.remove(name) {
            Some(a) => (a + g)?,
            None => g.clone(),
        };
        self.dense.insert(name.to_string(), sum);
        Ok(())
    }

    /// Adds the gradient `values` (`[ids.len(), width]`) of rows `ids` (increasing) of `name`.
    pub fn add_rows(&mut self, name: &str, ids: Vec<u32>, values: &Tensor) -> Result<()> {
        if self.dense.contains_key(name) {
            bail!("`{name}` has both a row-sparse and a whole gradient");
        }
        let (n, width) = values.dims2()?;
        if n != ids.len() || ids.windows(2).any(|w| w[0] >= w[1]) {
            bail!("row gradient of `{name}`: {n} rows for {} ids, or ids not increasing", ids.len());
        }
        let g = RowGradient { ids, width, values: values.flatten_all()?.to_vec1()? };
        match self.rows.get_mut(name) {
            Some(a) => a.add(g)?,
            None => {
                self.rows.insert(name.to_string(), g);
            }
        }
        Ok(())
    }

    /// Every gradient as a whole tensor of its parameter's shape (row-sparse ones scattered into
    /// zeros): for tests and checks, not for the training loop.
    pub fn to_dense(&self, model: &TrainModel) -> Result<BTreeMap<String, Tensor>> {
        let mut out = self.dense.clone();
        for (name, g) in &self.rows {
            let var = model.var(name)?;
            out.insert(name.clone(), Tensor::from_vec(g.to_flat(var.elem_count()), var.shape(), var.device())?);
        }
        Ok(out)
    }
}

impl From<BTreeMap<String, Tensor>> for Gradients {
    /// Whole-tensor gradients by name.
    fn from(dense: BTreeMap<String, Tensor>) -> Self {
        Gradients { dense, rows: BTreeMap::new() }
    }
}

/// Adds one backward pass's gradients of `model`'s variables into `grads` (by name), including
/// the rows of its row-sparse embedding lookups that this pass reached.
pub fn accumulate(grads: &mut Gradients, model: &TrainModel, store: &candle_core::backprop::GradStore) -> Result<()> {
    for (name, var) in model.vars() {
        if let Some(g) = store.get(var.as_tensor()) {
            grads.add_dense(name, g)?;
        }
    }
    for (ids, g) in model.claim_row_lookups(store) {
        grads.add_rows(crate::model::TOKEN_EMBEDDING, ids, &g)?;
    }
    Ok(())
}

/// The global L2 norm of `grads` (f64 sums over fixed chunks, added in order, tensors by name).
pub fn grad_norm(grads: &Gradients) -> Result<f64> {
    let mut sq = 0f64;
    for name in grads.names() {
        sq += match grads.rows(name) {
            Some(g) => g.sum_sq(),
            None => with_f32(&grads.dense[name], |g| {
                g.par_chunks(NORM_CHUNK)
                    .map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>())
                    .collect::<Vec<f64>>()
            })?
            .iter()
            .sum(),
        };
    }
    Ok(sq.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(ids: &[u32], width: usize, seed: f32) -> RowGradient {
        let values = (0..ids.len() * width).map(|i| seed + i as f32 * 0.37).collect();
        RowGradient { ids: ids.to_vec(), width, values }
    }

    fn dense(g: &RowGradient, n_rows: usize) -> Vec<f32> {
        g.to_flat(n_rows * g.width)
    }

    #[test]
    fn row_gradients_add_and_sum_like_dense_ones() {
        // 3-wide rows across chunk boundaries (NORM_CHUNK is not a multiple of 3).
        let n_rows = 50_001;
        let boundary = (NORM_CHUNK / 3) as u32;
        let mut a = rows(&[0, 7, boundary, boundary + 1, 40_000], 3, 0.5);
        let b = rows(&[7, boundary + 1, boundary + 2, 50_000], 3, -1.25);
        let want: Vec<f32> = dense(&a, n_rows).iter().zip(dense(&b, n_rows)).map(|(x, y)| x + y).collect();
        a.add(b).unwrap();
        assert_eq!(a.ids, vec![0, 7, boundary, boundary + 1, boundary + 2, 40_000, 50_000]);
        let got = dense(&a, n_rows);
        assert!(got.iter().zip(&want).all(|(x, y)| x.to_bits() == y.to_bits()));
        let dense_sq: f64 =
            want.chunks(NORM_CHUNK).map(|c| c.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>()).sum();
        assert_eq!(a.sum_sq().to_bits(), dense_sq.to_bits());
        assert!(a.add(rows(&[1], 4, 0.0)).is_err());
    }
}
