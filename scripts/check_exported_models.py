#!/usr/bin/env python3
"""Check that model directories written by the Rust trainer load in the Python library that owns
their format and give the Rust CLI's numbers (issue 12: "ST and PyLate load the trained outputs
with equal outputs").

    .venv/bin/python scripts/check_exported_models.py DIR [DIR ...] [--binary target/release/modernbert]

For each DIR the format is read from `config_sentence_transformers.json` `model_type` (PyLate
`ColBERT`, `CrossEncoder`, else `SentenceTransformer`; without that file a
`*ForSequenceClassification` checkpoint is a cross-encoder and anything else a bi-encoder, as
sentence-transformers would build it). The library side runs in a subprocess of the venv that owns
the format (this script again with `--worker`): `.venv` (sentence-transformers 6.3) for bi- and
cross-encoders, `.venv-pylate` (PyLate 1.6 on sentence-transformers 5.3) for ColBERT. The Rust side
is the CLI on the same texts, fixed below: 4 short queries and 7 documents (prose, code, non-ASCII,
a single letter, and one of ~60 tokens, past the local-attention window of small models and past the
max length of some formats):

| format | library | Rust CLI | compared |
|---|---|---|---|
| bi-encoder | `SentenceTransformer(DIR).encode(texts)`; `normalize_embeddings=True`; `prompt_name=P` for every non-empty prompt P | `embed --no-normalize`; `embed`; `embed --no-normalize --prompt-name P` | every embedding value |
| cross-encoder, 1 label | `CrossEncoder(DIR).predict(pairs, activation_fn=Identity())` and `predict(pairs)` | `rerank --raw-scores --query Q DOCS` and `rerank --query Q DOCS` (matched by `index`) | every query x document score |
| cross-encoder, > 1 label | `predict(pairs, activation_fn=Identity())` (logits) | `classify --pair --max-length L` (`logits`; L = the cross-encoder's max length, which `classify` does not apply by itself) | every logit |
| ColBERT | `ColBERT(DIR).encode(queries, is_query=True)`, `encode(documents, is_query=False)`, `pylate.scores.colbert_scores` per pair (exact MaxSim) | `embed --input-type query`, `embed --input-type document` (`token_embeddings`), `rerank --query Q DOCS` | every token vector value (shapes must agree) and score |

Prints, per model, the max abs difference of each comparison and overall; PASS when every one is
<= 1e-4 (`--tolerance`). Exit status 1 if a model fails or cannot be loaded by its library.
The library computes on CPU in float32 whatever dtype the directory stores (one thread); the CLI in
f32 (`--precision f32`, its default).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

QUERIES = [
    "what is rust?",
    "how do I reverse a list in python",
    "capital of France",
    "def add(a, b): return a + b",
]
DOCUMENTS = [
    "Rust is a systems programming language focused on safety, speed and concurrency.",
    "Use reversed(items) or items[::-1] to reverse a Python list.",
    "Paris is the capital and largest city of France; about 2.1 million people live there.",
    "fn add(a: i32, b: i32) -> i32 { a + b }",
    "Le café est fermé le dimanche. 東京は日本の首都です。",
    "a",
    "The borrow checker enforces that references never outlive the data they point to, that there is "
    "either one mutable reference or any number of shared ones, and it does so at compile time, so the "
    "compiled program pays nothing at run time for this guarantee; unsafe blocks opt out locally.",
]


# ----------------------------------------------------------------------------------------------
# library side (runs inside the venv that owns the format)

def worker(kind, path):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import warnings

    warnings.filterwarnings("ignore")
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    torch.set_num_threads(1)
    # f32 compute whatever the stored dtype (transformers 5 would otherwise keep bf16 weights in bf16)
    F32 = {"dtype": torch.float32}
    out = {"kind": kind}
    if kind == "bi-encoder":
        import sentence_transformers
        from sentence_transformers import SentenceTransformer

        m = SentenceTransformer(path, device="cpu", model_kwargs=F32)
        texts = QUERIES + DOCUMENTS
        out["library"] = f"sentence-transformers {sentence_transformers.__version__}"
        out["plain"] = m.encode(texts, convert_to_numpy=True).tolist()
        out["normalized"] = m.encode(texts, convert_to_numpy=True, normalize_embeddings=True).tolist()
        out["prompts"] = {}
        for name, prompt in sorted((m.prompts or {}).items()):
            if prompt:
                out["prompts"][name] = m.encode(texts, prompt_name=name, convert_to_numpy=True).tolist()
    elif kind == "cross-encoder":
        import sentence_transformers
        from sentence_transformers import CrossEncoder

        m = CrossEncoder(path, device="cpu", model_kwargs=F32)
        pairs = [(q, d) for q in QUERIES for d in DOCUMENTS]
        out["library"] = f"sentence-transformers {sentence_transformers.__version__}"
        out["num_labels"] = int(m.num_labels)
        out["max_length"] = int(m.max_length)
        out["raw"] = m.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True).tolist()
        if m.num_labels == 1:
            out["scores"] = m.predict(pairs, convert_to_numpy=True).tolist()
    elif kind == "colbert":
        import pylate
        from pylate import models, scores

        m = models.ColBERT(model_name_or_path=path, device="cpu", model_kwargs=F32)
        q = m.encode(QUERIES, is_query=True)
        d = m.encode(DOCUMENTS, is_query=False)
        out["library"] = f"pylate {pylate.__version__}"
        out["queries"] = [x.tolist() for x in q]
        out["documents"] = [x.tolist() for x in d]
        out["scores"] = [[float(scores.colbert_scores(torch.tensor(qi)[None], torch.tensor(dj)[None])[0, 0])
                          for dj in d] for qi in q]
    else:
        raise ValueError(kind)
    dtypes = {str(p.dtype) for p in m.parameters()}
    assert dtypes == {"torch.float32"}, dtypes
    json.dump(out, sys.stdout)


# ----------------------------------------------------------------------------------------------
# driver

def kind_of(path):
    p = pathlib.Path(path)
    cst = p / "config_sentence_transformers.json"
    if cst.is_file():
        model_type = json.loads(cst.read_text()).get("model_type", "SentenceTransformer")
        return {"ColBERT": "colbert", "CrossEncoder": "cross-encoder"}.get(model_type, "bi-encoder")
    modules = p / "modules.json"
    if modules.is_file() and any("pylate" in m.get("type", "") for m in json.loads(modules.read_text())):
        return "colbert"
    archs = json.loads((p / "config.json").read_text()).get("architectures") or []
    if not modules.is_file() and any(a.endswith("ForSequenceClassification") for a in archs):
        return "cross-encoder"
    return "bi-encoder"


def library_outputs(args, kind, path):
    python = args.python_pylate if kind == "colbert" else args.python_st
    cmd = [python, str(pathlib.Path(__file__).resolve()), "--worker", kind, str(path)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{kind} worker failed ({python}):\n{r.stderr[-3000:]}")
    return json.loads(r.stdout)


def cli(args, *argv):
    r = subprocess.run([args.binary, *argv], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join([args.binary, *argv])}: {r.stderr.strip()}")
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


def write_jsonl(dir_, name, rows):
    f = pathlib.Path(dir_) / name
    f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(f)


def max_diff(a, b, what):
    """Max |a - b| over nested lists of equal shape (a shape mismatch raises)."""
    if isinstance(a, (int, float)) or isinstance(b, (int, float)):
        if not (isinstance(a, (int, float)) and isinstance(b, (int, float))):
            raise ValueError(f"{what}: shape mismatch")
        return abs(float(a) - float(b))
    if len(a) != len(b):
        raise ValueError(f"{what}: length {len(a)} vs {len(b)}")
    return max((max_diff(x, y, what) for x, y in zip(a, b)), default=0.0)


def count(a):
    return 1 if isinstance(a, (int, float)) else sum(count(x) for x in a)


def check_bi(args, path, lib, tmp):
    texts = write_jsonl(tmp, "texts.jsonl", [{"text": t} for t in QUERIES + DOCUMENTS])
    res = []
    got = [r["embedding"] for r in cli(args, "embed", "--model", path, "--no-normalize", "--input", texts)]
    res.append(("encode() vs embed --no-normalize", max_diff(got, lib["plain"], "plain"), count(got)))
    got = [r["embedding"] for r in cli(args, "embed", "--model", path, "--input", texts)]
    res.append(("encode(normalize_embeddings=True) vs embed", max_diff(got, lib["normalized"], "norm"), count(got)))
    for name, want in lib["prompts"].items():
        got = [r["embedding"] for r in
               cli(args, "embed", "--model", path, "--no-normalize", "--prompt-name", name, "--input", texts)]
        res.append((f"prompt_name={name!r} vs embed --prompt-name {name}", max_diff(got, want, name), count(got)))
    return res


def check_ce(args, path, lib, tmp):
    docs = write_jsonl(tmp, "docs.jsonl", [{"text": d} for d in DOCUMENTS])
    n = len(DOCUMENTS)
    res = []
    if lib["num_labels"] == 1:
        for flag, key, label in (("--raw-scores", "raw", "predict(activation_fn=Identity) vs rerank --raw-scores"),
                                 (None, "scores", "predict() vs rerank")):
            got = []
            for q in QUERIES:
                argv = ["rerank", "--model", path, "--query", q, "--input", docs] + ([flag] if flag else [])
                by_index = {r["index"]: r["score"] for r in cli(args, *argv)}
                got.extend(by_index[i] for i in range(n))
            res.append((label, max_diff(got, lib[key], key), len(got)))
    else:
        pairs = write_jsonl(tmp, "pairs.jsonl", [{"text": q, "text_pair": d} for q in QUERIES for d in DOCUMENTS])
        # `classify` reads the directory as a plain HF classifier and does not apply the cross-encoder's
        # max length (tokenizer_config.json model_max_length): pass it, as CrossEncoder truncates there.
        ml = str(lib["max_length"])
        got = [r["logits"] for r in
               cli(args, "classify", "--model", path, "--pair", "--max-length", ml, "--input", pairs)]
        res.append((f"predict(activation_fn=Identity) vs classify --pair --max-length {ml} logits",
                    max_diff(got, lib["raw"], "logits"), count(got)))
    return res


def check_colbert(args, path, lib, tmp):
    qf = write_jsonl(tmp, "queries.jsonl", [{"text": q} for q in QUERIES])
    df = write_jsonl(tmp, "docs.jsonl", [{"text": d} for d in DOCUMENTS])
    res = []
    got = [r["token_embeddings"] for r in cli(args, "embed", "--model", path, "--input-type", "query", "--input", qf)]
    res.append(("encode(is_query=True) vs embed --input-type query", max_diff(got, lib["queries"], "q"), count(got)))
    got = [r["token_embeddings"] for r in
           cli(args, "embed", "--model", path, "--input-type", "document", "--input", df)]
    res.append(("encode(is_query=False) vs embed --input-type document",
                max_diff(got, lib["documents"], "d"), count(got)))
    got = []
    for q in QUERIES:
        by_index = {r["index"]: r["score"] for r in cli(args, "rerank", "--model", path, "--query", q, "--input", df)}
        got.append([by_index[i] for i in range(len(DOCUMENTS))])
    res.append(("colbert_scores (MaxSim) vs rerank", max_diff(got, lib["scores"], "scores"), count(got)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+")
    ap.add_argument("--binary", default=str(ROOT / "target/release/modernbert"))
    ap.add_argument("--python-st", default=str(ROOT / ".venv/bin/python"))
    ap.add_argument("--python-pylate", default=str(ROOT / ".venv-pylate/bin/python"))
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--worker", choices=["bi-encoder", "cross-encoder", "colbert"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker, args.dirs[0])
        return 0
    failed = 0
    for path in args.dirs:
        kind = kind_of(path)
        try:
            lib = library_outputs(args, kind, path)
            with tempfile.TemporaryDirectory() as tmp:
                res = {"bi-encoder": check_bi, "cross-encoder": check_ce, "colbert": check_colbert}[kind](
                    args, path, lib, tmp)
        except (RuntimeError, ValueError, KeyError) as e:
            print(f"{path} ({kind}): FAIL: {e}")
            failed += 1
            continue
        worst = max(d for _, d, _ in res)
        ok = worst <= args.tolerance
        failed += not ok
        print(f"{path} ({kind}, {lib['library']}): max |diff| {worst:.2e} -> {'PASS' if ok else 'FAIL'}")
        for label, d, n in res:
            print(f"    {label}: {d:.2e} over {n} values")
    print(f"{len(args.dirs) - failed}/{len(args.dirs)} models pass (tolerance {args.tolerance:g})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
