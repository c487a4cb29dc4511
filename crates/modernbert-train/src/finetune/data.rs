//! Fine-tuning data files: JSONL and CSV/TSV rows for sequence tasks, JSONL and CoNLL for token
//! tasks. Every error names the file and line; labels keep their file type (string, integer,
//! float, list) until [`super::labels`] turns them into a label space.

use crate::rng::Rng;
use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// File formats (`--format`, or from the extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// `token<TAB>tag` (or space-separated, last column the tag), a blank line between sentences.
    Conll,
}

impl std::str::FromStr for Format {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "jsonl" => Format::Jsonl,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "conll" => Format::Conll,
            other => bail!("unknown format {other:?} (jsonl, csv, tsv, conll)"),
        })
    }
}

impl Format {
    /// The format of `path` by extension: `.jsonl`/`.json`, `.csv`, `.tsv`, `.conll`/`.txt`/`.iob`/`.bio`.
    pub fn of(path: &Path) -> Result<Self> {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        Ok(match ext.as_str() {
            "jsonl" | "json" | "ndjson" => Format::Jsonl,
            "csv" => Format::Csv,
            "tsv" => Format::Tsv,
            "conll" | "txt" | "iob" | "bio" | "conllu" => Format::Conll,
            _ => bail!(
                "{}: cannot tell the format from the extension {ext:?}; pass --format jsonl|csv|tsv|conll",
                path.display()
            ),
        })
    }
}

/// A label as written in the file.
#[derive(Debug, Clone, PartialEq)]
pub enum RawLabel {
    /// A class name (a string) — single-label classification.
    Name(String),
    /// An integer class — single-label classification.
    Int(i64),
    /// A real value — regression.
    Float(f64),
    /// Several class names — multi-label classification.
    List(Vec<String>),
}

impl RawLabel {
    /// The kind of label, for messages and consistency checks.
    pub fn kind(&self) -> &'static str {
        match self {
            RawLabel::Name(_) => "a string",
            RawLabel::Int(_) => "an integer",
            RawLabel::Float(_) => "a float",
            RawLabel::List(_) => "a list",
        }
    }

    fn from_json(v: &Value) -> Option<Self> {
        match v {
            Value::String(s) => Some(RawLabel::Name(s.clone())),
            Value::Bool(b) => Some(RawLabel::Name(b.to_string())),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Some(RawLabel::Int(i)),
                None => n.as_f64().filter(|f| f.is_finite()).map(RawLabel::Float),
            },
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) if n.is_i64() => Some(n.to_string()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .map(RawLabel::List),
            _ => None,
        }
    }

    /// A CSV cell: an integer, a float, a JSON list (`["a", "b"]`), else a name.
    fn from_cell(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s.starts_with('[') {
            return serde_json::from_str::<Value>(s).ok().as_ref().and_then(Self::from_json);
        }
        if let Ok(i) = s.parse::<i64>() {
            return Some(RawLabel::Int(i));
        }
        match s.parse::<f64>() {
            Ok(f) if f.is_finite() => Some(RawLabel::Float(f)),
            _ => Some(RawLabel::Name(s.to_string())),
        }
    }
}

/// Where a row came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub file: PathBuf,
    /// 1-based line of the row (CoNLL: the sentence's first line).
    pub line: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// One sequence-task row: a text (or pair) and its label.
#[derive(Debug, Clone, PartialEq)]
pub struct TextRow {
    pub text: String,
    pub pair: Option<String>,
    pub label: RawLabel,
    pub origin: Origin,
}

/// One token-task row: words and their tags.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenRow {
    pub words: Vec<String>,
    pub tags: Vec<String>,
    pub origin: Origin,
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    match String::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            bail!("{}:{line}: not valid UTF-8", path.display())
        }
    }
}

fn origin(path: &Path, line: usize) -> Origin {
    Origin { file: path.to_path_buf(), line }
}

