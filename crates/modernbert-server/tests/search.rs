//! `serve --index DIR`: `POST /search` answers what `Searcher::search` answers on the same index,
//! `GET /search` is the search page, bad bodies are 400 JSON, and the routes sit behind the same
//! admission control, API key and method checks as every other route.
#![cfg(feature = "search")]

mod common;

use common::*;
use modernbert_search::indexer::{self, IndexOptions};
use modernbert_search::search::{Mode, OpenOptions, Query, Response as SearchResponse, Searcher};
use modernbert_server::client::{self, Connection};
use modernbert_server::ServeArgs;
use serde_json::json;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A small tree in three languages, indexed with the tiny fixture model.
fn indexed_tree() -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("repo");
    write(
        &root,
        "src/config.rs",
        "use std::path::Path;\n\n/// Reads the configuration file.\npub fn parse_config_file(path: &Path) -> Config {\n    let text = std::fs::read_to_string(path).unwrap();\n    Config::from_toml(&text)\n}\n\nimpl Config {\n    pub fn from_toml(text: &str) -> Config {\n        toml::from_str(text).unwrap()\n    }\n}\n",
    );
    write(
        &root,
        "net/http.py",
        "import json\n\nclass HttpClient:\n    def __init__(self, host):\n        self.host = host\n\n    def fetchJsonDocument(self, url):\n        return json.loads(self.get(url))\n\ndef retry_with_backoff(fn, attempts=3):\n    for i in range(attempts):\n        try:\n            return fn()\n        except OSError:\n            time.sleep(2 ** i)\n",
    );
    write(
        &root,
        "web/app.ts",
        "export function renderSidebar(items: string[]): string {\n  return items.join('');\n}\n",
    );
    write(&root, "docs/guide.md", "# Guide\n\n## Installing\n\nRun the installer with elevated rights.\n");
    let index = tmp.path().join("index");
    let mut o = IndexOptions::new(&root, &index);
    o.model = Some(tiny());
    o.progress = false;
    let summary = indexer::index(&o).unwrap();
    assert_eq!(summary.files, 4, "{summary:?}");
    (tmp, index)
}

fn serve_index(model: &str, index: &Path) -> modernbert_server::ServerHandle {
    let mut args = ServeArgs::for_model(model);
    args.index = Some(index.to_path_buf());
    start(args)
}

/// What the library answers for `body` on the same index (its own copy of the model).
fn library(index: &Path, text: &str, top_k: usize, mode: Mode) -> SearchResponse {
    let searcher = Searcher::open(index, OpenOptions { model: Some(tiny()), ..Default::default() }).unwrap();
    searcher.search(&Query { text: text.into(), top_k, mode, rerank: true }).unwrap()
}

