//! Chunking a file: source code by syntax (tree-sitter: functions, methods, classes/impls, with the
//! enclosing names as context), Markdown by sections, everything else by line windows with
//! overlap. Every chunk fits the token budget it is given (measured with the model's tokenizer,
//! line by line) and keeps its 1-based, inclusive line range.

use std::path::Path;

/// A piece of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// First line, 1-based.
    pub start_line: u32,
    /// Last line, 1-based, inclusive.
    pub end_line: u32,
    /// Enclosing names (`impl Parser > fn next`, `# Guide > ## Install`), or empty.
    pub context: String,
    /// The lines themselves.
    pub text: String,
}

/// How a file is chunked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    Rust,
    Python,
    Go,
    JavaScript,
    TypeScript,
    Tsx,
    Java,
    C,
    Cpp,
    Markdown,
    /// Prose without a section syntax we parse (`.txt`, `.rst`, ...): windows up to the prose budget.
    Prose,
    /// Anything else: line windows.
    Text,
}

impl Lang {
    /// The language of a path, by extension (and a few well-known names).
    pub fn of(path: &Path) -> Lang {
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "rs" => Lang::Rust,
            "py" | "pyi" | "pyw" => Lang::Python,
            "go" => Lang::Go,
            "js" | "mjs" | "cjs" | "jsx" => Lang::JavaScript,
            "ts" | "mts" | "cts" => Lang::TypeScript,
            "tsx" => Lang::Tsx,
            "java" => Lang::Java,
            "c" | "h" => Lang::C,
            "cc" | "cpp" | "cxx" | "c++" | "hpp" | "hh" | "hxx" | "h++" | "ipp" | "tpp" | "inl" => Lang::Cpp,
            "md" | "markdown" | "mdx" => Lang::Markdown,
            "txt" | "rst" | "adoc" | "asciidoc" | "org" | "tex" => Lang::Prose,
            _ => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                if matches!(name, "README" | "LICENSE" | "COPYING" | "NOTICE" | "CHANGELOG" | "AUTHORS" | "NEWS") {
                    Lang::Prose
                } else {
                    Lang::Text
                }
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Python => "python",
            Lang::Go => "go",
            Lang::JavaScript => "javascript",
            Lang::TypeScript => "typescript",
            Lang::Tsx => "tsx",
            Lang::Java => "java",
            Lang::C => "c",
            Lang::Cpp => "cpp",
            Lang::Markdown => "markdown",
            Lang::Prose => "prose",
            Lang::Text => "text",
        }
    }

    fn grammar(self) -> Option<(tree_sitter::Language, &'static Spec)> {
        Some(match self {
            Lang::Rust => (tree_sitter_rust::LANGUAGE.into(), &RUST),
            Lang::Python => (tree_sitter_python::LANGUAGE.into(), &PYTHON),
            Lang::Go => (tree_sitter_go::LANGUAGE.into(), &GO),
            Lang::JavaScript => (tree_sitter_javascript::LANGUAGE.into(), &JS),
            Lang::TypeScript => (tree_sitter_typescript::LANGUAGE_TYPESCRIPT.into(), &JS),
            Lang::Tsx => (tree_sitter_typescript::LANGUAGE_TSX.into(), &JS),
            Lang::Java => (tree_sitter_java::LANGUAGE.into(), &JAVA),
            Lang::C => (tree_sitter_c::LANGUAGE.into(), &C),
            Lang::Cpp => (tree_sitter_cpp::LANGUAGE.into(), &CPP),
            _ => return None,
        })
    }
}

/// Which syntax nodes are chunks.
struct Spec {
    /// Definitions that become one chunk each (functions, methods, type definitions).
    units: &'static [&'static str],
    /// Definitions whose members are chunked separately, with the container's header as context.
    containers: &'static [&'static str],
    /// Nodes that take their role from the definition they wrap (decorators, `export`, `template`).
    wrappers: &'static [&'static str],
    /// Units that count only with a `body` (C `struct x {...}`, not `struct x *p`).
    need_body: &'static [&'static str],
}

