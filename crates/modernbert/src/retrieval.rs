//! Retrieval evaluation: BEIR-layout data (`queries.jsonl`, `corpus.jsonl`, `qrels.tsv`), exact
//! search over vectors, and the usual metrics with binary relevance — nDCG@k (log2 discount, ideal
//! = all relevant documents first), MRR@k (reciprocal rank of the first relevant hit within k),
//! Recall@k (share of the relevant documents retrieved within k).

use crate::error::{Error, Result};
use crate::formats::colbert::maxsim;
use crate::formats::Format;
use crate::pipelines::EmbedOptions;
use crate::tasks::Embedding;
use crate::tokenizer::Truncation;
use crate::Model;
use rayon::prelude::*;
use std::collections::{HashMap, HashSet};
use std::path::Path;

/// A retrieval evaluation set.
#[derive(Debug, Clone, Default)]
pub struct RetrievalSet {
    /// `(id, text)` of every query that has at least one relevant document.
    pub queries: Vec<(String, String)>,
    /// `(id, text)` of every document (`title` and `text` joined by a space when both are set).
    pub corpus: Vec<(String, String)>,
    /// Query id → relevant document ids.
    pub qrels: HashMap<String, HashSet<String>>,
}

fn read_jsonl_texts(path: &Path) -> Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{}:{}", path.display(), i + 1);
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| Error::Input(format!("{}: not valid JSON: {e}", at())))?;
        let id = match &v["_id"] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(Error::Input(format!("{}: no `_id`", at()))),
        };
        let body = v["text"].as_str().ok_or_else(|| Error::Input(format!("{}: no string `text`", at())))?;
        let text = match v["title"].as_str() {
            Some(t) if !t.is_empty() => format!("{t} {body}"),
            _ => body.to_string(),
        };
        out.push((id, text));
    }
    Ok(out)
}

impl RetrievalSet {
    /// Reads `queries.jsonl`, `corpus.jsonl` (`{"_id", "title"?, "text"}`) and a qrels TSV
    /// (`query-id<TAB>corpus-id<TAB>score`, optional header; score > 0 is relevant).
    pub fn read(queries: &Path, corpus: &Path, qrels: &Path) -> Result<Self> {
        let mut set = RetrievalSet {
            queries: read_jsonl_texts(queries)?,
            corpus: read_jsonl_texts(corpus)?,
            ..Default::default()
        };
        let text = std::fs::read_to_string(qrels).map_err(|e| Error::io(qrels, e))?;
        for (i, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split('\t').collect();
            if line.trim().is_empty() || (i == 0 && cols.first() == Some(&"query-id")) {
                continue;
            }
            let (q, d, score) = match cols.as_slice() {
                [q, d, s] => (q, d, s.trim().parse::<f64>()),
                [q, _, d, s] => (q, d, s.trim().parse::<f64>()),
                _ => {
                    return Err(Error::Input(format!(
                        "{}:{}: expected query-id, corpus-id, score",
                        qrels.display(),
                        i + 1
                    )))
                }
            };
            let score =
                score.map_err(|_| Error::Input(format!("{}:{}: the score is not a number", qrels.display(), i + 1)))?;
            if score > 0.0 {
                set.qrels.entry(q.to_string()).or_default().insert(d.to_string());
            }
        }
        set.queries.retain(|(id, _)| set.qrels.contains_key(id));
        if set.queries.is_empty() {
            return Err(Error::Input(format!("{}: no query has a relevant document", qrels.display())));
        }
        Ok(set)
    }

    /// Reads a BEIR directory (`queries.jsonl`, `corpus.jsonl`, `qrels.tsv` or `qrels/test.tsv`).
    pub fn read_dir(dir: &Path) -> Result<Self> {
        let qrels = [dir.join("qrels.tsv"), dir.join("qrels").join("test.tsv")]
            .into_iter()
            .find(|p| p.is_file())
            .ok_or_else(|| Error::Input(format!("{} has no qrels.tsv", dir.display())))?;
        Self::read(&dir.join("queries.jsonl"), &dir.join("corpus.jsonl"), &qrels)
    }
}

/// Retrieval metrics averaged over queries.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct RetrievalMetrics {
    pub ndcg_at_10: f64,
    pub mrr_at_10: f64,
    pub recall_at_10: f64,
    pub recall_at_100: f64,
    pub queries: usize,
}

/// Metrics of one ranking (`ranked`: document ids, best first) against the relevant set.
fn query_metrics(ranked: &[&str], relevant: &HashSet<String>) -> (f64, f64, f64, f64) {
    let hit = |i: usize| ranked.get(i).is_some_and(|d| relevant.contains(*d));
    let dcg: f64 = (0..10).filter(|&i| hit(i)).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    let idcg: f64 = (0..relevant.len().min(10)).map(|i| 1.0 / ((i + 2) as f64).log2()).sum();
    let mrr = (0..10).find(|&i| hit(i)).map_or(0.0, |i| 1.0 / (i + 1) as f64);
    let recall = |k: usize| (0..k).filter(|&i| hit(i)).count() as f64 / relevant.len() as f64;
    (dcg / idcg, mrr, recall(10), recall(100))
}

