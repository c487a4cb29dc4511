//! Evaluation metrics of classifiers and taggers: accuracy, macro-F1 and MCC; micro/macro-F1 of
//! multi-label outputs; Pearson and Spearman for regression; seqeval-style entity precision,
//! recall and F1 (exact span match over BIO/IOB2 tags) and token accuracy.

use serde::Serialize;

/// Single-label classification metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ClassMetrics {
    pub accuracy: f64,
    pub macro_f1: f64,
    /// Matthews correlation (the multi-class form of Gorodkin 2004).
    pub mcc: f64,
}

fn ratio(a: f64, b: f64) -> f64 {
    if b == 0.0 {
        0.0
    } else {
        a / b
    }
}

fn f1(tp: f64, fp: f64, fn_: f64) -> f64 {
    ratio(2.0 * tp, 2.0 * tp + fp + fn_)
}

/// Accuracy, macro-F1 (over the classes present in `gold` or `pred`) and MCC.
pub fn classification(pred: &[usize], gold: &[usize], num_classes: usize) -> ClassMetrics {
    let n = gold.len() as f64;
    let mut confusion = vec![vec![0f64; num_classes]; num_classes];
    for (&p, &g) in pred.iter().zip(gold) {
        confusion[g][p] += 1.0;
    }
    let correct: f64 = (0..num_classes).map(|k| confusion[k][k]).sum();
    let gold_count: Vec<f64> = (0..num_classes).map(|k| confusion[k].iter().sum()).collect();
    let pred_count: Vec<f64> = (0..num_classes).map(|k| confusion.iter().map(|row| row[k]).sum()).collect();
    let present: Vec<usize> = (0..num_classes).filter(|&k| gold_count[k] + pred_count[k] > 0.0).collect();
    let macro_f1 = present
        .iter()
        .map(|&k| f1(confusion[k][k], pred_count[k] - confusion[k][k], gold_count[k] - confusion[k][k]))
        .sum::<f64>()
        / present.len().max(1) as f64;
    let sum_pg: f64 = (0..num_classes).map(|k| pred_count[k] * gold_count[k]).sum();
    let sum_p2: f64 = pred_count.iter().map(|v| v * v).sum();
    let sum_g2: f64 = gold_count.iter().map(|v| v * v).sum();
    let denom = ((n * n - sum_p2) * (n * n - sum_g2)).sqrt();
    ClassMetrics { accuracy: ratio(correct, n), macro_f1, mcc: ratio(correct * n - sum_pg, denom) }
}

/// Multi-label metrics at a 0.5 probability threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MultiLabelMetrics {
    pub micro_f1: f64,
    pub macro_f1: f64,
    /// Fraction of rows whose whole label set is right.
    pub exact_match: f64,
}

/// Multi-label metrics from per-label decisions `pred` and multi-hot `gold` (rows × labels).
pub fn multi_label(pred: &[Vec<bool>], gold: &[Vec<bool>]) -> MultiLabelMetrics {
    let labels = gold.first().map_or(0, |g| g.len());
    let (mut tp, mut fp, mut fn_) = (vec![0f64; labels], vec![0f64; labels], vec![0f64; labels]);
    let mut exact = 0usize;
    for (p, g) in pred.iter().zip(gold) {
        exact += usize::from(p == g);
        for k in 0..labels {
            match (p[k], g[k]) {
                (true, true) => tp[k] += 1.0,
                (true, false) => fp[k] += 1.0,
                (false, true) => fn_[k] += 1.0,
                _ => {}
            }
        }
    }
    let present: Vec<usize> = (0..labels).filter(|&k| tp[k] + fp[k] + fn_[k] > 0.0).collect();
    MultiLabelMetrics {
        micro_f1: f1(tp.iter().sum(), fp.iter().sum(), fn_.iter().sum()),
        macro_f1: present.iter().map(|&k| f1(tp[k], fp[k], fn_[k])).sum::<f64>() / present.len().max(1) as f64,
        exact_match: ratio(exact as f64, gold.len() as f64),
    }
}

/// Regression metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RegressionMetrics {
    pub pearson: f64,
    pub spearman: f64,
    pub mse: f64,
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        sxy += (a - mx) * (b - my);
        sxx += (a - mx) * (a - mx);
        syy += (b - my) * (b - my);
    }
    ratio(sxy, (sxx * syy).sqrt())
}

