//! Route tests on the tiny fixture models, over loopback HTTP.

mod common;

use base64::Engine;
use common::*;
use modernbert::pipelines::EmbedOptions;
use modernbert::tasks::ClassifyOutput;
use modernbert::Model;
use modernbert_server::client;
use modernbert_server::{PoolingMode, ServeArgs};
use serde_json::json;
use std::path::Path;

#[test]
fn embed_equals_the_library_and_keeps_order_under_batching() {
    // A small token budget splits one request into several length-sorted batches.
    let mut args = ServeArgs::for_model(&tiny());
    args.max_batch_tokens = 96;
    let server = start(args);
    let model = Model::load(Path::new(&tiny())).unwrap();
    let texts = texts(24);
    let expected = library_embeddings(&model, &texts, true);
    let got = ok(post(&server, "/embed", json!({ "inputs": texts })));
    let got = got.as_array().unwrap();
    assert_eq!(got.len(), texts.len());
    for (g, e) in got.iter().zip(&expected) {
        assert_close(&floats(g), e, 1e-5);
    }
    let raw = ok(post(&server, "/embed", json!({ "inputs": texts[3], "normalize": false })));
    assert_close(&floats(&raw[0]), &library_embeddings(&model, &texts[3..4], false)[0], 1e-5);

    // Concurrent clients, each with its own text: every answer is its own.
    std::thread::scope(|s| {
        for (i, text) in texts.iter().enumerate().take(16) {
            let (server, expected) = (&server, &expected);
            s.spawn(move || {
                let got = ok(post(server, "/embed", json!({ "inputs": [text] })));
                assert_close(&floats(&got[0]), &expected[i], 1e-5);
            });
        }
    });
    let metrics = client::get(server.addr(), "/metrics").unwrap().text();
    assert!(metrics.contains("te_batch_next_size_count"), "{metrics}");
    assert!(metrics.contains("modernbert_http_requests_total{route=\"/embed\",status=\"200\"}"));
}

