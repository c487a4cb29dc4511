//! The pieces `modernbert serve --index DIR` needs, free of any HTTP framework: the search page
//! (`GET /search`) and the JSON handler (`POST /search`, the same JSON as `search --json`).
//!
//! ```text
//! POST /search  {"query": "...", "top_k": 10, "mode": "hybrid" | "dense" | "bm25", "rerank": true}
//!   200         {"query": "...", "results": [{"path", "start_line", "end_line", "score", "text"}]}
//!   400 / 500   {"error": "...", "error_type": "Validation" | "Backend"}
//! ```

use crate::search::{Mode, Query, Searcher};
use serde::Deserialize;
use serde_json::json;

/// Largest `top_k` a request may ask for.
pub const MAX_TOP_K: usize = 100;

/// The search page: a query box and results with file:line and highlighted code. It posts to
/// `search` relative to its own URL, so it works wherever the route is mounted; `?q=...&mode=...`
/// runs a search on load.
pub fn page_html() -> &'static str {
    include_str!("page.html")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    query: String,
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    rerank: Option<bool>,
}

fn error(status: u16, kind: &str, message: impl std::fmt::Display) -> (u16, String) {
    (status, json!({ "error": message.to_string(), "error_type": kind }).to_string())
}

/// Answers a `POST /search` body: `(HTTP status, JSON body)`. Blocking (it may embed the query):
/// call it from a blocking thread (`tokio::task::spawn_blocking`).
pub fn search_json(searcher: &Searcher, body: &[u8]) -> (u16, String) {
    let req: Request = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => return error(400, "Validation", format!("expected {{\"query\": \"...\"}}: {e}")),
    };
    if req.query.trim().is_empty() {
        return error(400, "Validation", "empty query");
    }
    let top_k = req.top_k.unwrap_or(10);
    if top_k == 0 || top_k > MAX_TOP_K {
        return error(400, "Validation", format!("top_k must be between 1 and {MAX_TOP_K}"));
    }
    let mode = match req.mode.as_deref().map(str::parse::<Mode>).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return error(400, "Validation", e),
    };
    let q = Query { text: req.query, top_k, mode, rerank: req.rerank.unwrap_or(true) };
    match searcher.search(&q) {
        Ok(r) => (200, serde_json::to_string(&r).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))),
        Err(e) => error(500, "Backend", format!("{e:#}")),
    }
}
