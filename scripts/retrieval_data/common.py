"""Shared limits and helpers: normalisation, hashing into splits, capping, query checks, the pair row."""

import hashlib
import re


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
