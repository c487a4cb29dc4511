//! Retrieval training data: `(query, positive, negatives…)` rows for embedders and ColBERT
//! models, `(query, document, label)` rows for cross-encoders, and the no-duplicates batching of
//! sentence-transformers (a text never appears twice in a step, so no in-batch negative is a
//! copy of a positive).

use super::data::Origin;
use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::{HashSet, VecDeque};
use std::path::Path;

/// One row of a pairs file.
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    pub query: String,
    /// The relevant text (`positive`, or `document` in labelled rows).
    pub positive: String,
    /// Hard negatives, in file order.
    pub negatives: Vec<String>,
    /// A relevance label of `positive` (labelled cross-encoder rows).
    pub label: Option<f32>,
    /// A teacher's scores of `[positive, negatives…]` (distillation).
    pub teacher: Option<Vec<f32>>,
    /// A teacher's embeddings of `[query, positive, negatives…]` (embedding distillation).
    pub teacher_vectors: Option<Vec<Vec<f32>>>,
    /// The dataset the row comes from (`source` or `dataset`), for one-source batches.
    pub source: Option<String>,
    pub origin: Origin,
}

fn text<'a>(obj: &'a serde_json::Map<String, Value>, keys: &[&str]) -> Option<&'a str> {
    keys.iter().find_map(|k| obj.get(*k).and_then(Value::as_str))
}

/// Reads JSONL rows `{"query"|"anchor", "positive"|"document", "negatives": [...] | "negative" |
/// "negative_1"…, "label"?, "teacher_scores"?, "teacher_vectors"?, "source"?}`; errors name the
/// file and line.
pub fn read_pairs(path: &Path) -> Result<Vec<PairRow>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text_all = String::from_utf8(bytes).map_err(|e| {
        let line = e.as_bytes()[..e.utf8_error().valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
        anyhow::anyhow!("{}:{line}: not valid UTF-8", path.display())
    })?;
    let mut rows = Vec::new();
    for (i, line) in text_all.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = Origin { file: path.to_path_buf(), line: i + 1 };
        let v: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{at}: not valid JSON: {e}"))?;
        let Some(obj) = v.as_object() else { bail!("{at}: expected a JSON object") };
        let query =
            text(obj, &["query", "anchor", "question"]).with_context(|| format!("{at}: no `query` (or `anchor`)"))?;
        let positive = text(obj, &["positive", "document", "pos"])
            .with_context(|| format!("{at}: no `positive` (or `document`)"))?;
        let mut negatives: Vec<String> = match obj.get("negatives") {
            Some(Value::Array(items)) => items
                .iter()
                .map(|n| n.as_str().map(str::to_string).with_context(|| format!("{at}: `negatives` holds {n}")))
                .collect::<Result<_>>()?,
            Some(other) => bail!("{at}: `negatives` must be a list of strings, found {other}"),
            None => Vec::new(),
        };
        if let Some(n) = text(obj, &["negative"]) {
            negatives.push(n.to_string());
        }
        let mut k = 1;
        while let Some(n) = obj.get(&format!("negative_{k}")).and_then(Value::as_str) {
            negatives.push(n.to_string());
            k += 1;
        }
        let label = match obj.get("label") {
            None | Some(Value::Null) => None,
            Some(l) => Some(
                l.as_f64()
                    .or_else(|| l.as_bool().map(|b| if b { 1.0 } else { 0.0 }))
                    .with_context(|| format!("{at}: `label` must be a number"))? as f32,
            ),
        };
        let teacher = match obj.get("teacher_scores") {
            None | Some(Value::Null) => None,
            Some(Value::Array(s)) => {
                let s: Vec<f32> = s
                    .iter()
                    .map(|x| x.as_f64().map(|f| f as f32).with_context(|| format!("{at}: `teacher_scores` holds {x}")))
                    .collect::<Result<_>>()?;
                if s.len() != 1 + negatives.len() {
                    bail!("{at}: {} teacher scores for 1 positive and {} negatives", s.len(), negatives.len());
                }
                Some(s)
            }
            Some(other) => bail!("{at}: `teacher_scores` must be a list, found {other}"),
        };
        let teacher_vectors = match obj.get("teacher_vectors") {
            None | Some(Value::Null) => None,
            Some(v) => Some(read_vectors(v, 2 + negatives.len()).with_context(|| format!("{at}: `teacher_vectors`"))?),
        };
        if query.trim().is_empty() || positive.trim().is_empty() || negatives.iter().any(|n| n.trim().is_empty()) {
            bail!("{at}: an empty text");
        }
        let source = text(obj, &["source", "dataset"]).map(str::to_string);
        rows.push(PairRow {
            query: query.into(),
            positive: positive.into(),
            negatives,
            label,
            teacher,
            teacher_vectors,
            source,
            origin: at,
        });
    }
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

