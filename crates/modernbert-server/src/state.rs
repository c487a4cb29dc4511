//! Server state: the limits, the loaded model (once ready), admission control, and the two
//! steps every inference route shares: tokenize on the blocking pool, then queue for the model.

use crate::batcher::{Batcher, Limits, Output, PoolingMode, Prepared, Timing, Want};
use crate::conn::Shutdown;
use crate::encode::{Encoder, Sequence};
use crate::error::{ApiError, ErrorKind};
use crate::metrics::Metrics;
use crate::types::{EncodeOptions, Input};
use crate::ServeArgs;
use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use modernbert::formats::Format;
use modernbert::{Head, Model};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// What the loaded model can serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelKind {
    /// No classification head (a plain or sentence-transformers encoder): embeddings.
    Embedding,
    /// Sequence classification with several labels: `/predict`.
    Classifier,
    /// Sequence classification with one label (a cross-encoder): `/rerank` and `/predict`.
    Reranker,
    /// Token classification: embeddings only over HTTP for now.
    TokenClassifier,
    /// A PyLate ColBERT model: token vectors (`/embed_all`) and MaxSim (`/rerank`).
    Colbert,
}

/// The model, once loaded and warmed up.
pub struct Ready {
    /// The model, shared with the model threads. Handlers only call its plain-data functions
    /// ([`Model::finish`], the format's score functions); tokenisation runs in [`Ready::encode`]
    /// and the encoder only on the model threads.
    pub model: Arc<Model>,
    /// Tokenises requests (the library's `prepare`).
    pub encoder: Arc<Encoder>,
    /// The queue in front of the model threads.
    pub batcher: Batcher,
    pub kind: ModelKind,
    /// `ModernBertForMaskedLM`, ...
    pub architecture: &'static str,
    pub hidden_size: usize,
    /// The width of the model's embeddings before Matryoshka truncation (the most `dimensions` may ask).
    pub dimension: usize,
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
    /// One permit per request in flight (every POST route, taken before the body is read).
    pub permits: Arc<Semaphore>,
    pub metrics: Arc<Metrics>,
    /// Set when the shutdown deadline passes.
    pub shutdown: Shutdown,
    /// The code-search index of `--index`, if any.
    pub search: crate::search::SearchState,
}

/// Holds a request's concurrency permit; counts it in `te_in_flight_requests`.
pub struct InFlight {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.metrics.in_flight.decrement(1.0);
    }
}

/// Prepared inputs plus the time tokenisation took.
pub struct Encoded {
    pub prepared: Vec<Prepared>,
    pub tokenization: Duration,
}

impl Encoded {
    /// Total tokens.
    pub fn tokens(&self) -> usize {
        self.prepared.iter().map(|p| p.ids.len()).sum()
    }
}

impl AppState {
    /// State for `args`, before the model is loaded.
    pub fn new(args: ServeArgs) -> Self {
        let permits = Arc::new(Semaphore::new(args.max_concurrent_requests.max(1)));
        Self {
            args,
            ready: OnceLock::new(),
            permits,
            metrics: Arc::new(Metrics::default()),
            shutdown: Shutdown::default(),
            search: Default::default(),
        }
    }

    /// The model, or 503 while it loads.
    pub fn ready(&self) -> Result<&Arc<Ready>, ApiError> {
        self.ready.get().ok_or_else(|| ApiError::new(ErrorKind::Unhealthy, "the model is still loading"))
    }

    /// Admits a request: 429 over `--max-concurrent-requests`. Taken by the router for every
    /// POST route before the body is read, so at most that many bodies are in memory.
    pub fn admit(&self) -> Result<InFlight, ApiError> {
        let permit = self.permits.clone().try_acquire_owned().map_err(|_| {
            ApiError::new(
                ErrorKind::Overloaded,
                format!(
                    "model is overloaded: {} requests in flight (--max-concurrent-requests); retry later",
                    self.args.max_concurrent_requests
                ),
            )
        })?;
        self.metrics.in_flight.increment(1.0);
        Ok(InFlight { _permit: permit, metrics: self.metrics.clone() })
    }

