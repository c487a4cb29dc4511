#![allow(dead_code)]

use modernbert_search::indexer::{self, IndexOptions, IndexSummary};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// A tiny random ModernBERT with a tokenizer: embeds in microseconds, ranks at random.
pub fn tiny_model() -> String {
    repo_root().join("tests/fixtures/tiny-mlm").display().to_string()
}

/// A sentence-transformers fixture with query/document prompts (another model than tiny-mlm).
pub fn prompt_model() -> String {
    repo_root().join("tests/fixtures/formats/st6-mean-prompts").display().to_string()
}

pub fn write(root: &Path, rel: &str, content: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

/// A small mixed-language tree.
pub fn sample_tree(root: &Path) {
    write(
        root,
        "src/config.rs",
        "use std::path::Path;\n\n/// Reads the configuration file.\npub fn parse_config_file(path: &Path) -> Config {\n    let text = std::fs::read_to_string(path).unwrap();\n    Config::from_toml(&text)\n}\n\nimpl Config {\n    pub fn from_toml(text: &str) -> Config {\n        toml::from_str(text).unwrap()\n    }\n}\n",
    );
    write(
        root,
        "src/net/http.py",
        "import socket\n\nclass HttpClient:\n    def __init__(self, host):\n        self.host = host\n\n    def fetchJsonDocument(self, url):\n        return json.loads(self.get(url))\n\ndef retry_with_backoff(fn, attempts=3):\n    for i in range(attempts):\n        try:\n            return fn()\n        except OSError:\n            time.sleep(2 ** i)\n",
    );
    write(
        root,
        "web/app.ts",
        "export function renderSidebar(items: string[]): string {\n  return items.map((i) => `<li>${i}</li>`).join('');\n}\n\nexport class Store {\n  get(key: string): number {\n    return 1;\n  }\n}\n",
    );
    write(root, "docs/guide.md", "# Guide\n\nSome intro.\n\n## Installing\n\nRun the installer with elevated rights.\n\n## Usage\n\nCall the tool with a path.\n");
    write(root, "notes.txt", "Remember to rotate the signing keys every quarter.\n");
    write(root, "assets/blob.bin.dat", "\0\0\0binary");
    write(root, ".gitignore", "ignored/\n");
    write(root, "ignored/secret.rs", "fn hidden_function_name() {}\n");
}

pub fn options(root: &Path, index: &Path) -> IndexOptions {
    let mut o = IndexOptions::new(root, index);
    o.model = Some(tiny_model());
    o.progress = false;
    o.checkpoint = Duration::MAX;
    o
}

pub fn index(root: &Path, index: &Path) -> IndexSummary {
    indexer::index(&options(root, index)).unwrap()
}
