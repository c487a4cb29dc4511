//! Server state: the limits, the loaded model (once ready), admission control, and the two
//! steps every inference route shares: tokenize on the blocking pool, then queue for the model.

use crate::batcher::{Batcher, Limits, Output, Timing, Want};
use crate::encode::{Encoder, Sequence};
use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;
use crate::types::{EncodeOptions, Input};
use crate::ServeArgs;
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use modernbert::{Head, Model, Pooling};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the loaded model can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// No classification head: embeddings only.
    Embedding,
    /// Sequence classification with several labels: `/predict`.
    Classifier,
    /// Sequence classification with one label (a cross-encoder): `/rerank` and `/predict`.
    Reranker,
    /// Token classification: embeddings only over HTTP for now.
    TokenClassifier,
}

/// The model, once loaded and warmed up.
pub struct Ready {
    /// Tokenizers and prompts.
    pub encoder: Arc<Encoder>,
    /// The queue in front of the model threads.
    pub batcher: Batcher,
    pub kind: ModelKind,
    /// `ModernBertForMaskedLM`, ...
    pub architecture: &'static str,
    pub hidden_size: usize,
    /// Label names by class index.
    pub labels: Vec<String>,
    /// The `/info` body.
    pub info: Value,
}

/// Shared by every handler.
pub struct AppState {
    /// The command-line options.
    pub args: ServeArgs,
    /// Set once the model is loaded and warmed up.
    pub ready: OnceLock<Arc<Ready>>,
    /// One permit per inference request in flight.
    pub permits: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
}

/// Holds an inference request's concurrency permit; counts it in `te_in_flight_requests`.
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.fetch_sub(1, Relaxed);
    }
}

/// Tokenized sequences plus the time tokenization took.
pub struct Encoded {
    pub ids: Vec<Vec<u32>>,
    pub tokenization: Duration,
}

impl Encoded {
    /// Total tokens.
    pub fn tokens(&self) -> usize {
        self.ids.iter().map(Vec::len).sum()
    }
}

impl AppState {
    /// State for `args`, before the model is loaded.
    pub fn new(args: ServeArgs) -> Self {
        let permits = Arc::new(Semaphore::new(args.max_concurrent_requests.max(1)));
        Self { args, ready: OnceLock::new(), permits, metrics: Arc::new(Metrics::default()) }
    }

    /// The model, or 503 while it loads.
    pub fn ready(&self) -> Result<&Arc<Ready>, ApiError> {
        self.ready.get().ok_or_else(|| ApiError::new(ErrorKind::Unhealthy, "the model is still loading"))
    }

    /// Admits an inference request: 503 before the model is ready, 429 over `--max-concurrent-requests`.
    pub fn admit(&self) -> Result<(Arc<Ready>, InFlight), ApiError> {
        let ready = self.ready()?.clone();
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorKind::Overloaded,
                format!("model is overloaded: {} requests in flight", self.args.max_concurrent_requests),
            )
        })?;
        self.metrics.in_flight.fetch_add(1, Relaxed);
        Ok((ready, InFlight { _permit: permit, metrics: self.metrics.clone() }))
    }

    /// Refuses an empty list (422) or one longer than `--max-client-batch-size` (413).
    pub fn check_batch(&self, len: usize, what: &str) -> Result<(), ApiError> {
        if len == 0 {
            return Err(ApiError::empty(format!("`{what}` cannot be empty")));
        }
        let max = self.args.max_client_batch_size;
        if len > max {
            return Err(ApiError::validation(format!("batch size {len} > maximum allowed batch size {max}")));
        }
        Ok(())
    }

    /// Loads the model named by `--model`, starts the model threads and runs one warm-up batch.
    pub fn load(&self) -> Result<Ready> {
        let args = &self.args;
        let dir = modernbert::hub::resolve(&args.model)?;
        let model = Model::load_with(&dir, args.precision)?;
        let tokenizer = model.tokenizer().context("the server needs the model's tokenizer.json")?.clone();
        let cfg = &model.config;
        let pooling = match args.pooling {
            Some(p) => p.into(),
            None => sentence_transformers_pooling(&dir)?.unwrap_or(Pooling::Mean),
        };
        let encoder = Arc::new(Encoder::new(tokenizer, &dir, cfg.vocab_size, args.auto_truncate)?);
        let labels: Vec<String> = (0..cfg.num_labels).map(|i| cfg.label(i)).collect();
        let kind = match &model.head {
            Head::SequenceClassification(_) if cfg.num_labels == 1 => ModelKind::Reranker,
            Head::SequenceClassification(_) => ModelKind::Classifier,
            Head::TokenClassification(_) => ModelKind::TokenClassifier,
            Head::None | Head::MaskedLm(_) => ModelKind::Embedding,
        };
        let architecture = model.head.name();
        let hidden_size = cfg.hidden_size;
        let info = self.info(&model, kind, pooling, &labels);
        let limits =
            Limits { max_batch_tokens: args.max_batch_tokens.max(1), max_batch_requests: args.max_batch_requests };
        let batcher = Batcher::start(Arc::new(model), pooling, limits, args.model_workers, self.metrics.clone());
        // Warm-up: one short batch through the whole path (allocations, kernel dispatch, caches).
        let warm = encoder
            .encode_all(&[(Input::Text("Warm-up.".into()), None)], &EncodeOptions::default())
            .map_err(|e| anyhow::anyhow!("warm-up: {}", e.message))?;
        let want = if kind == ModelKind::Embedding || kind == ModelKind::TokenClassifier {
            Want::Pooled
        } else {
            Want::Logits
        };
        for rx in batcher.submit(warm, want) {
            rx.blocking_recv()
                .context("warm-up: the model thread stopped")?
                .map_err(|e| anyhow::anyhow!("warm-up: {e}"))?;
        }
        Ok(Ready { encoder, batcher, kind, architecture, hidden_size, labels, info })
    }

    fn info(&self, model: &Model, kind: ModelKind, pooling: Pooling, labels: &[String]) -> Value {
        let args = &self.args;
        let classifier = || {
            let id2label: serde_json::Map<String, Value> =
                labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
            let label2id: serde_json::Map<String, Value> =
                labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
            json!({ "id2label": id2label, "label2id": label2id })
        };
        let pooling_name = match pooling {
            Pooling::Mean => "mean",
            Pooling::Cls => "cls",
        };
        let model_type = match kind {
            ModelKind::Reranker => json!({ "reranker": classifier() }),
            ModelKind::Classifier | ModelKind::TokenClassifier => json!({ "classifier": classifier() }),
            ModelKind::Embedding => json!({ "embedding": { "pooling": pooling_name } }),
        };
        let cfg = &model.config;
        json!({
            "model_id": args.served_model_name.clone().unwrap_or_else(|| args.model.clone()),
            "model_sha": null,
            "model_dtype": format!("{:?}", args.precision).to_lowercase(),
            "model_type": model_type,
            "max_concurrent_requests": args.max_concurrent_requests,
            "max_input_length": cfg.max_position_embeddings,
            "max_batch_tokens": args.max_batch_tokens,
            "max_batch_requests": args.max_batch_requests,
            "max_client_batch_size": args.max_client_batch_size,
            "auto_truncate": args.auto_truncate,
            "tokenization_workers": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "version": env!("CARGO_PKG_VERSION"),
            "sha": null,
            "docker_label": null,
            "architecture": model.head.name(),
            "pooling": pooling_name,
            "hidden_size": cfg.hidden_size,
            "num_hidden_layers": cfg.num_hidden_layers,
            "vocab_size": cfg.vocab_size,
            "payload_limit": args.payload_limit,
        })
    }
}

