//! Task heads on top of the backbone: masked LM, sequence and token classification.
//!
//! Written once for inference and training: every head takes its tensors from a [`Params`]
//! provider (checkpoint weights, or trainable variables) and uses only differentiable ops, so the
//! trainer runs exactly the code that inference runs.

use crate::config::{Activation, Config, Pooling};
use crate::error::{Error, Result};
use crate::model::nn::{activate, LayerNorm, Linear, Precision};
use crate::params::{HeadKind, Params};
use crate::pooling::pool;
use candle_core::Tensor;

/// `norm(act(dense(x)))`, shared by every task (`head.*` tensors).
pub struct PredictionHead {
    dense: Linear,
    act: Activation,
    norm: LayerNorm,
}

impl PredictionHead {
    /// Loads `head.dense` and `head.norm`.
    pub fn load(p: &dyn Params, cfg: &Config) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            dense: Linear::load(p, "head.dense", (d, d), cfg.classifier_bias, Precision::F32)?,
            act: cfg.classifier_activation,
            norm: LayerNorm::load(p, "head.norm", d, cfg.norm_eps, cfg.norm_bias)?,
        })
    }

    /// `[rows, hidden]` → `[rows, hidden]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&activate(self.act, &self.dense.forward(x)?)?)
    }
}

/// Masked-LM head: prediction head, then the decoder (tied to the token embeddings unless the
/// checkpoint stores `decoder.weight`), plus a bias.
pub struct MaskedLmHead {
    head: PredictionHead,
    decoder: Linear,
    bias: Option<Tensor>,
}

impl MaskedLmHead {
    /// Loads the head; `tied` is the `[vocab, hidden]` token embedding the decoder shares.
    pub fn load(p: &dyn Params, cfg: &Config, tied: &Tensor) -> Result<Self> {
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        // Released checkpoints drop the tied `decoder.weight`; alias the embeddings then.
        let weight = if p.has("decoder.weight") {
            p.tensor("decoder.weight", &[v, d])?
        } else if cfg.tie_word_embeddings {
            tied.clone()
        } else {
            return Err(Error::Weights("missing tensor `decoder.weight` and tie_word_embeddings is false".into()));
        };
        let bias = if cfg.decoder_bias { Some(p.tensor("decoder.bias", &[v])?) } else { None };
        Ok(Self { head: PredictionHead::load(p, cfg)?, decoder: Linear::new(weight, None), bias })
    }

    /// Vocabulary logits `[rows, vocab]` for the given hidden rows `[rows, hidden]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        let y = self.logits_without_bias(hidden)?;
        Ok(match &self.bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        })
    }

    /// [`MaskedLmHead::forward`] before the decoder bias (a fused loss adds it itself).
    pub fn logits_without_bias(&self, hidden: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.head.forward(hidden)?)
    }

    /// The decoder bias `[vocab]`, if the config has one.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }
}

/// Classification head: (pooling) → prediction head → (dropout, in training) → `classifier`.
pub struct ClassifierHead {
    head: PredictionHead,
    classifier: Linear,
    pooling: Pooling,
}

impl ClassifierHead {
    /// Loads `head.*` and `classifier.*` (`num_labels` outputs, with bias).
    pub fn load(p: &dyn Params, cfg: &Config) -> Result<Self> {
        let (n, d) = (cfg.num_labels, cfg.hidden_size);
        Ok(Self {
            head: PredictionHead::load(p, cfg)?,
            classifier: Linear::load(p, "classifier", (n, d), true, Precision::F32)?,
            pooling: cfg.classifier_pooling,
        })
    }

    /// The classifier's input for sequences `[sequences, hidden]`: pooled, then the prediction head.
    pub fn sequence_features(&self, hidden: &Tensor, cu_seqlens: &[u32]) -> Result<Tensor> {
        self.head.forward(&pool(hidden, cu_seqlens, self.pooling)?)
    }

    /// The classifier's input for every token `[tokens, hidden]`.
    pub fn token_features(&self, hidden: &Tensor) -> Result<Tensor> {
        self.head.forward(hidden)
    }

    /// Logits `[rows, num_labels]` from features.
    pub fn classify(&self, features: &Tensor) -> Result<Tensor> {
        self.classifier.forward(features)
    }

    /// Sequence logits `[sequences, num_labels]` from the backbone output.
    pub fn sequence_logits(&self, hidden: &Tensor, cu_seqlens: &[u32]) -> Result<Tensor> {
        self.classify(&self.sequence_features(hidden, cu_seqlens)?)
    }

    /// Token logits `[tokens, num_labels]` from the backbone output.
    pub fn token_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.classify(&self.token_features(hidden)?)
    }
}

/// The head a checkpoint carries.
pub enum Head {
    /// `ModernBertModel`: embeddings only.
    None,
    MaskedLm(MaskedLmHead),
    SequenceClassification(ClassifierHead),
    TokenClassification(ClassifierHead),
}

impl Head {
    /// Loads the head of `kind`; `tied` is the token embedding (the MLM decoder's weight).
    pub fn load(p: &dyn Params, cfg: &Config, kind: HeadKind, tied: &Tensor) -> Result<Self> {
        Ok(match kind {
            HeadKind::None => Head::None,
            HeadKind::MaskedLm => Head::MaskedLm(MaskedLmHead::load(p, cfg, tied)?),
            HeadKind::SequenceClassification => Head::SequenceClassification(ClassifierHead::load(p, cfg)?),
            HeadKind::TokenClassification => Head::TokenClassification(ClassifierHead::load(p, cfg)?),
        })
    }

    /// Which head this is.
    pub fn kind(&self) -> HeadKind {
        match self {
            Head::None => HeadKind::None,
            Head::MaskedLm(_) => HeadKind::MaskedLm,
            Head::SequenceClassification(_) => HeadKind::SequenceClassification,
            Head::TokenClassification(_) => HeadKind::TokenClassification,
        }
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        self.kind().architecture()
    }
}
