//! The HTTP routes: TEI's (`/embed`, `/embed_all`, `/predict`, `/rerank`, `/similarity`,
//! `/tokenize`, `/decode`, `/info`, `/health`, `/metrics`) and OpenAI's `/v1/embeddings`.

use crate::batcher::{Output, Timing, Want};
use crate::encode::Sequence;
use crate::error::{ApiError, ErrorKind};
use crate::state::{AppState, JsonBody, ModelKind, Ready};
use crate::types::*;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use modernbert::formats::colbert::maxsim;
use modernbert::formats::Format;
use modernbert::pipelines::EmbedOptions;
use serde::Serialize;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

type AppResult = Result<Response, ApiError>;
type St = State<Arc<AppState>>;

/// The application router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.args.payload_limit;
    Router::new()
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
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Counts every answer in `/metrics` and logs it.
async fn observe(State(state): St, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string());
    let route = route.unwrap_or_else(|| "unmatched".into());
    let method = req.method().clone();
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status();
    state.metrics.count_response(&route, status.as_u16());
    let ms = start.elapsed().as_secs_f64() * 1e3;
    if status.is_server_error() {
        tracing::warn!(%method, route, status = status.as_u16(), ms, "request");
    } else {
        tracing::info!(%method, route, status = status.as_u16(), ms, "request");
    }
    response
}

/// Timing of one inference request, sent back as TEI's `x-*` headers.
struct Meta {
    start: Instant,
    tokens: usize,
    tokenization: Duration,
    timing: Timing,
}

/// Serializes `value` off the async threads (answers can be large) and adds the timing headers.
async fn respond<T: Serialize + Send + 'static>(state: &AppState, value: T, meta: Meta) -> AppResult {
    let body = tokio::task::spawn_blocking(move || serde_json::to_vec(&value))
        .await
        .map_err(|e| ApiError::backend(e.to_string()))?
        .map_err(|e| ApiError::backend(e.to_string()))?;
    let total = meta.start.elapsed();
    let m = &state.metrics;
    m.request_duration.observe_duration(total);
    m.tokenization_duration.observe_duration(meta.tokenization);
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
        )));
    }
    Ok(())
}

/// Finished sentence embeddings of the inputs: the library's pipeline, then Matryoshka
/// truncation to `dimensions` (default: the model's saved `truncate_dim`) and optional L2, as
/// sentence-transformers' `encode(truncate_dim, normalize_embeddings)`.
async fn pooled(
    state: &AppState,
    ready: &Ready,
    route: &str,
    sequences: Vec<Sequence>,
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
    let vectors = outputs
        .into_iter()
        .map(|o| match o {
            Output::Vector(v) => Ok(ready.model.finish(v, &finish)),
            _ => Err(ApiError::backend("the model returned no sentence embedding")),
        })
        .collect::<Result<_, _>>()?;
    Ok((vectors, Meta { start, tokens, tokenization: encoded.tokenization, timing }))
}

async fn embed(State(state): St, body: Result<JsonBody<EmbedRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let (ready, _in_flight) = state.admit()?;
    let sequences = inputs(req.inputs.items);
    let (vectors, meta) =
        pooled(&state, &ready, "/embed", sequences, req.options, req.dimensions, req.normalize).await?;
    respond(&state, vectors, meta).await
}

async fn embed_all(State(state): St, body: Result<JsonBody<EmbedAllRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let (ready, _in_flight) = state.admit()?;
    let start = Instant::now();
    state.check_batch(req.inputs.items.len(), "inputs")?;
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
    respond(&state, vectors, Meta { start, tokens, tokenization: encoded.tokenization, timing }).await
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
    Err(ApiError::backend(format!("{what}; the loaded model is {}", loaded(ready))))
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
    Ok((logits, Meta { start, tokens, tokenization: encoded.tokenization, timing }))
}

