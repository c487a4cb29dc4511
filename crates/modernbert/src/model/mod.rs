//! The ModernBERT encoder (spec §3): embeddings + norm, pre-norm layers, final norm.
//!
//! Every forward pass runs on an unpadded [`Batch`]: hidden states are `[tokens, hidden]`
//! with sequences concatenated, so no FLOP is spent on padding.

mod attention;
mod mlp;
pub mod nn;

pub use attention::Attention;
pub use mlp::Mlp;
use nn::LayerNorm;
pub use nn::Precision;

use crate::batch::Batch;
use crate::config::{Config, LayerType};
use crate::error::{Error, Result};
use crate::params::Params;
use candle_core::Tensor;
use modernbert_kernels::RopeTable;
use std::sync::Arc;

/// Token embeddings followed by LayerNorm (no position embeddings: RoPE lives in attention).
pub struct Embeddings {
    tok_embeddings: Tensor,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(w: &dyn Params, cfg: &Config) -> Result<Self> {
        Ok(Self {
            tok_embeddings: w.tensor("model.embeddings.tok_embeddings.weight", &[cfg.vocab_size, cfg.hidden_size])?,
            norm: LayerNorm::load(w, "model.embeddings.norm", cfg.hidden_size, cfg.norm_eps, cfg.norm_bias)?,
        })
    }

    fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        self.norm.forward(&self.tok_embeddings.index_select(input_ids, 0)?)
    }

    /// The `[vocab, hidden]` embedding matrix (tied to the MLM decoder).
    pub fn weight(&self) -> &Tensor {
        &self.tok_embeddings
    }
}

/// One pre-norm encoder layer. Layer 0 has no `attn_norm`: the embedding output is already normalised.
pub struct EncoderLayer {
    attn_norm: Option<LayerNorm>,
    attn: Attention,
    mlp_norm: LayerNorm,
    mlp: Mlp,
}

impl EncoderLayer {
    fn load(w: &dyn Params, cfg: &Config, index: usize, rope: Arc<RopeTable>, precision: Precision) -> Result<Self> {
        let d = cfg.hidden_size;
        let attn_norm_name = format!("model.layers.{index}.attn_norm");
        // HF checkpoints never store layers.0.attn_norm; accept one only where it exists.
        let attn_norm = if index == 0 && !w.has(&format!("{attn_norm_name}.weight")) {
            None
        } else {
            Some(LayerNorm::load(w, &attn_norm_name, d, cfg.norm_eps, cfg.norm_bias)?)
        };
        Ok(Self {
            attn_norm,
            attn: Attention::load(w, cfg, index, rope, precision)?,
            mlp_norm: LayerNorm::load(w, &format!("model.layers.{index}.mlp_norm"), d, cfg.norm_eps, cfg.norm_bias)?,
            mlp: Mlp::load(w, cfg, index, precision)?,
        })
    }

    fn forward(&self, h: &Tensor, batch: &Batch) -> Result<Tensor> {
        let a = match &self.attn_norm {
            Some(norm) => norm.forward(h)?,
            None => h.clone(),
        };
        let h = (h + self.attn.forward(&a, batch)?)?;
        let m = self.mlp.forward(&self.mlp_norm.forward(&h)?)?;
        Ok((h + m)?)
    }
}

/// The ModernBERT backbone: `[tokens]` ids → `[tokens, hidden]` final-normed states.
pub struct ModernBert {
    config: Config,
    embeddings: Embeddings,
    layers: Vec<EncoderLayer>,
    final_norm: LayerNorm,
}

impl ModernBert {
    /// Loads the backbone tensors (with or without the `model.` prefix); the encoder's linear
    /// layers are packed for `precision`.
    pub fn load(w: &dyn Params, config: &Config, precision: Precision) -> Result<Self> {
        crate::threads::keep_candle_on_one_thread();
        let head_dim = config.head_dim();
        let max_pos = config.max_position_embeddings;
        let global = Arc::new(RopeTable::new(config.global_rope_theta as f32, head_dim, max_pos));
        let local = if config.local_rope_theta == config.global_rope_theta {
            global.clone()
        } else {
            Arc::new(RopeTable::new(config.local_rope_theta as f32, head_dim, max_pos))
        };
        let extra = format!("model.layers.{}.attn.Wqkv.weight", config.num_hidden_layers);
        if w.has(&extra) {
            return Err(Error::config(
                "num_hidden_layers",
                format!("{} layers, but the weights have more (they hold `{extra}`)", config.num_hidden_layers),
            ));
        }
        let layers = (0..config.num_hidden_layers)
            .map(|i| {
                let rope = match config.layer_types[i] {
                    LayerType::Global => global.clone(),
                    LayerType::Local => local.clone(),
                };
                EncoderLayer::load(w, config, i, rope, precision)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            config: config.clone(),
            embeddings: Embeddings::load(w, config)?,
            layers,
            final_norm: LayerNorm::load(w, "model.final_norm", config.hidden_size, config.norm_eps, config.norm_bias)?,
        })
    }

    /// The configuration the model was loaded with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The token-embedding module.
    pub fn embeddings(&self) -> &Embeddings {
        &self.embeddings
    }

    /// Runs the encoder on an unpadded batch; returns `[tokens, hidden]` after `final_norm`.
    pub fn forward(&self, batch: &Batch) -> Result<Tensor> {
        self.check(batch)?;
        let device = self.embeddings.tok_embeddings.device();
        let ids = Tensor::from_slice(&batch.input_ids, batch.num_tokens(), device)?;
        let out = modernbert_kernels::with_pool_awake(|| {
            let mut h = self.embeddings.forward(&ids)?;
            for layer in &self.layers {
                h = layer.forward(&h, batch)?;
            }
            self.final_norm.forward(&h)
        })?;
        if !crate::ops::with_f32(&out, |d| d.iter().all(|x| x.is_finite()))? {
            return Err(Error::Input("the model produced NaN or infinite values for this input".into()));
        }
        Ok(out)
    }

    fn check(&self, batch: &Batch) -> Result<()> {
        let vocab = self.config.vocab_size as u32;
        if let Some(bad) = batch.input_ids.iter().find(|&&id| id >= vocab) {
            return Err(Error::Input(format!("token id {bad} is outside the vocabulary of {vocab}")));
        }
        let max = self.config.max_position_embeddings;
        if batch.max_len() > max {
            return Err(Error::Input(format!(
                "a sequence has {} tokens, more than the model's maximum of {max}",
                batch.max_len()
            )));
        }
        Ok(())
    }
}
