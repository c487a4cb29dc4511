//! The pieces `modernbert serve --index DIR` needs, free of any HTTP framework: the search page
//! (`GET /search`), the request parser and a JSON handler (`POST /search`, the same JSON as
//! `search --json`).
//!
//! ```text
//! POST /search  {"query": "...", "top_k": 10, "mode": "hybrid" | "dense" | "bm25", "rerank": true}
//!   200         {"query": "...", "results": [{"path", "start_line", "end_line", "score", "text"}]}
//!   400         {"error": "...", "error_type": "validation"}   (bad JSON, empty query, top_k, mode)
//!   424         {"error": "...", "error_type": "backend"}      (the search itself failed)
//! ```

use crate::search::{Mode, Query, Searcher};
use serde::Deserialize;
use serde_json::json;

/// Largest `top_k` a request may ask for.
pub const MAX_TOP_K: usize = 100;

/// The search page: a query box and results with file:line and highlighted code. It posts to
/// `search` relative to its own URL, so it works wherever the route is mounted;
/// `?q=...&mode=...&k=...` runs a search on load.
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

/// Parses a `POST /search` body into a [`Query`]; the error is a sentence for the client (a 400).
pub fn parse_request(body: &[u8]) -> Result<Query, String> {
    let req: Request = serde_json::from_slice(body)
        .map_err(|e| format!("expected {{\"query\": \"...\", \"top_k\"?, \"mode\"?, \"rerank\"?}}: {e}"))?;
    if req.query.trim().is_empty() {
        return Err("empty query: give some words or code to search for".into());
    }
    let top_k = req.top_k.unwrap_or(10);
    if top_k == 0 || top_k > MAX_TOP_K {
        return Err(format!("top_k must be between 1 and {MAX_TOP_K}"));
    }
    let mode = match req.mode.as_deref().map(str::parse::<Mode>).transpose() {
        Ok(m) => m.unwrap_or_default(),
        Err(e) => return Err(e.to_string()),
    };
    Ok(Query { text: req.query, top_k, mode, rerank: req.rerank.unwrap_or(true) })
}

fn error(status: u16, kind: &str, message: impl std::fmt::Display) -> (u16, String) {
    (status, json!({ "error": message.to_string(), "error_type": kind }).to_string())
}

/// Answers a `POST /search` body: `(HTTP status, JSON body)`. Blocking (it may embed the query):
/// call it from a blocking thread (`tokio::task::spawn_blocking`).
pub fn search_json(searcher: &Searcher, body: &[u8]) -> (u16, String) {
    let q = match parse_request(body) {
        Ok(q) => q,
        Err(e) => return error(400, "validation", e),
    };
    match searcher.search(&q) {
        Ok(r) => match serde_json::to_string(&r) {
            Ok(body) => (200, body),
            Err(e) => error(424, "backend", e),
        },
        Err(e) => error(424, "backend", format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_with_defaults_and_limits() {
        let q = parse_request(br#"{"query": "parse config"}"#).unwrap();
        assert_eq!((q.text.as_str(), q.top_k, q.mode, q.rerank), ("parse config", 10, Mode::Hybrid, true));
        let q = parse_request(br#"{"query": "x", "top_k": 3, "mode": "bm25", "rerank": false}"#).unwrap();
        assert_eq!((q.top_k, q.mode, q.rerank), (3, Mode::Bm25, false));
        for (body, needle) in [
            (&b"not json"[..], "expected {\"query\""),
            (br#"{"q": "x"}"#, "unknown field `q`"),
            (br#"{"query": "  "}"#, "empty query"),
            (br#"{"query": "x", "top_k": 0}"#, "top_k must be between 1 and 100"),
            (br#"{"query": "x", "top_k": 101}"#, "top_k must be between 1 and 100"),
            (br#"{"query": "x", "mode": "fuzzy"}"#, "unknown search mode \"fuzzy\""),
        ] {
            let e = parse_request(body).unwrap_err();
            assert!(e.contains(needle), "{e:?} lacks {needle:?}");
        }
    }

    #[test]
    fn the_page_posts_to_search_and_shows_file_lines() {
        let page = page_html();
        assert!(page.starts_with("<!doctype html>"));
        assert!(page.contains(r#"fetch("search""#) && page.contains(r#"hit.path) + ":" + hit.start_line"#));
    }
}
