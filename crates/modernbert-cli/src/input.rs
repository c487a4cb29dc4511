//! Reading inputs from arguments or a JSONL file.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Texts from a JSONL file (strings or `{"text": ...}`) or, without one, from the arguments.
pub fn texts(file: Option<&Path>, args: Vec<String>) -> Result<Vec<String>> {
    Ok(pairs(file, args, false)?.into_iter().map(|(t, _)| t).collect())
}

/// Texts or text pairs. With `pair`, arguments are taken two by two and JSONL objects need
/// `text_pair`.
pub fn pairs(file: Option<&Path>, args: Vec<String>, pair: bool) -> Result<Vec<(String, Option<String>)>> {
    let items = match file {
        Some(path) => {
            if !args.is_empty() {
                bail!("give texts either as arguments or with --input, not both");
            }
            read_jsonl(path, pair)?
        }
        None if pair => {
            if !args.len().is_multiple_of(2) {
                bail!("--pair needs an even number of texts, got {}", args.len());
            }
            args.chunks(2).map(|c| (c[0].clone(), Some(c[1].clone()))).collect()
        }
        None => args.into_iter().map(|t| (t, None)).collect(),
    };
    if items.is_empty() {
        bail!("no input text given");
    }
    Ok(items)
}

fn read_jsonl(path: &Path, pair: bool) -> Result<Vec<(String, Option<String>)>> {
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    let mut items = Vec::new();
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let where_ = || format!("{} line {}", path.display(), n + 1);
        let line = line.with_context(where_)?;
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(&line).with_context(|| format!("{}: not valid JSON", where_()))?;
        let (text, text_pair) = match &value {
            Value::String(s) => (s.clone(), None),
            Value::Object(o) => {
                let text = o
                    .get("text")
                    .and_then(Value::as_str)
                    .with_context(|| format!("{}: no string field \"text\"", where_()))?;
                let text_pair = o.get("text_pair").and_then(Value::as_str).map(str::to_string);
                (text.to_string(), text_pair)
            }
            _ => bail!("{}: expected a JSON string or an object with \"text\"", where_()),
        };
        if pair && text_pair.is_none() {
            bail!("{}: --pair needs a string field \"text_pair\"", where_());
        }
        items.push((text, if pair { text_pair } else { None }));
    }
    Ok(items)
}