/// Ranks with ties given their average rank (as scipy's `rankdata`).
fn ranks(x: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..x.len()).collect();
    idx.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
    let mut r = vec![0f64; x.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && x[idx[j + 1]] == x[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Pearson, Spearman and mean squared error of predictions against gold values.
pub fn regression(pred: &[f64], gold: &[f64]) -> RegressionMetrics {
    let mse = pred.iter().zip(gold).map(|(p, g)| (p - g) * (p - g)).sum::<f64>() / gold.len().max(1) as f64;
    RegressionMetrics { pearson: pearson(pred, gold), spearman: pearson(&ranks(pred), &ranks(gold)), mse }
}

/// Entity-level (seqeval default mode) and token-level tagging metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TaggingMetrics {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Fraction of labelled words whose tag is right.
    pub token_accuracy: f64,
}

/// Entity spans `(type, start, end)` of a BIO/IOB2 tag sequence, as conlleval/seqeval read them:
/// a chunk starts at `B-X`, or at `I-X` that does not continue a chunk of type X.
pub fn entities(tags: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    let mut open: Option<(String, usize)> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (prefix, kind) = match tag.split_once('-') {
            Some((p, k)) if p == "B" || p == "I" => (p, k),
            _ => ("O", ""),
        };
        let continues = prefix == "I" && open.as_ref().is_some_and(|(k, _)| k == kind);
        if !continues {
            if let Some((k, s)) = open.take() {
                out.push((k, s, i));
            }
            if prefix != "O" {
                open = Some((kind.to_string(), i));
            }
        }
    }
    if let Some((k, s)) = open {
        out.push((k, s, tags.len()));
    }
    out
}

/// Tagging metrics over sentences of predicted and gold tags (the same lengths).
pub fn tagging(pred: &[Vec<&str>], gold: &[Vec<&str>]) -> TaggingMetrics {
    let (mut tp, mut n_pred, mut n_gold) = (0usize, 0usize, 0usize);
    let (mut right, mut words) = (0usize, 0usize);
    for (p, g) in pred.iter().zip(gold) {
        let pe = entities(p);
        let ge = entities(g);
        n_pred += pe.len();
        n_gold += ge.len();
        tp += pe.iter().filter(|e| ge.contains(e)).count();
        right += p.iter().zip(g).filter(|(a, b)| a == b).count();
        words += g.len();
    }
    let precision = ratio(tp as f64, n_pred as f64);
    let recall = ratio(tp as f64, n_gold as f64);
    TaggingMetrics {
        precision,
        recall,
        f1: ratio(2.0 * precision * recall, precision + recall),
        token_accuracy: ratio(right as f64, words as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }

    #[test]
    fn classification_by_hand() {
        // gold 0 0 1 1 2 ; pred 0 1 1 1 0
        let m = classification(&[0, 1, 1, 1, 0], &[0, 0, 1, 1, 2], 3);
        close(m.accuracy, 3.0 / 5.0);
        // F1: class 0: tp 1 fp 1 fn 1 -> 0.5; class 1: tp 2 fp 1 fn 0 -> 0.8; class 2: 0 -> 0.
        close(m.macro_f1, (0.5 + 0.8 + 0.0) / 3.0);
        // c = 3 correct of s = 5; gold counts t = [2, 2, 1], predicted p = [2, 3, 0]:
        // (c·s − Σ p·t) / √((s² − Σp²)(s² − Σt²)) = (15 − 10) / √(12 · 16)
        close(m.mcc, 5.0 / 192f64.sqrt());
        let perfect = classification(&[1, 0, 1], &[1, 0, 1], 2);
        close(perfect.mcc, 1.0);
    }

    #[test]
    fn regression_by_hand() {
        let m = regression(&[1.0, 2.0, 3.0, 4.0], &[2.0, 4.0, 6.0, 9.0]);
        // Σ(x−x̄)(y−ȳ) = 11.5, Σ(x−x̄)² = 5, Σ(y−ȳ)² = 26.75; monotone, so Spearman is 1.
        assert!((m.pearson - 11.5 / (5.0f64 * 26.75).sqrt()).abs() < 1e-12, "{}", m.pearson);
        close(m.spearman, 1.0);
        close(m.mse, (1.0 + 4.0 + 9.0 + 25.0) / 4.0);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), vec![3.5, 1.0, 3.5, 2.0]);
    }

    #[test]
    fn entities_like_seqeval() {
        let e = entities(&["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-PER"]);
        assert_eq!(e, vec![("PER".into(), 0, 2), ("LOC".into(), 3, 5), ("LOC".into(), 5, 6), ("PER".into(), 6, 7)]);
        // seqeval: classification_report on these gives precision 0.5, recall 0.5.
        let gold = vec![vec!["B-PER", "I-PER", "O", "B-LOC"], vec!["B-ORG", "O"]];
        let pred = vec![vec!["B-PER", "I-PER", "O", "B-ORG"], vec!["B-ORG", "B-ORG"]];
        let m = tagging(&pred, &gold);
        close(m.precision, 2.0 / 4.0);
        close(m.recall, 2.0 / 3.0);
        close(m.f1, 2.0 * 0.5 * (2.0 / 3.0) / (0.5 + 2.0 / 3.0));
        close(m.token_accuracy, 4.0 / 6.0);
    }

    #[test]
    fn multi_label_by_hand() {
        let gold = vec![vec![true, false, true], vec![false, true, false]];
        let pred = vec![vec![true, false, false], vec![false, true, false]];
        let m = multi_label(&pred, &gold);
        close(m.exact_match, 0.5);
        close(m.micro_f1, f1(2.0, 0.0, 1.0));
        close(m.macro_f1, (1.0 + 1.0 + 0.0) / 3.0);
    }
}
