//! `serve --index DIR`: code search over an index built by `modernbert index`
//! ([`modernbert_search`], the cargo feature `search`, on by default).
//!
//! * `POST /search` `{"query", "top_k"?, "mode"?, "rerank"?}` → the JSON of `modernbert search
//!   --json`: `{"query", "results": [{"path", "start_line", "end_line", "score", "text"}]}`; a bad
//!   body is a 400 (`error_type` `validation`). The search runs on the blocking pool.
//! * `GET /search` → the search page ([`modernbert_search::web::page_html`]), which posts to
//!   `POST /search`; `/search?q=...&mode=...&k=...` searches on load.
//!
//! Both pass the router's middleware like every route (admission control, API key, metrics).
//! Without `--index` they answer 404 with a sentence saying so. The index's embedding model is
//! the served model when they are the same files (one copy in memory), else the model recorded
//! in the index, loaded at start; `/health` is 200 once both are ready.

use crate::error::{ApiError, ErrorKind};
use crate::state::{AppState, RawBody, Ready};
use crate::ServeArgs;
use anyhow::Result;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use std::sync::Arc;

/// The open index, when the server has one.
#[derive(Default)]
pub struct SearchState {
    #[cfg(feature = "search")]
    searcher: Option<Arc<modernbert_search::Searcher>>,
}

impl SearchState {
    /// Opens `--index` (fast: memory maps, no model yet). A missing, corrupt or foreign index
    /// directory is an error here, before the server loads anything.
    pub fn open(args: &ServeArgs) -> Result<Self> {
        let Some(dir) = &args.index else { return Ok(Self::default()) };
        #[cfg(feature = "search")]
        {
            use anyhow::Context;
            let options = modernbert_search::search::OpenOptions { precision: args.precision, ..Default::default() };
            let searcher = modernbert_search::Searcher::open(dir, options)
                .with_context(|| format!("--index {}", dir.display()))?;
            Ok(Self { searcher: Some(Arc::new(searcher)) })
        }
        #[cfg(not(feature = "search"))]
        anyhow::bail!(
            "--index {}: this server was built without code search (cargo feature `search` of modernbert-server)",
            dir.display()
        )
    }

    /// Whether the server searches an index.
    pub fn enabled(&self) -> bool {
        #[cfg(feature = "search")]
        return self.searcher.is_some();
        #[cfg(not(feature = "search"))]
        false
    }

    /// Readies the index's query model (blocking; after the served model is loaded): shares the
    /// served model when it is the index's, else loads the model recorded in the index. Returns
    /// a line describing the index, for the log.
    pub fn prepare(&self, ready: &Ready) -> Result<Option<String>> {
        #[cfg(feature = "search")]
        if let Some(searcher) = &self.searcher {
            let shared = searcher.share_model(ready.model.clone())?;
            searcher.warm_up(modernbert_search::Mode::Hybrid)?;
            let snap = searcher.snapshot()?;
            let m = &snap.manifest;
            return Ok(Some(format!(
                "index {}: {} chunks from {} files of {}{}, queries embedded by {}",
                searcher.dir().display(),
                m.chunks,
                m.files,
                m.root,
                if m.complete { "" } else { " (partial: an indexing run was interrupted)" },
                if shared { "the served model".to_string() } else { m.model.spec.clone() },
            )));
        }
        let _ = ready;
        Ok(None)
    }
}

fn no_index() -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        "this server has no code-search index: start it with `modernbert serve --index DIR` \
         (an index built by `modernbert index PATH --index DIR`)",
    )
}

/// `GET /search`: the search page.
pub async fn page(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if !state.search.enabled() {
        return Err(no_index());
    }
    #[cfg(feature = "search")]
    return Ok(Html(modernbert_search::web::page_html()).into_response());
    #[cfg(not(feature = "search"))]
    Ok(Html("").into_response())
}

/// `POST /search`: one query, answered with the JSON of `modernbert search --json`.
pub async fn search(State(state): State<Arc<AppState>>, body: Result<RawBody, ApiError>) -> Result<Response, ApiError> {
    #[cfg(feature = "search")]
    if let Some(searcher) = state.search.searcher.clone() {
        let RawBody(bytes) = body?;
        state.ready()?;
        let query = modernbert_search::web::parse_request(&bytes).map_err(ApiError::bad_request)?;
        let answer = tokio::task::spawn_blocking(move || {
            let response = searcher.search(&query)?;
            Ok::<_, anyhow::Error>(serde_json::to_vec(&response)?)
        })
        .await
        .map_err(|e| ApiError::backend(format!("the search task failed: {e}")))?
        .map_err(|e| ApiError::backend(format!("search failed: {e:#}")))?;
        return Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], answer).into_response());
    }
    let _ = (state, body);
    Err(no_index())
}
