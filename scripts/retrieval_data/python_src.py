"""(a) Python standard library: docstring first paragraph -> function/method source without its docstring."""

import ast
import os
import re
import textwrap
import tokenize

from .common import MAX_CODE_CHARS, cap_lines, norm, ok_query, pair, summary


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
