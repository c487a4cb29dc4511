//! Resolving `--model`: a local directory, or a Hugging Face Hub id fetched into the HF cache.

use crate::error::{Error, Result};
use hf_hub::{api::sync::ApiBuilder, Cache, Repo};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

/// How long the first Hub request may take before we call the Hub unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Returns a directory with `config.json`, weights and tokenizer for `model`:
/// the path itself if it exists, otherwise a Hub model id (`org/name`), downloaded once into the
/// standard HF cache (`HF_HOME`) and used from there afterwards, also offline.
pub fn resolve(model: &str) -> Result<PathBuf> {
    let path = Path::new(model);
    if path.exists() {
        return Ok(path.to_path_buf());
    }
    let looks_like_id = model.split('/').count() == 2 && !model.starts_with('.') && !model.ends_with('/');
    if !looks_like_id {
        return Err(Error::Input(format!("model directory {model} does not exist")));
    }
    if let Some(dir) = cached(model) {
        return Ok(dir);
    }
    if std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1") {
        return Err(Error::Hub(format!("{model} is not in the local HF cache and HF_HUB_OFFLINE=1")));
    }
    download(model.to_string())
}

/// The model used when none is named: `$MODERNBERT_MODEL`, else `modernbert-mini` (the masked-LM
/// model this repository ships) found next to the executable (`models/modernbert-mini` there or up
/// to three folders above it, which covers `target/release/` in a clone) or above the current
/// directory. Looked up at run time, so a moved or installed binary finds its model.
pub fn default_model() -> Option<String> {
    std::env::var("MODERNBERT_MODEL").ok().or_else(|| shipped("modernbert-mini"))
}

/// The model used for embeddings and search when none is named: `$MODERNBERT_MODEL`, else the
/// shipped sentence-transformers embedder `modernbert-mini-embed` (looked up like
/// [`default_model`]), else [`default_model`].
pub fn default_embedding_model() -> Option<String> {
    std::env::var("MODERNBERT_MODEL").ok().or_else(|| shipped("modernbert-mini-embed")).or_else(default_model)
}

/// `models/<name>` next to the executable (or up to three folders above it) or above the current
/// directory, if it holds a config.json.
fn shipped(name: &str) -> Option<String> {
    let exe = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf));
    let cwd = std::env::current_dir().ok();
    for start in exe.into_iter().chain(cwd) {
        for dir in start.ancestors().take(4) {
            let candidate = dir.join("models").join(name);
            if candidate.join("config.json").is_file() {
                return Some(candidate.display().to_string());
            }
        }
    }
    None
}

/// The snapshot directory of a fully cached model, if any.
fn cached(model: &str) -> Option<PathBuf> {
    let repo = Cache::from_env().repo(Repo::model(model.to_string()));
    let config = repo.get("config.json")?;
    let has_weights = repo.get("model.safetensors").is_some() || repo.get("model.safetensors.index.json").is_some();
    has_weights.then(|| config.parent().map(Path::to_path_buf)).flatten()
}

fn download(model: String) -> Result<PathBuf> {
    let (tx, rx) = mpsc::channel();
    let id = model.clone();
    // hf-hub's blocking client has no connect timeout we can set; run it on a thread and stop
    // waiting if the first request does not answer in time.
    std::thread::spawn(move || {
        let fetch = || -> std::result::Result<PathBuf, String> {
            let api = ApiBuilder::from_env().with_progress(true).build().map_err(|e| e.to_string())?;
            let repo = api.model(id.clone());
            let config = repo.get("config.json").map_err(|e| e.to_string())?;
            let _ = tx.send(Ok(None));
            match repo.get("model.safetensors") {
                Ok(_) => {}
                Err(_) => {
                    let index = repo.get("model.safetensors.index.json").map_err(|e| e.to_string())?;
                    let text = std::fs::read_to_string(&index).map_err(|e| e.to_string())?;
                    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
                    let mut shards: Vec<&str> = json["weight_map"]
                        .as_object()
                        .map(|m| m.values().filter_map(|v| v.as_str()).collect())
                        .unwrap_or_default();
                    shards.sort_unstable();
                    shards.dedup();
                    for shard in shards {
                        repo.get(shard).map_err(|e| e.to_string())?;
                    }
                }
            }
            repo.get("tokenizer.json").map_err(|e| e.to_string())?;
            // The format's files, where the repository has them (a 404 is fine: optional).
            for f in crate::formats::HUB_FORMAT_FILES {
                let _ = repo.get(f);
            }
            let dir = config.parent().map(Path::to_path_buf).unwrap_or_default();
            // Every module folder that modules.json names (Pooling, Dense, Normalize configs and weights).
            if let Ok(Some(modules)) = crate::formats::read_modules(&dir) {
                for m in modules.iter().filter(|m| !m.path.is_empty()) {
                    for f in crate::formats::HUB_MODULE_FILES {
                        let _ = repo.get(&format!("{}/{f}", m.path));
                    }
                }
            }
            Ok(dir)
        };
        let _ = tx.send(fetch().map(Some));
    });
    let unreachable = |why: String| {
        Error::Hub(format!(
            "cannot download {model} from the Hugging Face Hub ({why}); \
             pass a local model directory, or run once with network access"
        ))
    };
    match rx.recv_timeout(CONNECT_TIMEOUT) {
        Err(_) => Err(unreachable(format!("no answer in {}s", CONNECT_TIMEOUT.as_secs()))),
        Ok(Err(e)) => Err(unreachable(e)),
        Ok(Ok(Some(dir))) => Ok(dir),
        // config.json arrived; the weights may take long, so wait without a limit.
        Ok(Ok(None)) => match rx.recv() {
            Ok(Ok(Some(dir))) => Ok(dir),
            Ok(Err(e)) => Err(unreachable(e)),
            _ => Err(unreachable("download thread stopped".into())),
        },
    }
}