/// Reads sequence-task rows (`text`, optional `text_pair`, `label`).
pub fn read_text_rows(path: &Path, format: Option<Format>) -> Result<Vec<TextRow>> {
    let format = match format {
        Some(f) => f,
        None => Format::of(path)?,
    };
    let text = read_text(path)?;
    let rows = match format {
        Format::Jsonl => read_jsonl_text(path, &text)?,
        Format::Csv | Format::Tsv => read_delimited(path, &text, if format == Format::Csv { b',' } else { b'\t' })?,
        Format::Conll => {
            bail!("{}: CoNLL files hold token tags; use them with --task token-classification", path.display())
        }
    };
    if rows.is_empty() {
        bail!("{}: no rows", path.display());
    }
    Ok(rows)
}

fn text_field<'a>(obj: &'a serde_json::Map<String, Value>, names: &[&str]) -> Option<&'a Value> {
    names.iter().find_map(|n| obj.get(*n))
}

fn read_jsonl_text(path: &Path, text: &str) -> Result<Vec<TextRow>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = origin(path, i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{at}: not valid JSON: {e}"))?;
        let Some(obj) = v.as_object() else { bail!("{at}: expected a JSON object") };
        let text = match text_field(obj, &["text", "sentence", "sentence1", "premise", "question"]) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => bail!("{at}: `text` must be a string, found {other}"),
            None => bail!("{at}: no `text` field"),
        };
        let pair = match text_field(obj, &["text_pair", "sentence2", "hypothesis"]) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(other) => bail!("{at}: `text_pair` must be a string, found {other}"),
        };
        let label = match text_field(obj, &["label", "labels"]) {
            None | Some(Value::Null) => bail!("{at}: no `label` field"),
            Some(v) => RawLabel::from_json(v).ok_or_else(|| {
                anyhow::anyhow!("{at}: `label` {v} is not a string, integer, float or list of strings")
            })?,
        };
        rows.push(TextRow { text, pair, label, origin: at });
    }
    Ok(rows)
}

fn read_delimited(path: &Path, text: &str, delimiter: u8) -> Result<Vec<TextRow>> {
    let mut reader = csv::ReaderBuilder::new().delimiter(delimiter).flexible(false).from_reader(text.as_bytes());
    let headers = reader.headers().with_context(|| format!("{}:1: cannot read the header row", path.display()))?;
    let col = |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h.trim() == *n));
    let text_col = col(&["text", "sentence", "sentence1", "premise", "question"])
        .ok_or_else(|| anyhow::anyhow!("{}:1: the header has no `text` column", path.display()))?;
    let pair_col = col(&["text_pair", "sentence2", "hypothesis"]);
    let label_col = col(&["label", "labels"])
        .ok_or_else(|| anyhow::anyhow!("{}:1: the header has no `label` column", path.display()))?;
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
            anyhow::anyhow!("{}:{line}: {e}", path.display())
        })?;
        let at = origin(path, record.position().map(|p| p.line() as usize).unwrap_or(0));
        let label = RawLabel::from_cell(&record[label_col]).ok_or_else(|| anyhow::anyhow!("{at}: empty label"))?;
        rows.push(TextRow {
            text: record[text_col].to_string(),
            pair: pair_col.map(|c| record[c].to_string()).filter(|p| !p.is_empty()),
            label,
            origin: at,
        });
    }
    Ok(rows)
}

/// Reads token-task rows (`{"tokens", "tags"}` JSONL, or CoNLL).
pub fn read_token_rows(path: &Path, format: Option<Format>) -> Result<Vec<TokenRow>> {
    let format = match format {
        Some(f) => f,
        None => Format::of(path)?,
    };
    let text = read_text(path)?;
    let rows = match format {
        Format::Jsonl => read_jsonl_tokens(path, &text)?,
        Format::Conll => read_conll(path, &text)?,
        Format::Csv | Format::Tsv => {
            bail!("{}: token classification reads JSONL ({{\"tokens\", \"tags\"}}) or CoNLL files", path.display())
        }
    };
    if rows.is_empty() {
        bail!("{}: no sentences", path.display());
    }
    Ok(rows)
}