    /// Refuses an empty list (422) or one longer than `--max-client-batch-size` (413, with the
    /// limit in the message: clients such as LangChain must be told to send smaller batches).
    pub fn check_batch(&self, len: usize, what: &str) -> Result<(), ApiError> {
        if len == 0 {
            return Err(ApiError::empty(format!("`{what}` cannot be empty")));
        }
        let max = self.args.max_client_batch_size;
        if len > max {
            return Err(ApiError::validation(format!(
                "batch size {len} > maximum allowed batch size {max}: this server takes at most {max} inputs \
                 per request (--max-client-batch-size); send smaller batches (e.g. LangChain's \
                 OpenAIEmbeddings(chunk_size={max}))"
            ))
            .failure("batch_size"));
        }
        Ok(())
    }

    /// Loads the model named by `--model` (with its format), starts the model threads and runs
    /// one warm-up batch.
    pub fn load(&self) -> Result<Ready> {
        let args = &self.args;
        let dir = modernbert::hub::resolve(&args.model)?;
        let model = Arc::new(Model::load_with(&dir, args.precision)?);
        let encoder = Arc::new(Encoder::new(model.clone(), args.auto_truncate)?);
        let cfg = &model.config;
        let labels: Vec<String> = (0..cfg.num_labels).map(|i| cfg.label(i)).collect();
        let kind = match (&model.format, &model.head) {
            (Format::Colbert(_), _) => ModelKind::Colbert,
            (_, Head::SequenceClassification(_)) if cfg.num_labels == 1 => ModelKind::Reranker,
            (_, Head::SequenceClassification(_)) => ModelKind::Classifier,
            (_, Head::TokenClassification(_)) => ModelKind::TokenClassifier,
            (_, Head::None | Head::MaskedLm(_)) => ModelKind::Embedding,
        };
        if kind == ModelKind::Colbert && args.pooling.is_some() {
            tracing::warn!("--pooling does not apply to a ColBERT model (one vector per token); ignored");
        }
        let info = self.info(&model, kind, &labels);
        let limits =
            Limits { max_batch_tokens: args.max_batch_tokens.max(1), max_batch_requests: args.max_batch_requests };
        let batcher = Batcher::start(model.clone(), args.pooling, limits, args.model_workers, self.metrics.clone());
        // Warm-up: one short batch through the whole path (allocations, kernel dispatch, caches).
        let warm = encoder
            .encode_all(&[Sequence::Input(Input::Text("Warm-up.".into()))], &EncodeOptions::default())
            .map_err(|e| anyhow::anyhow!("warm-up: {}", e.message))?;
        let want = match kind {
            ModelKind::Classifier | ModelKind::Reranker => Want::Logits,
            ModelKind::Embedding | ModelKind::TokenClassifier | ModelKind::Colbert => Want::Embedding,
        };
        for rx in batcher.submit(warm, want) {
            rx.blocking_recv()
                .context("warm-up: the model thread stopped")?
                .map_err(|e| anyhow::anyhow!("warm-up: {e}"))?;
        }
        Ok(Ready {
            architecture: model.head.name(),
            hidden_size: cfg.hidden_size,
            dimension: model.dimension(),
            model,
            encoder,
            batcher,
            kind,
            labels,
            info,
        })
    }