#[test]
fn embed_options_dimensions_truncation_ids_and_openai() {
    let server = start(ServeArgs::for_model(&tiny()));
    let model = Model::load(Path::new(&tiny())).unwrap();
    let text = "The capital of France is Paris.".to_string();
    let full = library_embeddings(&model, std::slice::from_ref(&text), false)[0].clone();

    // dimensions: the first components, renormalised only when asked.
    let cut = floats(&ok(post(&server, "/embed", json!({ "inputs": text, "dimensions": 8, "normalize": false })))[0]);
    assert_close(&cut, &full[..8], 1e-5);
    let unit = floats(&ok(post(&server, "/embed", json!({ "inputs": text, "dimensions": 8 })))[0]);
    assert!((unit.iter().map(|x| x * x).sum::<f32>().sqrt() - 1.0).abs() < 1e-5);
    assert_error(
        &post(&server, "/embed", json!({ "inputs": text, "dimensions": 33 })),
        422,
        "validation",
        "dimensions",
    );

    // Token ids (as /tokenize reports them) embed like the text.
    let tokens = ok(post(&server, "/tokenize", json!({ "inputs": text })));
    let ids: Vec<u64> = tokens[0].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.first(), Some(&50281));
    assert_eq!(tokens[0][1]["text"], "The");
    assert_eq!(tokens[0][0]["special"], true);
    let by_ids = ok(post(&server, "/embed", json!({ "inputs": [ids], "normalize": false })));
    assert_close(&floats(&by_ids[0]), &full, 1e-5);
    let decoded = ok(post(&server, "/decode", json!({ "ids": ids })));
    assert_eq!(decoded, json!([text]));
    // Offsets are byte offsets into the text (as TEI's), also after multi-byte characters.
    let accented = "Café au lait, naïve señor";
    let tokens = ok(post(&server, "/tokenize", json!({ "inputs": accented })));
    let pieces: Vec<&serde_json::Value> =
        tokens[0].as_array().unwrap().iter().filter(|t| t["special"] == false).collect();
    for t in &pieces {
        let (start, stop) = (t["start"].as_u64().unwrap() as usize, t["stop"].as_u64().unwrap() as usize);
        assert_eq!(&accented[start..stop], t["text"].as_str().unwrap());
    }
    assert_eq!(pieces.last().unwrap()["stop"].as_u64(), Some(accented.len() as u64));
    assert_error(
        &post(&server, "/embed", json!({ "inputs": [[1, 99999999]] })),
        422,
        "tokenizer",
        "outside the vocabulary",
    );

    // Over-long inputs: 413 unless truncated; left and right truncation keep different ends.
    let long = format!("{} end", "word ".repeat(9000));
    assert_error(&post(&server, "/embed", json!({ "inputs": long })), 413, "validation", "maximum of 8192");
    let right = ok(post(&server, "/embed", json!({ "inputs": long, "truncate": true })));
    let left = ok(post(&server, "/embed", json!({ "inputs": long, "truncate": true, "truncation_direction": "Left" })));
    assert_ne!(right, left);
    assert_error(
        &post(&server, "/embed", json!({ "inputs": text, "prompt_name": "query" })),
        422,
        "tokenizer",
        "no prompts",
    );

    // OpenAI: string, list, ids; float and base64; usage and model echoed.
    let r = ok(post(&server, "/v1/embeddings", json!({ "input": [text, "second"], "model": "m" })));
    assert_eq!(r["object"], "list");
    assert_eq!(r["model"], "m");
    assert_eq!(r["data"][1]["index"], 1);
    assert_eq!(r["data"][0]["object"], "embedding");
    let unit_full = floats(&r["data"][0]["embedding"]);
    assert_eq!(unit_full.len(), 32);
    assert_eq!(r["usage"]["prompt_tokens"].as_u64(), Some(ids.len() as u64 + 3));
    let b64 =
        ok(post(&server, "/v1/embeddings", json!({ "input": text, "encoding_format": "base64", "dimensions": 4 })));
    let bytes =
        base64::engine::general_purpose::STANDARD.decode(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let v: Vec<f32> = bytes.chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(v.len(), 4);
    assert!((v.iter().map(|x| x * x).sum::<f32>() - 1.0).abs() < 1e-5);
    let by_ids = ok(post(&server, "/v1/embeddings", json!({ "input": ids })));
    assert_close(&floats(&by_ids["data"][0]["embedding"]), &unit_full, 1e-5);
    let e = post(&server, "/v1/embeddings", json!({ "input": [] }));
    let error = &e.json()["error"];
    assert_eq!((e.status, error["type"].as_str(), error["code"].as_u64()), (422, Some("empty"), Some(422)));
}