impl Ready {
    /// Tokenizes on the blocking pool (never on the async runtime or the model thread).
    pub async fn encode(&self, sequences: Vec<Sequence>, options: EncodeOptions) -> Result<Encoded, ApiError> {
        let encoder = self.encoder.clone();
        let start = Instant::now();
        let ids = tokio::task::spawn_blocking(move || encoder.encode_all(&sequences, &options))
            .await
            .map_err(|e| ApiError::backend(format!("tokenization task failed: {e}")))??;
        Ok(Encoded { ids, tokenization: start.elapsed() })
    }

    /// Queues the sequences and waits for all of their outputs, in order.
    pub async fn run(&self, ids: Vec<Vec<u32>>, want: Want) -> Result<(Vec<Output>, Timing), ApiError> {
        let receivers = self.batcher.submit(ids, want);
        let mut outputs = Vec::with_capacity(receivers.len());
        let mut worst = Timing::default();
        for rx in receivers {
            let (out, t) = rx
                .await
                .map_err(|_| ApiError::backend("the model thread stopped"))?
                .map_err(|e| ApiError::backend(format!("inference failed: {e}")))?;
            worst.queue = worst.queue.max(t.queue);
            worst.inference = worst.inference.max(t.inference);
            outputs.push(out);
        }
        Ok((outputs, worst))
    }
}

/// Pooling from a sentence-transformers `1_Pooling/config.json` (via `modules.json` if present).
fn sentence_transformers_pooling(dir: &Path) -> Result<Option<Pooling>> {
    let mut folder = "1_Pooling".to_string();
    if let Ok(text) = std::fs::read_to_string(dir.join("modules.json")) {
        let modules: Value = serde_json::from_str(&text).context("modules.json is not valid JSON")?;
        if let Some(path) = modules
            .as_array()
            .into_iter()
            .flatten()
            .find(|m| m["type"].as_str().is_some_and(|t| t.ends_with("Pooling")))
            .and_then(|m| m["path"].as_str())
        {
            folder = path.to_string();
        }
    }
    let path = dir.join(folder).join("config.json");
    let Ok(text) = std::fs::read_to_string(&path) else { return Ok(None) };
    let cfg: Value = serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    if cfg["pooling_mode_cls_token"].as_bool() == Some(true) {
        Ok(Some(Pooling::Cls))
    } else if cfg["pooling_mode_mean_tokens"].as_bool() == Some(true) {
        Ok(Some(Pooling::Mean))
    } else {
        anyhow::bail!("{}: only CLS and mean pooling are supported (use --pooling)", path.display())
    }
}

/// A JSON request body: any content type, size limited by `--payload-limit` (413), malformed
/// JSON or wrong field types answered with 422 and the parser's message.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::validation(format!(
                    "request body is larger than the limit of {} bytes",
                    state.args.payload_limit
                ))
            } else {
                ApiError::invalid(e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
    }
}