/// `count` vectors of one width with finite entries, from a JSON list of lists of numbers.
fn read_vectors(v: &Value, count: usize) -> Result<Vec<Vec<f32>>> {
    let Value::Array(items) = v else { bail!("must be a list of vectors, found {v}") };
    if items.len() != count {
        bail!("{} vectors for {count} texts (query, positive, negatives)", items.len());
    }
    let vectors: Vec<Vec<f32>> = items
        .iter()
        .map(|item| {
            let Value::Array(xs) = item else { bail!("a vector must be a list of numbers, found {item}") };
            xs.iter()
                .map(|x| match x.as_f64() {
                    Some(f) if f.is_finite() => Ok(f as f32),
                    _ => bail!("holds {x}, not a finite number"),
                })
                .collect()
        })
        .collect::<Result<_>>()?;
    if vectors.iter().any(|x| x.is_empty() || x.len() != vectors[0].len()) {
        bail!("vectors must be non-empty and of one width");
    }
    Ok(vectors)
}

/// The steps of one epoch with no text twice in a step: rows in a seeded shuffle fill a step
/// unless one of their texts is already in it; a skipped row opens the next step.
pub fn no_duplicate_steps(texts: &[Vec<u64>], seed: u64, epoch: u64, batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..texts.len()).collect();
    Rng::keyed(seed, &[0xE90C, epoch]).shuffle(&mut order);
    let mut pending: VecDeque<usize> = order.into();
    let mut steps = Vec::new();
    while !pending.is_empty() {
        let (mut step, mut seen, mut skipped) = (Vec::new(), HashSet::new(), Vec::new());
        while step.len() < batch_size.max(1) {
            let Some(i) = pending.pop_front() else { break };
            if texts[i].iter().any(|h| seen.contains(h)) {
                skipped.push(i);
            } else {
                seen.extend(texts[i].iter().copied());
                step.push(i);
            }
        }
        for i in skipped.into_iter().rev() {
            pending.push_front(i);
        }
        steps.push(step);
    }
    steps
}

