//! Reducing per-token states of an unpadded batch to one vector per sequence.

use crate::config::Pooling;
use crate::error::Result;
use candle_core::{Tensor, D};

/// `[tokens, hidden]` → `[sequences, hidden]` for the sequences `cu_seqlens` describes
/// (differentiable: training pools with it too).
pub fn pool(hidden: &Tensor, cu_seqlens: &[u32], pooling: Pooling) -> Result<Tensor> {
    let sequences = cu_seqlens.len().saturating_sub(1);
    Ok(match pooling {
        Pooling::Cls => {
            let first = Tensor::new(&cu_seqlens[..sequences], hidden.device())?;
            hidden.index_select(&first, 0)?
        }
        Pooling::Mean => {
            let rows = cu_seqlens
                .windows(2)
                .map(|w| hidden.narrow(0, w[0] as usize, (w[1] - w[0]) as usize)?.mean_keepdim(0))
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
