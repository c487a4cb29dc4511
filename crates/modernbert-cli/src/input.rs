//! Reading inputs from arguments, a JSONL file or a plain text file (one text per line), or
//! stdin (`-`); splitting them into shards (`--shard i/n`); running long jobs in chunks whose
//! results are printed as they complete; and resumable output files (`--output`).

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::ops::Range;
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
            read_jsonl(path, pair, None)?
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

/// `--shard i/n`: the i-th (0-based) of n contiguous parts of the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not i/n with 0 <= i < n (e.g. 0/4 ... 3/4)");
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The texts `[start, end)` of `total` that this shard holds: `n` contiguous ranges in
    /// shard order whose sizes differ by at most one (`start = total * i / n`), so the shards'
    /// outputs concatenated in shard order are the unsharded output.
    pub fn range(&self, total: usize) -> Range<usize> {
        let at = |i: usize| (total as u128 * i as u128 / self.count as u128) as usize;
        at(self.index)..at(self.index + 1)
    }
}

/// The texts of one shard (all of them without `shard`), the index of its first text among
/// the input's texts, and the number of texts in the whole input. A regular file is read
/// twice (count, then the shard's lines), so a shard never holds more than its own texts.
pub fn texts_of_shard(
    file: Option<&Path>,
    args: Vec<String>,
    shard: Option<Shard>,
) -> Result<(Vec<String>, usize, usize)> {
    let Some(shard) = shard else {
        let texts = texts(file, args)?;
        let n = texts.len();
        return Ok((texts, 0, n));
    };
    let seekable = file.is_some_and(|p| p != Path::new("-") && p.is_file());
    if !seekable {
        let all = texts(file, args)?;
        let range = shard.range(all.len());
        let total = all.len();
        return Ok((all[range.clone()].to_vec(), range.start, total));
    }
    let path = file.expect("seekable means a file");
    if !args.is_empty() {
        bail!("give texts either as arguments or with --input, not both");
    }
    let total = count_texts(path)?;
    if total == 0 {
        bail!("no input text given");
    }
    let range = shard.range(total);
    let texts = read_jsonl(path, false, Some(range.clone()))?.into_iter().map(|(t, _)| t).collect();
    Ok((texts, range.start, total))
}

/// Texts in a file: its lines that are not blank (the ones [`read_jsonl`] reads).
fn count_texts(path: &Path) -> Result<usize> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = BufReader::new(file);
    let (mut n, mut line) = (0, Vec::new());
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {}", path.display()))? == 0 {
            return Ok(n);
        }
        if !line.iter().all(u8::is_ascii_whitespace) {
            n += 1;
        }
    }
}

/// The items of a JSONL or text file; with `range`, only the texts whose index (among the
/// file's non-blank lines) is in it.
fn read_jsonl(path: &Path, pair: bool, range: Option<Range<usize>>) -> Result<Vec<(String, Option<String>)>> {
    let reader: Box<dyn Read> = if path == Path::new("-") {
        Box::new(std::io::stdin())
    } else {
        Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
    };
    // `.jsonl`/`.json` files hold JSON lines; other files and stdin may also hold plain text lines.
    let plain_allowed = !matches!(path.extension().and_then(|e| e.to_str()), Some("jsonl" | "json"));
    let mut items = Vec::new();
    // The index of the next text among the file's non-blank lines.
    let mut k = 0;
    for (n, line) in BufReader::new(reader).lines().enumerate() {
        let where_ = || format!("{} line {}", path.display(), n + 1);
        let line = line.with_context(where_)?;
        if line.trim().is_empty() {
            continue;
        }
        k += 1;
        if let Some(r) = &range {
            let index = k - 1;
            if index >= r.end {
                break;
            }
            if index < r.start {
                continue;
            }
        }
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

/// An output file written in chunks of complete lines; every `flush` also syncs the data to
/// disk, so after a crash or a preemption the file holds whole lines plus at most one partial
/// last line, which [`resume`] removes.
pub struct Durable(BufWriter<File>);

impl Write for Durable {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()?;
        self.0.get_ref().sync_data()
    }
}

/// Opens `path` to go on with a job of `expected` output lines, the first of them for input
/// `first` (the `"index"` of each line when `indexed`): a missing file is created; an existing
/// one keeps its complete lines, loses a partial last line (an interrupted write), and is
/// appended to. Returns the file and the number of lines already done. A complete line that is
/// not JSON, an index out of sequence or more lines than the job has is an error: the file
/// belongs to another job, and it is left as it is.
pub fn resume(path: &Path, first: usize, expected: usize, indexed: bool) -> Result<(Durable, usize)> {
    let shown = path.display();
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .with_context(|| format!("cannot open {shown} for writing"))?;
    let mut reader = BufReader::new(&mut file);
    let (mut done, mut complete_bytes, mut line) = (0usize, 0u64, Vec::new());
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).with_context(|| format!("cannot read {shown}"))?;
        if n == 0 || line.last() != Some(&b'\n') {
            break; // end of file, or a partial last line
        }
        let value: Value = serde_json::from_slice(&line).map_err(|_| {
            anyhow::anyhow!(
                "--output {shown}: line {} is not a JSON line written by this command; remove the file to start over",
                done + 1
            )
        })?;
        if indexed && value.get("index").and_then(Value::as_u64) != Some((first + done) as u64) {
            bail!(
                "--output {shown}: line {} is not input {} of this shard (another shard's or input's file?); remove it to start over",
                done + 1,
                first + done
            );
        }
        done += 1;
        complete_bytes += n as u64;
        if done > expected {
            bail!("--output {shown} holds more lines than the {expected} of this job (another job's file?)");
        }
    }
    drop(reader);
    file.set_len(complete_bytes).with_context(|| format!("cannot truncate {shown}"))?;
    file.seek(SeekFrom::End(0))?;
    Ok((Durable(BufWriter::new(file)), done))
}

/// Runs `f` on consecutive chunks of `items` and prints each chunk's results as soon as they are
/// computed (input order): JSON lines, or [`crate::readable`] lines when `readable` (stdout is a
/// terminal); a progress bar on stderr when it is a terminal.
pub fn in_chunks<T, R: serde::Serialize>(
    items: &[T],
    out: &mut impl std::io::Write,
    readable: bool,
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
    let mut index = 0;
    for chunk in items.chunks(CHUNK) {
        for r in f(chunk)? {
            crate::write_line(out, index, &r, readable)?;
            index += 1;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_contiguous_and_balanced() {
        for total in [0, 1, 2, 7, 10, 23, 1000] {
            for count in [1, 2, 3, 4, 7, 30] {
                let ranges: Vec<_> = (0..count).map(|index| Shard { index, count }.range(total)).collect();
                assert_eq!(ranges[0].start, 0);
                assert_eq!(ranges[count - 1].end, total);
                assert!(ranges.windows(2).all(|w| w[0].end == w[1].start));
                let sizes: Vec<usize> = ranges.iter().map(|r| r.len()).collect();
                let (lo, hi) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(hi - lo <= 1, "{total}/{count}: {sizes:?}");
            }
        }
        assert_eq!(Shard { index: 1, count: 3 }.range(10), 3..6);
    }

    #[test]
    fn shard_spec_parses() {
        assert_eq!("2/5".parse::<Shard>(), Ok(Shard { index: 2, count: 5 }));
        for bad in ["5/5", "1/0", "1", "a/2", "-1/2", "1/2/3"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