static RUST: Spec = Spec {
    units: &[
        "function_item",
        "function_signature_item",
        "struct_item",
        "enum_item",
        "union_item",
        "macro_definition",
        "const_item",
        "static_item",
        "type_item",
    ],
    containers: &["impl_item", "trait_item", "mod_item"],
    wrappers: &[],
    need_body: &[],
};
static PYTHON: Spec = Spec {
    units: &["function_definition"],
    containers: &["class_definition"],
    wrappers: &["decorated_definition"],
    need_body: &[],
};
static GO: Spec = Spec {
    units: &["function_declaration", "method_declaration", "type_declaration"],
    containers: &[],
    wrappers: &[],
    need_body: &[],
};
static JS: Spec = Spec {
    units: &[
        "function_declaration",
        "generator_function_declaration",
        "method_definition",
        "lexical_declaration",
        "variable_declaration",
        "interface_declaration",
        "type_alias_declaration",
        "enum_declaration",
        "function_signature",
        "method_signature",
        "abstract_method_signature",
    ],
    containers: &["class_declaration", "abstract_class_declaration", "internal_module", "module"],
    wrappers: &["export_statement"],
    need_body: &[],
};
static JAVA: Spec = Spec {
    units: &["method_declaration", "constructor_declaration", "compact_constructor_declaration"],
    containers: &[
        "class_declaration",
        "interface_declaration",
        "enum_declaration",
        "record_declaration",
        "annotation_type_declaration",
    ],
    wrappers: &[],
    need_body: &[],
};
static C: Spec = Spec {
    units: &["function_definition", "type_definition", "struct_specifier", "union_specifier", "enum_specifier"],
    containers: &[],
    wrappers: &[],
    need_body: &["struct_specifier", "union_specifier", "enum_specifier"],
};
static CPP: Spec = Spec {
    units: &["function_definition", "enum_specifier", "alias_declaration", "concept_definition"],
    containers: &["class_specifier", "struct_specifier", "union_specifier", "namespace_definition"],
    wrappers: &["template_declaration"],
    need_body: &["class_specifier", "struct_specifier", "union_specifier", "enum_specifier"],
};

/// Token budgets and window sizes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Tokens a code or text chunk may have (context and special tokens included).
    pub max_tokens: usize,
    /// Tokens a prose (Markdown, text) chunk may have.
    pub prose_max_tokens: usize,
    /// Lines per window for files chunked by windows.
    pub window_lines: usize,
    /// Lines shared by consecutive windows.
    pub overlap_lines: usize,
    /// Tokens every input costs besides its lines: [CLS], [SEP], the document prompt.
    pub reserved_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_tokens: 512, prose_max_tokens: 2048, window_lines: 40, overlap_lines: 8, reserved_tokens: 2 }
    }
}

/// Counts tokens: the model's tokenizer, or (tests, BM25-only use) an estimate.
pub trait TokenCount {
    /// Tokens of each line of `lines` (joined by `\n` they are the text).
    fn per_line(&self, lines: &[&str]) -> Vec<u32>;
    fn count(&self, text: &str) -> u32;
}

/// An estimate: one token per 3 bytes, at least one per non-empty line.
pub struct ApproxTokens;

impl TokenCount for ApproxTokens {
    fn per_line(&self, lines: &[&str]) -> Vec<u32> {
        lines.iter().map(|l| self.count(l)).collect()
    }
    fn count(&self, text: &str) -> u32 {
        (text.len() as u32).div_ceil(3) + 1
    }
}

impl TokenCount for modernbert::Tokenizer {
    fn per_line(&self, lines: &[&str]) -> Vec<u32> {
        let text = lines.join("\n");
        let mut counts = vec![0u32; lines.len()];
        let Ok(enc) = self.encode(&text, None, false, None) else {
            return ApproxTokens.per_line(lines);
        };
        // Character index where each line starts.
        let mut starts = Vec::with_capacity(lines.len());
        let mut at = 0usize;
        for l in lines {
            starts.push(at);
            at += l.chars().count() + 1;
        }
        for &(s, _) in &enc.offsets {
            let line = starts.partition_point(|&st| st <= s).saturating_sub(1);
            counts[line.min(lines.len() - 1)] += 1;
        }
        counts
    }
    fn count(&self, text: &str) -> u32 {
        self.encode(text, None, false, None).map_or_else(|_| ApproxTokens.count(text), |e| e.ids.len() as u32)
    }
}

