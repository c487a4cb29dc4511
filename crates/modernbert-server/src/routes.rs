//! The HTTP routes: TEI's (`/embed`, `/embed_all`, `/predict`, `/rerank`, `/similarity`,
//! `/tokenize`, `/decode`, `POST /` and `/invocations` by the model's task, `/info`, `/health`,
//! `/metrics`), OpenAI's `/v1/embeddings`, `/openapi.json` and `/docs`, code search (`/search`,
//! with `--index`: [`crate::search`]); and the middleware every
//! request passes (outermost first): CORS, error shaping, metrics and logs, API key, shutdown
//! deadline, admission (429), body limit (413).

use crate::batcher::{Output, Timing, Want};
use crate::encode::Sequence;
use crate::error::{ApiError, ErrorKind};
use crate::metrics::Task;
use crate::state::{AppState, JsonBody, ModelKind, Ready};
use crate::types::*;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use http_body_util::BodyExt;
use modernbert::formats::colbert::maxsim;
use modernbert::formats::Format;
use modernbert::pipelines::EmbedOptions;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tower_http::cors::{AllowOrigin, CorsLayer};

type AppResult = Result<Response, ApiError>;
type St = State<Arc<AppState>>;

/// The application router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.args.payload_limit;
    let app = Router::new()
        .route("/", get(health).post(root))
        .route("/invocations", post(root))
        .route("/embed", post(embed))
        .route("/embed_all", post(embed_all))
        .route("/predict", post(predict))
        .route("/rerank", post(rerank))
        .route("/similarity", post(similarity))
        .route("/tokenize", post(tokenize))
        .route("/decode", post(decode))
        .route("/v1/embeddings", post(openai_embeddings))
        .route("/embeddings", post(openai_embeddings))
        .route("/info", get(info))
        .route("/health", get(health))
        .route("/ping", get(health))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(crate::openapi::json))
        .route("/docs", get(crate::openapi::page))
        .route("/search", get(crate::search::page).post(crate::search::search))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), admission))
        .layer(middleware::from_fn_with_state(state.clone(), abort_at_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(middleware::from_fn(shape_errors));
    let app = match cors(&state.args.cors_allow_origin) {
        Some(layer) => app.layer(layer),
        None => app,
    };
    app.with_state(state)
}

/// `--cors-allow-origin`: none (no CORS headers), `*`, or a list of origins.
fn cors(origins: &[String]) -> Option<CorsLayer> {
    let origins: Vec<&String> = origins.iter().filter(|o| !o.trim().is_empty()).collect();
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o.trim() == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o.trim()).ok()))
    };
    Some(
        CorsLayer::new()
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
            .allow_origin(allow),
    )
}

/// Whether `path` is an OpenAI route (its errors take OpenAI's shape).
pub fn is_openai(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/") || path == "/embeddings"
}

/// Routes open without the API key (TEI's public routes, and the API description).
fn is_public(method: &Method, path: &str) -> bool {
    (method == Method::GET || method == Method::HEAD)
        && matches!(path, "/" | "/health" | "/ping" | "/metrics" | "/docs" | "/openapi.json")
}

/// Answers `error` after discarding the request body (up to `--payload-limit` bytes, within
/// `--body-read-timeout`), so that a keep-alive connection stays usable after a refusal without
/// the body ever being held in memory.
async fn refuse(state: &AppState, req: Request, error: ApiError) -> Response {
    let mut body = req.into_body();
    let (mut left, deadline) = (state.args.payload_limit, Instant::now() + state.args.body_read_timeout);
    while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(deadline.into(), body.frame()).await {
        match frame.data_ref() {
            Some(data) if data.len() <= left => left -= data.len(),
            Some(_) => break,
            None => {}
        }
    }
    error.into_response()
}

/// `--api-key`: `Authorization: Bearer <key>` on every non-public route, else 401.
async fn authorize(State(state): St, req: Request, next: Next) -> Response {
    let Some(key) = state.args.api_key.as_deref() else {
        return next.run(req).await;
    };
    if req.method() == Method::OPTIONS || is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
        let (scheme, token) = v.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
    });
    if given.is_some_and(|t| constant_time_eq(t.as_bytes(), key.as_bytes())) {
        return next.run(req).await;
    }
    let error = ApiError::new(
        ErrorKind::Unauthorized,
        if given.is_some() {
            "wrong API key"
        } else {
            "this server needs an API key: send Authorization: Bearer <key>"
        },
    );
    refuse(&state, req, error).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Admission control for every POST route, before its body is read: over
