//! Label spaces: which outputs a classifier has and what a row's label means for them.
//!
//! Single-label classes are sorted (numerically when they are integers) so that ids are stable
//! across runs; multi-label classes are the sorted union of the lists; a float label means
//! regression (one output). Token tags are sorted strings.

use super::data::{Origin, RawLabel, TextRow, TokenRow};
use anyhow::{bail, Result};
use modernbert::{Config, ProblemType};
use std::collections::BTreeSet;

/// The outputs of a sequence classifier.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelSpace {
    /// One class per input (softmax, cross-entropy).
    Classes(Vec<String>),
    /// Any subset of the classes per input (sigmoid, binary cross-entropy).
    MultiLabel(Vec<String>),
    /// One real value per input (mean squared error).
    Regression,
}

/// A row's training target.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A class id.
    Class(u32),
    /// A multi-hot vector.
    MultiHot(Vec<f32>),
    /// A regression value.
    Value(f32),
    /// One tag id per token, `-100` where no label applies.
    Tokens(Vec<i64>),
}

fn name_of(label: &RawLabel) -> Option<String> {
    match label {
        RawLabel::Name(s) => Some(s.clone()),
        RawLabel::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

impl LabelSpace {
    /// The label space of a training file; every row must have the same kind of label.
    pub fn from_rows(rows: &[TextRow]) -> Result<Self> {
        let first = &rows[0];
        for r in rows {
            if std::mem::discriminant(&r.label) != std::mem::discriminant(&first.label) {
                bail!(
                    "{}: the label is {}, but {} has {}; a file's labels must all be of one kind",
                    r.origin,
                    r.label.kind(),
                    first.origin,
                    first.label.kind()
                );
            }
        }
        Ok(match &first.label {
            RawLabel::Float(_) => LabelSpace::Regression,
            RawLabel::Int(_) => {
                let ids: BTreeSet<i64> =
                    rows.iter().filter_map(|r| if let RawLabel::Int(i) = r.label { Some(i) } else { None }).collect();
                LabelSpace::Classes(ids.iter().map(|i| i.to_string()).collect())
            }
            RawLabel::Name(_) => LabelSpace::Classes(
                rows.iter().filter_map(|r| name_of(&r.label)).collect::<BTreeSet<_>>().into_iter().collect(),
            ),
            RawLabel::List(_) => LabelSpace::MultiLabel(
                rows.iter()
                    .flat_map(|r| if let RawLabel::List(l) = &r.label { l.clone() } else { Vec::new() })
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
            ),
        })
    }

    /// The label space a classifier checkpoint declares (`problem_type`, `id2label`, `num_labels`).
    pub fn from_config(cfg: &Config) -> Self {
        let names: Vec<String> = (0..cfg.num_labels).map(|i| cfg.label(i)).collect();
        match cfg.problem_type {
            Some(ProblemType::Regression) => LabelSpace::Regression,
            Some(ProblemType::MultiLabel) => LabelSpace::MultiLabel(names),
            Some(ProblemType::SingleLabel) => LabelSpace::Classes(names),
            None if cfg.num_labels == 1 => LabelSpace::Regression,
            None => LabelSpace::Classes(names),
        }
    }

    /// Number of classifier outputs.
    pub fn num_labels(&self) -> usize {
        match self {
            LabelSpace::Classes(c) | LabelSpace::MultiLabel(c) => c.len(),
            LabelSpace::Regression => 1,
        }
    }

    /// Output names by id (`id2label`).
    pub fn names(&self) -> Vec<String> {
        match self {
            LabelSpace::Classes(c) | LabelSpace::MultiLabel(c) => c.clone(),
            LabelSpace::Regression => vec!["LABEL_0".into()],
        }
    }

    /// HF's `problem_type`.
    pub fn problem_type(&self) -> ProblemType {
        match self {
            LabelSpace::Classes(_) => ProblemType::SingleLabel,
            LabelSpace::MultiLabel(_) => ProblemType::MultiLabel,
            LabelSpace::Regression => ProblemType::Regression,
        }
    }

    /// Checks that the space can be trained.
    pub fn check(&self, file: &std::path::Path) -> Result<()> {
        match self {
            LabelSpace::Classes(c) if c.len() < 2 => {
                bail!("{}: every row has the label {:?}; a classifier needs at least two classes", file.display(), c[0])
            }
            LabelSpace::MultiLabel(c) if c.is_empty() => bail!("{}: every label list is empty", file.display()),
            _ => Ok(()),
        }
    }

    /// The target of one row's label; a class the space does not know is an error naming the row.
    pub fn target(&self, label: &RawLabel, at: &Origin) -> Result<Target> {
        let class = |classes: &[String], name: &str| -> Result<u32> {
            if let Some(i) = classes.iter().position(|c| c == name) {
                return Ok(i as u32);
            }
            // An HF checkpoint without names (LABEL_i) and integer labels: the integer is the id.
            if let (RawLabel::Int(i), true) =
                (label, classes.iter().enumerate().all(|(k, c)| *c == format!("LABEL_{k}")))
            {
                if (0..classes.len() as i64).contains(i) {
                    return Ok(*i as u32);
                }
            }
            bail!("{at}: label {name:?} is not one of the {} training labels {classes:?}", classes.len())
        };
        Ok(match (self, label) {
            (LabelSpace::Regression, RawLabel::Float(f)) => Target::Value(*f as f32),
            (LabelSpace::Regression, RawLabel::Int(i)) => Target::Value(*i as f32),
            (LabelSpace::Classes(c), RawLabel::Name(_) | RawLabel::Int(_)) => {
                Target::Class(class(c, &name_of(label).expect("a name"))?)
            }
            (LabelSpace::MultiLabel(c), RawLabel::List(items)) => {
                let mut hot = vec![0f32; c.len()];
                for item in items {
                    hot[class(c, item)? as usize] = 1.0;
                }
                Target::MultiHot(hot)
            }
            (space, other) => bail!("{at}: the label is {}, which does not fit a {space} model", other.kind()),
        })
    }
}

impl std::fmt::Display for LabelSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LabelSpace::Classes(c) => write!(f, "single-label ({} classes)", c.len()),
            LabelSpace::MultiLabel(c) => write!(f, "multi-label ({} classes)", c.len()),
            LabelSpace::Regression => write!(f, "regression"),
        }
    }
}