fn searched(server: &modernbert_server::ServerHandle, body: serde_json::Value) -> SearchResponse {
    let r = post(server, "/search", body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    serde_json::from_slice(&r.body).expect("the JSON of search --json")
}

#[test]
fn post_search_equals_the_library_in_every_mode() {
    let (_tmp, index) = indexed_tree();
    let server = serve_index(&tiny(), &index);
    for (text, top_k, mode, name) in [
        ("parse config file", 3, Mode::Bm25, "bm25"),
        ("fetch json document", 10, Mode::Hybrid, "hybrid"),
        ("retry with backoff", 5, Mode::Dense, "dense"),
        ("renderSidebar", 2, Mode::Hybrid, "hybrid"),
    ] {
        let got = searched(&server, json!({ "query": text, "top_k": top_k, "mode": name }));
        let want = library(&index, text, top_k, mode);
        assert_eq!(got, want, "{text} ({name})");
        assert_eq!(got.results.len(), top_k.min(want.results.len()));
        assert!(!got.results.is_empty(), "{text}: no results");
    }
    // Defaults: hybrid, top 10; the exact identifier ranks its function first under BM25.
    let got = searched(&server, json!({ "query": "parse_config_file" }));
    assert_eq!(got, library(&index, "parse_config_file", 10, Mode::Hybrid));
    let bm25 = searched(&server, json!({ "query": "parse_config_file", "mode": "bm25", "top_k": 1 }));
    let hit = &bm25.results[0];
    assert_eq!((hit.path.as_str(), hit.start_line, hit.end_line), ("src/config.rs", 3, 7), "{hit:?}");
    assert!(hit.text.contains("pub fn parse_config_file(path: &Path)"));
    let metrics = client::get(server.addr(), "/metrics").unwrap().text();
    assert!(metrics.contains("modernbert_http_requests_total{route=\"/search\",status=\"200\"} 6"), "{metrics}");
}

#[test]
fn the_page_bad_bodies_and_methods() {
    let (_tmp, index) = indexed_tree();
    let server = serve_index(&tiny(), &index);
    let page = client::get(server.addr(), "/search?q=parse&mode=bm25").unwrap();
    assert_eq!(page.status, 200);
    assert!(page.header("content-type").unwrap().starts_with("text/html"), "{:?}", page.headers);
    assert_eq!(page.text(), modernbert_search::web::page_html());

    let mut conn = Connection::open(server.addr()).unwrap();
    for (body, needle) in [
        (&b"{not json"[..], "expected {\"query\""),
        (b"", "expected {\"query\""),
        (br#"{"text": "x"}"#, "unknown field `text`"),
        (br#"{"query": 5}"#, "invalid type: integer `5`, expected a string"),
        (br#"{"query": " \n "}"#, "empty query"),
        (br#"{"query": "x", "top_k": 0}"#, "top_k must be between 1 and 100"),
        (br#"{"query": "x", "top_k": 1000}"#, "top_k must be between 1 and 100"),
        (br#"{"query": "x", "mode": "fuzzy"}"#, "unknown search mode \"fuzzy\""),
    ] {
        // One keep-alive connection: every refusal leaves it usable.
        let r = conn.request("POST", "/search", Some(body)).unwrap();
        assert_error(&r, 400, "validation", needle);
    }
    let ok = conn.post_json("/search", &json!({ "query": "parse config", "mode": "bm25" })).unwrap();
    assert_eq!(ok.status, 200, "{}", ok.text());
    let r = conn.request("PUT", "/search", Some(b"{}")).unwrap();
    assert_error(&r, 405, "method_not_allowed", "allowed: GET,HEAD,POST");
    let huge = json!({ "query": "x".repeat(3_000_000) });
    assert_error(&post(&server, "/search", huge), 413, "validation", "--payload-limit");
    let metrics = client::get(server.addr(), "/metrics").unwrap().text();
    assert!(metrics.contains("te_request_failure{err=\"validation\"} 9"), "{metrics}");
}

#[test]
fn search_routes_share_admission_control_and_the_api_key() {
    let (_tmp, index) = indexed_tree();
    let mut args = ServeArgs::for_model(&tiny());
    args.index = Some(index.clone());
    args.max_concurrent_requests = 1;
    args.api_key = Some("sesame".into());
    let server = start(args);
    let addr = server.addr();
    let auth = [("Authorization", "Bearer sesame")];
    let body = br#"{"query": "retry with backoff"}"#;
    let mut conn = Connection::open(addr).unwrap();
    let r = conn.request("POST", "/search", Some(body)).unwrap();
    assert_error(&r, 401, "unauthorized", "API key");
    assert_eq!(conn.request("GET", "/search", None).unwrap().status, 401);
    assert_eq!(conn.request_with("GET", "/search", &auth, None).unwrap().status, 200);

    // A request whose body is still arriving holds the only permit: /search is refused with 429.
    let mut holder = TcpStream::connect(addr).unwrap();
    holder.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = "POST /search HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sesame\r\nContent-Length: 32\r\n\r\n";
    holder.write_all(head.as_bytes()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client::get(addr, "/metrics").unwrap().text().contains("te_in_flight_requests 1") {
        assert!(Instant::now() < deadline, "the holder never got in flight");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = conn.request_with("POST", "/search", &auth, Some(body)).unwrap();
    assert_error(&r, 429, "overloaded", "max-concurrent-requests");
    holder.write_all(format!("{:<32}", r#"{"query": "parse config file"}"#).as_bytes()).unwrap();
    let mut first = [0u8; 12];
    holder.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // The permit is back.
    let r = conn.request_with("POST", "/search", &auth, Some(body)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let got: SearchResponse = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(got, library(&index, "retry with backoff", 10, Mode::Hybrid));
}

#[test]
fn without_an_index_search_is_404_and_a_bad_index_stops_the_server() {
    let server = start(ServeArgs::for_model(&tiny()));
    assert_error(&post(&server, "/search", json!({ "query": "x" })), 404, "not_found", "--index DIR");
    let page = client::get(server.addr(), "/search").unwrap();
    assert_error(&page, 404, "not_found", "modernbert serve --index DIR");
    ok(post(&server, "/embed", json!({ "inputs": "TEI routes still work" })));
    drop(server);

    let tmp = tempfile::tempdir().unwrap();
    let foreign = tmp.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "not an index").unwrap();
    let corrupt = tmp.path().join("corrupt");
    std::fs::create_dir_all(&corrupt).unwrap();
    std::fs::write(corrupt.join("manifest.json"), "{\"format\": ").unwrap();
    for (dir, needle) in [
        (tmp.path().join("missing"), "the directory does not exist"),
        (foreign.clone(), "(no manifest.json): build one with `modernbert index PATH --index"),
        (corrupt.clone(), "is not a usable code-search index: manifest.json is not valid JSON"),
    ] {
        let mut args = ServeArgs::for_model(&tiny());
        args.index = Some(dir.clone());
        let server = modernbert_server::spawn(args).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.is_finished() {
            assert!(Instant::now() < deadline, "the server kept running on {}", dir.display());
            std::thread::sleep(Duration::from_millis(10));
        }
        let e = format!("{:#}", server.shutdown().unwrap_err());
        assert!(e.contains("--index") && e.contains(needle), "{e}");
    }
    // Nothing was written into the directories.
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    assert_eq!(std::fs::read_to_string(foreign.join("notes.txt")).unwrap(), "not an index");
    assert_eq!(std::fs::read_to_string(corrupt.join("manifest.json")).unwrap(), "{\"format\": ");
    assert!(!tmp.path().join("missing").exists());
}

#[test]
fn an_index_of_another_model_than_the_served_one_loads_its_own() {
    // The server serves a classifier; the index was built with tiny-mlm, recorded in its manifest.
    let (_tmp, index) = indexed_tree();
    let classifier = classifier(3);
    let server = serve_index(&classifier.path().display().to_string(), &index);
    let got = searched(&server, json!({ "query": "fetch json document", "mode": "dense", "top_k": 4 }));
    assert_eq!(got, library(&index, "fetch json document", 4, Mode::Dense));
    let labels = ok(post(&server, "/predict", json!({ "inputs": "still a classifier" })));
    assert_eq!(labels.as_array().unwrap().len(), 3);
}