/// `--max-concurrent-requests` requests in flight, 429.
async fn admission(State(state): St, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    match state.admit() {
        Ok(in_flight) => {
            let response = next.run(req).await;
            drop(in_flight);
            response
        }
        Err(e) => refuse(&state, req, e).await,
    }
}

/// Once the shutdown deadline passed, requests still open are answered 503.
async fn abort_at_deadline(State(state): St, req: Request, next: Next) -> Response {
    tokio::select! {
        biased;
        response = next.run(req) => response,
        () = state.shutdown.aborted() => ApiError::unhealthy("the server is shutting down").into_response(),
    }
}

/// Counts every answer in `/metrics` (and TEI's `te_request_failure` for POST routes) and logs it.
async fn observe(State(state): St, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let route = route.unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    state.metrics.count_response(&route, status.as_u16());
    if method == Method::POST {
        if let Some(e) = response.extensions().get::<ApiError>() {
            state.metrics.request_failed(e.failure_label());
        }
    }
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), ms, "request");
    } else {
        tracing::info!(%method, route, status = status.as_u16(), ms, "request");
    }
    response
}

/// Gives every error a JSON body ([`ApiError`]; the HTTP layer's 405 has none), in OpenAI's shape
/// on OpenAI routes.
async fn shape_errors(req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let response = next.run(req).await;
    let status = response.status();
    if !status.is_client_error() && !status.is_server_error() {
        return response;
    }
    let openai = is_openai(&path);
    let error = match response.extensions().get::<ApiError>() {
        Some(_) if !openai => return response,
        Some(e) => e.clone(),
        None => match from_status(status, &method, &path, response.headers()) {
            Some(e) => e,
            None => return response,
        },
    };
    let error = if openai { error.openai() } else { error };
    let (parts, _) = response.into_parts();
    let mut shaped = error.into_response();
    for name in [header::ALLOW, header::RETRY_AFTER] {
        if let Some(v) = parts.headers.get(&name) {
            shaped.headers_mut().insert(name, v.clone());
        }
    }
    shaped
}

/// An [`ApiError`] for an error answer the HTTP layer made without one.
fn from_status(status: StatusCode, method: &Method, path: &str, headers: &HeaderMap) -> Option<ApiError> {
    let kind = match status {
        StatusCode::METHOD_NOT_ALLOWED => {
            // axum adds `Allow` outside the middleware; the routes' methods are known here.
            let allowed = headers.get(header::ALLOW).and_then(|v| v.to_str().ok()).unwrap_or(allowed_methods(path));
            let message = format!("method {method} is not allowed on {path}; allowed: {allowed}");
            return Some(ApiError::new(ErrorKind::MethodNotAllowed, message));
        }
        StatusCode::BAD_REQUEST => ErrorKind::BadRequest,
        StatusCode::NOT_FOUND => ErrorKind::NotFound,
        StatusCode::UNAUTHORIZED => ErrorKind::Unauthorized,
        StatusCode::REQUEST_TIMEOUT => ErrorKind::Timeout,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorKind::Validation,
        StatusCode::TOO_MANY_REQUESTS => ErrorKind::Overloaded,
        StatusCode::SERVICE_UNAVAILABLE => ErrorKind::Unhealthy,
        StatusCode::UNPROCESSABLE_ENTITY => ErrorKind::Invalid,
        _ => return None,
    };
    Some(ApiError::new(kind, format!("{method} {path}: {}", status.canonical_reason().unwrap_or("error"))))
}

/// The methods [`router`] serves `path` with.
fn allowed_methods(path: &str) -> &'static str {
    match path {
        "/" | "/search" => "GET,HEAD,POST",
        "/info" | "/health" | "/ping" | "/metrics" | "/openapi.json" | "/docs" => "GET,HEAD",
        _ => "POST",
    }
}

/// Parses a JSON value as a request body (422 with the parser's message).
fn parse<T: DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
}

