//! Function-level code-search metrics: a query is answered when a result's chunk lies in the
//! answer's file and contains the answer's line (the `def`/`fn` line of the function the query
//! describes). MRR@10, Recall@10/100 and nDCG@10 are `modernbert::retrieval::metrics`'.

use crate::search::Response;
use anyhow::{bail, Context, Result};
use modernbert::retrieval::{metrics, RetrievalMetrics, RetrievalSet};
use serde::Deserialize;

/// Where the answer to a query is.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Answer {
    pub path: String,
    pub line: u32,
}

/// A row of a `--queries` file: `{"query": ...}`, with `"path"` + `"line"` or `"answers"` when it
/// is an evaluation query.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryRow {
    pub query: String,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub line: Option<u32>,
    #[serde(default)]
    pub answers: Vec<Answer>,
}

impl QueryRow {
    pub fn answers(&self) -> Vec<Answer> {
        let mut a = self.answers.clone();
        if let (Some(path), Some(line)) = (&self.path, self.line) {
            a.push(Answer { path: path.clone(), line });
        }
        a
    }
}

/// Reads a JSONL file of queries (blank lines skipped). An empty query is an error naming its line.
pub fn read_queries(path: &std::path::Path) -> Result<Vec<QueryRow>> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).context("cannot read queries from stdin")?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?
    };
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let row: QueryRow = serde_json::from_str(line)
            .with_context(|| format!("{}:{}: expected {{\"query\": \"...\"}}", path.display(), i + 1))?;
        if row.query.trim().is_empty() {
            bail!("{}:{}: empty query", path.display(), i + 1);
        }
        rows.push(row);
    }
    Ok(rows)
}

/// Scores responses (same order as `rows`) against the rows' answers.
pub fn score(rows: &[QueryRow], responses: &[Response]) -> Result<RetrievalMetrics> {
    let mut set = RetrievalSet::default();
    let mut rankings: Vec<Vec<String>> = Vec::new();
    for (i, (row, resp)) in rows.iter().zip(responses).enumerate() {
        let answers = row.answers();
        if answers.is_empty() {
            bail!("query {} ({:?}) has no answer (\"path\" and \"line\", or \"answers\")", i + 1, row.query);
        }
        let qid = i.to_string();
        set.queries.push((qid.clone(), row.query.clone()));
        let ids: Vec<String> = answers.iter().map(|a| format!("{}:{}", a.path, a.line)).collect();
        set.qrels.insert(qid, ids.iter().cloned().collect());
        // A result counts once, for the first answer it contains.
        let mut seen = std::collections::HashSet::new();
        let ranking: Vec<String> = resp
            .results
            .iter()
            .map(|h| {
                answers
                    .iter()
                    .find(|a| a.path == h.path && h.start_line <= a.line && a.line <= h.end_line)
                    .map(|a| format!("{}:{}", a.path, a.line))
                    .filter(|id| seen.insert(id.clone()))
                    .unwrap_or_else(|| format!("{}:{}-{}", h.path, h.start_line, h.end_line))
            })
            .collect();
        rankings.push(ranking);
    }
    let refs: Vec<Vec<&str>> = rankings.iter().map(|r| r.iter().map(String::as_str).collect()).collect();
    Ok(metrics(&set, &refs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Hit;

    #[test]
    fn scoring_by_containing_chunk() {
        let rows: Vec<QueryRow> = vec![
            serde_json::from_str(r#"{"query": "a", "path": "x.py", "line": 10}"#).unwrap(),
            serde_json::from_str(r#"{"query": "b", "answers": [{"path": "y.py", "line": 3}]}"#).unwrap(),
        ];
        let hit = |p: &str, s, e| Hit { path: p.into(), start_line: s, end_line: e, score: 0.0, text: String::new() };
        let responses = vec![
            Response { query: "a".into(), results: vec![hit("x.py", 1, 5), hit("x.py", 8, 12), hit("x.py", 9, 20)] },
            Response { query: "b".into(), results: vec![hit("z.py", 1, 5)] },
        ];
        let m = score(&rows, &responses).unwrap();
        assert!((m.mrr_at_10 - 0.25).abs() < 1e-12);
        assert!((m.recall_at_10 - 0.5).abs() < 1e-12);
    }
}
