//! Reducing per-token states of an unpadded batch to one vector per sequence.

use crate::batch::Batch;
use crate::config::Pooling;
use crate::error::Result;
use candle_core::{Tensor, D};

/// `[tokens, hidden]` → `[sequences, hidden]`.
pub fn pool(hidden: &Tensor, batch: &Batch, pooling: Pooling) -> Result<Tensor> {
    Ok(match pooling {
        Pooling::Cls => {
            let first = Tensor::new(batch.first_tokens().as_slice(), hidden.device())?;
            hidden.index_select(&first, 0)?
        }
        Pooling::Mean => {
            let rows = (0..batch.num_sequences())
                .map(|b| {
                    let r = batch.range(b);
                    hidden.narrow(0, r.start, r.len())?.mean_keepdim(0)
                })
                .collect::<candle_core::Result<Vec<_>>>()?;
            Tensor::cat(&rows, 0)?
        }
    })
}

/// Scales every row to unit L2 norm (rows of zeros stay zero).
pub fn l2_normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12f32, f32::INFINITY)?;
    Ok(x.broadcast_div(&norm)?)
}
