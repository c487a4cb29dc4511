//! Checkpoints: an HF-layout model directory plus everything needed to resume exactly.
//!
//! `out_dir/checkpoints/step-00000100/` holds
//! * `config.json` — the original ModernBERT key form (`global_attn_every_n_layers`,
//!   `global_rope_theta`, `local_rope_theta`, `norm_eps` + `layer_norm_eps`, …);
//! * `model.safetensors` — every parameter by its HF name, f32, without the tied `decoder.weight`;
//! * `tokenizer.json` (and `tokenizer_config.json` / `special_tokens_map.json` when they sit next
//!   to the run's tokenizer);
//! * `optimizer.safetensors` — StableAdamW moments and step;
//! * `trainer_state.json` — step, tokens, phase, data position; `run_config.json` — the run config.
//!
//! A checkpoint is written to a temporary directory, fsynced, and renamed into place; `latest`
//! (a one-line file naming the newest checkpoint) is replaced the same way. A crash leaves either
//! the previous or the new checkpoint, never a torn one.

use crate::config::RunConfig;
use crate::model::{DropoutConfig, TrainModel};
use crate::optim::AdamW;
use crate::st::{self, HostTensor};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Where a run stands; saved as `trainer_state.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimizer steps done.
    pub step: u64,
    /// Real tokens trained on, all phases.
    pub tokens: u64,
    /// Index of the current phase.
    pub phase: usize,
    /// Tokens trained in the current phase (the schedules' clock).
    pub phase_tokens: u64,
    /// `BatchSource::state()` of the current phase's data source (`null` before its first step).
    pub data: Value,
    /// Dropout masks are the stateless streams `Rng::keyed(seed, [step, micro, site])`, so the
    /// seed is the whole RNG state.
    pub seed: u64,
    /// Wall-clock seconds spent training so far (for tokens/s across resumes).
    pub elapsed_secs: f64,
}

/// Writes `config.json` + `model.safetensors` (no tied `decoder.weight`) of `model` into `dir`.
pub fn save_hf_model(
    dir: &Path,
    model: &TrainModel,
    initializer_range: f64,
    cutoff: f64,
    dropout: &DropoutConfig,
) -> Result<()> {
    let mut cfg = model.config().to_hf_json();
    cfg["initializer_range"] = json!(initializer_range);
    cfg["initializer_cutoff_factor"] = json!(cutoff);
    cfg["embedding_dropout"] = json!(dropout.embedding);
    cfg["mlp_dropout"] = json!(dropout.mlp);
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg)? + "\n")?;
    cfg["architectures"] = json!([model.head().architecture()]);
    let mut tensors = BTreeMap::new();
    for (name, t) in model.tensors()? {
        if model.is_extra(&name) {
            continue;
        }
        let shape = t.dims().to_vec();
        // A bare `ModernBertModel` is saved without the `model.` prefix, as transformers does.
        let name = match (model.head(), name.strip_prefix("model.")) {
            (crate::params::HeadKind::None, Some(bare)) => bare.to_string(),
            _ => name,
        };
        tensors.insert(name, HostTensor { shape, data: t.flatten_all()?.to_vec1()? });
    }
    st::save(&dir.join("model.safetensors"), &tensors, HashMap::from([("format".to_string(), "pt".to_string())]))
}

/// Copies the tokenizer (and its HF side files, if present next to it) into `dir`.
pub fn copy_tokenizer(tokenizer: &Path, dir: &Path) -> Result<()> {
    std::fs::copy(tokenizer, dir.join("tokenizer.json"))
        .with_context(|| format!("cannot copy {}", tokenizer.display()))?;
    if let Some(src) = tokenizer.parent() {
        for side in ["tokenizer_config.json", "special_tokens_map.json"] {
            if src.join(side).is_file() {
                std::fs::copy(src.join(side), dir.join(side))?;
            }
        }
    }
    Ok(())
}

/// Everything a checkpoint stores besides the model.
pub struct CheckpointParts<'a> {
    /// The model being trained.
    pub model: &'a TrainModel,
    /// Its optimizer.
    pub optimizer: &'a AdamW,
    /// Loop position.
    pub state: &'a TrainerState,
    /// The run's configuration.
    pub run: &'a RunConfig,
}

fn sync_dir(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_file() {
            File::open(&path)?.sync_all()?;
        }
    }
    File::open(dir)?.sync_all()?;
    Ok(())
}

/// Replaces `path` atomically with `bytes` (temp file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Name of the checkpoint directory of a step.
pub fn step_name(step: u64) -> String {
    format!("step-{step:08}")
}

/// Writes a full pretraining checkpoint atomically as `root/name` and points `root/latest` at it.
pub fn save_checkpoint(root: &Path, name: &str, parts: &CheckpointParts) -> Result<PathBuf> {
    save_dir(root, name, |tmp| {
        let m = &parts.run.model;
        save_hf_model(tmp, parts.model, m.initializer_range, m.initializer_cutoff_factor, &parts.run.dropout)?;
        if let Some(tok) = &parts.run.data.tokenizer {
            copy_tokenizer(tok, tmp)?;
        }
        parts.optimizer.save(&tmp.join("optimizer.safetensors"))?;
        std::fs::write(tmp.join("trainer_state.json"), serde_json::to_string_pretty(parts.state)? + "\n")?;
        std::fs::write(tmp.join("run_config.json"), serde_json::to_string_pretty(parts.run)? + "\n")?;
        Ok(())
    })
    .and_then(|dir| point_latest(root, name).map(|_| dir))
}

/// Writes the directory `root/name` atomically: `fill` writes its files into a temporary
/// directory, which is fsynced and renamed into place. A crash leaves either the previous or the
/// new directory, never a torn one.
pub fn save_dir(root: &Path, name: &str, fill: impl FnOnce(&Path) -> Result<()>) -> Result<PathBuf> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))?;
    let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp)?;
    fill(&tmp).with_context(|| format!("cannot write {}", root.join(name).display()))?;
    sync_dir(&tmp)?;
    let dst = root.join(name);
    if dst.exists() {
        let old = root.join(format!(".old-{name}-{}", std::process::id()));
        std::fs::rename(&dst, &old)?;
        std::fs::rename(&tmp, &dst)?;
        std::fs::remove_dir_all(&old)?;
    } else {
        std::fs::rename(&tmp, &dst)?;
    }
    Ok(dst)
}

/// The newest `step-*` checkpoint under `root` whose weights load (finite, complete), if any.
pub fn newest_loadable(root: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(None) };
    let mut steps: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("step-")))
        .collect();
    steps.sort();
    Ok(steps.into_iter().rev().find(|d| TrainModel::load(d).is_ok()))
}

/// Removes what a killed or failed checkpoint write left in `root` (`.tmp-*`, `.old-*`), which
/// could otherwise keep a disk full.
pub fn remove_leftovers(root: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(root) else { return Ok(()) };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with(".tmp-") || name.starts_with(".old-") {
            let p = e.path();
            let removed = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            removed.with_context(|| format!("cannot remove the leftover {}", p.display()))?;
            eprintln!("removed {}, left by an interrupted checkpoint write", p.display());
        }
    }
    Ok(())
}

/// Points `root/latest` (a one-line file) at the checkpoint `root/name`, atomically.
pub fn point_latest(root: &Path, name: &str) -> Result<()> {
    write_atomic(&root.join("latest"), format!("{name}\n").as_bytes())
}

/// A run's `metrics.jsonl`: one JSON record per line, appended and flushed as they come.
pub struct MetricsLog {
    file: File,
}

impl MetricsLog {
    /// Opens the log; a resumed run (`keep_up_to = Some(step)`) first drops records past the
    /// checkpoint's step, a fresh run starts it empty.
    pub fn open(path: &Path, keep_up_to: Option<u64>) -> Result<Self> {
        if let (Some(step), Ok(text)) = (keep_up_to, std::fs::read_to_string(path)) {
            let kept: String = text
                .lines()
                .filter(|l| {
                    serde_json::from_str::<Value>(l).ok().and_then(|v| v["step"].as_u64()).is_some_and(|s| s <= step)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            write_atomic(path, kept.as_bytes())?;
        } else if keep_up_to.is_none() {
            std::fs::write(path, b"").with_context(|| format!("cannot write {}", path.display()))?;
        }
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Self { file })
    }

    /// Appends one record.
    pub fn log(&mut self, v: Value) -> Result<()> {
        use std::io::Write;
        writeln!(self.file, "{v}")?;
        self.file.flush()?;
        Ok(())
    }
}

/// Resolves `--resume PATH`: a checkpoint directory, or a run / `checkpoints` directory (its latest).
pub fn resolve_resume(path: &Path) -> Result<PathBuf> {
    if path.join("trainer_state.json").is_file() {
        return Ok(path.to_path_buf());
    }
    for root in [path.join("checkpoints"), path.to_path_buf()] {
        if let Ok(name) = std::fs::read_to_string(root.join("latest")) {
            let dir = root.join(name.trim());
            if dir.join("trainer_state.json").is_file() {
                return Ok(dir);
            }
        }
    }
    bail!("{} is not a checkpoint (no trainer_state.json) nor a run directory with checkpoints/latest", path.display())
}

/// Reads `trainer_state.json` and `run_config.json` of a checkpoint.
pub fn load_state(dir: &Path) -> Result<(TrainerState, RunConfig)> {
    let read =
        |n: &str| std::fs::read_to_string(dir.join(n)).with_context(|| format!("{}: cannot read {n}", dir.display()));
    let state: TrainerState = serde_json::from_str(&read("trainer_state.json")?)
        .with_context(|| format!("{}: invalid trainer_state.json", dir.display()))?;
    let run: RunConfig = serde_json::from_str(&read("run_config.json")?).context("invalid run_config.json")?;
    Ok((state, run))
}

/// Deletes all but the newest `keep` `step-*` checkpoints under `root` (never `keep_name`).
pub fn prune(root: &Path, keep: usize, keep_name: &str) -> Result<()> {
    if keep == 0 {
        return Ok(());
    }
    let mut steps: Vec<String> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    let n = steps.len();
    for name in steps.into_iter().take(n.saturating_sub(keep)) {
        if name != keep_name {
            std::fs::remove_dir_all(root.join(name))?;
        }
    }
    Ok(())
}
