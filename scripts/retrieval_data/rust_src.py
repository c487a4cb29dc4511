"""(b) Rust standard library (rust-src): `///` first paragraph -> item source without doc comments."""

import os
import re
import textwrap

from .common import MAX_CODE_CHARS, cap_lines, ok_query, pair, summary


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
