//! Indexing and searching small temporary trees with a tiny model: modes, incremental updates,
//! atomic generations, the writer lock, and every kind of bad input (clear error, index intact).

mod common;

use common::*;
use modernbert_search::indexer;
use modernbert_search::search::{Mode, OpenOptions, Query, Searcher};
use modernbert_search::store::{self, WriterLock};

fn query(text: &str, mode: Mode, k: usize) -> Query {
    Query { text: text.into(), top_k: k, mode, rerank: true }
}

fn searcher(index: &std::path::Path) -> Searcher {
    Searcher::open(index, OpenOptions::default()).unwrap()
}

fn err_text<T>(r: anyhow::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn index_and_search_every_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    let s = index(&root, &idx);
    assert_eq!(s.files, 5, "{s:?}"); // .gitignore, config.rs, http.py, app.ts, guide.md, notes.txt minus ignored/ and the binary
    assert_eq!(s.skipped_binary, 1);
    assert_eq!(s.chunks, s.chunks_embedded);
    assert!(s.committed);

    let se = searcher(&idx);
    // BM25 finds identifier parts: "json document" matches fetchJsonDocument.
    let r = se.search(&query("fetch json document", Mode::Bm25, 3)).unwrap();
    assert_eq!(r.results[0].path, "src/net/http.py");
    assert!(r.results[0].text.contains("def fetchJsonDocument"), "{r:?}");
    assert_eq!((r.results[0].start_line, r.results[0].end_line), (7, 8));
    // Whole identifiers too, and Markdown sections with their lines.
    let r = se.search(&query("parse_config_file", Mode::Bm25, 1)).unwrap();
    assert_eq!((r.results[0].path.as_str(), r.results[0].start_line), ("src/config.rs", 3));
    let r = se.search(&query("installer elevated", Mode::Bm25, 1)).unwrap();
    assert_eq!((r.results[0].path.as_str(), r.results[0].start_line, r.results[0].end_line), ("docs/guide.md", 5, 8));
    // Nothing from ignored/ or the binary.
    let r = se.search(&query("hidden_function_name", Mode::Bm25, 50)).unwrap();
    assert!(r.results.iter().all(|h| !h.path.starts_with("ignored/") && !h.path.starts_with("assets/")));
    // Dense and hybrid rank every chunk (random model: only the shape is checked).
    let d = se.search(&query("retry a call", Mode::Dense, 100)).unwrap();
    assert_eq!(d.results.len(), s.chunks);
    assert!(d.results.windows(2).all(|w| w[0].score >= w[1].score));
    let h = se.search(&query("retry with backoff", Mode::Hybrid, 3)).unwrap();
    assert_eq!(h.results.len(), 3);
    // The BM25 winner stays in the fused top 3 (the tiny model's dense ranks are random).
    assert!(h.results.iter().any(|r| r.text.contains("def retry_with_backoff")), "{h:?}");
    let best = 1.0 / 61.0 + 1.0 / 61.0;
    assert!(h.results.iter().all(|r| r.score <= best + 1e-6 && r.score > 0.0));
    // JSON has exactly the documented fields.
    let v = serde_json::to_value(&h).unwrap();
    let keys: Vec<&str> = v["results"][0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, vec!["end_line", "path", "score", "start_line", "text"]);
    assert!(serde_json::to_string(&h).unwrap().starts_with(r#"{"query":"retry with backoff","results":[{"path":"#));
    // An empty query is an error, not a panic.
    assert!(err_text(se.search(&query("  ", Mode::Hybrid, 3))).contains("empty query"));
    // A query with no searchable terms gives no BM25 results.
    assert!(se.search(&query("+ - *", Mode::Bm25, 3)).unwrap().results.is_empty());
}

#[test]
fn reindex_updates_only_changed_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    let first = index(&root, &idx);
    // Unchanged: nothing embedded, no new generation.
    let again = index(&root, &idx);
    assert_eq!((again.chunks_embedded, again.generation, again.files_unchanged), (0, first.generation, first.files));
    assert!(!again.committed);

    let se = searcher(&idx);
    write(&root, "src/config.rs", "pub fn load_settings_from_disk() -> u32 {\n    42\n}\n");
    write(&root, "src/new_module.go", "package x\n\nfunc ComputeChecksumTable() int {\n\treturn 7\n}\n");
    std::fs::remove_file(root.join("notes.txt")).unwrap();
    let s = index(&root, &idx);
    assert_eq!((s.files_updated, s.files_removed, s.files_unchanged), (2, 1, first.files - 2), "{s:?}");
    // config.rs: one function; new_module.go: `package x` and one function.
    assert_eq!(s.chunks_embedded, 3, "only the two changed files' chunks are embedded: {s:?}");
    assert_eq!(s.generation, first.generation + 1);
    assert_eq!(s.files, first.files);

    // The open searcher switches to the new generation by itself.
    let r = se.search(&query("settings disk", Mode::Bm25, 3)).unwrap();
    assert_eq!(r.results[0].path, "src/config.rs");
    let gone = |q: &str, needle: &str| {
        se.search(&query(q, Mode::Bm25, 50)).unwrap().results.iter().all(|h| !h.text.contains(needle))
    };
    assert!(gone("parse_config_file", "parse_config_file"));
    assert!(gone("rotate signing keys", "signing keys"));
    let r = se.search(&query("checksum table", Mode::Bm25, 3)).unwrap();
    assert_eq!((r.results[0].path.as_str(), r.results[0].start_line), ("src/new_module.go", 3));
    // Kept files are still found, by BM25 and dense alike.
    assert_eq!(se.search(&query("fetchJsonDocument", Mode::Bm25, 1)).unwrap().results[0].path, "src/net/http.py");
    assert_eq!(se.search(&query("anything", Mode::Dense, 100)).unwrap().results.len(), s.chunks);

    // Only the current and the previous generation stay on disk.
    for _ in 0..2 {
        write(&root, "src/new_module.go", &format!("package x\n\nfunc F{}() int {{ return 1 }}\n", rand_suffix()));
        index(&root, &idx);
    }
    let gens: Vec<String> = std::fs::read_dir(&idx)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with("gen-"))
        .collect();
    assert_eq!(gens.len(), 2, "{gens:?}");
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos()
}

