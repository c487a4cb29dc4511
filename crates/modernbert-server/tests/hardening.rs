//! Fault tests of the HTTP layer on loopback with raw sockets: read timeouts, the shutdown
//! deadline, admission on every route, OpenAI-shaped errors, the API key, CORS, the API
//! description. Every wait is bounded (a few seconds at most).

mod common;

use common::*;
use modernbert_server::client::{self, Connection};
use modernbert_server::ServeArgs;
use serde_json::json;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// A raw socket that has sent `bytes` (and nothing more).
fn raw(addr: SocketAddr, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    s
}

/// Reads until the server closes the socket (or 10 s pass); returns what came and when it closed.
fn read_until_closed(s: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

const HALF_HEAD: &[u8] = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Ty";
const HALF_BODY: &[u8] = b"POST /embed HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"inputs\": ";

#[test]
fn half_sent_requests_and_idle_connections_are_closed_in_time() {
    let mut args = ServeArgs::for_model(&tiny());
    args.header_read_timeout = Duration::from_millis(500);
    args.body_read_timeout = Duration::from_millis(500);
    args.keep_alive_timeout = Duration::from_millis(800);
    let server = start(args);
    let addr = server.addr();
    let within = |d: Duration, lo: f64, hi: f64| {
        assert!(d.as_secs_f64() >= lo && d.as_secs_f64() <= hi, "closed after {d:?}, expected {lo}..{hi} s")
    };
    std::thread::scope(|s| {
        // Half-sent headers: closed after the header timeout.
        s.spawn(|| {
            let (_, after) = read_until_closed(&mut raw(addr, HALF_HEAD));
            within(after, 0.3, 2.5);
        });
        // Connected, nothing sent: the same.
        s.spawn(|| {
            let (_, after) = read_until_closed(&mut raw(addr, b""));
            within(after, 0.3, 2.5);
        });
        // Headers trickled one byte every 100 ms: the deadline counts from the first byte.
        s.spawn(|| {
            let mut sock = raw(addr, b"P");
            let start = Instant::now();
            for &b in b"OST /embed HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
                std::thread::sleep(Duration::from_millis(100));
                if sock.write_all(&[b]).is_err() {
                    break;
                }
            }
            let _ = read_until_closed(&mut sock);
            within(start.elapsed(), 0.3, 3.0);
        });
        // Headers complete, body half-sent: 408 with a JSON error after the body timeout.
        s.spawn(|| {
            let (answer, after) = read_until_closed(&mut raw(addr, HALF_BODY));
            assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
            assert!(answer.contains("\"error_type\":\"timeout\""), "{answer}");
            within(after, 0.3, 2.5);
        });
        // A served keep-alive connection that stays idle: closed after the keep-alive timeout.
        s.spawn(|| {
            let mut sock = raw(addr, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
            let (answer, after) = read_until_closed(&mut sock);
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            within(after, 0.6, 3.0);
        });
    });
    // Normal keep-alive clients are unaffected: requests spaced below the idle timeout.
    let mut conn = Connection::open(addr).unwrap();
    for _ in 0..3 {
        assert_eq!(conn.request("GET", "/health", None).unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(300));
    }
    ok(conn.post_json("/embed", &json!({ "inputs": "still fine" })).unwrap());
}

#[test]
fn shutdown_meets_its_deadline_with_idle_and_half_open_sockets() {
    // Long read timeouts, so that only the shutdown deadline can end these connections.
    let mut args = ServeArgs::for_model(&tiny());
    args.header_read_timeout = Duration::from_secs(60);
    args.body_read_timeout = Duration::from_secs(60);
    args.keep_alive_timeout = Duration::from_secs(60);
    args.shutdown_timeout = Duration::from_secs(1);
    let server = start(args);
    let addr = server.addr();
    let idle: Vec<TcpStream> = (0..50).map(|_| raw(addr, b"")).collect();
    let kept: Vec<Connection> = (0..20)
        .map(|_| {
            let mut c = Connection::open(addr).unwrap();
            assert_eq!(c.request("GET", "/health", None).unwrap().status, 200);
            c
        })
        .collect();
    let half_heads: Vec<TcpStream> = (0..10).map(|_| raw(addr, HALF_HEAD)).collect();
    let mut half_bodies: Vec<TcpStream> = (0..5).map(|_| raw(addr, HALF_BODY)).collect();
    // Wait until the half-sent bodies are being read (they hold admission permits).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client::get(addr, "/metrics").unwrap().text().contains("te_in_flight_requests 5") {
        assert!(Instant::now() < deadline, "the half-sent bodies never got in flight");
        std::thread::sleep(Duration::from_millis(10));
    }

    let start = Instant::now();
    server.shutdown().unwrap();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(4), "shutdown took {took:?} with a 1 s deadline");
    // Requests still open at the deadline were answered, not dropped.
    for s in &mut half_bodies {
        let (answer, _) = read_until_closed(s);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("shutting down"), "{answer}");
    }
    for mut s in idle.into_iter().chain(half_heads) {
        s.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        let mut buf = [0u8; 16];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "a socket is still open");
    }
    drop(kept);
    assert!(TcpStream::connect(addr).is_err(), "the server still listens");
}