/// Averages the metrics of every query's ranking (`rankings[q]`: document ids, best first).
pub fn metrics(set: &RetrievalSet, rankings: &[Vec<&str>]) -> RetrievalMetrics {
    let mut m = RetrievalMetrics { queries: set.queries.len(), ..Default::default() };
    for ((qid, _), ranked) in set.queries.iter().zip(rankings) {
        let (ndcg, mrr, r10, r100) = query_metrics(ranked, &set.qrels[qid]);
        m.ndcg_at_10 += ndcg;
        m.mrr_at_10 += mrr;
        m.recall_at_10 += r10;
        m.recall_at_100 += r100;
    }
    let n = m.queries.max(1) as f64;
    m.ndcg_at_10 /= n;
    m.mrr_at_10 /= n;
    m.recall_at_10 /= n;
    m.recall_at_100 /= n;
    m
}

/// The indices of the `k` best-scoring documents, best first (ties by index).
pub fn top_k(scores: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    let k = k.min(idx.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
        idx.truncate(k);
    }
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    idx
}

/// Dot products of one vector with every row.
pub fn dot_scores(query: &[f32], rows: &[Vec<f32>]) -> Vec<f32> {
    rows.iter().map(|r| r.iter().zip(query).map(|(a, b)| a * b).sum()).collect()
}

/// The prompt names sentence-transformers' `encode_query` / `encode_document` use, when the
/// model has such prompts: `query`; the first of `document`, `passage`, `corpus`.
fn side_prompts(model: &Model) -> (Option<String>, Option<String>) {
    let prompts = match &model.format {
        Format::SentenceTransformer(st) => &st.prompts.prompts,
        Format::Colbert(c) => &c.prompts.prompts,
        _ => return (None, None),
    };
    let has = |n: &str| prompts.get(n).is_some_and(|p| !p.is_empty());
    let q = has("query").then(|| "query".to_string());
    let d = ["document", "passage", "corpus"].into_iter().find(|n| has(n)).map(str::to_string);
    (q, d)
}

/// Scores `model` on `set` by exact search: an embedding model ranks the corpus by cosine
/// (queries and documents with the model's query/document prompts), a ColBERT model by MaxSim, a
/// cross-encoder by scoring every (query, document) pair. Inputs are cut to `max_length` tokens.
pub fn evaluate(model: &Model, set: &RetrievalSet, max_length: usize) -> Result<RetrievalMetrics> {
    let truncation = Some(Truncation::right(max_length));
    let docs: Vec<&str> = set.corpus.iter().map(|(_, t)| t.as_str()).collect();
    let queries: Vec<&str> = set.queries.iter().map(|(_, t)| t.as_str()).collect();
    let scores: Vec<Vec<f32>> = match &model.format {
        Format::CrossEncoder(_) => {
            queries.iter().map(|q| model.score_pairs(q, &docs, true, truncation)).collect::<Result<_>>()?
        }
        Format::Colbert(_) => {
            let opts = |is_query| EmbedOptions { is_query, truncation, ..Default::default() };
            let tokens = |e: Embedding| match e {
                Embedding::Tokens(t) => t,
                Embedding::Pooled(p) => vec![p],
            };
            let d: Vec<Vec<Vec<f32>>> = model.embed(&docs, &opts(false))?.into_iter().map(tokens).collect();
            let q: Vec<Vec<Vec<f32>>> = model.embed(&queries, &opts(true))?.into_iter().map(tokens).collect();
            q.par_iter().map(|q| d.iter().map(|d| maxsim(q, d)).collect()).collect()
        }
        _ => {
            let (qp, dp) = side_prompts(model);
            let opts = |prompt_name| EmbedOptions { prompt_name, normalize: true, truncation, ..Default::default() };
            let vectors = |e: Vec<Embedding>| -> Vec<Vec<f32>> {
                e.into_iter()
                    .map(|e| match e {
                        Embedding::Pooled(v) => v,
                        Embedding::Tokens(_) => Vec::new(),
                    })
                    .collect()
            };
            let d = vectors(model.embed(&docs, &opts(dp))?);
            let q = vectors(model.embed(&queries, &opts(qp))?);
            q.par_iter().map(|q| dot_scores(q, &d)).collect()
        }
    };
    let rankings: Vec<Vec<&str>> =
        scores.iter().map(|s| top_k(s, 100).into_iter().map(|i| set.corpus[i].0.as_str()).collect()).collect();
    Ok(metrics(set, &rankings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_by_hand() {
        let mut set =
            RetrievalSet { queries: vec![("q1".into(), "".into()), ("q2".into(), "".into())], ..Default::default() };
        set.qrels.insert("q1".into(), ["d2".to_string(), "d5".to_string()].into());
        set.qrels.insert("q2".into(), ["d9".to_string()].into());
        // q1: relevant at ranks 2 and 4; q2: none in the list.
        let r1 = vec!["d1", "d2", "d3", "d5"];
        let r2 = vec!["d1", "d2"];
        let m = metrics(&set, &[r1, r2]);
        let ndcg1 = (1.0 / 3f64.log2() + 1.0 / 5f64.log2()) / (1.0 + 1.0 / 3f64.log2());
        assert!((m.ndcg_at_10 - ndcg1 / 2.0).abs() < 1e-12);
        assert!((m.mrr_at_10 - 0.25).abs() < 1e-12);
        assert!((m.recall_at_10 - 0.5).abs() < 1e-12);
        assert_eq!(top_k(&[0.1, 0.9, 0.5, 0.9], 3), vec![1, 3, 2]);
    }
}