#[test]
fn embed_all_similarity_info_health_metrics() {
    let server = start(ServeArgs::for_model(&tiny()));
    let all = ok(post(&server, "/embed_all", json!({ "inputs": ["hello world", "a"] })));
    assert_eq!(all[0].as_array().unwrap().len(), 4); // [CLS] hello Ġworld [SEP]
    assert_eq!(all[1][0].as_array().unwrap().len(), 32);

    let sim = ok(post(
        &server,
        "/similarity",
        json!({ "inputs": { "source_sentence": "a cat", "sentences": ["a cat", "quantum chromodynamics"] } }),
    ));
    let sim = floats(&sim);
    assert!((sim[0] - 1.0).abs() < 1e-5 && sim[1] < sim[0], "{sim:?}");

    let info = ok(client::get(server.addr(), "/info").unwrap());
    assert_eq!(info["model_type"], json!({ "embedding": { "pooling": "mean" } }));
    assert_eq!(info["format"], "transformers");
    assert_eq!((info["hidden_size"].as_u64(), info["embedding_dimension"].as_u64()), (Some(32), Some(32)));
    assert_eq!(info["max_input_length"], 8192);
    assert_eq!(info["max_client_batch_size"], 2048);
    assert_eq!(client::get(server.addr(), "/health").unwrap().status, 200);
    let m = client::get(server.addr(), "/metrics").unwrap();
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(m.text().contains("te_ready 1"));

    // TEI's metric names and labels after a single request, a batch and a failure.
    ok(post(&server, "/embed", json!({ "inputs": "one" })));
    assert_eq!(post(&server, "/embed", json!({ "inputs": [] })).status, 422);
    let text = client::get(server.addr(), "/metrics").unwrap().text();
    for needle in [
        "te_request_count{method=\"single\"} 1",
        "te_request_count{method=\"batch\"}",
        "te_request_success{method=\"single\"} 1",
        "te_request_success{method=\"batch\"}",
        "te_request_failure{err=\"validation\"} 1",
        "te_request_duration_bucket{le=",
        "te_request_tokenization_duration_count",
        "te_request_queue_duration_sum",
        "te_request_inference_duration_count",
        "te_batch_next_size_bucket{le=\"1\"}",
        "te_batch_next_tokens_count",
        "te_request_input_length_count",
        "te_embed_count",
        "te_embed_success",
        "te_embed_duration_count",
        "te_queue_size 0",
        "te_in_flight_requests 0",
        "modernbert_http_requests_total{route=\"/embed\",status=\"422\"} 1",
        "process_resident_memory_bytes",
    ] {
        assert!(text.contains(needle), "{needle} missing from /metrics:\n{text}");
    }

    // POST / (huggingface_hub's InferenceClient(model=URL)): /embed for an embedding model, and
    // /similarity when `inputs` is a sentence-similarity object; GET / is the health check.
    let by_root = ok(post(&server, "/", json!({ "inputs": "hello world", "normalize": false })));
    let by_embed = ok(post(&server, "/embed", json!({ "inputs": "hello world", "normalize": false })));
    assert_eq!(by_root, by_embed);
    assert_eq!(ok(post(&server, "/invocations", json!({ "inputs": ["hello world"], "normalize": false }))), by_embed);
    let sim = json!({ "inputs": { "source_sentence": "a cat", "sentences": ["a cat", "a car"] }, "parameters": {} });
    assert_eq!(ok(post(&server, "/", sim.clone())), ok(post(&server, "/similarity", sim)));
    // huggingface_hub's feature_extraction sends its options at the root, null ones included.
    let hub = json!({ "inputs": "hello world", "normalize": false, "truncate": null, "truncation_direction": null });
    assert_eq!(ok(post(&server, "/", hub)), by_embed);
    assert_eq!(client::get(server.addr(), "/").unwrap().status, 200);
    assert_error(&post(&server, "/", json!({ "query": "q" })), 422, "validation", "missing field `inputs`");
}

#[test]
fn pooling_flag_replaces_the_model_pooling() {
    let mut args = ServeArgs::for_model(&tiny());
    args.pooling = Some(PoolingMode::LastToken);
    let server = start(args);
    let model = Model::load(Path::new(&tiny())).unwrap();
    let texts = texts(3);
    let options = EmbedOptions { pooling: Some(PoolingMode::LastToken), normalize: true, ..Default::default() };
    let expected = library_embeddings_with(&model, &texts, &options);
    let got = ok(post(&server, "/embed", json!({ "inputs": texts })));
    for (g, e) in got.as_array().unwrap().iter().zip(&expected) {
        assert_close(&floats(g), e, 1e-5);
    }
    // Not mean pooling any more.
    assert!(max_diff(&expected[0], &library_embeddings(&model, &texts[..1], true)[0]) > 1e-3);
    let info = ok(client::get(server.addr(), "/info").unwrap());
    assert_eq!(
        (info["pooling"].as_str(), info["model_type"]["embedding"]["pooling"].as_str()),
        (Some("lasttoken"), Some("lasttoken"))
    );
}