#[test]
fn every_post_route_is_under_admission_control() {
    let mut args = ServeArgs::for_model(&tiny());
    args.max_concurrent_requests = 2;
    let server = start(args);
    let addr = server.addr();
    // Two requests whose bodies are still arriving hold both permits.
    let mut holders: Vec<TcpStream> = (0..2).map(|_| raw(addr, HALF_BODY)).collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !client::get(addr, "/metrics").unwrap().text().contains("te_in_flight_requests 2") {
        assert!(Instant::now() < deadline, "the holders never got in flight");
        std::thread::sleep(Duration::from_millis(10));
    }
    let big = "word ".repeat(100_000);
    for (path, body) in [
        ("/tokenize", json!({ "inputs": big })),
        ("/decode", json!({ "ids": [1, 2, 3] })),
        ("/embed", json!({ "inputs": "x" })),
        ("/", json!({ "inputs": "x" })),
    ] {
        // On one keep-alive connection: the refused body is discarded, the connection stays usable.
        let mut conn = Connection::open(addr).unwrap();
        for _ in 0..2 {
            assert_error(&conn.post_json(path, &body).unwrap(), 429, "overloaded", "max-concurrent-requests");
        }
    }
    let e = post(&server, "/v1/embeddings", json!({ "input": "x" }));
    assert_eq!((e.status, e.json()["error"]["type"].as_str()), (429, Some("overloaded")));
    assert_eq!(client::get(addr, "/health").unwrap().status, 200, "GET routes are not admitted");
    assert!(client::get(addr, "/metrics").unwrap().text().contains("te_request_failure{err=\"overloaded\"} 9"));
    // The permits come back when the holders finish.
    for h in &mut holders {
        h.write_all(b"\"x\"}").unwrap();
        h.write_all(&[b' '; 100 - 15]).unwrap();
        let mut first = [0u8; 12];
        h.read_exact(&mut first).unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");
    }
    let tokens = ok(post(&server, "/tokenize", json!({ "inputs": "Hello" })));
    assert_eq!(tokens[0].as_array().unwrap().len(), 3);
    ok(post(&server, "/decode", json!({ "ids": [1, 2, 3] })));
}

#[test]
fn openai_routes_answer_every_error_in_openai_shape() {
    let mut args = ServeArgs::for_model(&tiny());
    args.max_client_batch_size = 4;
    args.payload_limit = 10_000;
    let server = start(args);
    let addr = server.addr();
    let openai = |r: client::Response, status: u16, kind: &str, needle: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let body = r.json();
        let e = &body["error"];
        assert!(e.is_object(), "not OpenAI-shaped: {body}");
        assert_eq!((e["type"].as_str(), e["code"].as_u64()), (Some(kind), Some(status as u64)), "{body}");
        let message = e["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message:?} lacks {needle:?}");
    };
    let five = json!({ "input": ["a", "b", "c", "d", "e"] });
    openai(post(&server, "/v1/embeddings", five.clone()), 413, "validation", "at most 4 inputs per request");
    openai(post(&server, "/embeddings", five), 413, "validation", "chunk_size=4");
    openai(post(&server, "/v1/embeddings", json!({ "input": "x".repeat(20_000) })), 413, "validation", "10000 bytes");
    let bad = client::request(addr, "POST", "/v1/embeddings", Some(b"{not json")).unwrap();
    openai(bad, 422, "validation", "invalid request body");
    openai(post(&server, "/v1/embeddings", json!({ "inputs": "x" })), 422, "validation", "missing field `input`");
    openai(client::get(addr, "/v1/embeddings").unwrap(), 405, "method_not_allowed", "allowed: POST");
    openai(post(&server, "/v1/models/nowhere", json!({})), 404, "not_found", "no route");
    // TEI routes keep TEI's shape, also for 405 (with Allow).
    let r = client::get(addr, "/embed").unwrap();
    assert_error(&r, 405, "method_not_allowed", "allowed: POST");
    assert_eq!(r.header("allow"), Some("POST"));
    assert_error(&client::request(addr, "DELETE", "/health", None).unwrap(), 405, "method_not_allowed", "GET");
}

