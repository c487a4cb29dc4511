//! ModernBERT inference in Rust: load a Hugging Face checkpoint directory and run the encoder
//! on unpadded batches, with the same numbers as HF transformers.
//!
//! ```no_run
//! let model = modernbert::Model::load(std::path::Path::new("path/to/ModernBERT-base"))?;
//! let out = model.fill_mask(&["The capital of France is [MASK]."], 5, None)?;
//! # Ok::<(), modernbert::Error>(())
//! ```
//!
//! Layout: [`config`] parses `config.json`, [`weights`] maps safetensors, [`tokenizer`] wraps
//! `tokenizer.json`, [`params`] is the table of parameters, [`model`] the encoder, [`heads`] the
//! task heads, [`pooling`] the sequence reductions, [`tasks`] the user-level jobs (fill-mask,
//! embed, classify).

pub mod batch;
pub mod config;
pub mod embedding;
pub mod error;
pub mod formats;
pub mod heads;
pub mod hub;
pub mod model;
pub mod ops;
pub mod params;
pub mod pipelines;
pub mod pooling;
pub mod retrieval;
pub mod rng;
pub mod tasks;
pub mod threads;
pub mod tokenizer;
pub mod weights;

pub use batch::Batch;
pub use config::{Config, Pooling, ProblemType};
pub use error::{Error, Result};
pub use heads::Head;
pub use model::{ModernBert, Precision};
pub use params::HeadKind;
pub use tokenizer::{Encoding, Tokenizer, Truncation, TruncationSide};

use candle_core::Device;
use std::path::{Path, PathBuf};

/// A loaded model: configuration, backbone, head, (if present) tokenizer, and the format its
/// directory is in, which decides how outputs are finished ([`formats::Format`]).
pub struct Model {
    pub config: Config,
    pub backbone: ModernBert,
    pub head: Head,
    pub format: formats::Format,
    tokenizer: Option<Tokenizer>,
    dir: PathBuf,
}

impl Model {
    /// Loads `config.json`, `model.safetensors` (or shards), `tokenizer.json` and the format files
    /// (sentence-transformers, cross-encoder, PyLate) from `dir`, on CPU, in f32.
    pub fn load(dir: &Path) -> Result<Self> {
        Self::load_with(dir, Precision::F32)
    }

    /// [`Model::load`] with the encoder's linear layers in `precision`.
    pub fn load_with(dir: &Path, precision: Precision) -> Result<Self> {
        if !dir.is_dir() {
            return Err(Error::Input(format!("model directory {} does not exist", dir.display())));
        }
        let config_path = dir.join("config.json");
        if !config_path.is_file() {
            return Err(Error::Input(format!("{} has no config.json", dir.display())));
        }
        let config = Config::from_file(&config_path)?;
        let weights = weights::Weights::from_dir(dir, &Device::Cpu)?;
        let tokenizer_path = dir.join("tokenizer.json");
        let tokenizer = if tokenizer_path.exists() {
            Some(Tokenizer::from_file(&tokenizer_path, config.max_position_embeddings)?)
        } else {
            None
        };
        let mut model = Self::from_weights(config, &weights, tokenizer, dir, precision)?;
        model.format = formats::read(dir, &model.config, model.head.kind(), model.tokenizer.as_ref())?;
        Ok(model)
    }

    /// Builds a model from already-open weights (e.g. [`weights::Weights::random`]), as a plain
    /// transformers checkpoint.
    pub fn from_weights(
        config: Config,
        weights: &weights::Weights,
        tokenizer: Option<Tokenizer>,
        dir: &Path,
        precision: Precision,
    ) -> Result<Self> {
        let kind = HeadKind::of(&config, |name| weights.contains(name))?;
        let backbone = ModernBert::load(weights, &config, precision)?;
        let head = Head::load(weights, &config, kind, backbone.embeddings().weight())?;
        let format = match kind {
            HeadKind::SequenceClassification => formats::Format::CrossEncoder(formats::CrossEncoder {
                activation: (config.num_labels == 1).then_some(config::Activation::Sigmoid),
                max_length: None,
            }),
            _ => formats::Format::Transformers,
        };
        Ok(Self { config, backbone, head, format, tokenizer, dir: dir.to_path_buf() })
    }

    /// The tokenizer, or an error saying the directory has none.
    pub fn tokenizer(&self) -> Result<&Tokenizer> {
        self.tokenizer.as_ref().ok_or_else(|| Error::Tokenizer(format!("{} has no tokenizer.json", self.dir.display())))
    }

    /// The directory the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    /// Servers share one model between threads.
    #[test]
    fn model_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<super::Model>();
    }
}