/// `POST /` and `/invocations` (the route of huggingface_hub's `InferenceClient(model=URL)`, and
/// SageMaker's): the loaded model's task, as TEI dispatches it: a classifier → `/predict`, a
/// reranker (cross-encoder) → `/rerank`, an embedding model → `/embed`, or `/similarity` when
/// `inputs` is `{"source_sentence", "sentences"}` (TEI needs `TASK=sentence-similarity` for
/// that); a ColBERT model → `/rerank` when the body has `query`, else `/embed_all`.
async fn root(State(state): St, body: Result<JsonBody<Value>, ApiError>) -> AppResult {
    let JsonBody(body) = body?;
    let ready = state.ready()?.clone();
    match ready.kind {
        ModelKind::Classifier | ModelKind::TokenClassifier => predict_request(&state, parse(body)?).await,
        ModelKind::Reranker => rerank_request(&state, parse(body)?).await,
        ModelKind::Colbert if body.get("query").is_some() => rerank_request(&state, parse(body)?).await,
        ModelKind::Colbert => embed_all_request(&state, parse(body)?).await,
        ModelKind::Embedding if body.get("inputs").is_some_and(Value::is_object) => {
            similarity_request(&state, parse(body)?).await
        }
        ModelKind::Embedding => embed_request(&state, parse(body)?).await,
    }
}

/// Timing and accounting of one inference request: TEI's `x-*` headers and `te_*` metrics.
struct Meta {
    start: Instant,
    tokens: usize,
    tokenization: Duration,
    timing: Timing,
    /// One bare input (TEI's `method="single"`) rather than a list.
    single: bool,
    task: Task,
    inputs: usize,
}

/// Answers with small JSON bodies serialised in place, larger ones on the blocking pool.
const INLINE_BYTES: usize = 64 << 10;

/// Serialises `value` (off the async threads when the answer is large: `estimate` bytes or
/// more), adds the timing headers and records the request's metrics.
async fn respond<T: Serialize + Send + 'static>(state: &AppState, value: T, estimate: usize, meta: Meta) -> AppResult {
    let body = if estimate < INLINE_BYTES {
        serde_json::to_vec(&value).map_err(|e| ApiError::backend(e.to_string()))?
    } else {
        tokio::task::spawn_blocking(move || serde_json::to_vec(&value))
            .await
            .map_err(|e| ApiError::backend(e.to_string()))?
            .map_err(|e| ApiError::backend(e.to_string()))?
    };
    let total = meta.start.elapsed();
    state.metrics.request_succeeded(
        meta.single,
        meta.task,
        meta.inputs,
        [total, meta.tokenization, meta.timing.queue, meta.timing.inference],
    );
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let ms = |d: Duration| HeaderValue::from(d.as_millis() as u64);
    headers.insert("x-compute-type", HeaderValue::from_static("cpu"));
    headers.insert("x-compute-tokens", HeaderValue::from(meta.tokens));
    headers.insert("x-total-time", ms(total));
    headers.insert("x-tokenization-time", ms(meta.tokenization));
    headers.insert("x-queue-time", ms(meta.timing.queue));
    headers.insert("x-inference-time", ms(meta.timing.inference));
    Ok(response)
}

/// Bytes of JSON for `floats` numbers, roughly (for [`respond`]'s choice).
fn json_estimate(floats: usize) -> usize {
    floats * 12
}

fn inputs(inputs: Vec<Input>) -> Vec<Sequence> {
    inputs.into_iter().map(Sequence::Input).collect()
}

/// A description of the loaded model for error messages.
fn loaded(ready: &Ready) -> String {
    match ready.kind {
        ModelKind::Classifier => format!("{} with {} labels", ready.architecture, ready.labels.len()),
        _ => format!("{} ({})", ready.architecture, ready.model.format.name()),
    }
}

/// Refuses routes that need one vector per input on a ColBERT model (one vector per token).
fn need_single_vectors(ready: &Ready, route: &str) -> Result<(), ApiError> {
    if ready.kind == ModelKind::Colbert {
        return Err(ApiError::backend(format!(
            "{route} needs one vector per input, but the loaded model is a ColBERT model (one vector per token): \
             use /embed_all for its token vectors and /rerank for MaxSim scores"
        ))
        .failure("model_type"));
    }
    Ok(())
}