/// [`no_duplicate_steps`] within each group (`groups[i]` is row `i`'s), the steps of all groups
/// then shuffled together: every step holds rows of one source only, as sentence-transformers'
/// multi-dataset training batches (its proportional sampler), so in-batch negatives cannot be told
/// apart by their source's style alone.
pub fn one_group_steps(
    texts: &[Vec<u64>],
    groups: &[usize],
    seed: u64,
    epoch: u64,
    batch_size: usize,
) -> Vec<Vec<usize>> {
    let count = groups.iter().max().map_or(0, |g| g + 1);
    let mut steps = Vec::new();
    for g in 0..count {
        let rows: Vec<usize> = (0..texts.len()).filter(|&i| groups[i] == g).collect();
        let group_texts: Vec<Vec<u64>> = rows.iter().map(|&i| texts[i].clone()).collect();
        let group_seed = seed ^ (g as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        for step in no_duplicate_steps(&group_texts, group_seed, epoch, batch_size) {
            steps.push(step.into_iter().map(|k| rows[k]).collect());
        }
    }
    Rng::keyed(seed, &[0x6E0C, epoch]).shuffle(&mut steps);
    steps
}

/// A stable hash of a text (for duplicate detection).
pub fn text_hash(text: &str) -> u64 {
    // FNV-1a: fixed across runs and platforms, unlike the std hasher's random keys.
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("p.jsonl");
        std::fs::write(
            &p,
            "{\"query\": \"q\", \"positive\": \"p\", \"negatives\": [\"n1\", \"n2\"]}\n\
             {\"anchor\": \"a\", \"positive\": \"b\", \"negative\": \"c\"}\n\
             {\"query\": \"q\", \"document\": \"d\", \"label\": 1}\n",
        )
        .unwrap();
        let rows = read_pairs(&p).unwrap();
        assert_eq!(rows[0].negatives, vec!["n1", "n2"]);
        assert_eq!((rows[1].query.as_str(), rows[1].negatives.len()), ("a", 1));
        assert_eq!(rows[2].label, Some(1.0));
        std::fs::write(&p, "{\"query\": \"q\", \"positive\": \"p\"}\n{\"query\": \"q\"}\n").unwrap();
        assert!(read_pairs(&p).unwrap_err().to_string().contains("p.jsonl:2: no `positive`"));
        std::fs::write(&p, "{\"query\": \"q\", \"positive\": \"p\", \"teacher_scores\": [1, 2]}\n").unwrap();
        assert!(read_pairs(&p).unwrap_err().to_string().contains("2 teacher scores for 1 positive and 0 negatives"));
        let vectors = |v: &str| format!("{{\"query\": \"q\", \"positive\": \"p\", \"teacher_vectors\": {v}}}\n");
        std::fs::write(&p, vectors("[[1, 0.5], [0, -2]]")).unwrap();
        assert_eq!(read_pairs(&p).unwrap()[0].teacher_vectors, Some(vec![vec![1.0, 0.5], vec![0.0, -2.0]]));
        for (bad, why) in [
            ("[[1, 0]]", "1 vectors for 2 texts"),
            ("[[1, 0], [1]]", "of one width"),
            ("[[1, 0], [1, \"x\"]]", "not a finite number"),
            ("[1, 2]", "must be a list of numbers"),
        ] {
            std::fs::write(&p, vectors(bad)).unwrap();
            let e = format!("{:#}", read_pairs(&p).unwrap_err());
            assert!(e.contains("p.jsonl:1: `teacher_vectors`") && e.contains(why), "{bad}: {e}");
        }
    }

    #[test]
    fn steps_never_repeat_a_text() {
        // Rows 0..20; texts: row i has its own text and a shared one every 4 rows.
        let texts: Vec<Vec<u64>> = (0..20u64).map(|i| vec![100 + i, i % 4]).collect();
        let steps = no_duplicate_steps(&texts, 3, 0, 8);
        let groups: Vec<usize> = (0..texts.len()).map(|i| i % 3).collect();
        let grouped = one_group_steps(&texts, &groups, 3, 0, 8);
        let mut covered: Vec<usize> = grouped.iter().flatten().copied().collect();
        covered.sort();
        assert_eq!(covered, (0..texts.len()).collect::<Vec<_>>(), "every row once");
        for step in &grouped {
            assert!(step.iter().all(|&i| groups[i] == groups[step[0]]), "one group per step: {step:?}");
            let hashes: HashSet<u64> = step.iter().flat_map(|&i| texts[i].iter().copied()).collect();
            assert_eq!(hashes.len(), step.iter().map(|&i| texts[i].len()).sum::<usize>(), "no duplicates");
        }
        assert_eq!(grouped, one_group_steps(&texts, &groups, 3, 0, 8), "seeded");
        assert_ne!(grouped, one_group_steps(&texts, &groups, 3, 1, 8), "a new order each epoch");
        let mut all: Vec<usize> = steps.concat();
        all.sort();
        assert_eq!(all, (0..20).collect::<Vec<_>>());
        for s in &steps {
            let mut seen = HashSet::new();
            assert!(s.iter().flat_map(|&i| texts[i].clone()).all(|h| seen.insert(h)), "{s:?}");
            assert!(s.len() <= 4, "at most one row per shared text");
        }
    }
}
