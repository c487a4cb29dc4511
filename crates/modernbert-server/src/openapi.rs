//! The API description: OpenAPI 3.1 at `/openapi.json` (utoipa) and a small self-contained page
//! at `/docs` that renders it and can send requests (no external assets: works offline).

#![allow(dead_code)] // the functions below only carry `#[utoipa::path]` descriptions

use crate::types::*;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// A TEI error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
    /// `validation`, `tokenizer`, `empty`, `overloaded`, `backend`, `unhealthy`, `not_found`,
    /// `method_not_allowed`, `unauthorized`, `timeout`.
    pub error_type: String,
}

/// An error answer of the OpenAI routes: `{"error": {...}}`.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

/// OpenAI's error object.
#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    pub message: String,
    /// The TEI `error_type`.
    #[serde(rename = "type")]
    pub kind: String,
    pub param: Option<String>,
    /// The HTTP status.
    pub code: u16,
}

/// `/v1/embeddings` answer.
#[derive(Serialize, ToSchema)]
pub struct OpenAiResponse {
    pub object: String,
    pub data: Vec<OpenAiEmbedding>,
    pub model: String,
    pub usage: OpenAiUsage,
}

/// One embedding of `/v1/embeddings`: floats, or base64 of little-endian f32 bytes.
#[derive(Serialize, ToSchema)]
pub struct OpenAiEmbedding {
    pub object: String,
    #[schema(value_type = Object)]
    pub embedding: serde_json::Value,
    pub index: usize,
}

/// Token counts of `/v1/embeddings`.
#[derive(Serialize, ToSchema)]
pub struct OpenAiUsage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

/// Embeddings, one per input.
#[utoipa::path(post, path = "/embed", tag = "TEI", request_body = EmbedRequest,
    responses(
        (status = 200, description = "One vector per input", body = Vec<Vec<f32>>),
        (status = 413, description = "Too many inputs, body too large, or an input too long", body = ErrorBody),
        (status = 422, description = "Malformed request or input", body = ErrorBody),
        (status = 424, description = "The model cannot embed", body = ErrorBody),
        (status = 429, description = "Too many requests in flight", body = ErrorBody),
    ))]
fn embed() {}

/// Every token's final hidden state (ColBERT: the document token vectors).
#[utoipa::path(post, path = "/embed_all", tag = "TEI", request_body = EmbedAllRequest,
    responses((status = 200, description = "Token vectors per input", body = Vec<Vec<Vec<f32>>>),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
fn embed_all() {}

/// Sequence classification: every label with its score, best first.
#[utoipa::path(post, path = "/predict", tag = "TEI", request_body = PredictRequest,
    responses((status = 200, description = "Labels and scores (a list of those for a batch)", body = Vec<Prediction>),
        (status = 413, body = ErrorBody), (status = 422, body = ErrorBody), (status = 424, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
fn predict() {}

/// Scores texts against a query (cross-encoder or ColBERT MaxSim), best first.
#[utoipa::path(post, path = "/rerank", tag = "TEI", request_body = RerankRequest,
    responses((status = 200, body = Vec<Rank>), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 424, body = ErrorBody), (status = 429, body = ErrorBody)))]
fn rerank() {}

/// Cosine similarity of each sentence with the source sentence.
#[utoipa::path(post, path = "/similarity", tag = "TEI", request_body = SimilarityRequest,
    responses((status = 200, body = Vec<f32>), (status = 413, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
fn similarity() {}

/// The model's task, as TEI: classifier → /predict, reranker → /rerank, embedding model →
/// /embed (or /similarity when `inputs` is `{"source_sentence", "sentences"}`), ColBERT →
/// /rerank with `query`, else /embed_all. The body and answer are those of that route.
#[utoipa::path(post, path = "/", tag = "TEI", request_body = EmbedRequest,
    responses((status = 200, description = "The answer of the dispatched route"),
        (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
fn root() {}

/// The tokens the model sees (byte offsets into the text).
#[utoipa::path(post, path = "/tokenize", tag = "TEI", request_body = TokenizeRequest,
    responses((status = 200, body = Vec<Vec<SimpleToken>>), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody)))]
fn tokenize() {}

/// Token ids back to text.
#[utoipa::path(post, path = "/decode", tag = "TEI", request_body = DecodeRequest,
    responses((status = 200, body = Vec<String>), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
fn decode() {}

/// OpenAI's embeddings (unit vectors); errors in OpenAI's shape.
#[utoipa::path(post, path = "/v1/embeddings", tag = "OpenAI", request_body = OpenAiRequest,
    responses((status = 200, body = OpenAiResponse),
        (status = 413, description = "Too many inputs (the message states the limit)", body = OpenAiErrorBody),
        (status = 422, body = OpenAiErrorBody), (status = 429, body = OpenAiErrorBody)))]
