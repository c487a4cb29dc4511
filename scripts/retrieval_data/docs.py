"""(e) Documentation sections (Rust book/reference Markdown, Python reST): title -> body; rustc error codes."""

import collections
import os
import re

from .common import MAX_DOC_CHARS, MAX_QUERY_CHARS, cap_lines, norm, ok_query, pair, qnorm, summary
from .python_src import RST_ROLE
from .rust_src import MD_LINK


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