#[test]
fn bad_inputs_give_clear_errors_and_leave_the_index_intact() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    index(&root, &idx);
    let manifest_before = std::fs::read(idx.join("manifest.json")).unwrap();

    // A missing path.
    let e = err_text(indexer::index(&options(&tmp.path().join("nope"), &idx)));
    assert!(e.contains("cannot index") && e.contains("nope"), "{e}");
    // Another model: refused, for indexing and for searching.
    let mut o = options(&root, &idx);
    o.model = Some(prompt_model());
    let e = err_text(indexer::index(&o));
    assert!(e.contains("different model") && e.contains("--rebuild"), "{e}");
    let other = Searcher::open(&idx, OpenOptions { model: Some(prompt_model()), ..Default::default() }).unwrap();
    let e = err_text(other.search(&query("config", Mode::Dense, 3)));
    assert!(e.contains("different model"), "{e}");
    // ... but BM25 needs no model at all.
    assert!(!other.search(&query("config", Mode::Bm25, 3)).unwrap().results.is_empty());
    // A cross-encoder or ColBERT model cannot be the index's model.
    let mut o = options(&root, &tmp.path().join("idx-ce"));
    o.model = Some(repo_root().join("tests/fixtures/formats/ce-st6-sigmoid").display().to_string());
    assert!(err_text(indexer::index(&o)).contains("cross-encoder"));
    // Another root.
    let other_root = tmp.path().join("other");
    write(&other_root, "a.rs", "fn a() {}\n");
    let e = err_text(indexer::index(&options(&other_root, &idx)));
    assert!(e.contains("indexes") && e.contains("another --index"), "{e}");
    // A directory that is not an index: never written into.
    let foreign = tmp.path().join("foreign");
    write(&foreign, "important.txt", "keep me");
    let e = err_text(indexer::index(&options(&root, &foreign)));
    assert!(e.contains("not a code-search index"), "{e}");
    assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1);
    let e = err_text(Searcher::open(&foreign, OpenOptions::default()));
    assert!(e.contains("no index at"), "{e}");
    let e = err_text(Searcher::open(&tmp.path().join("missing"), OpenOptions::default()));
    assert!(e.contains("does not exist"), "{e}");
    // The index is untouched by all of the above.
    assert_eq!(std::fs::read(idx.join("manifest.json")).unwrap(), manifest_before);
    assert!(!searcher(&idx).search(&query("fetchJsonDocument", Mode::Hybrid, 3)).unwrap().results.is_empty());

    // A foreign or corrupt manifest.
    let bad = tmp.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    std::fs::write(bad.join("manifest.json"), b"{\"hello\": 1}").unwrap();
    assert!(err_text(Searcher::open(&bad, OpenOptions::default())).contains("not a modernbert-search manifest"));
    std::fs::write(bad.join("manifest.json"), b"\x00garbage").unwrap();
    assert!(err_text(Searcher::open(&bad, OpenOptions::default())).contains("not valid JSON"));
    let e = err_text(indexer::index(&options(&root, &bad)));
    assert!(e.contains("--rebuild"), "{e}");
    let mut o = options(&root, &bad);
    o.rebuild = true;
    assert!(indexer::index(&o).unwrap().committed, "--rebuild replaces a corrupt index");
    // A future format version.
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(bad.join("manifest.json")).unwrap()).unwrap();
    m["version"] = 99.into();
    std::fs::write(bad.join("manifest.json"), m.to_string()).unwrap();
    assert!(err_text(Searcher::open(&bad, OpenOptions::default())).contains("format version 99"));

    // A damaged generation (truncated vectors): refused with advice, never a panic.
    let copy = tmp.path().join("copy");
    index(&root, &copy);
    let g = store::read_manifest(&copy).unwrap().unwrap().generation;
    let vectors = store::generation_dir(&copy, g).join("vectors.f32");
    let len = std::fs::metadata(&vectors).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&vectors).unwrap().set_len(len - 4).unwrap();
    let e = err_text(Searcher::open(&copy, OpenOptions::default()));
    assert!(e.contains("damaged") && e.contains("--rebuild"), "{e}");
    // A chunk table pointing outside the text file.
    let copy2 = tmp.path().join("copy2");
    index(&root, &copy2);
    let text = store::generation_dir(&copy2, g).join("text.bin");
    std::fs::write(&text, b"short").unwrap();
    assert!(err_text(Searcher::open(&copy2, OpenOptions::default())).contains("damaged"));
}