/// Splits `text` (the contents of `path`) into chunks.
pub fn chunk_file(path: &Path, text: &str, limits: &Limits, counter: &dyn TokenCount) -> Vec<Chunk> {
    let lines: Vec<&str> = split_lines(text);
    if lines.is_empty() {
        return Vec::new();
    }
    let tokens = counter.per_line(&lines);
    let file = FileLines { lines: &lines, tokens: &tokens, limits, counter };
    let lang = Lang::of(path);
    let mut chunks = match lang {
        Lang::Markdown => file.markdown(),
        Lang::Prose => file.windows_of(0, lines.len() - 1, "", limits.prose_max_tokens, usize::MAX, 2),
        Lang::Text => {
            file.windows_of(0, lines.len() - 1, "", limits.max_tokens, limits.window_lines, limits.overlap_lines)
        }
        _ => match file.syntax(lang, text) {
            Some(c) => c,
            None => {
                file.windows_of(0, lines.len() - 1, "", limits.max_tokens, limits.window_lines, limits.overlap_lines)
            }
        },
    };
    chunks.retain(|c| c.text.chars().filter(|c| c.is_alphanumeric()).count() >= 3);
    chunks.sort_by_key(|c| (c.start_line, c.end_line));
    chunks
}

/// Lines without their terminators (`\n`, `\r\n`); a final newline adds no empty line.
fn split_lines(text: &str) -> Vec<&str> {
    let mut lines: Vec<&str> = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    lines
}

struct FileLines<'a> {
    lines: &'a [&'a str],
    tokens: &'a [u32],
    limits: &'a Limits,
    counter: &'a dyn TokenCount,
}

fn alnum(s: &str) -> usize {
    s.chars().filter(|c| c.is_alphanumeric()).count()
}