#[test]
fn errors_are_json_with_tei_status_codes() {
    let mut args = ServeArgs::for_model(&tiny());
    args.max_client_batch_size = 4;
    args.payload_limit = 10_000;
    let server = start(args);
    let raw = |body: &str| client::request(server.addr(), "POST", "/embed", Some(body.as_bytes())).unwrap();
    assert_error(&raw("{not json"), 422, "validation", "invalid request body");
    assert_error(&raw(r#"{"inputs": 3}"#), 422, "validation", "inputs is a number");
    assert_error(&raw(r#"{"inputs": "x", "normalize": "yes"}"#), 422, "validation", "boolean");
    assert_error(&raw(r#"{"normalize": true}"#), 422, "validation", "missing field `inputs`");
    assert_error(&raw(r#"{"inputs": "x", "truncation_direction": "up"}"#), 422, "validation", "Left");
    assert_error(&post(&server, "/embed", json!({ "inputs": [] })), 422, "empty", "cannot be empty");
    assert_error(&post(&server, "/embed", json!({ "inputs": ["ok", "  "] })), 422, "empty", "input 1 is empty");
    assert_error(
        &post(&server, "/embed", json!({ "inputs": ["a", "b", "c", "d", "e"] })),
        413,
        "validation",
        "batch size 5",
    );
    assert_error(
        &post(&server, "/embed", json!({ "inputs": "x".repeat(20_000) })),
        413,
        "validation",
        "larger than the limit",
    );
    assert_error(&post(&server, "/nowhere", json!({})), 404, "not_found", "no route POST /nowhere");
    // Routes this (masked-LM) model cannot serve.
    assert_error(&post(&server, "/predict", json!({ "inputs": "x" })), 424, "backend", "sequence-classification");
    assert_error(&post(&server, "/rerank", json!({ "query": "q", "texts": ["t"] })), 424, "backend", "cross-encoder");
    assert_error(&post(&server, "/tokenize", json!({ "inputs": [[1, 2]] })), 422, "validation", "takes text");
    // The server still answers after all of that.
    ok(post(&server, "/embed", json!({ "inputs": "still alive" })));
}

fn library_logits(model: &Model, inputs: &[(&str, Option<&str>)]) -> Vec<Vec<f32>> {
    model
        .classify(inputs, None)
        .unwrap()
        .into_iter()
        .map(|o| match o {
            ClassifyOutput::Sequence(c) => c.logits,
            ClassifyOutput::Tokens(_) => unreachable!(),
        })
        .collect()
}

#[test]
fn predict_single_pair_and_batch() {
    let dir = classifier(3);
    let server = start(ServeArgs::for_model(dir.path().to_str().unwrap()));
    let model = Model::load(dir.path()).unwrap();
    let expected = library_logits(&model, &[("good movie", None), ("premise", Some("hypothesis"))]);

    let single = ok(post(&server, "/predict", json!({ "inputs": "good movie" })));
    let preds = single.as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let scores: Vec<f64> = preds.iter().map(|p| p["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "sorted: {scores:?}");
    assert!((scores.iter().sum::<f64>() - 1.0).abs() < 1e-5);

    let raw = ok(post(&server, "/predict", json!({ "inputs": ["premise", "hypothesis"], "raw_scores": true })));
    for p in raw.as_array().unwrap() {
        let index = ["negative", "neutral", "positive"].iter().position(|l| *l == p["label"]).unwrap();
        assert!((p["score"].as_f64().unwrap() as f32 - expected[1][index]).abs() < 1e-4);
    }
    let batch = ok(post(&server, "/predict", json!({ "inputs": [["good movie"], ["premise", "hypothesis"]] })));
    assert_eq!(batch.as_array().unwrap().len(), 2);
    // Batched numbers match the single request's up to float rounding of a different batch shape.
    for (b, s) in batch[0].as_array().unwrap().iter().zip(preds) {
        assert_eq!(b["label"], s["label"]);
        assert!((b["score"].as_f64().unwrap() - s["score"].as_f64().unwrap()).abs() < 1e-5);
    }
    assert_error(&post(&server, "/rerank", json!({ "query": "q", "texts": ["t"] })), 424, "backend", "3 labels");
    let info = ok(client::get(server.addr(), "/info").unwrap());
    assert_eq!(info["model_type"]["classifier"]["id2label"]["2"], "positive");
    // POST / on a classifier is /predict (huggingface_hub's text_classification; its
    // `parameters` are accepted and ignored, as TEI does).
    let hub = json!({ "inputs": "good movie", "parameters": { "top_k": 1 } });
    assert_eq!(ok(post(&server, "/", hub)), single);
}

#[test]
fn rerank_sorts_cross_encoder_scores() {
    let dir = classifier(1);
    let server = start(ServeArgs::for_model(dir.path().to_str().unwrap()));
    let model = Model::load(dir.path()).unwrap();
    let texts = ["Paris is in France.", "Bananas are yellow.", "The Eiffel tower.", "Rust is a language."];
    let pairs: Vec<(&str, Option<&str>)> = texts.iter().map(|t| ("Where is Paris?", Some(*t))).collect();
    let logits: Vec<f32> = library_logits(&model, &pairs).into_iter().map(|l| l[0]).collect();

    let ranks =
        ok(post(&server, "/rerank", json!({ "query": "Where is Paris?", "texts": texts, "return_text": true })));
    let ranks = ranks.as_array().unwrap();
    assert_eq!(ranks.len(), 4);
    let mut seen: Vec<usize> = ranks.iter().map(|r| r["index"].as_u64().unwrap() as usize).collect();
    for r in ranks {
        let i = r["index"].as_u64().unwrap() as usize;
        assert_eq!(r["text"], texts[i]);
        let sigmoid = 1.0 / (1.0 + (-logits[i]).exp());
        assert!((r["score"].as_f64().unwrap() as f32 - sigmoid).abs() < 1e-5);
    }
    let scores: Vec<f64> = ranks.iter().map(|r| r["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]));
    seen.sort_unstable();
    assert_eq!(seen, vec![0, 1, 2, 3]);

    let raw = ok(post(&server, "/rerank", json!({ "query": "Where is Paris?", "texts": texts, "raw_scores": true })));
    let top = &raw[0];
    assert!(top.get("text").is_none());
    let best = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert!((top["score"].as_f64().unwrap() as f32 - best).abs() < 1e-4);
    assert_error(&post(&server, "/rerank", json!({ "query": "q", "texts": [] })), 422, "empty", "`texts`");
    let info = ok(client::get(server.addr(), "/info").unwrap());
    assert!(info["model_type"]["reranker"].is_object(), "{info}");
    // /predict also serves a cross-encoder (sigmoid score).
    let p = ok(post(&server, "/predict", json!({ "inputs": ["Where is Paris?", texts[0]] })));
    assert_eq!(p.as_array().unwrap().len(), 1);
    // POST / on a reranker is /rerank (TEI's dispatch).
    let body = json!({ "query": "Where is Paris?", "texts": texts, "raw_scores": true });
    assert_eq!(ok(post(&server, "/", body)), raw);
    assert_error(&post(&server, "/", json!({ "inputs": "x" })), 422, "validation", "missing field `query`");
}

#[test]
fn shutdown_finishes_in_flight_requests() {
    let server = start(ServeArgs::for_model(&tiny()));
    let addr = server.addr();
    let long: Vec<String> = (0..32).map(|i| format!("{i} {}", "lorem ipsum dolor ".repeat(400))).collect();
    let request = std::thread::spawn(move || client::post_json(addr, "/embed", &json!({ "inputs": long })).unwrap());
    // Wait until the request is being served, then stop the server.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !client::get(addr, "/metrics").unwrap().text().contains("te_in_flight_requests 1") {
        assert!(std::time::Instant::now() < deadline, "request never got in flight");
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    server.shutdown().unwrap();
    let r = request.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().map(Vec::len), Some(32));
    assert!(client::get(addr, "/health").is_err(), "the server still listens");
}

#[test]
fn a_model_that_fails_to_load_stops_the_server() {
    let server = modernbert_server::spawn(ServeArgs::for_model("/nonexistent/model")).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !server.is_finished() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let err = server.shutdown().unwrap_err();
    assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
}
