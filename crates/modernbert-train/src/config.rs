//! The run configuration: every knob of a training run in one TOML file (see `configs/`).
//!
//! ```toml
//! out_dir = "runs/tiny"            # checkpoints/, metrics.jsonl, loss.png
//! seed = 17
//! [model]                          # fresh init from HF config keys, or init_from / tile_from
//! config = { hidden_size = 256, num_hidden_layers = 4, ... }
//! [data]                           # `modernbert data prepare` output (+ tokenizer to ship)
//! dir = "data/shards"
//! [[phase]]                        # one entry per phase: tokens, length, RoPE θ, LR, batch
//! tokens = 2_000_000
//! max_seq_len = 512
//! rows_per_step = 4
//! lr = { lr = 8e-4, warmup_tokens = 200_000 }
//! ```
//!
//! Relative paths are taken from the current directory.

use crate::model::{DropoutConfig, Kernels};
use crate::optim::OptimizerConfig;
use crate::schedule::{BatchWarmup, LrSchedule};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A whole training run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Output directory: `checkpoints/`, `metrics.jsonl`, `loss.png`.
    pub out_dir: PathBuf,
    /// Seed of init, data order, masking and dropout.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Architecture and where the weights come from.
    pub model: ModelSection,
    /// Training data.
    pub data: DataSection,
    /// StableAdamW hyper-parameters.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// Dropout probabilities.
    #[serde(default)]
    pub dropout: DropoutConfig,
    /// Logging, evaluation and checkpoint cadence.
    #[serde(default)]
    pub train: TrainSection,
    /// The phases, run in order (`[[phase]]` tables).
    #[serde(rename = "phase")]
    pub phases: Vec<Phase>,
}

/// `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// HF `config.json` keys for a fresh model (either form; `model_type` may be left out).
    #[serde(default)]
    pub config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Or a `config.json` file.
    #[serde(default)]
    pub config_file: Option<PathBuf>,
    /// Start from the weights (and config) of this checkpoint directory (continued pretraining).
    #[serde(default)]
    pub init_from: Option<PathBuf>,
    /// Initialise by centre-tiling this smaller checkpoint (spec §6.2) into `config`.
    #[serde(default)]
    pub tile_from: Option<PathBuf>,
    /// σ of the truncated-normal init (`initializer_range`).
    #[serde(default = "default_init_range")]
    pub initializer_range: f64,
    /// Truncation in σ (`initializer_cutoff_factor`).
    #[serde(default = "default_cutoff")]
    pub initializer_cutoff_factor: f64,
    /// Op implementation: `"fused"` (default) or `"composed"` (reference, slow).
    #[serde(default)]
    pub kernels: Kernels,
}

/// `[data]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// Shard directory written by `modernbert data prepare`.
    pub dir: PathBuf,
    /// `tokenizer.json` used for the shards; copied into every checkpoint (checked against the
    /// manifest's SHA-256).
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// Token budget of one packed row (micro-batch), `P`.
    #[serde(default = "default_row_tokens")]
    pub row_tokens: usize,
    /// Packer buffer in units of one step's documents (5 in the recipe).
    #[serde(default = "default_buffer")]
    pub buffer_factor: usize,
    /// Masking rate in training (0.3).
    #[serde(default = "default_mlm")]
    pub mlm_probability: f64,
    /// Masking rate of the held-out evaluation (0.15).
    #[serde(default = "default_eval_mlm")]
    pub eval_mlm_probability: f64,
}

/// `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainSection {
    /// Evaluate every this many steps (0: only at the start and the end).
    pub eval_every: u64,
    /// Held-out rows per evaluation (fixed rows, so numbers are comparable across a run).
    pub eval_rows: usize,
    /// Checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: u64,
    /// Keep only the newest N step checkpoints (0: keep all).
    pub keep_checkpoints: usize,
    /// Stop after this many optimizer steps even if tokens remain.
    pub max_steps: Option<u64>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Write `loss.png` at the end.
    pub plot: bool,
}

impl Default for TrainSection {
    fn default() -> Self {
        Self {
            eval_every: 0,
            eval_rows: 8,
            checkpoint_every: 0,
            keep_checkpoints: 0,
            max_steps: None,
            progress: true,
            plot: true,
        }
    }
}

