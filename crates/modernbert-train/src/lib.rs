//! ModernBERT pretraining (spec §6–§7): data shards, packing, MLM masking, StableAdamW,
//! schedules, the training loop, checkpoints, weight tiling.
//!
//! Data flows `shards → packer → masking → MlmBatch → trainer`. [`MlmBatch`] is the one type
//! the data side hands to the model side.
//!
//! Model side: [`model`] (differentiable ModernBERT, HF parameter names), [`ops`] (fused CPU ops
//! with backward passes), [`params`] (names, shapes, init classes), [`rng`] (deterministic streams).

pub mod blocks;
pub mod checkpoint;
pub mod config;
pub mod data;
pub mod eval;
pub mod finetune;
pub mod grads;
pub mod init;
pub mod losses;
pub mod model;
pub mod ops;
pub mod optim;
pub mod params;
pub mod plot;
pub use modernbert::rng;
pub mod schedule;
pub mod st;
pub mod trainer;

/// One micro-batch for masked-LM training, unpadded: documents are concatenated and
/// described by `cu_seqlens` (no attention across documents, RoPE positions restart per document).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MlmBatch {
    /// Token ids after masking (`[MASK]`, random or unchanged tokens at masked positions).
    pub input_ids: Vec<u32>,
    /// `[0, end_0, end_1, ..]` over `input_ids`.
    pub cu_seqlens: Vec<u32>,
    /// Original id at positions selected for prediction, `-100` everywhere else.
    pub labels: Vec<i64>,
}