impl FileLines<'_> {
    fn chunk(&self, a: usize, b: usize, context: &str) -> Chunk {
        Chunk {
            start_line: a as u32 + 1,
            end_line: b as u32 + 1,
            context: context.to_string(),
            text: self.lines[a..=b].join("\n"),
        }
    }

    fn tokens_of(&self, a: usize, b: usize) -> usize {
        self.tokens[a..=b].iter().map(|&t| t as usize + 1).sum()
    }

    /// Lines `a..=b` as one chunk if they fit `max_tokens`, else as windows of at most
    /// `window` lines overlapping by `overlap`.
    fn windows_of(
        &self,
        a: usize,
        b: usize,
        context: &str,
        max_tokens: usize,
        window: usize,
        overlap: usize,
    ) -> Vec<Chunk> {
        let budget = max_tokens
            .saturating_sub(self.limits.reserved_tokens)
            .saturating_sub(self.counter.count(context) as usize + 2)
            .max(16);
        let mut out = Vec::new();
        if b - a < window && self.tokens_of(a, b) <= budget {
            out.push(self.chunk(a, b, context));
            return out;
        }
        let mut s = a;
        loop {
            let mut e = s;
            let mut t = self.tokens[s] as usize + 1;
            while e < b && e + 1 - s < window && t + (self.tokens[e + 1] as usize) < budget {
                e += 1;
                t += self.tokens[e] as usize + 1;
            }
            out.push(self.chunk(s, e, context));
            if e >= b {
                break;
            }
            s = (e + 1).saturating_sub(overlap).max(s + 1);
        }
        out
    }

    /// Markdown: one chunk per section (heading to next heading), parent headings as context.
    fn markdown(&self) -> Vec<Chunk> {
        let mut heads: Vec<(usize, usize, String)> = Vec::new(); // (line, level, title)
        let mut fence: Option<&str> = None;
        for (i, l) in self.lines.iter().enumerate() {
            let t = l.trim_start();
            if let Some(f) = fence {
                if t.starts_with(f) {
                    fence = None;
                }
                continue;
            }
            if t.starts_with("```") || t.starts_with("~~~") {
                fence = Some(&t[..3]);
                continue;
            }
            let level = l.chars().take_while(|&c| c == '#').count();
            if (1..=6).contains(&level) && l[level..].starts_with([' ', '\t']) {
                heads.push((i, level, l.trim().to_string()));
            }
        }
        let mut out = Vec::new();
        let mut starts: Vec<usize> = heads.iter().map(|h| h.0).collect();
        if starts.first() != Some(&0) {
            starts.insert(0, 0);
        }
        let mut stack: Vec<(usize, String)> = Vec::new();
        for (k, &s) in starts.iter().enumerate() {
            let e = starts.get(k + 1).map_or(self.lines.len() - 1, |&n| n - 1);
            let own = heads.iter().find(|h| h.0 == s);
            if let Some((_, level, title)) = own {
                while stack.last().is_some_and(|(l, _)| l >= level) {
                    stack.pop();
                }
                let context = stack.iter().map(|(_, t)| t.as_str()).collect::<Vec<_>>().join(" > ");
                stack.push((*level, title.clone()));
                let body: usize = self.lines[s + 1..=e.max(s)].iter().map(|l| alnum(l)).sum();
                if body == 0 && e <= s + 1 {
                    continue; // a heading alone: it is the context of what follows
                }
                out.extend(self.windows_of(s, e, &context, self.limits.prose_max_tokens, usize::MAX, 2));
            } else {
                out.extend(self.windows_of(s, e, "", self.limits.prose_max_tokens, usize::MAX, 2));
            }
        }
        out
    }

    /// Source code by syntax; `None` if the file does not parse at all.
    fn syntax(&self, lang: Lang, text: &str) -> Option<Vec<Chunk>> {
        let (language, spec) = lang.grammar()?;
        let mut parser = tree_sitter::Parser::new();
        parser.set_language(&language).ok()?;
        let tree = parser.parse(text, None)?;
        let mut walk =
            Walk { spec, text: text.as_bytes(), units: Vec::new(), containers: Vec::new(), stack: Vec::new() };
        walk.visit(tree.root_node(), 0);
        let n = self.lines.len();
        let mut covered = vec![false; n];
        let mut owner: Vec<Option<usize>> = vec![None; n];
        for (i, (a, b, _)) in walk.containers.iter().enumerate() {
            for o in owner.iter_mut().take((*b).min(n - 1) + 1).skip(*a) {
                *o = Some(i);
            }
        }
        let mut out = Vec::new();
        for (a, b, context, signature) in &walk.units {
            let (a, b) = ((*a).min(n - 1), (*b).min(n - 1));
            if covered[a..=b].iter().all(|&c| c) {
                continue;
            }
            covered[a..=b].iter_mut().for_each(|c| *c = true);
            let mut windows =
                self.windows_of(a, b, context, self.limits.max_tokens, usize::MAX, self.limits.overlap_lines);
            // Windows after the first carry the definition's signature as context.
            for w in windows.iter_mut().skip(1) {
                w.context = join_context(context, signature);
            }
            out.append(&mut windows);
        }
        // The rest (imports, constants, fields, top-level statements) by windows, split where the
        // enclosing container changes.
        let mut i = 0;
        while i < n {
            if covered[i] {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < n && !covered[j + 1] && owner[j + 1] == owner[i] {
                j += 1;
            }
            let chars: usize = self.lines[i..=j].iter().map(|l| alnum(l)).sum();
            if chars >= 8 {
                let context = owner[i].map_or(String::new(), |o| walk.containers[o].2.clone());
                out.extend(self.windows_of(
                    i,
                    j,
                    &context,
                    self.limits.max_tokens,
                    self.limits.window_lines,
                    self.limits.overlap_lines,
                ));
            }
            i = j + 1;
        }
        Some(out)
    }
}

fn join_context(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_string(),
        (_, true) => a.to_string(),
        _ => format!("{a} > {b}"),
    }
}

struct Walk<'a> {
    spec: &'static Spec,
    text: &'a [u8],
    /// (first line, last line, context, own signature), 0-based.
    units: Vec<(usize, usize, String, String)>,
    /// (first line, last line, context including its own header).
    containers: Vec<(usize, usize, String)>,
    stack: Vec<String>,
}

enum Role {
    Unit,
    Container,
    Other,
}