fn openai_embeddings() {}

/// TEI's model information, plus `architecture`, `format`, `pooling`, `hidden_size`, `embedding_dimension`.
#[utoipa::path(get, path = "/info", tag = "TEI",
    responses((status = 200, body = Object), (status = 503, body = ErrorBody)))]
fn info() {}

/// 200 once the model is loaded and warmed up, else 503.
#[utoipa::path(get, path = "/health", tag = "TEI",
    responses((status = 200, description = "Ready"), (status = 503, body = ErrorBody)))]
fn health() {}

/// Prometheus text format (TEI's metric names).
#[utoipa::path(get, path = "/metrics", tag = "TEI", responses((status = 200, body = String)))]
fn metrics() {}

/// `POST /search` body (`serve --index DIR`).
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"query": "parse the config file", "top_k": 10, "mode": "hybrid"}))]
pub struct SearchRequest {
    /// Words, an identifier or code.
    pub query: String,
    /// Results, 1 to 100 (default 10).
    pub top_k: Option<usize>,
    /// `hybrid` (default: BM25 and dense fused by reciprocal rank), `dense` or `bm25`.
    pub mode: Option<String>,
    /// Rerank with the searcher's reranker, if it has one (default true).
    pub rerank: Option<bool>,
}

/// One search result: lines `start_line..=end_line` (1-based) of `path` (relative to the indexed root).
#[derive(Serialize, ToSchema)]
pub struct SearchHit {
    pub path: String,
    pub start_line: u32,
    pub end_line: u32,
    pub score: f32,
    pub text: String,
}

/// `POST /search` answer: the JSON of `modernbert search --json`.
#[derive(Serialize, ToSchema)]
pub struct SearchResponse {
    pub query: String,
    pub results: Vec<SearchHit>,
}

/// Code search over the `--index` index (the JSON of `modernbert search --json`).
#[utoipa::path(post, path = "/search", tag = "Search", request_body = SearchRequest,
    responses((status = 200, body = SearchResponse),
        (status = 400, description = "Malformed body, empty query, top_k or mode out of range", body = ErrorBody),
        (status = 404, description = "The server has no --index", body = ErrorBody),
        (status = 424, description = "The search failed", body = ErrorBody),
        (status = 429, body = ErrorBody)))]
fn search() {}

/// The search page (a query box, results with file:line and highlighted code); `?q=...&mode=...` searches on load.
#[utoipa::path(get, path = "/search", tag = "Search",
    responses((status = 200, description = "HTML", content_type = "text/html", body = String),
        (status = 404, description = "The server has no --index", body = ErrorBody)))]
fn search_page() {}

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI description of the server.
#[derive(OpenApi)]
#[openapi(
    info(title = "modernbert serve",
        description = "text-embeddings-inference compatible routes and OpenAI /v1/embeddings for ModernBERT models. \
            With --api-key, every route but /health, /ping, GET /, /metrics, /docs and /openapi.json needs \
            `Authorization: Bearer <key>`."),
    paths(embed, embed_all, predict, rerank, similarity, root, tokenize, decode, openai_embeddings, info, health, metrics,
        search, search_page),
    components(schemas(ErrorBody, OpenAiErrorBody)),
    modifiers(&Security),
)]
pub struct ApiDoc;

/// The description as JSON (built once).
pub fn spec() -> &'static str {
    static SPEC: OnceLock<String> = OnceLock::new();
    SPEC.get_or_init(|| ApiDoc::openapi().to_json().expect("the OpenAPI description serialises"))
}

/// `GET /openapi.json`.
pub async fn json() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], spec()).into_response()
}

/// `GET /docs`: renders `/openapi.json`; each operation can be sent from the page.
pub async fn page() -> Html<&'static str> {
    Html(PAGE)
}