#[test]
fn writer_lock_and_crash_leftovers() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    let first = index(&root, &idx);

    // A second writer is refused while the lock is held.
    let lock = WriterLock::acquire(&idx).unwrap();
    write(&root, "src/extra.rs", "fn extra_function() {}\n");
    let e = err_text(indexer::index(&options(&root, &idx)));
    assert!(e.contains("another `modernbert index` is writing"), "{e}");
    drop(lock);

    // What a killed writer leaves: a half-written generation, a generation the manifest never
    // named, a temporary manifest. Readers ignore them; the next writer cleans them up.
    let next = store::generation_dir(&idx, first.generation + 1);
    std::fs::create_dir_all(&next).unwrap();
    std::fs::write(next.join("vectors.f32"), b"junk").unwrap();
    let tmp_gen = idx.join(format!("gen-{:06}.tmp", first.generation + 2));
    std::fs::create_dir_all(&tmp_gen).unwrap();
    std::fs::write(idx.join("manifest.json.tmp"), b"{half").unwrap();
    let r = searcher(&idx).search(&query("fetchJsonDocument", Mode::Hybrid, 1)).unwrap();
    assert_eq!(r.results[0].path, "src/net/http.py");
    let s = index(&root, &idx);
    assert_eq!((s.generation, s.chunks_embedded, s.files_updated), (first.generation + 1, 1, 1));
    assert!(!tmp_gen.exists());
    let r = searcher(&idx).search(&query("extra_function", Mode::Bm25, 1)).unwrap();
    assert_eq!(r.results[0].path, "src/extra.rs");
}