async fn predict(State(state): St, body: Result<JsonBody<PredictRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let (ready, _in_flight) = state.admit()?;
    need_classifier(&ready, false)?;
    state.check_batch(req.inputs.items.len(), "inputs")?;
    let sequences = req
        .inputs
        .items
        .into_iter()
        .map(|(a, b)| match b {
            Some(b) => Sequence::Pair(a, b),
            None => Sequence::Input(Input::Text(a)),
        })
        .collect();
    let (logits, meta) = logits(&ready, sequences, req.options).await?;
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
    if req.inputs.single {
        let one = predictions.into_iter().next().unwrap_or_default();
        respond(&state, one, meta).await
    } else {
        respond(&state, predictions, meta).await
    }
}

async fn rerank(State(state): St, body: Result<JsonBody<RerankRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let (ready, _in_flight) = state.admit()?;
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
            let (logits, meta) = logits(&ready, sequences, req.options).await?;
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
    respond(&state, ranks, meta).await
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
    let scores = vectors.iter().map(|d| maxsim(&query, d)).collect();
    Ok((scores, Meta { start, tokens, tokenization: encoded.tokenization, timing }))
}

async fn similarity(State(state): St, body: Result<JsonBody<SimilarityRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let (ready, _in_flight) = state.admit()?;
    if req.inputs.sentences.is_empty() {
        return Err(ApiError::empty("`inputs.sentences` cannot be empty"));
    }
    let mut sequences = vec![Sequence::Input(Input::Text(req.inputs.source_sentence))];
    sequences.extend(req.inputs.sentences.into_iter().map(|s| Sequence::Input(Input::Text(s))));
    let options = req.parameters.unwrap_or_default();
    let (vectors, meta) = pooled(&state, &ready, "/similarity", sequences, options, None, true).await?;
    let source = &vectors[0];
    let cosines: Vec<f32> = vectors[1..].iter().map(|v| v.iter().zip(source).map(|(a, b)| a * b).sum()).collect();
    respond(&state, cosines, meta).await
}

async fn openai_embeddings(State(state): St, body: Result<JsonBody<OpenAiRequest>, ApiError>) -> AppResult {
    let inner = async {
        let JsonBody(req) = body?;
        let (ready, _in_flight) = state.admit()?;
        let options = EncodeOptions { prompt_name: req.prompt_name.clone(), ..Default::default() };
        let (vectors, meta) =
            pooled(&state, &ready, "/v1/embeddings", inputs(req.input.items), options, req.dimensions, true).await?;
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
        respond(&state, body, meta).await
    };
    inner.await.map_err(ApiError::openai)
}

async fn tokenize(State(state): St, body: Result<JsonBody<TokenizeRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let ready = state.ready()?.clone();
    state.check_batch(req.inputs.items.len(), "inputs")?;
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
    let tokens = tokio::task::spawn_blocking(move || {
        let prompt = encoder.prompt(req.prompt_name.as_deref())?;
        texts
            .iter()
            .map(|t| encoder.tokenize(t, req.add_special_tokens, prompt.as_deref()))
            .collect::<Result<Vec<_>, ApiError>>()
    })
    .await
    .map_err(|e| ApiError::backend(e.to_string()))??;
    Ok(axum::Json(tokens).into_response())
}

async fn decode(State(state): St, body: Result<JsonBody<DecodeRequest>, ApiError>) -> AppResult {
    let JsonBody(req) = body?;
    let ready = state.ready()?.clone();
    state.check_batch(req.ids.items.len(), "ids")?;
    let texts = req
        .ids
        .items
        .iter()
        .map(|ids| ready.encoder.decode(ids, req.skip_special_tokens))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(axum::Json(texts).into_response())
}

async fn info(State(state): St) -> AppResult {
    Ok(axum::Json(state.ready()?.info.clone()).into_response())
}

async fn health(State(state): St) -> AppResult {
    state.ready().map_err(|_| ApiError::new(ErrorKind::Unhealthy, "unhealthy"))?;
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
