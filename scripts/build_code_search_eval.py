#!/usr/bin/env python3
"""Builds an offline code-search evaluation set from the Python standard library.

A deterministic sample of stdlib modules (default ~60k lines from /usr/lib/python3.11) is copied
with every docstring removed (replaced by blank lines, or `pass` where the docstring was the whole
body, so line numbers do not move). Each function or method that *had* a docstring gives one query:
the docstring's first sentence; its answer is the function's file and `def` line, which the index
never sees. Queries whose text is not unique are dropped (they cannot have one answer).

    python3 scripts/build_code_search_eval.py [--src /usr/lib/python3.11] [--out work/eval/code-search]

Writes OUT/repo/ (the stripped copy), OUT/queries.jsonl ({"query", "path", "line", "name"}) and
OUT/stats.json. Then (docs/code-search.md):

    modernbert index OUT/repo --index OUT/index
    modernbert search --index OUT/index --queries OUT/queries.jsonl --evaluate --mode bm25
"""

import argparse
import ast
import json
import os
import random
import re
import shutil
import sys

SKIP_DIRS = {
    "test", "tests", "idlelib", "lib2to3", "tkinter", "turtledemo", "ensurepip", "pydoc_data", "site-packages",
    "dist-packages", "__pycache__", "encodings", "venv",
}


def eligible_files(src):
    for dirpath, dirnames, filenames in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("config-"))
        for f in sorted(filenames):
            if f.endswith(".py") and not f.startswith("test_"):
                yield os.path.join(dirpath, f)


def docstring_node(node):
    body = getattr(node, "body", None)
    if not body or not isinstance(body[0], ast.Expr):
        return None
    v = body[0].value
    if isinstance(v, ast.Constant) and isinstance(v.value, str):
        return body[0]
    return None


def first_sentence(doc):
    doc = doc.strip()
    para = re.split(r"\n\s*\n", doc, maxsplit=1)[0]
    para = " ".join(para.split())
    m = re.search(r"(?<=[.!?])\s", para)
    sentence = para[: m.start()] if m else para
    return sentence.strip()


def strip_docstrings(source, tree):
    """Source with every removable docstring blanked; the set of nodes whose docstring was removed."""
    lines = source.split("\n")
    stripped = set()
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in nodes:
        d = docstring_node(node)
        if d is None:
            continue
        a, b = d.lineno - 1, d.end_lineno - 1
        before = lines[a][: d.col_offset]
        after = lines[b][d.end_col_offset:]
        if before.strip() or (after.strip() and not after.strip().startswith("#")):
            continue  # shares its line with code: leave it, and ask no question about it
        only_statement = len(node.body) == 1 and not isinstance(node, ast.Module)
        for i in range(a, b + 1):
            lines[i] = ""
        if only_statement:
            lines[a] = before + "pass"
        stripped.add(node)
    return "\n".join(lines), stripped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--src", default="/usr/lib/python3.11")
    ap.add_argument("--out", default="work/eval/code-search")
    ap.add_argument("--max-lines", type=int, default=60000, help="lines of code to copy (approximately)")
    ap.add_argument("--max-queries", type=int, default=500)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    if not os.path.isdir(args.src):
        sys.exit(f"error: {args.src} does not exist (apt-get install libpython3.11-stdlib, or pass --src)")

    files = list(eligible_files(args.src))
    rng = random.Random(args.seed)
    rng.shuffle(files)
    repo = os.path.join(args.out, "repo")
    if os.path.exists(repo):
        shutil.rmtree(repo)
    queries, total_lines, copied = [], 0, 0
    for path in files:
        if total_lines >= args.max_lines:
            break
        try:
            source = open(path, encoding="utf-8").read()
            tree = ast.parse(source)
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        n = source.count("\n")
        if n > args.max_lines // 4:
            continue  # one giant module would dominate the sample
        rel = os.path.relpath(path, args.src)
        stripped_source, stripped = strip_docstrings(source, tree)
        # Check the copy still parses and has no docstring left where we removed one.
        try:
            ast.parse(stripped_source)
        except SyntaxError:
            continue
        dest = os.path.join(repo, rel)
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "w", encoding="utf-8") as f:
            f.write(stripped_source)
        total_lines += n
        copied += 1
        for node in ast.walk(tree):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node not in stripped:
                continue
            q = first_sentence(docstring_node(node).value.value)
            words = q.split()
            if not (4 <= len(words) <= 40):
                continue
            queries.append({"query": q, "path": rel, "line": node.lineno, "name": node.name})
    counts = {}
    for q in queries:
        counts[q["query"].lower()] = counts.get(q["query"].lower(), 0) + 1
    unique = [q for q in queries if counts[q["query"].lower()] == 1]
    rng.shuffle(unique)
    chosen = sorted(unique[: args.max_queries], key=lambda q: (q["path"], q["line"]))
    with open(os.path.join(args.out, "queries.jsonl"), "w", encoding="utf-8") as f:
        for q in chosen:
            f.write(json.dumps(q) + "\n")
    stats = {
        "source": args.src,
        "python": sys.version.split()[0],
        "files": copied,
        "lines": total_lines,
        "functions_with_docstrings": len(queries),
        "unique_queries": len(unique),
        "queries": len(chosen),
        "seed": args.seed,
    }
    with open(os.path.join(args.out, "stats.json"), "w") as f:
        json.dump(stats, f, indent=2)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