/// Finished sentence embeddings of the inputs: the library's pipeline, then Matryoshka
/// truncation to `dimensions` (default: the model's saved `truncate_dim`) and optional L2, as
/// sentence-transformers' `encode(truncate_dim, normalize_embeddings)`.
#[allow(clippy::too_many_arguments)]
async fn pooled(
    state: &AppState,
    ready: &Ready,
    route: &str,
    sequences: Vec<Sequence>,
    single: bool,
    options: EncodeOptions,
    dimensions: Option<usize>,
    normalize: bool,
) -> Result<(Vec<Vec<f32>>, Meta), ApiError> {
    let start = Instant::now();
    need_single_vectors(ready, route)?;
    state.check_batch(sequences.len(), "inputs")?;
    if let Some(d) = dimensions {
        if d == 0 || d > ready.dimension {
            return Err(ApiError::invalid(format!("dimensions must be between 1 and {}, got {d}", ready.dimension)));
        }
    }
    let encoded = ready.encode(sequences, options).await?;
    let tokens = encoded.tokens();
    let (outputs, timing) = ready.run(encoded.prepared, Want::Embedding).await?;
    let finish = EmbedOptions { truncate_dim: dimensions, normalize, ..Default::default() };
    let vectors: Vec<Vec<f32>> = outputs
        .into_iter()
        .map(|o| match o {
            Output::Vector(v) => Ok(ready.model.finish(v, &finish)),
            _ => Err(ApiError::backend("the model returned no sentence embedding")),
        })
        .collect::<Result<_, _>>()?;
    let meta = Meta {
        start,
        tokens,
        tokenization: encoded.tokenization,
        timing,
        single,
        task: Task::Embed,
        inputs: vectors.len(),
    };
    Ok((vectors, meta))
}

async fn embed(State(state): St, body: Result<JsonBody<EmbedRequest>, ApiError>) -> AppResult {
    embed_request(&state, body?.0).await
}

async fn embed_request(state: &AppState, req: EmbedRequest) -> AppResult {
    let ready = state.ready()?.clone();
    state.metrics.request_received(req.inputs.single);
    let sequences = inputs(req.inputs.items);
    let (vectors, meta) =
        pooled(state, &ready, "/embed", sequences, req.inputs.single, req.options, req.dimensions, req.normalize)
            .await?;
    let estimate = json_estimate(vectors.iter().map(Vec::len).sum());
    respond(state, vectors, estimate, meta).await
}

async fn embed_all(State(state): St, body: Result<JsonBody<EmbedAllRequest>, ApiError>) -> AppResult {
    embed_all_request(&state, body?.0).await
}

async fn embed_all_request(state: &AppState, req: EmbedAllRequest) -> AppResult {
    let ready = state.ready()?.clone();
    state.metrics.request_received(req.inputs.single);
    let start = Instant::now();
    state.check_batch(req.inputs.items.len(), "inputs")?;
    let single = req.inputs.single;
    let encoded = ready.encode(inputs(req.inputs.items), req.options).await?;
    let tokens = encoded.tokens();
    let (outputs, timing) = ready.run(encoded.prepared, Want::TokenStates).await?;
    let vectors: Vec<Vec<Vec<f32>>> = outputs
        .into_iter()
        .map(|o| match o {
            Output::Vectors(t) => Ok(t),
            _ => Err(ApiError::backend("the model returned no token vectors")),
        })
        .collect::<Result<_, _>>()?;
    let estimate = json_estimate(vectors.iter().flatten().map(Vec::len).sum());
    let inputs = vectors.len();
    let meta = Meta { start, tokens, tokenization: encoded.tokenization, timing, single, task: Task::Embed, inputs };
    respond(state, vectors, estimate, meta).await
}

/// Refuses routes that need a sequence-classification head (or a one-label one for rerank;
/// `/rerank` also serves ColBERT models, handled before this).
fn need_classifier(ready: &Ready, rerank: bool) -> Result<(), ApiError> {
    let ok = match ready.kind {
        ModelKind::Reranker => true,
        ModelKind::Classifier => !rerank,
        ModelKind::Embedding | ModelKind::TokenClassifier | ModelKind::Colbert => false,
    };
    if ok {
        return Ok(());
    }
    let what = if rerank {
        "/rerank needs a cross-encoder (ModernBertForSequenceClassification with one label) or a ColBERT model"
    } else {
        "/predict needs a sequence-classification model (ModernBertForSequenceClassification)"
    };
    Err(ApiError::backend(format!("{what}; the loaded model is {}", loaded(ready))).failure("model_type"))
}