    fn info(&self, model: &Model, kind: ModelKind, labels: &[String]) -> Value {
        let args = &self.args;
        let classifier = || {
            let id2label: serde_json::Map<String, Value> =
                labels.iter().enumerate().map(|(i, l)| (i.to_string(), json!(l))).collect();
            let label2id: serde_json::Map<String, Value> =
                labels.iter().enumerate().map(|(i, l)| (l.clone(), json!(i))).collect();
            json!({ "id2label": id2label, "label2id": label2id })
        };
        let pooling = pooling_name(model, args.pooling);
        let model_type = match kind {
            ModelKind::Reranker => json!({ "reranker": classifier() }),
            ModelKind::Classifier | ModelKind::TokenClassifier => json!({ "classifier": classifier() }),
            ModelKind::Embedding | ModelKind::Colbert => json!({ "embedding": { "pooling": pooling } }),
        };
        let embedding_dimension = model.output_dimension();
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
            "format": model.format.name(),
            "pooling": pooling,
            "hidden_size": cfg.hidden_size,
            "embedding_dimension": embedding_dimension,
            "num_hidden_layers": cfg.num_hidden_layers,
            "vocab_size": cfg.vocab_size,
            "payload_limit": args.payload_limit,
        })
    }
}

/// The pooling `/embed` uses, for `/info`: `--pooling`, else the model's sentence-transformers
/// pooling modes (joined with `+` when several are concatenated), else `mean`; `none` for ColBERT
/// (one vector per token).
fn pooling_name(model: &Model, pooling: Option<PoolingMode>) -> String {
    let modes = model.pooling_names(pooling);
    if modes.is_empty() {
        "none".into()
    } else {
        modes.join("+")
    }
}

impl Ready {
    /// Tokenises: short requests in place (tens of microseconds, less than the hand-off to
    /// another thread), longer ones on the blocking pool (never on the model thread).
    pub async fn encode(&self, sequences: Vec<Sequence>, options: EncodeOptions) -> Result<Encoded, ApiError> {
        let start = Instant::now();
        if text_bytes(&sequences) <= INLINE_TOKENIZE_BYTES {
            let prepared = self.encoder.encode_all(&sequences, &options)?;
            return Ok(Encoded { prepared, tokenization: start.elapsed() });
        }
        let encoder = self.encoder.clone();
        let prepared = tokio::task::spawn_blocking(move || encoder.encode_all(&sequences, &options))
            .await
            .map_err(|e| ApiError::backend(format!("tokenization task failed: {e}")))??;
        Ok(Encoded { prepared, tokenization: start.elapsed() })
    }

    /// Queues the inputs and waits for all of their outputs, in order.
    pub async fn run(&self, inputs: Vec<Prepared>, want: Want) -> Result<(Vec<Output>, Timing), ApiError> {
        let receivers = self.batcher.submit(inputs, want);
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

/// Requests with at most this much text are tokenised on the async thread that serves them.
const INLINE_TOKENIZE_BYTES: usize = 2048;

/// Bytes of text (4 per token id) in `sequences`.
fn text_bytes(sequences: &[Sequence]) -> usize {
    sequences
        .iter()
        .map(|s| match s {
            Sequence::Input(Input::Text(t)) | Sequence::Query(t) => t.len(),
            Sequence::Input(Input::Ids(ids)) => ids.len() * 4,
            Sequence::Pair(a, b) => a.len() + b.len(),
        })
        .sum()
}

/// A request body as bytes: size limited by `--payload-limit` (413), within `--body-read-timeout`
/// (408).
pub struct RawBody(pub Bytes);

impl FromRequest<Arc<AppState>> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let timeout = state.args.body_read_timeout;
        let bytes = tokio::time::timeout(timeout, Bytes::from_request(req, state))
            .await
            .map_err(|_| {
                ApiError::new(ErrorKind::Timeout, format!("the request body did not arrive within {timeout:?}"))
            })?
            .map_err(|e| {
                if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::validation(format!(
                        "request body is larger than the limit of {} bytes (--payload-limit)",
                        state.args.payload_limit
                    ))
                } else {
                    ApiError::invalid(e.body_text())
                }
            })?;
        Ok(RawBody(bytes))
    }
}

/// A JSON request body: any content type, read as [`RawBody`], malformed JSON or wrong field
/// types answered with 422 and the parser's message.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
    }
}