#[test]
fn readers_see_consistent_generations_while_a_writer_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    write(&root, "counter.rs", "// counter version marker\nfn version_0() {}\n");
    index(&root, &idx);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (idx, stop) = (idx.clone(), stop.clone());
        std::thread::spawn(move || {
            let se = Searcher::open(&idx, OpenOptions::default()).unwrap();
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) || n < 5 {
                // Every file is always there in exactly one version: the counter file says
                // `version_K` once, never zero or two times.
                let r = se.search(&query("counter version marker", Mode::Bm25, 10)).unwrap();
                let hits = r.results.iter().filter(|h| h.path == "counter.rs").count();
                assert_eq!(hits, 1, "{r:?}");
                // Fresh opens too (a new process reading the manifest mid-commit).
                let fresh = Searcher::open(&idx, OpenOptions::default()).unwrap();
                assert!(!fresh.search(&query("fetchJsonDocument", Mode::Bm25, 1)).unwrap().results.is_empty());
                n += 1;
            }
            n
        })
    };
    for k in 1..6 {
        write(&root, "counter.rs", &format!("// counter version marker\nfn version_{k}() {{}}\n"));
        index(&root, &idx);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() >= 5);
}

#[test]
fn prompts_reranker_and_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    // A sentence-transformers model with query/document prompts and a 24-token limit.
    let mut o = options(&root, &idx);
    o.model = Some(prompt_model());
    o.checkpoint = std::time::Duration::ZERO; // commit after every embedding batch
    o.batch = 1;
    let s = indexer::index(&o).unwrap();
    assert!(s.generation > 1, "checkpoints committed along the way: {s:?}");
    let m = store::read_manifest(&idx).unwrap().unwrap();
    assert!(m.complete);
    assert_eq!(m.model.query_prompt.as_deref(), Some("query"));
    assert!(m.max_tokens <= 24);
    // Searching with the recorded model (no --model needed), reranked by a cross-encoder and by
    // a ColBERT model.
    for reranker in ["ce-st6-sigmoid", "colbert-default"] {
        let opts = OpenOptions {
            rerank: Some(repo_root().join("tests/fixtures/formats").join(reranker).display().to_string()),
            rerank_candidates: 4,
            ..Default::default()
        };
        let se = Searcher::open(&idx, opts).unwrap();
        let r = se.search(&query("fetch json", Mode::Hybrid, 3)).unwrap();
        assert_eq!(r.results.len(), 3, "{reranker}");
        assert!(r.results.windows(2).all(|w| w[0].score >= w[1].score));
    }
    // A reranker that is not one.
    let se =
        Searcher::open(&idx, OpenOptions { rerank: Some(tiny_model()), rerank_candidates: 4, ..Default::default() })
            .unwrap();
    assert!(err_text(se.search(&query("fetch", Mode::Bm25, 3))).contains("cross-encoder or a ColBERT"));
}

#[test]
fn an_index_rebuilt_with_another_model_under_an_open_searcher() {
    let tmp = tempfile::tempdir().unwrap();
    let (root, idx) = (tmp.path().join("repo"), tmp.path().join("idx"));
    sample_tree(&root);
    index(&root, &idx);
    // A long-lived searcher (a server's) has loaded tiny-mlm for queries.
    let se = searcher(&idx);
    assert!(!se.search(&query("fetch json", Mode::Dense, 2)).unwrap().results.is_empty());
    let before = store::read_manifest(&idx).unwrap().unwrap().generation;
    let mut o = options(&root, &idx);
    o.model = Some(prompt_model());
    o.rebuild = true;
    let s = indexer::index(&o).unwrap();
    // A rebuild is a new generation: the one readers hold is kept, not overwritten.
    assert_eq!(s.generation, before + 1);
    assert!(store::generation_dir(&idx, before).is_dir());
    // Its query vectors would be compared with another model's: refused, not silently wrong.
    let e = err_text(se.search(&query("fetch json", Mode::Hybrid, 2)));
    assert!(e.contains("different model"), "{e}");
    let r = se.search(&query("fetchJsonDocument", Mode::Bm25, 1)).unwrap();
    assert_eq!(r.results[0].path, "src/net/http.py");
}