/// One `[[phase]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phase {
    /// Name used in logs and metrics.
    #[serde(default)]
    pub name: String,
    /// Length of the phase in (real) tokens.
    pub tokens: u64,
    /// Longest document chunk (1024 in phase 1, 8192 for context extension).
    pub max_seq_len: usize,
    /// RoPE θ of global layers (10 000 in phase 1, 160 000 afterwards).
    #[serde(default = "default_theta")]
    pub rope_theta_global: f64,
    /// RoPE θ of local layers (10 000).
    #[serde(default = "default_theta")]
    pub rope_theta_local: f64,
    /// Packed rows (micro-batches) per optimizer step once batch warmup is over.
    pub rows_per_step: usize,
    /// Learning-rate schedule of the phase (time restarts at 0 in every phase).
    pub lr: LrSchedule,
    /// Decoupled weight decay (scaled by lr/max_lr).
    #[serde(default)]
    pub weight_decay: f64,
    /// Batch-size warmup (rows per step ramp) at the start of the phase.
    #[serde(default)]
    pub batch_warmup: Option<BatchWarmup>,
    /// Another shard directory for this phase (e.g. the long-context mixture).
    #[serde(default)]
    pub data: Option<PathBuf>,
    /// Row budget override for this phase (e.g. a multiple of the longer `max_seq_len`).
    #[serde(default)]
    pub row_tokens: Option<usize>,
}

fn default_seed() -> u64 {
    17
}
fn default_init_range() -> f64 {
    0.02
}
fn default_cutoff() -> f64 {
    2.0
}
fn default_row_tokens() -> usize {
    8192
}
fn default_buffer() -> usize {
    5
}
fn default_mlm() -> f64 {
    0.3
}
fn default_eval_mlm() -> f64 {
    0.15
}
fn default_theta() -> f64 {
    10_000.0
}

impl Phase {
    /// The row budget of this phase.
    pub fn row_tokens(&self, data: &DataSection) -> usize {
        self.row_tokens.unwrap_or(data.row_tokens)
    }

    /// The shard directory of this phase.
    pub fn data_dir<'a>(&'a self, data: &'a DataSection) -> &'a Path {
        self.data.as_deref().unwrap_or(&data.dir)
    }
}

impl RunConfig {
    /// Parses a TOML run config.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: RunConfig = toml::from_str(text).context("invalid run config")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a TOML run config file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Checks values that TOML types cannot.
    pub fn validate(&self) -> Result<()> {
        if self.phases.is_empty() {
            bail!("the run config has no [[phase]]");
        }
        let m = &self.model;
        if m.init_from.is_some() && m.tile_from.is_some() {
            bail!("[model] init_from and tile_from exclude each other");
        }
        if m.init_from.is_none() && m.config.is_none() && m.config_file.is_none() {
            bail!("[model] needs `config`, `config_file` or `init_from`");
        }
        for (i, p) in self.phases.iter().enumerate() {
            let at = format!("phase {} ({})", i + 1, p.name);
            if p.tokens == 0 || p.rows_per_step == 0 || p.max_seq_len < 2 {
                bail!("{at}: tokens, rows_per_step and max_seq_len must be positive");
            }
            if !(p.lr.lr > 0.0 && p.lr.lr.is_finite()) {
                bail!("{at}: lr must be positive");
            }
            if p.lr.warmup_tokens + p.lr.decay_tokens > p.tokens {
                bail!("{at}: warmup_tokens + decay_tokens exceed the phase's tokens");
            }
            if p.row_tokens(&self.data) < p.max_seq_len {
                bail!("{at}: row_tokens {} is smaller than max_seq_len {}", p.row_tokens(&self.data), p.max_seq_len);
            }
            if !(0.0..1.0).contains(&p.weight_decay) {
                bail!("{at}: weight_decay = {} must be in [0, 1)", p.weight_decay);
            }
            if let Some(w) = &p.batch_warmup {
                if w.min_rows > p.rows_per_step {
                    bail!("{at}: batch_warmup.min_rows {} exceeds rows_per_step {}", w.min_rows, p.rows_per_step);
                }
            }
        }
        let d = &self.data;
        if !(d.mlm_probability > 0.0 && d.mlm_probability < 1.0) {
            bail!("[data] mlm_probability = {} must be in (0, 1)", d.mlm_probability);
        }
        if !(d.eval_mlm_probability > 0.0 && d.eval_mlm_probability < 1.0) {
            bail!("[data] eval_mlm_probability = {} must be in (0, 1)", d.eval_mlm_probability);
        }
        let o = &self.optimizer;
        if !(0.0..1.0).contains(&o.beta1) {
            bail!("[optimizer] beta1 = {} must be in [0, 1)", o.beta1);
        }
        if !(0.0..1.0).contains(&o.beta2) {
            bail!("[optimizer] beta2 = {} must be in [0, 1)", o.beta2);
        }
        if !(o.eps > 0.0 && o.eps.is_finite()) {
            bail!("[optimizer] eps = {} must be positive", o.eps);
        }
        for (name, p) in
            [("embedding", self.dropout.embedding), ("attn_out", self.dropout.attn_out), ("mlp", self.dropout.mlp)]
        {
            if !(0.0..1.0).contains(&p) {
                bail!("[dropout] {name} = {p} is not in [0, 1)");
            }
        }
        Ok(())
    }

