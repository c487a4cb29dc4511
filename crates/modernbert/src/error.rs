//! The one error type of the library. Every message names what is wrong.

use std::path::PathBuf;

/// Errors from loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read.
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    /// `config.json` is malformed, or a field has a value we cannot run.
    #[error("config.json: field `{field}`: {message}")]
    Config { field: String, message: String },
    /// A checkpoint is missing a tensor, has a wrong shape, or cannot be parsed.
    #[error("weights: {0}")]
    Weights(String),
    /// The tokenizer file is bad or the text cannot be encoded.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The caller's input cannot be processed (empty, no [MASK], ...).
    #[error("{0}")]
    Input(String),
    /// An input has more tokens than the model accepts, and no truncation was asked for.
    #[error("the input has {tokens} tokens, more than the model's maximum of {max}; truncate it")]
    TooLong { tokens: usize, max: usize },
    /// Resolving a model id on the Hugging Face Hub failed.
    #[error("hub: {0}")]
    Hub(String),
    /// A tensor operation failed.
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// Result with the library's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn config(field: &str, message: impl Into<String>) -> Self {
        Error::Config { field: field.to_string(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
