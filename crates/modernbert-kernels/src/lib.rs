//! Fused CPU kernels for ModernBERT, on plain `f32` slices.
//!
//! Every kernel works on row-major, unpadded token matrices: a batch of sequences is
//! concatenated along the token axis and described by `cu_seqlens` (cumulative
//! sequence lengths, `[0, len_0, len_0 + len_1, ..]`). No kernel ever reads or writes
//! padding, and no token ever attends across a sequence boundary.
//!
//! The crate knows nothing about tensors, checkpoints or training; the model crate
//! wraps these functions as candle custom ops.

pub mod attention;
pub mod geglu;
pub mod norm;
pub mod rope;

pub use attention::attention_varlen;
pub use geglu::geglu;
pub use norm::layer_norm;
pub use rope::RopeTable;