    /// Total tokens over all phases.
    pub fn total_tokens(&self) -> u64 {
        self.phases.iter().map(|p| p.tokens).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_three_phase_config() {
        let cfg = RunConfig::from_toml(
            r#"
            out_dir = "runs/x"
            [model]
            config = { hidden_size = 64, num_hidden_layers = 4, num_attention_heads = 4, intermediate_size = 96, vocab_size = 512 }
            [data]
            dir = "data/x"
            [[phase]]
            name = "pretrain"
            tokens = 1000
            max_seq_len = 128
            rows_per_step = 4
            lr = { lr = 8e-4, warmup_tokens = 100 }
            batch_warmup = { min_rows = 1, tokens = 300 }
            [[phase]]
            name = "context-extension"
            tokens = 500
            max_seq_len = 512
            rope_theta_global = 160000.0
            rows_per_step = 2
            row_tokens = 1024
            lr = { lr = 3e-4 }
            [[phase]]
            name = "decay"
            tokens = 200
            max_seq_len = 512
            rope_theta_global = 160000.0
            rows_per_step = 2
            lr = { lr = 3e-4, decay_tokens = 200, decay = "one_minus_sqrt", final_lr_ratio = 0.001 }
            "#,
        )
        .unwrap();
        assert_eq!(cfg.phases.len(), 3);
        assert_eq!(cfg.total_tokens(), 1700);
        assert_eq!(cfg.phases[1].row_tokens(&cfg.data), 1024);
        assert_eq!(cfg.phases[0].row_tokens(&cfg.data), 8192);
        assert_eq!(cfg.dropout.attn_out, 0.1);
        assert!(!cfg.optimizer.decay_embeddings);
        let err = RunConfig::from_toml("out_dir = 'x'\nbogus = 1\n[model]\n[data]\ndir='d'\n[[phase]]\n").unwrap_err();
        assert!(format!("{err:#}").contains("bogus") || format!("{err:#}").contains("unknown"), "{err:#}");
    }

    #[test]
    fn committed_configs_parse() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for name in ["configs/tiny.toml", "configs/modernbert-base-recipe.toml", "bench/train_tiny.toml"] {
            let cfg = RunConfig::load(&root.join(name)).unwrap_or_else(|e| panic!("{name}: {e:#}"));
            assert!(!cfg.phases.is_empty(), "{name}");
        }
        let recipe = RunConfig::load(&root.join("configs/modernbert-base-recipe.toml")).unwrap();
        assert_eq!(recipe.phases.len(), 3);
        assert_eq!(recipe.phases[1].rope_theta_global, 160_000.0);
        assert_eq!(recipe.total_tokens(), 2_019_000_000_000);
    }

    #[test]
    fn values_that_make_no_sense_name_their_field() {
        let base = r#"
            out_dir = "runs/x"
            [model]
            config = { hidden_size = 64, num_hidden_layers = 2, num_attention_heads = 4, intermediate_size = 96 }
            [data]
            dir = "d"
            MLM
            [optimizer]
            OPT
            [[phase]]
            name = "p"
            tokens = 1000
            max_seq_len = 128
            rows_per_step = 4
            lr = { lr = 8e-4 }
            WARMUP
        "#;
        let case = |mlm: &str, opt: &str, warmup: &str| {
            let text = base.replace("MLM", mlm).replace("OPT", opt).replace("WARMUP", warmup);
            RunConfig::from_toml(&text).and_then(|c| c.validate()).map_err(|e| format!("{e:#}"))
        };
        assert!(case("", "", "").is_ok());
        assert!(case("mlm_probability = 0.0", "", "").unwrap_err().contains("mlm_probability"));
        assert!(case("", "beta1 = 1.5", "").unwrap_err().contains("beta1"));
        assert!(case("", "eps = 0.0", "").unwrap_err().contains("eps"));
        assert!(case("", "", "batch_warmup = { min_rows = 9, tokens = 10 }").unwrap_err().contains("min_rows"));
    }
}
