//! Fused CPU kernels for ModernBERT, on plain `f32` slices.
//!
//! Every kernel works on row-major, unpadded token matrices: a batch of sequences is
//! concatenated along the token axis and described by `cu_seqlens` (cumulative
//! sequence lengths, `[0, len_0, len_0 + len_1, ..]`). No kernel ever reads or writes
//! padding, and no token ever attends across a sequence boundary.
//!
//! The crate knows nothing about tensors, checkpoints or training; the model crate
//! wraps these functions as candle custom ops.
//!
//! # Speed
//!
//! Each kernel has an AVX-512 path, picked at run time with `is_x86_feature_detected!`,
//! and a portable path that runs on any CPU (see [`Isa`]). Work is spread over the rayon
//! thread pool once it is big enough to pay for it. The slow, obviously correct versions
//! live in [`reference`]; the tests compare every kernel against them.

pub mod attention;
#[cfg(test)]
mod attention_tests;
pub mod geglu;
pub mod gemm_bf16;
pub mod gemm_f32;
pub mod gemm_int8;
mod gemm_pack;
#[cfg(test)]
mod gemm_tests;
mod isa;
mod math;
pub mod matmul;
pub mod norm;
mod par;
pub mod reference;
pub mod rope;
#[cfg(test)]
mod tests;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use attention::{attention_key_prefix, attention_varlen, attention_varlen_backward, attention_varlen_bf16};
pub use geglu::{geglu, geglu_backward, gelu_erf};
pub use gemm_bf16::{bf16_native, Bf16Linear};
pub use gemm_f32::F32Linear;
pub use gemm_int8::{int8_native, Int8Linear};
pub use gemm_pack::{bf16_bits_to_f32, f32_to_bf16_bits, round_to_bf16};
pub use isa::Isa;
pub use math::fast_exp;
pub use norm::{add_layer_norm, layer_norm, layer_norm_backward, layer_norm_inplace};
pub use par::with_pool_awake;
pub use rope::RopeTable;