fn string_list(v: &Value, at: &Origin, field: &str) -> Result<Vec<String>> {
    let Some(items) = v.as_array() else { bail!("{at}: `{field}` must be a list") };
    items
        .iter()
        .map(|i| match i {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) if n.is_i64() => Ok(n.to_string()),
            other => bail!("{at}: `{field}` holds {other}, expected strings"),
        })
        .collect()
}

fn read_jsonl_tokens(path: &Path, text: &str) -> Result<Vec<TokenRow>> {
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = origin(path, i + 1);
        let v: Value = serde_json::from_str(line).map_err(|e| anyhow::anyhow!("{at}: not valid JSON: {e}"))?;
        let Some(obj) = v.as_object() else { bail!("{at}: expected a JSON object") };
        let words = string_list(
            text_field(obj, &["tokens", "words"]).ok_or_else(|| anyhow::anyhow!("{at}: no `tokens` field"))?,
            &at,
            "tokens",
        )?;
        let tags = string_list(
            text_field(obj, &["tags", "ner_tags", "labels"]).ok_or_else(|| anyhow::anyhow!("{at}: no `tags` field"))?,
            &at,
            "tags",
        )?;
        check_row(&words, &tags, &at)?;
        rows.push(TokenRow { words, tags, origin: at });
    }
    Ok(rows)
}

fn check_row(words: &[String], tags: &[String], at: &Origin) -> Result<()> {
    if words.len() != tags.len() {
        bail!("{at}: {} tokens but {} tags", words.len(), tags.len());
    }
    if words.is_empty() {
        bail!("{at}: a sentence with no tokens");
    }
    Ok(())
}

fn read_conll(path: &Path, text: &str) -> Result<Vec<TokenRow>> {
    let mut rows = Vec::new();
    let (mut words, mut tags, mut start) = (Vec::new(), Vec::new(), 0);
    let mut flush = |words: &mut Vec<String>, tags: &mut Vec<String>, start: usize| -> Result<()> {
        if !words.is_empty() {
            let at = origin(path, start);
            check_row(words, tags, &at)?;
            rows.push(TokenRow { words: std::mem::take(words), tags: std::mem::take(tags), origin: at });
        }
        Ok(())
    };
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() || line.starts_with("-DOCSTART-") {
            flush(&mut words, &mut tags, start)?;
            continue;
        }
        let mut cols: Vec<&str> =
            if line.contains('\t') { line.split('\t').collect() } else { line.split_whitespace().collect() };
        cols.retain(|c| !c.is_empty());
        if cols.len() < 2 {
            bail!("{}:{}: expected `token<TAB>tag`, found {line:?}", path.display(), i + 1);
        }
        if words.is_empty() {
            start = i + 1;
        }
        words.push(cols[0].to_string());
        tags.push(cols[cols.len() - 1].to_string());
    }
    flush(&mut words, &mut tags, start)?;
    Ok(rows)
}

