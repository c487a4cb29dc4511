//! Reducing per-token states of an unpadded batch to one vector per sequence.

use crate::config::Pooling;
use crate::error::Result;
use candle_core::{DType, Tensor, D};

/// `[tokens, hidden]` → `[sequences, hidden]` for the sequences `cu_seqlens` describes
/// (differentiable: training pools with it too).
pub fn pool(hidden: &Tensor, cu_seqlens: &[u32], pooling: Pooling) -> Result<Tensor> {
    let sequences = cu_seqlens.len().saturating_sub(1);
    Ok(match pooling {
        Pooling::Cls => {
            let first = Tensor::new(&cu_seqlens[..sequences], hidden.device())?;
            hidden.index_select(&first, 0)?
        }
        // The fused op where it can run (f32 on the CPU); candle's primitives elsewhere.
        Pooling::Mean if hidden.dtype() == DType::F32 && hidden.device().is_cpu() => {
            crate::ops::mean_pool(hidden, cu_seqlens)?
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

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    /// The fused mean (f32, CPU) against candle's primitives (the same math in f64): values and
    /// the gradient of a weighted sum, over sequences of different lengths.
    #[test]
    fn fused_mean_pooling_matches_candle_primitives() -> Result<()> {
        let (cu, h) = ([0u32, 1, 5, 12, 13], 6);
        let data: Vec<f32> = (0..13 * h).map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0).collect();
        let x = Var::from_vec(data, (13, h), &Device::Cpu)?;
        let weights = Tensor::from_vec((0..4 * h).map(|i| i as f32 - 3.0).collect::<Vec<f32>>(), (4, h), &Device::Cpu)?;
        let fused = pool(x.as_tensor(), &cu, Pooling::Mean)?;
        let grad = (&fused * &weights)?.sum_all()?.backward()?.get(x.as_tensor()).unwrap().clone();
        let x64 = Var::from_tensor(&x.as_tensor().to_dtype(DType::F64)?)?;
        let composed = pool(x64.as_tensor(), &cu, Pooling::Mean)?;
        let grad64 =
            (&composed * weights.to_dtype(DType::F64)?)?.sum_all()?.backward()?.get(x64.as_tensor()).unwrap().clone();
        let diff = |a: &Tensor, b: &Tensor| -> Result<f64> {
            Ok((a.to_dtype(DType::F64)? - b)?.abs()?.max_all()?.to_scalar::<f64>()?)
        };
        assert!(diff(&fused, &composed)? < 1e-5, "values differ by {}", diff(&fused, &composed)?);
        assert!(diff(&grad, &grad64)? < 1e-6, "gradients differ by {}", diff(&grad, &grad64)?);
        // The gradient of sequence 2 (7 tokens) is its weight row / 7 on each of its tokens.
        let row = grad.get(5)?.to_vec1::<f32>()?;
        let want: Vec<f32> = (0..h).map(|j| (2 * h + j) as f32 - 3.0).map(|w| w / 7.0).collect();
        assert!(row.iter().zip(&want).all(|(a, b)| (a - b).abs() < 1e-6), "{row:?} vs {want:?}");
        // Offsets that do not split the tokens are an error, not a panic.
        assert!(pool(x.as_tensor(), &[0, 3, 20], Pooling::Mean).is_err());
        Ok(())
    }
}
