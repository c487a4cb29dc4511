//! Task heads on top of the backbone: masked LM, sequence and token classification.

use crate::batch::Batch;
use crate::config::{Activation, Config, Pooling};
use crate::error::{Error, Result};
use crate::model::nn::{activate, LayerNorm, Linear};
use crate::model::ModernBert;
use crate::pooling::pool;
use crate::weights::Weights;
use candle_core::Tensor;

/// `norm(act(dense(x)))`, shared by every task (`head.*` tensors).
pub struct PredictionHead {
    dense: Linear,
    act: Activation,
    norm: LayerNorm,
}

impl PredictionHead {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let d = cfg.hidden_size;
        Ok(Self {
            dense: Linear::load_head(w, "head.dense", d, d, cfg.classifier_bias)?,
            act: cfg.classifier_activation,
            norm: LayerNorm::load(w, "head.norm", d, cfg.norm_eps, cfg.norm_bias, false)?,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.norm.forward(&activate(self.act, &self.dense.forward(x)?)?)
    }
}

/// Masked-LM head: prediction head, then the decoder tied to the token embeddings, plus a bias.
pub struct MaskedLmHead {
    head: PredictionHead,
    decoder: Linear,
}

impl MaskedLmHead {
    fn load(w: &Weights, cfg: &Config, backbone: &ModernBert) -> Result<Self> {
        let (v, d) = (cfg.vocab_size, cfg.hidden_size);
        // Released checkpoints drop the tied `decoder.weight`; alias the embeddings then.
        let weight = match w.get_opt("decoder.weight", &[v, d])? {
            Some(weight) => weight,
            None if cfg.tie_word_embeddings => backbone.embeddings().weight().clone(),
            None => {
                return Err(Error::Weights("missing tensor `decoder.weight` and tie_word_embeddings is false".into()))
            }
        };
        let bias = if cfg.decoder_bias { Some(w.get("decoder.bias", &[v])?) } else { None };
        Ok(Self { head: PredictionHead::load(w, cfg)?, decoder: Linear::new(weight, bias) })
    }

    /// Vocabulary logits `[rows, vocab]` for the given hidden rows `[rows, hidden]`.
    pub fn forward(&self, hidden: &Tensor) -> Result<Tensor> {
        self.decoder.forward(&self.head.forward(hidden)?)
    }
}

/// Classification head: (pooling) → prediction head → `classifier` linear layer with bias.
pub struct ClassifierHead {
    head: PredictionHead,
    classifier: Linear,
    pooling: Pooling,
}

impl ClassifierHead {
    fn load(w: &Weights, cfg: &Config) -> Result<Self> {
        let n = cfg.num_labels;
        Ok(Self {
            head: PredictionHead::load(w, cfg)?,
            classifier: Linear::load_head(w, "classifier", n, cfg.hidden_size, true)?,
            pooling: cfg.classifier_pooling,
        })
    }

    /// Sequence logits `[sequences, num_labels]` from the backbone output.
    pub fn sequence_logits(&self, hidden: &Tensor, batch: &Batch) -> Result<Tensor> {
        self.classifier.forward(&self.head.forward(&pool(hidden, batch, self.pooling)?)?)
    }

    /// Token logits `[tokens, num_labels]` from the backbone output.
    pub fn token_logits(&self, hidden: &Tensor) -> Result<Tensor> {
        self.classifier.forward(&self.head.forward(hidden)?)
    }
}

/// The head a checkpoint carries, chosen from `architectures` (or from its tensors).
pub enum Head {
    /// `ModernBertModel`: embeddings only.
    None,
    MaskedLm(MaskedLmHead),
    SequenceClassification(ClassifierHead),
    TokenClassification(ClassifierHead),
}

impl Head {
    /// Loads the head named by `config.architecture`.
    pub fn load(w: &Weights, cfg: &Config, backbone: &ModernBert) -> Result<Self> {
        let arch = cfg.architecture.as_deref().unwrap_or_else(|| {
            if w.contains("classifier.weight") {
                "ModernBertForSequenceClassification"
            } else if w.contains("head.dense.weight") {
                "ModernBertForMaskedLM"
            } else {
                "ModernBertModel"
            }
        });
        Ok(match arch {
            "ModernBertForMaskedLM" => Head::MaskedLm(MaskedLmHead::load(w, cfg, backbone)?),
            "ModernBertForSequenceClassification" => Head::SequenceClassification(ClassifierHead::load(w, cfg)?),
            "ModernBertForTokenClassification" => Head::TokenClassification(ClassifierHead::load(w, cfg)?),
            "ModernBertModel" => Head::None,
            other => {
                return Err(Error::config(
                    "architectures",
                    format!(
                        "{other:?} is not supported (ModernBertModel, ModernBertForMaskedLM, \
                         ModernBertForSequenceClassification, ModernBertForTokenClassification)"
                    ),
                ))
            }
        })
    }

    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Head::None => "ModernBertModel",
            Head::MaskedLm(_) => "ModernBertForMaskedLM",
            Head::SequenceClassification(_) => "ModernBertForSequenceClassification",
            Head::TokenClassification(_) => "ModernBertForTokenClassification",
        }
    }
}
