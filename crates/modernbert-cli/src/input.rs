//! Reading inputs from arguments, a JSONL file or a plain text file (one text per line), or
//! stdin (`-`); and running long jobs in chunks whose results are printed as they complete.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Texts from a file (JSONL strings or `{"text": ...}`, or plain text lines) or, without one,
/// from the arguments.
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
        // `.jsonl`/`.json` files hold JSON lines; other files and stdin may also hold plain text lines.
        let plain_allowed = !matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"));
        let value: Value = match serde_json::from_str(&line) {
            Ok(v @ (Value::String(_) | Value::Object(_))) => v,
            _ if plain_allowed && !pair => Value::String(line.clone()),
            Ok(_) => bail!("{}: not a JSON string or object", where_()),
            Err(e) => bail!("{}: not valid JSON ({e})", where_()),
        };
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

/// Runs `f` on consecutive chunks of `items` and prints each chunk's results as soon as they are
/// computed (input order), with a progress bar on stderr when it is a terminal.
pub fn in_chunks<T, R: serde::Serialize>(
    items: &[T],
    out: &mut impl std::io::Write,
    mut f: impl FnMut(&[T]) -> Result<Vec<R>>,
) -> Result<()> {
    const CHUNK: usize = 256;
    let bar = if items.len() > CHUNK && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        let bar = indicatif::ProgressBar::new(items.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} inputs ETA {eta}",
            )
            .expect("valid template"),
        );
        Some(bar)
    } else {
        None
    };
    for chunk in items.chunks(CHUNK) {
        for r in f(chunk)? {
            serde_json::to_writer(&mut *out, &r)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        if let Some(b) = &bar {
            b.inc(chunk.len() as u64);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(())
}
