//! Code search over whole repositories with ModernBERT.
//!
//! * [`walk`] finds the files (`.gitignore`, no vendored, generated or binary files);
//! * [`chunk`] cuts them by syntax (tree-sitter), Markdown sections or line windows;
//! * [`indexer`] embeds the changed files' chunks and commits a new generation ([`store`]):
//!   BM25 (tantivy, identifier-aware [`tokens`]) plus a memory-mapped vector matrix;
//! * [`search`] ranks by BM25, an exact SIMD [`dense`] scan, or both fused by reciprocal rank,
//!   optionally reranked by a cross-encoder or ColBERT model;
//! * [`web`] is the search page and JSON handler a server mounts; [`eval`] scores rankings.
//!
//! ```no_run
//! use modernbert_search::{indexer, search};
//! let summary = indexer::index(&indexer::IndexOptions::new(".", "/tmp/idx"))?;
//! let s = search::Searcher::open("/tmp/idx".as_ref(), Default::default())?;
//! let r = s.search(&search::Query::new("parse the config file"))?;
//! # anyhow::Ok(())
//! ```

pub mod chunk;
pub mod dense;
pub mod embedder;
pub mod eval;
pub mod indexer;
pub mod search;
pub mod store;
pub mod tokens;
pub mod walk;
pub mod web;

pub use search::{Hit, Mode, Query, Response, Searcher};
