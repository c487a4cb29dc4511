//! Finding the files to index: `.gitignore`/`.ignore` rules (also outside a git checkout), no
//! hidden files, no vendored or generated trees, no binaries, no huge files.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// Directories that hold someone else's code or build output.
const VENDORED_DIRS: &[&str] = &[
    "node_modules",
    "vendor",
    "third_party",
    "third-party",
    "thirdparty",
    "bower_components",
    "__pycache__",
    "site-packages",
    "dist-packages",
    ".git",
    ".hg",
    ".svn",
    "target",
    ".venv",
    "venv",
];

/// Files that are generated or are data, by name or extension.
const SKIPPED_NAMES: &[&str] = &[
    "Cargo.lock",
    "package-lock.json",
    "yarn.lock",
    "pnpm-lock.yaml",
    "poetry.lock",
    "Pipfile.lock",
    "go.sum",
    "composer.lock",
    "Gemfile.lock",
    "flake.lock",
    "uv.lock",
];
const SKIPPED_EXTENSIONS: &[&str] = &[
    "lock",
    "map",
    "min.js",
    "min.css",
    "svg",
    "csv",
    "tsv",
    "parquet",
    "ipynb",
    "pb",
    "onnx",
    "safetensors",
    "bin",
    "pyc",
    "o",
    "a",
    "so",
    "dll",
    "dylib",
    "exe",
    "class",
    "jar",
    "wasm",
    "png",
    "jpg",
    "jpeg",
    "gif",
    "ico",
    "pdf",
    "zip",
    "gz",
    "xz",
    "bz2",
    "zst",
    "tar",
    "woff",
    "woff2",
    "ttf",
    "otf",
    "mp3",
    "mp4",
    "wav",
];

/// What to index.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Files larger than this are skipped (minified bundles, data dumps).
    pub max_file_bytes: u64,
    /// Extra exclusions, gitignore syntax (`--exclude 'docs/**'`).
    pub exclude: Vec<String>,
}

impl Default for WalkOptions {
    fn default() -> Self {
        Self { max_file_bytes: 1 << 20, exclude: Vec::new() }
    }
}

/// A file found by the walk.
#[derive(Debug, Clone)]
pub struct Found {
    /// Path relative to the root, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
}

/// Why a file was left out (counted in the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    Binary,
    Generated,
    TooLarge,
    Unreadable,
}

/// Every candidate file under `root`, sorted by relative path. `root` may also be one file.
pub fn walk(root: &Path, opts: &WalkOptions) -> Result<Vec<Found>> {
    let meta = std::fs::metadata(root).with_context(|| format!("cannot index {}", root.display()))?;
    if meta.is_file() {
        let name = root.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
        return Ok(vec![Found { rel: name, abs: root.to_path_buf() }]);
    }
    if !meta.is_dir() {
        bail!("cannot index {}: not a file or directory", root.display());
    }
    let mut overrides = ignore::overrides::OverrideBuilder::new(root);
    for pattern in &opts.exclude {
        overrides.add(&format!("!{pattern}")).with_context(|| format!("bad --exclude pattern {pattern:?}"))?;
    }
    let overrides = overrides.build().context("bad --exclude patterns")?;
    let mut builder = ignore::WalkBuilder::new(root);
    builder
        .hidden(true)
        .git_ignore(true)
        .git_global(false)
        .git_exclude(true)
        .require_git(false)
        .ignore(true)
        .parents(true)
        .follow_links(false)
        .overrides(overrides)
        .filter_entry(|e| {
            let name = e.file_name().to_string_lossy();
            !(e.file_type().is_some_and(|t| t.is_dir()) && e.depth() > 0 && VENDORED_DIRS.contains(&name.as_ref()))
        });
    let mut out = Vec::new();
    for entry in builder.build() {
        let entry = match entry {
            Ok(e) => e,
            // An unreadable directory is skipped, as git would.
            Err(e) => {
                tracing::warn!("skipping: {e}");
                continue;
            }
        };
        if !entry.file_type().is_some_and(|t| t.is_file()) {
            continue;
        }
        let abs = entry.path().to_path_buf();
        let Ok(rel) = abs.strip_prefix(root) else { continue };
        let rel = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        if skipped_name(&rel) {
            continue;
        }
        out.push(Found { rel, abs });
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn skipped_name(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    let lower = name.to_ascii_lowercase();
    SKIPPED_NAMES.contains(&name) || SKIPPED_EXTENSIONS.iter().any(|e| lower.ends_with(&format!(".{e}")))
}

/// Reads a file as UTF-8 text, or says why it is not indexed.
pub fn read_text(path: &Path, max_bytes: u64) -> std::result::Result<String, Skip> {
    let meta = std::fs::metadata(path).map_err(|_| Skip::Unreadable)?;
    if meta.len() > max_bytes {
        return Err(Skip::TooLarge);
    }
    let bytes = std::fs::read(path).map_err(|_| Skip::Unreadable)?;
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err(Skip::Binary);
    }
    let text = String::from_utf8(bytes).map_err(|_| Skip::Binary)?;
    if generated(&text) {
        return Err(Skip::Generated);
    }
    Ok(text)
}

/// A generated-file marker in the first lines, or minified code (very long lines).
fn generated(text: &str) -> bool {
    let head: String = text.lines().take(5).collect::<Vec<_>>().join("\n").to_ascii_lowercase();
    let marked = ["@generated", "do not edit", "code generated by", "autogenerated", "auto-generated"]
        .iter()
        .any(|m| head.contains(m));
    let lines = text.lines().count().max(1);
    let minified = text.len() > 4096 && text.len() / lines > 500;
    marked || minified
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respects_gitignore_vendored_binary_generated() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let write = |p: &str, c: &[u8]| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, c).unwrap();
        };
        write(".gitignore", b"build/\n*.log\n");
        write("src/main.rs", b"fn main() {}\n");
        write("build/out.rs", b"fn x() {}\n");
        write("debug.log", b"log\n");
        write("node_modules/pkg/index.js", b"module.exports = 1;\n");
        write("Cargo.lock", b"# lock\n");
        write("logo.png", b"\x89PNG\r\n\x1a\n\0\0");
        write("data.dat", b"abc\0def");
        write("gen.rs", b"// @generated by a tool\nfn g() {}\n");
        write("docs/guide.md", b"# Guide\n");
        let found: Vec<String> = walk(root, &WalkOptions::default()).unwrap().into_iter().map(|f| f.rel).collect();
        assert_eq!(found, vec!["data.dat", "docs/guide.md", "gen.rs", "src/main.rs"]);
        assert_eq!(read_text(&root.join("data.dat"), 1 << 20), Err(Skip::Binary));
        assert_eq!(read_text(&root.join("gen.rs"), 1 << 20), Err(Skip::Generated));
        assert_eq!(read_text(&root.join("src/main.rs"), 4), Err(Skip::TooLarge));
        let opts = WalkOptions { exclude: vec!["docs/**".into()], ..Default::default() };
        let found: Vec<String> = walk(root, &opts).unwrap().into_iter().map(|f| f.rel).collect();
        assert!(!found.contains(&"docs/guide.md".to_string()));
        assert!(walk(&root.join("missing"), &opts).is_err());
    }
}