/// Splits off a seeded 10% (at least one row) for validation.
pub fn hold_out<T>(rows: Vec<T>, seed: u64) -> Result<(Vec<T>, Vec<T>)> {
    if rows.len() < 2 {
        bail!("the training file has {} row(s): too few to hold out a validation share", rows.len());
    }
    let mut order: Vec<usize> = (0..rows.len()).collect();
    Rng::keyed(seed, &[0x401D]).shuffle(&mut order);
    let n_val = rows.len().div_ceil(10);
    let mut held = vec![false; rows.len()];
    for &i in &order[..n_val] {
        held[i] = true;
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (r, h) in rows.into_iter().zip(held) {
        if h {
            val.push(r);
        } else {
            train.push(r);
        }
    }
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, body: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        (dir, p)
    }

    #[test]
    fn jsonl_csv_and_tsv_rows() {
        let (_d, p) = file(
            "a.jsonl",
            b"{\"text\": \"good\", \"label\": \"pos\"}\n\n{\"text\": \"a\", \"text_pair\": \"b\", \"label\": 2}\n\
              {\"text\": \"x\", \"label\": 0.5}\n{\"text\": \"y\", \"label\": [\"a\", \"b\"]}\n",
        );
        let rows = read_text_rows(&p, None).unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].label, RawLabel::Name("pos".into()));
        assert_eq!((rows[1].pair.as_deref(), &rows[1].label), (Some("b"), &RawLabel::Int(2)));
        assert_eq!(rows[1].origin.line, 3);
        assert_eq!(rows[2].label, RawLabel::Float(0.5));
        assert_eq!(rows[3].label, RawLabel::List(vec!["a".into(), "b".into()]));
        let (_d, p) = file("a.csv", b"label,text\n1,\"hello, world\"\n0,bye\n");
        let rows = read_text_rows(&p, None).unwrap();
        assert_eq!(
            (rows[0].text.as_str(), &rows[0].label, rows[0].origin.line),
            ("hello, world", &RawLabel::Int(1), 2)
        );
        let (_d, p) = file("a.tsv", b"sentence1\tsentence2\tlabel\na\tb\tentailment\n");
        let rows = read_text_rows(&p, None).unwrap();
        assert_eq!(rows[0].pair.as_deref(), Some("b"));
    }

    #[test]
    fn conll_and_token_jsonl() {
        let (_d, p) = file("a.conll", b"-DOCSTART- O\n\nEU\tB-ORG\nrejects\tO\n\n\nGerman NNP B-MISC\n");
        let rows = read_token_rows(&p, None).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].words, vec!["EU", "rejects"]);
        assert_eq!(rows[1].tags, vec!["B-MISC"]);
        assert_eq!(rows[1].origin.line, 7);
        let (_d, p) = file("t.jsonl", b"{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\", \"B-X\"]}\n");
        assert_eq!(read_token_rows(&p, None).unwrap()[0].tags, vec!["O", "B-X"]);
    }

    #[test]
    fn bad_input_names_file_and_line() {
        let cases: Vec<(&str, &[u8], &str)> = vec![
            ("e.jsonl", b"", "no rows"),
            ("m.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"b\"}\n", "m.jsonl:2: no `label`"),
            ("j.jsonl", b"{\"text\": \"a\", \"label\": 1}\n{oops\n", "j.jsonl:2: not valid JSON"),
            (
                "u.jsonl",
                b"{\"text\": \"a\", \"label\": 1}\n{\"text\": \"\xff\", \"label\": 1}\n",
                "u.jsonl:2: not valid UTF-8",
            ),
            ("n.jsonl", b"{\"text\": \"a\", \"label\": null}\n", "n.jsonl:1: no `label`"),
            ("h.csv", b"sentence,y\na,1\n", "h.csv:1: the header has no `label` column"),
            ("r.csv", b"text,label\na,1,extra\n", "r.csv:2"),
            ("x.parquet", b"", "cannot tell the format"),
        ];
        for (name, body, want) in cases {
            let (_d, p) = file(name, body);
            let err = format!("{:#}", read_text_rows(&p, None).unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
        }
        let token_cases: Vec<(&str, &[u8], &str)> = vec![
            ("t.jsonl", b"{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n", "t.jsonl:1: 2 tokens but 1 tags"),
            ("c.conll", b"a\tO\nb\n", "c.conll:2: expected `token<TAB>tag`"),
            ("e.conll", b"\n\n", "no sentences"),
        ];
        for (name, body, want) in token_cases {
            let (_d, p) = file(name, body);
            let err = format!("{:#}", read_token_rows(&p, None).unwrap_err());
            assert!(err.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn hold_out_is_a_seeded_tenth() {
        let (t, v) = hold_out((0..95).collect::<Vec<_>>(), 7).unwrap();
        assert_eq!((t.len(), v.len()), (85, 10));
        assert_eq!(hold_out((0..95).collect::<Vec<_>>(), 7).unwrap().1, v);
        assert_ne!(hold_out((0..95).collect::<Vec<_>>(), 8).unwrap().1, v);
        assert!(hold_out(vec![1], 7).is_err());
    }
}
