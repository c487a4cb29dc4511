//! The GeGLU feed-forward block: `Wo(act(u) ⊙ g)` with `[u | g] = Wi(x)`.

use super::nn::{activate, Linear, Precision};
use crate::config::{Activation, Config};
use crate::error::Result;
use crate::ops::{self, GegluOp};
use crate::params::Params;
use candle_core::{Tensor, D};

/// Gated MLP of one layer.
pub struct Mlp {
    wi: Linear,
    wo: Linear,
    act: Activation,
    inter: usize,
}

impl Mlp {
    /// Loads `model.layers.{index}.mlp`.
    pub fn load(w: &dyn Params, cfg: &Config, index: usize, precision: Precision) -> Result<Self> {
        let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
        let name = format!("model.layers.{index}.mlp");
        Ok(Self {
            wi: Linear::load(w, &format!("{name}.Wi"), (2 * i, d), cfg.mlp_bias, precision)?,
            wo: Linear::load(w, &format!("{name}.Wo"), (d, i), cfg.mlp_bias, precision)?,
            act: cfg.hidden_activation,
            inter: i,
        })
    }

    /// `[tokens, hidden]` → `[tokens, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let h = self.wi.forward(x)?;
        let gated = match self.act {
            Activation::Gelu => ops::apply(&h, &GegluOp)?,
            act => {
                let u = h.narrow(D::Minus1, 0, self.inter)?;
                let g = h.narrow(D::Minus1, self.inter, self.inter)?;
                (activate(act, &u)? * g)?
            }
        };
        self.wo.forward(&gated)
    }
}