/// Logits → `/predict` scores, Hugging Face's text-classification rule: the logits themselves
/// (`raw`), sigmoid for one label, softmax otherwise.
fn scores(mut logits: Vec<f32>, raw: bool) -> Vec<f32> {
    if raw {
        return logits;
    }
    if logits.len() == 1 {
        logits[0] = 1.0 / (1.0 + (-logits[0]).exp());
        return logits;
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    logits.iter_mut().for_each(|x| *x = (*x - max).exp());
    let sum: f32 = logits.iter().sum();
    logits.iter_mut().for_each(|x| *x /= sum);
    logits
}

/// Runs sequences through the classifier; one logit vector per sequence.
async fn logits(
    ready: &Ready,
    sequences: Vec<Sequence>,
    single: bool,
    options: EncodeOptions,
) -> Result<(Vec<Vec<f32>>, Meta), ApiError> {
    let start = Instant::now();
    let encoded = ready.encode(sequences, options).await?;
    let tokens = encoded.tokens();
    let (outputs, timing) = ready.run(encoded.prepared, Want::Logits).await?;
    let logits = outputs
        .into_iter()
        .map(|o| match o {
            Output::Logits(l) => Ok(l),
            _ => Err(ApiError::backend("the model returned no logits")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    if logits.iter().any(Vec::is_empty) {
        return Err(ApiError::backend("the classifier returned no logits"));
    }
    if logits.iter().flatten().any(|s| !s.is_finite()) {
        return Err(ApiError::backend("the classifier returned non-finite scores"));
    }
    let inputs = logits.len();
    let meta = Meta { start, tokens, tokenization: encoded.tokenization, timing, single, task: Task::Predict, inputs };
    Ok((logits, meta))
}

async fn predict(State(state): St, body: Result<JsonBody<PredictRequest>, ApiError>) -> AppResult {
    predict_request(&state, body?.0).await
}

async fn predict_request(state: &AppState, req: PredictRequest) -> AppResult {
    let ready = state.ready()?.clone();
    state.metrics.request_received(req.inputs.single);
    need_classifier(&ready, false)?;
    state.check_batch(req.inputs.items.len(), "inputs")?;
    let single = req.inputs.single;
    let sequences = req
        .inputs
        .items
        .into_iter()
        .map(|(a, b)| match b {
            Some(b) => Sequence::Pair(a, b),
            None => Sequence::Input(Input::Text(a)),
        })
        .collect();
    let (logits, meta) = logits(&ready, sequences, single, req.options).await?;
    let predictions: Vec<Vec<Prediction>> = logits
        .into_iter()
        .map(|l| scores(l, req.raw_scores))
        .map(|s| {
            let mut p: Vec<Prediction> = s
                .into_iter()
                .zip(&ready.labels)
                .map(|(score, label)| Prediction { score, label: label.clone() })
                .collect();
            p.sort_by(|a, b| b.score.total_cmp(&a.score));
            p
        })
        .collect();
    let estimate = json_estimate(predictions.len() * ready.labels.len() * 3);
    if single {
        let one = predictions.into_iter().next().unwrap_or_default();
        respond(state, one, estimate, meta).await
    } else {
        respond(state, predictions, estimate, meta).await
    }
}

async fn rerank(State(state): St, body: Result<JsonBody<RerankRequest>, ApiError>) -> AppResult {
    rerank_request(&state, body?.0).await
}

async fn rerank_request(state: &AppState, req: RerankRequest) -> AppResult {
    let ready = state.ready()?.clone();
    state.metrics.request_received(false);
    if ready.kind != ModelKind::Colbert {
        need_classifier(&ready, true)?;
    }
    state.check_batch(req.texts.len(), "texts")?;
    if req.query.trim().is_empty() {
        return Err(ApiError::empty("`query` cannot be empty"));
    }
    let (scores, meta) = match &ready.model.format {
        Format::Colbert(_) => maxsim_scores(&ready, &req.query, &req.texts, req.options).await?,
        Format::CrossEncoder(ce) => {
            let sequences = req.texts.iter().map(|t| Sequence::Pair(req.query.clone(), t.clone())).collect();
            let (logits, meta) = logits(&ready, sequences, false, req.options).await?;
            // The cross-encoder's own activation (sentence-transformers' `activation_fn`).
            let scores = logits.into_iter().map(|l| if req.raw_scores { l[0] } else { ce.scores(&l)[0] }).collect();
            (scores, meta)
        }
        other => return Err(ApiError::backend(format!("/rerank cannot serve a {} model", other.name()))),
    };
    let mut ranks: Vec<Rank> = scores
        .into_iter()
        .enumerate()
        .map(|(index, score)| Rank { index, text: req.return_text.then(|| req.texts[index].clone()), score })
        .collect();
    ranks.sort_by(|a, b| b.score.total_cmp(&a.score));
    let estimate =
        json_estimate(ranks.len() * 3) + ranks.iter().filter_map(|r| r.text.as_ref()).map(String::len).sum::<usize>();
    respond(state, ranks, estimate, meta).await
}

/// ColBERT relevance: the query's and every document's token vectors (PyLate's query and
/// document rules), then MaxSim (exact: over each document's own vectors, no padding).
async fn maxsim_scores(
    ready: &Ready,
    query: &str,
    texts: &[String],
    options: EncodeOptions,
) -> Result<(Vec<f32>, Meta), ApiError> {
    let start = Instant::now();
    // Documents first, so that errors name their index in `texts`; the query last.
    let mut sequences: Vec<Sequence> = texts.iter().map(|t| Sequence::Input(Input::Text(t.clone()))).collect();
    sequences.push(Sequence::Query(query.to_string()));
    let encoded = ready.encode(sequences, options).await?;
    let tokens = encoded.tokens();
    let (outputs, timing) = ready.run(encoded.prepared, Want::Embedding).await?;
    let mut vectors = outputs
        .into_iter()
        .map(|o| match o {
            Output::Vectors(v) => Ok(v),
            _ => Err(ApiError::backend("the ColBERT model returned no token vectors")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = vectors.pop().unwrap_or_default();
    let scores: Vec<f32> = vectors.iter().map(|d| maxsim(&query, d)).collect();
    let inputs = scores.len() + 1;
    let meta =
        Meta { start, tokens, tokenization: encoded.tokenization, timing, single: false, task: Task::Embed, inputs };
    Ok((scores, meta))
}

async fn similarity(State(state): St, body: Result<JsonBody<SimilarityRequest>, ApiError>) -> AppResult {
    similarity_request(&state, body?.0).await
}

async fn similarity_request(state: &AppState, req: SimilarityRequest) -> AppResult {
    let ready = state.ready()?.clone();
    state.metrics.request_received(false);
    if req.inputs.sentences.is_empty() {
        return Err(ApiError::empty("`inputs.sentences` cannot be empty"));
    }
    let mut sequences = vec![Sequence::Input(Input::Text(req.inputs.source_sentence))];
    sequences.extend(req.inputs.sentences.into_iter().map(|s| Sequence::Input(Input::Text(s))));
    let options = req.parameters.unwrap_or_default();
    let (vectors, meta) = pooled(state, &ready, "/similarity", sequences, false, options, None, true).await?;
    let source = &vectors[0];
    let cosines: Vec<f32> = vectors[1..].iter().map(|v| v.iter().zip(source).map(|(a, b)| a * b).sum()).collect();
    let estimate = json_estimate(cosines.len());
    respond(state, cosines, estimate, meta).await
}

async fn openai_embeddings(State(state): St, body: Result<JsonBody<OpenAiRequest>, ApiError>) -> AppResult {
    let inner = async {
        let JsonBody(req) = body?;
        let ready = state.ready()?.clone();
        state.metrics.request_received(req.input.single);
        let options = EncodeOptions { prompt_name: req.prompt_name.clone(), ..Default::default() };
        let single = req.input.single;
        let (vectors, meta) =
            pooled(&state, &ready, "/v1/embeddings", inputs(req.input.items), single, options, req.dimensions, true)
                .await?;
        let estimate = json_estimate(vectors.iter().map(Vec::len).sum());
        let data: Vec<_> = vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| {
                let embedding = match req.encoding_format {
                    EncodingFormat::Float => json!(v),
                    EncodingFormat::Base64 => {
                        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                        json!(base64::engine::general_purpose::STANDARD.encode(bytes))
                    }
                };
                json!({ "object": "embedding", "embedding": embedding, "index": index })
            })
            .collect();
        let model =
            req.model.or_else(|| state.args.served_model_name.clone()).unwrap_or_else(|| state.args.model.clone());
        let body = json!({
            "object": "list",
            "data": data,
            "model": model,
            "usage": { "prompt_tokens": meta.tokens, "total_tokens": meta.tokens },
        });
        respond(&state, body, estimate, meta).await
    };
    inner.await.map_err(ApiError::openai)
}

async fn tokenize(State(state): St, body: Result<JsonBody<TokenizeRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let ready = state.ready()?.clone();
    state.metrics.request_received(req.inputs.single);
    state.check_batch(req.inputs.items.len(), "inputs")?;
    let single = req.inputs.single;
    let texts = req
        .inputs
        .items
        .into_iter()
        .enumerate()
        .map(|(i, x)| match x {
            Input::Text(t) => Ok(t),
            Input::Ids(_) => Err(ApiError::invalid(format!("input {i}: /tokenize takes text, not token ids"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let encoder = ready.encoder.clone();
    let body = tokio::task::spawn_blocking(move || {
        let prompt = encoder.prompt(req.prompt_name.as_deref())?;
        let tokens = texts
            .iter()
            .map(|t| encoder.tokenize(t, req.add_special_tokens, prompt.as_deref()))
            .collect::<Result<Vec<_>, ApiError>>()?;
        serde_json::to_vec(&tokens).map_err(|e| ApiError::backend(e.to_string()))
    })
    .await
    .map_err(|e| ApiError::backend(e.to_string()))??;
    state.metrics.counter("te_request_success", &[("method", if single { "single" } else { "batch" })]).increment(1);
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

async fn decode(State(state): St, body: Result<JsonBody<DecodeRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let ready = state.ready()?.clone();
    let single = req.ids.items.len() == 1;
    state.metrics.request_received(single);
    state.check_batch(req.ids.items.len(), "ids")?;
    let texts = req
        .ids
        .items
        .iter()
        .map(|ids| ready.encoder.decode(ids, req.skip_special_tokens))
        .collect::<Result<Vec<_>, _>>()?;
    state.metrics.counter("te_request_success", &[("method", if single { "single" } else { "batch" })]).increment(1);
    Ok(axum::Json(texts).into_response())
}

async fn info(State(state): St) -> AppResult {
    Ok(axum::Json(state.ready()?.info.clone()).into_response())
}

async fn health(State(state): St) -> AppResult {
    state.ready().map_err(|_| ApiError::unhealthy("unhealthy"))?;
    Ok(StatusCode::OK.into_response())
}

async fn metrics(State(state): St) -> Response {
    let mut response = state.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    response
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no route {} {}", req.method(), req.uri().path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_probabilities_unless_raw() {
        assert_eq!(scores(vec![0.0], false), vec![0.5]);
        let p = scores(vec![1.0, 1.0], false);
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6);
        assert_eq!(scores(vec![2.0, -1.0], true), vec![2.0, -1.0]);
    }

    #[test]
    fn everything_but_metrics_is_503_until_the_model_is_ready() {
        use crate::client;
        let rt = tokio::runtime::Runtime::new().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(AppState::new(crate::ServeArgs::for_model("never-loaded")));
        rt.spawn(async move { axum::serve(listener, router(state)).await });
        let health = client::get(addr, "/health").unwrap();
        assert_eq!((health.status, health.json()["error_type"].as_str()), (503, Some("unhealthy")));
        assert_eq!(client::get(addr, "/info").unwrap().status, 503);
        assert_eq!(client::post_json(addr, "/embed", &json!({ "inputs": "x" })).unwrap().status, 503);
        let metrics = client::get(addr, "/metrics").unwrap();
        assert!(metrics.status == 200 && metrics.text().contains("te_ready 0"));
    }
}