impl Walk<'_> {
    fn role(&self, node: tree_sitter::Node) -> Role {
        let kind = node.kind();
        let has_body = || node.child_by_field_name("body").is_some();
        if self.spec.units.contains(&kind) {
            if self.spec.need_body.contains(&kind) && !has_body() {
                return Role::Other;
            }
            if matches!(kind, "lexical_declaration" | "variable_declaration") && !self.declares_function(node) {
                return Role::Other;
            }
            return Role::Unit;
        }
        if self.spec.containers.contains(&kind) {
            if has_body() {
                return Role::Container;
            }
            return if self.spec.need_body.contains(&kind) { Role::Other } else { Role::Unit };
        }
        Role::Other
    }

    /// `const f = () => ...` / `let g = function () {...}`.
    fn declares_function(&self, node: tree_sitter::Node) -> bool {
        let mut cursor = node.walk();
        let found = node.named_children(&mut cursor).any(|d| {
            d.child_by_field_name("value").is_some_and(|v| {
                matches!(
                    v.kind(),
                    "arrow_function" | "function_expression" | "function" | "generator_function" | "class"
                )
            })
        });
        found
    }

    /// The definition a wrapper wraps.
    fn wrapped<'t>(&self, node: tree_sitter::Node<'t>) -> Option<tree_sitter::Node<'t>> {
        if let Some(d) = node.child_by_field_name("definition").or_else(|| node.child_by_field_name("declaration")) {
            return Some(d);
        }
        let mut cursor = node.walk();
        let found = node.named_children(&mut cursor).find(|c| !matches!(self.role(*c), Role::Other));
        found
    }

    /// The text of `node` before its body, on one line (`impl<T> Foo for Bar<T>`, `class A(B)`).
    fn header(&self, node: tree_sitter::Node) -> String {
        let end = node.child_by_field_name("body").map_or(node.end_byte(), |b| b.start_byte());
        let raw = String::from_utf8_lossy(&self.text[node.start_byte()..end.max(node.start_byte())]);
        let first: String = raw.split_whitespace().collect::<Vec<_>>().join(" ");
        let first = first.trim_end_matches(['{', ':', ' ']).to_string();
        if first.chars().count() > 120 {
            first.chars().take(117).collect::<String>() + "..."
        } else {
            first
        }
    }

    /// The first line of a unit, without its body.
    fn signature(&self, node: tree_sitter::Node) -> String {
        let h = self.header(node);
        h.lines().next().unwrap_or("").to_string()
    }

    /// The first line of the definition, moved up over the comments, attributes and
    /// decorators right above it.
    fn start_with_comments(&self, node: tree_sitter::Node) -> usize {
        let mut start = node.start_position().row;
        let mut prev = node.prev_named_sibling();
        while let Some(p) = prev {
            let k = p.kind();
            let attached =
                k.contains("comment") || k == "attribute_item" || k.contains("decorator") || k.contains("annotation");
            if !attached || p.end_position().row + 1 < start {
                break;
            }
            start = p.start_position().row;
            prev = p.prev_named_sibling();
        }
        start
    }

    fn visit(&mut self, node: tree_sitter::Node, depth: usize) {
        if depth > 200 {
            return;
        }
        let mut cursor = node.walk();
        let children: Vec<tree_sitter::Node> = node.named_children(&mut cursor).collect();
        for child in children {
            let (def, outer) = if self.spec.wrappers.contains(&child.kind()) {
                match self.wrapped(child) {
                    Some(d) => (d, child),
                    None => {
                        self.visit(child, depth + 1);
                        continue;
                    }
                }
            } else {
                (child, child)
            };
            match self.role(def) {
                Role::Unit => {
                    let a = self.start_with_comments(outer);
                    let b = outer.end_position().row;
                    let context = self.stack.join(" > ");
                    let sig = self.signature(def);
                    self.units.push((a, b, context, sig));
                }
                Role::Container => {
                    let header = self.header(def);
                    self.stack.push(header);
                    let a = self.start_with_comments(outer);
                    self.containers.push((a, outer.end_position().row, self.stack.join(" > ")));
                    if let Some(body) = def.child_by_field_name("body") {
                        self.visit(body, depth + 1);
                    }
                    self.stack.pop();
                }
                Role::Other => self.visit(child, depth + 1),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(name: &str, text: &str) -> Vec<Chunk> {
        chunk_file(Path::new(name), text, &Limits::default(), &ApproxTokens)
    }

    fn find<'a>(cs: &'a [Chunk], needle: &str) -> &'a Chunk {
        cs.iter().find(|c| c.text.contains(needle)).unwrap_or_else(|| panic!("no chunk with {needle}: {cs:#?}"))
    }

    #[test]
    fn rust_by_items_with_impl_context() {
        let src = "use std::io;\n\n/// Adds.\n#[inline]\nfn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n\nimpl Parser {\n    pub fn next_token(&mut self) -> Token {\n        self.lex()\n    }\n\n    fn peek(&self) -> Token {\n        todo!()\n    }\n}\n";
        let cs = chunks("src/lib.rs", src);
        let add = find(&cs, "fn add");
        assert_eq!((add.start_line, add.end_line), (3, 7), "doc comment and attribute belong to the function");
        let next = find(&cs, "fn next_token");
        assert_eq!((next.start_line, next.end_line, next.context.as_str()), (10, 12, "impl Parser"));
        assert!(!next.text.contains("fn peek"));
        assert_eq!(find(&cs, "fn peek").context, "impl Parser");
    }

    #[test]
    fn python_methods_and_top_level() {
        let src = "import os\nimport sys\n\nclass Store(Base):\n    \"\"\"A store.\"\"\"\n    kind = 'x'\n\n    @property\n    def size(self):\n        return len(self.items)\n\n    def clear(self):\n        self.items = []\n\ndef main():\n    print(Store().size)\n";
        let cs = chunks("store.py", src);
        let size = find(&cs, "def size");
        assert_eq!((size.start_line, size.end_line), (8, 10));
        assert_eq!(size.context, "class Store(Base)");
        assert_eq!(find(&cs, "def main").context, "");
        let class_rest = find(&cs, "kind = 'x'");
        assert_eq!(class_rest.context, "class Store(Base)");
        assert!(find(&cs, "import os").end_line <= 3);
    }

    #[test]
    fn other_languages_have_definitions() {
        let cases: &[(&str, &str, &str)] = &[
            ("a.go", "package a\n\nfunc (s *S) Run() error {\n\treturn nil\n}\n\nfunc Helper() {\n}\n", "func Helper"),
            ("a.js", "import x from 'y';\n\nexport function run(a) {\n  return a;\n}\nconst f = (b) => {\n  return b * 2;\n};\nclass K {\n  m() { return 1; }\n}\n", "const f"),
            ("a.ts", "interface P {\n  x: number;\n}\nexport class Q {\n  get(): number {\n    return 1;\n  }\n}\n", "get(): number"),
            ("A.java", "package p;\n\npublic class A {\n  int x;\n  public int get() {\n    return x;\n  }\n}\n", "public int get()"),
            ("a.c", "#include <stdio.h>\n\nstruct point {\n  int x, y;\n};\n\nint main(void) {\n  return 0;\n}\n", "int main"),
            ("a.cpp", "namespace ns {\nclass W {\n public:\n  int f() const {\n    return 1;\n  }\n};\n}\n", "int f() const"),
        ];
        for (name, src, needle) in cases {
            let cs = chunks(name, src);
            let c = find(&cs, needle);
            assert!(c.end_line - c.start_line < 4, "{name}: {c:?}");
        }
        assert_eq!(find(&chunks("A.java", cases[3].1), "public int get()").context, "public class A");
        assert_eq!(find(&chunks("a.cpp", cases[5].1), "int f() const").context, "namespace ns > class W");
    }

    #[test]
    fn long_functions_are_windowed_and_text_overlaps() {
        let body: String = (0..400).map(|i| format!("    let v{i} = compute_value({i}, {i});\n")).collect();
        let src = format!("fn big() {{\n{body}}}\n");
        let cs = chunks("big.rs", &src);
        assert!(cs.len() > 2);
        assert_eq!(cs[0].start_line, 1);
        assert_eq!(cs.last().unwrap().end_line, 402);
        assert!(cs[1].context.contains("fn big()"));
        for w in cs.windows(2) {
            assert!(w[1].start_line <= w[0].end_line + 1);
        }
        let text: String = (0..100).map(|i| format!("key{i} = value{i}\n")).collect();
        let cs = chunks("config.toml", &text);
        assert!(cs.len() >= 3);
        assert_eq!(cs[1].start_line, cs[0].end_line + 1 - 8, "8 lines of overlap");
    }

    #[test]
    fn markdown_sections() {
        let src =
            "# Title\n\nIntro text.\n\n## Install\n\nRun it.\n\n```\n# not a heading\n```\n\n## Use\n\nCall it.\n";
        let cs = chunks("README.md", src);
        let install = find(&cs, "## Install");
        assert_eq!(install.context, "# Title");
        assert!(install.text.contains("# not a heading"));
        assert_eq!((install.start_line, install.end_line), (5, 12));
        assert_eq!(find(&cs, "Call it").context, "# Title");
    }
}
