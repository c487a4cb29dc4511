//! Input discovery and reading for `data prepare` and `tokenizer train`: files, directories
//! (recursive, include/exclude globs) and JSONL.
//!
//! One document = one plain file, or one JSONL line (`{"text": "..."}` or a bare JSON string).
//! Each document has a stable *key* used for the held-out split: the path relative to the
//! directory input it was found under (`/`-separated), or the file name for a file given
//! directly; JSONL lines add `:LINE` (1-based).

use anyhow::{bail, Context, Result};
use globset::{Glob, GlobSet, GlobSetBuilder};
use std::path::{Path, PathBuf};

/// A file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its stable key (see the module docs).
    pub key: String,
    /// Size in bytes.
    pub size: u64,
    /// Read as JSONL (`.jsonl` extension) rather than as one document.
    pub jsonl: bool,
}

fn globset(patterns: &[String]) -> Result<Option<GlobSet>> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut b = GlobSetBuilder::new();
    for p in patterns {
        b.add(Glob::new(p).with_context(|| format!("invalid glob {p:?}"))?);
    }
    Ok(Some(b.build()?))
}

fn is_jsonl(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
}

fn relative_key(rel: &Path) -> String {
    rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

/// Expands `inputs` into a sorted, deterministic file list.
///
/// Directories are walked recursively (symlinks followed, hidden entries — names starting with
/// `.` — skipped, entries sorted by name). `include` globs (any of them must match, if given) and
/// `exclude` globs (none may match) are matched against the path relative to the directory, e.g.
/// `*.rs` (a `*` also crosses `/`), `library/**`, `**/tests/**`. Files named directly are always
/// taken.
pub fn collect_files(inputs: &[PathBuf], include: &[String], exclude: &[String]) -> Result<Vec<InputFile>> {
    let include = globset(include)?;
    let exclude = globset(exclude)?;
    let mut out = Vec::new();
    for input in inputs {
        let meta = std::fs::metadata(input).with_context(|| format!("input {}", input.display()))?;
        if meta.is_file() {
            let key = input.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push(InputFile { path: input.clone(), key, size: meta.len(), jsonl: is_jsonl(input) });
            continue;
        }
        if !meta.is_dir() {
            bail!("input {} is neither a file nor a directory", input.display());
        }
        let walker = walkdir::WalkDir::new(input)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = entry.with_context(|| format!("walking {}", input.display()))?;
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry.path().strip_prefix(input).unwrap_or(entry.path());
            if include.as_ref().is_some_and(|g| !g.is_match(rel)) || exclude.as_ref().is_some_and(|g| g.is_match(rel)) {
                continue;
            }
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            out.push(InputFile {
                path: entry.path().to_path_buf(),
                key: relative_key(rel),
                size,
                jsonl: is_jsonl(entry.path()),
            });
        }
    }
    Ok(out)
}

/// What reading one file produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileDocs {
    /// The documents, as `(key, text)`; empty and whitespace-only documents are left out and
    /// counted in `empty`.
    Docs { docs: Vec<(String, String)>, empty: u64, jsonl_lines: u64 },
    /// A plain file that is not valid UTF-8 (skipped by the callers, with a warning).
    InvalidUtf8,
}

/// Reads one input file into documents. A JSONL line that is not a JSON object with a string
/// `text` field (or a JSON string) is an error naming `file:line`.
pub fn read_docs(file: &InputFile) -> Result<FileDocs> {
    let bytes = std::fs::read(&file.path).with_context(|| format!("reading {}", file.path.display()))?;
    if !file.jsonl {
        return Ok(match String::from_utf8(bytes) {
            Ok(text) if text.trim().is_empty() => FileDocs::Docs { docs: vec![], empty: 1, jsonl_lines: 0 },
            Ok(text) => FileDocs::Docs { docs: vec![(file.key.clone(), text)], empty: 0, jsonl_lines: 0 },
            Err(_) => FileDocs::InvalidUtf8,
        });
    }
    let mut docs = Vec::new();
    let (mut empty, mut lines) = (0, 0);
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        let n = i + 1;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        lines += 1;
        let where_ = || format!("{}:{n}", file.path.display());
        let value: serde_json::Value =
            serde_json::from_slice(line).with_context(|| format!("{}: invalid JSON", where_()))?;
        let text = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Object(mut o) => match o.remove("text") {
                Some(serde_json::Value::String(s)) => s,
                Some(_) => bail!("{}: \"text\" is not a string", where_()),
                None => bail!("{}: object has no \"text\" field", where_()),
            },
            _ => bail!("{}: expected {{\"text\": ...}} or a JSON string", where_()),
        };
        if text.trim().is_empty() {
            empty += 1;
        } else {
            docs.push((format!("{}:{n}", file.key), text));
        }
    }
    Ok(FileDocs::Docs { docs, empty, jsonl_lines: lines })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walk_globs_keys_and_jsonl() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("corpus");
        std::fs::create_dir_all(root.join("code/sub")).unwrap();
        std::fs::create_dir_all(root.join(".git")).unwrap();
        std::fs::write(root.join("code/a.rs"), "fn a() {}").unwrap();
        std::fs::write(root.join("code/sub/b.rs"), "fn b() {}").unwrap();
        std::fs::write(root.join("code/sub/c.txt"), "text").unwrap();
        std::fs::write(root.join(".git/config"), "x").unwrap();
        std::fs::write(root.join("bin.dat"), [0xffu8, 0xfe, 0x00]).unwrap();
        std::fs::write(root.join("d.jsonl"), "{\"text\": \"one\"}\n\n\"two\"\n{\"text\": \"  \"}\n").unwrap();

        let all = collect_files(std::slice::from_ref(&root), &[], &[]).unwrap();
        let keys: Vec<_> = all.iter().map(|f| f.key.as_str()).collect();
        assert_eq!(keys, ["bin.dat", "code/a.rs", "code/sub/b.rs", "code/sub/c.txt", "d.jsonl"]);
        let rs = collect_files(std::slice::from_ref(&root), &["*.rs".into()], &["**/sub/**".into()]).unwrap();
        assert_eq!(rs.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["code/a.rs"]);
        let direct = collect_files(&[root.join("code/sub/b.rs")], &["*.md".into()], &[]).unwrap();
        assert_eq!(direct[0].key, "b.rs");

        assert_eq!(read_docs(&all[0]).unwrap(), FileDocs::InvalidUtf8);
        match read_docs(&all[4]).unwrap() {
            FileDocs::Docs { docs, empty, jsonl_lines } => {
                assert_eq!(docs, [("d.jsonl:1".to_string(), "one".to_string()), ("d.jsonl:3".into(), "two".into())]);
                assert_eq!((empty, jsonl_lines), (1, 3));
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(root.join("d.jsonl"), "{\"text\": \"ok\"}\n{\"txt\": 1}\n").unwrap();
        let err = read_docs(&all[4]).unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2"), "{err}");
        std::fs::write(root.join("d.jsonl"), "{\"text\": \"ok\"}\nnot json\n").unwrap();
        assert!(format!("{:#}", read_docs(&all[4]).unwrap_err()).contains("d.jsonl:2"));
        assert!(collect_files(&[root.join("missing")], &[], &[]).is_err());
    }
}