/// The sorted tag set of a token-classification training file.
pub fn tag_set(rows: &[TokenRow]) -> Vec<String> {
    rows.iter().flat_map(|r| r.tags.iter().cloned()).collect::<BTreeSet<_>>().into_iter().collect()
}

/// Whether tags follow BIO/IOB2 (`O`, `B-X`, `I-X`), so that entity-level metrics apply.
pub fn is_bio(tags: &[String]) -> bool {
    tags.iter().any(|t| t.starts_with("B-"))
        && tags.iter().all(|t| t == "O" || t.starts_with("B-") || t.starts_with("I-"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn row(label: RawLabel, line: usize) -> TextRow {
        TextRow { text: "t".into(), pair: None, label, origin: Origin { file: PathBuf::from("f.jsonl"), line } }
    }

    #[test]
    fn spaces_from_labels() {
        let ints = [row(RawLabel::Int(10), 1), row(RawLabel::Int(2), 2), row(RawLabel::Int(2), 3)];
        let s = LabelSpace::from_rows(&ints).unwrap();
        assert_eq!(s, LabelSpace::Classes(vec!["2".into(), "10".into()]));
        assert_eq!(s.target(&RawLabel::Int(10), &ints[0].origin).unwrap(), Target::Class(1));
        let err = s.target(&RawLabel::Int(3), &ints[0].origin).unwrap_err().to_string();
        assert!(err.contains("f.jsonl:1: label \"3\" is not one of the 2 training labels"), "{err}");
        let multi = [row(RawLabel::List(vec!["b".into(), "a".into()]), 1), row(RawLabel::List(vec!["c".into()]), 2)];
        let s = LabelSpace::from_rows(&multi).unwrap();
        assert_eq!(s.num_labels(), 3);
        assert_eq!(s.target(&multi[0].label, &multi[0].origin).unwrap(), Target::MultiHot(vec![1.0, 1.0, 0.0]));
        assert_eq!(LabelSpace::from_rows(&[row(RawLabel::Float(0.5), 1)]).unwrap(), LabelSpace::Regression);
        let mixed = [row(RawLabel::Int(1), 1), row(RawLabel::Name("x".into()), 2)];
        let err = LabelSpace::from_rows(&mixed).unwrap_err().to_string();
        assert!(err.contains("f.jsonl:2: the label is a string, but f.jsonl:1 has an integer"), "{err}");
        let one = LabelSpace::from_rows(&[row(RawLabel::Name("a".into()), 1)]).unwrap();
        assert!(one.check(std::path::Path::new("f.jsonl")).unwrap_err().to_string().contains("at least two"));
    }

    #[test]
    fn hf_unnamed_labels_accept_integer_ids() {
        let s = LabelSpace::Classes(vec!["LABEL_0".into(), "LABEL_1".into()]);
        let at = Origin { file: PathBuf::from("v.jsonl"), line: 4 };
        assert_eq!(s.target(&RawLabel::Int(1), &at).unwrap(), Target::Class(1));
        assert!(s.target(&RawLabel::Int(2), &at).is_err());
    }

    #[test]
    fn bio_detection() {
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(is_bio(&t(&["B-PER", "I-PER", "O"])));
        assert!(!is_bio(&t(&["NOUN", "VERB"])));
        assert!(!is_bio(&t(&["O"])));
    }
}