#[test]
fn api_key_cors_and_the_api_description() {
    let mut args = ServeArgs::for_model(&tiny());
    args.api_key = Some("s3cret".into());
    args.cors_allow_origin = vec!["https://app.example".into()];
    let server = start(args);
    let addr = server.addr();
    let body = json!({ "inputs": "hi" }).to_string();
    let send = |path: &str, headers: &[(&str, &str)]| {
        client::request_with(addr, "POST", path, headers, Some(body.as_bytes())).unwrap()
    };
    assert_error(&send("/embed", &[]), 401, "unauthorized", "Authorization: Bearer");
    assert_eq!(send("/embed", &[]).header("www-authenticate"), Some("Bearer"));
    assert_error(&send("/embed", &[("Authorization", "Bearer wrong")]), 401, "unauthorized", "wrong API key");
    ok(send("/embed", &[("Authorization", "Bearer s3cret")]));
    ok(send("/", &[("Authorization", "bearer s3cret")]));
    assert_error(&send("/tokenize", &[]), 401, "unauthorized", "API key");
    let r = client::request_with(addr, "POST", "/v1/embeddings", &[], Some(br#"{"input": "x"}"#)).unwrap();
    assert_eq!((r.status, r.json()["error"]["type"].as_str()), (401, Some("unauthorized")));
    assert_eq!(client::get(addr, "/info").unwrap().status, 401);
    // Public routes (TEI's) and the API description need no key.
    for path in ["/health", "/ping", "/", "/metrics", "/openapi.json", "/docs"] {
        assert_eq!(client::get(addr, path).unwrap().status, 200, "{path}");
    }
    let spec = client::get(addr, "/openapi.json").unwrap().json();
    assert!(spec["openapi"].as_str().unwrap().starts_with("3."));
    assert!(spec["paths"]["/embed"]["post"]["requestBody"].is_object());
    assert!(spec["paths"]["/v1/embeddings"].is_object());
    let docs = client::get(addr, "/docs").unwrap();
    assert!(docs.header("content-type").unwrap().starts_with("text/html"));
    assert!(docs.text().contains("openapi.json"));

    // CORS: the allowed origin gets the header, also on a preflight (which needs no key).
    let origin = [("Origin", "https://app.example"), ("Authorization", "Bearer s3cret")];
    let r = send("/embed", &origin);
    assert_eq!(r.header("access-control-allow-origin"), Some("https://app.example"));
    let r = send("/embed", &[("Origin", "https://evil.example"), ("Authorization", "Bearer s3cret")]);
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
    let preflight = client::request_with(
        addr,
        "OPTIONS",
        "/embed",
        &[
            ("Origin", "https://app.example"),
            ("Access-Control-Request-Method", "POST"),
            ("Access-Control-Request-Headers", "authorization,content-type"),
        ],
        None,
    )
    .unwrap();
    assert_eq!(preflight.status, 200, "{}", preflight.text());
    assert_eq!(preflight.header("access-control-allow-origin"), Some("https://app.example"));
    assert!(preflight.header("access-control-allow-methods").unwrap().contains("POST"));
    assert!(preflight.header("access-control-allow-headers").unwrap().contains("authorization"));
}

#[test]
fn no_cors_headers_unless_asked() {
    let server = start(ServeArgs::for_model(&tiny()));
    let r = client::request_with(server.addr(), "GET", "/health", &[("Origin", "https://app.example")], None).unwrap();
    assert_eq!((r.status, r.header("access-control-allow-origin")), (200, None));
}