const PAGE: &str = r##"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>modernbert serve: API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:15px/1.45 system-ui,sans-serif;max-width:62rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem}details{border:1px solid #ccd;border-radius:6px;margin:.5rem 0;padding:.4rem .8rem}
summary{cursor:pointer}code,pre,textarea{font:13px ui-monospace,monospace}
.m{display:inline-block;min-width:3.5rem;font-weight:600}.post{color:#0a6}.get{color:#06c}
pre{background:#f6f6f9;padding:.5rem;overflow:auto;max-height:24rem}textarea{width:100%;height:7rem}
button{margin:.3rem 0}.muted{color:#666}
</style></head><body>
<h1>modernbert serve</h1><p id="desc" class="muted">Loading <a href="openapi.json">openapi.json</a>…</p>
<p>API key (if the server has one): <input id="key" type="password" size="30"></p>
<div id="ops"></div>
<script>
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
function deref(spec, s) { if (s && s.$ref) return spec.components.schemas[s.$ref.split('/').pop()]; return s; }
fetch('openapi.json').then(r => r.json()).then(spec => {
  document.getElementById('desc').textContent = spec.info.description || '';
  const ops = document.getElementById('ops');
  for (const [path, item] of Object.entries(spec.paths)) for (const [method, op] of Object.entries(item)) {
    const d = document.createElement('details');
    const body = op.requestBody && op.requestBody.content['application/json'];
    const schema = body && deref(spec, body.schema);
    const example = schema && (schema.example || (schema.examples && schema.examples[0]));
    const responses = Object.entries(op.responses).map(([c, r]) => `<li><b>${c}</b> ${esc(r.description || '')}</li>`).join('');
    d.innerHTML = `<summary><span class="m ${method}">${method.toUpperCase()}</span> <code>${esc(path)}</code> ${esc(op.summary || '')}</summary>
      <p>${esc(op.description || '')}</p>` +
      (schema ? `<p>Request body:</p><pre>${esc(JSON.stringify(schema, null, 2))}</pre>` : '') +
      `<p>Responses:</p><ul>${responses}</ul>` +
      (method === 'post' ? `<textarea>${esc(JSON.stringify(example || {}, null, 2))}</textarea>` : '') +
      `<button>Send</button><pre class="out" hidden></pre>`;
    d.querySelector('button').onclick = async () => {
      const out = d.querySelector('.out'); out.hidden = false; out.textContent = '…';
      const headers = {'Content-Type': 'application/json'};
      const key = document.getElementById('key').value; if (key) headers.Authorization = 'Bearer ' + key;
      const init = {method: method.toUpperCase(), headers};
      if (method === 'post') init.body = d.querySelector('textarea').value;
      try { const r = await fetch(path, init); const t = await r.text();
        let shown = t; try { shown = JSON.stringify(JSON.parse(t), null, 2); } catch (e) {}
        out.textContent = r.status + ' ' + r.statusText + '\n' + shown;
      } catch (e) { out.textContent = String(e); }
    };
    ops.appendChild(d);
  }
}).catch(e => { document.getElementById('desc').textContent = 'Cannot load openapi.json: ' + e; });
</script></body></html>
"##;

#[cfg(test)]
mod tests {
    #[test]
    fn the_description_lists_every_route() {
        let spec: serde_json::Value = serde_json::from_str(super::spec()).unwrap();
        for path in ["/embed", "/embed_all", "/predict", "/rerank", "/similarity", "/", "/tokenize", "/decode"] {
            assert!(spec["paths"][path]["post"].is_object(), "{path} missing");
        }
        assert!(spec["paths"]["/v1/embeddings"]["post"]["requestBody"].is_object());
        // `#[serde(flatten)]` options: allOf [EncodeOptions, the request's own fields].
        let embed = &spec["components"]["schemas"]["EmbedRequest"]["allOf"];
        assert!(embed[1]["properties"]["inputs"].is_object(), "{embed}");
        assert!(spec["components"]["schemas"]["EncodeOptions"]["properties"]["truncate"].is_object());
        assert!(spec["components"]["securitySchemes"]["api_key"].is_object());
        assert!(spec["paths"]["/search"]["post"]["requestBody"].is_object(), "{}", spec["paths"]["/search"]);
        assert!(spec["paths"]["/search"]["get"].is_object());
    }
}
