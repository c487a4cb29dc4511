"""Ship a trained sentence-transformers embedder: bf16 weights + every ST file into models/NAME, the
library's own outputs on it as a test fixture, and a model card with its retrieval metrics next to
BM25 and the teacher.

    .venv/bin/python scripts/ship_embedder.py work/runs/embed-mini2/best models/modernbert-mini-embed \
        --metrics work/eval-embed.jsonl --baselines work/data/retrieval/baselines.json \
        --run work/runs/embed-mini2

Writes OUT/ (config.json, model.safetensors in bf16, tokenizer files, modules.json, 1_Pooling/,
2_Normalize/, config_sentence_transformers.json, sentence_bert_config.json, README.md) and
tests/fixtures/shipped-<name>/expected.json: `SentenceTransformer(OUT).encode(...)` (float32 compute
on the bf16 weights) in the layout of scripts/make_format_fixtures.py's bi-encoder fixtures, which
`cargo test -p modernbert --test formats shipped` compares with ours.

`--metrics` holds one JSON line per held-out set: `{"set": NAME, "ndcg_at_10", "mrr_at_10",
"recall_at_10", "recall_at_100", "queries"}` (what `modernbert evaluate --task retrieval` prints,
plus the set's name).
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "how do I read a file line by line",
    "def read_lines(path):\n    with open(path) as f:\n        return f.read().splitlines()",
    "fn parse_config(path: &Path) -> Result<Config> { toml::from_str(&std::fs::read_to_string(path)?) }",
    "The capital of France is Paris.",
    " ".join(["sort a list of numbers in place and return the median value"] * 12),
]
CASES = [
    {"prompt_name": "query", "normalize_embeddings": False},
    {"prompt_name": "document", "normalize_embeddings": False},
    {"prompt_name": "document", "normalize_embeddings": True},
    {"prompt_name": "query", "normalize_embeddings": True, "truncate_dim": 64},
]


def summary(metrics: list[dict], baselines: dict) -> str:
    """One sentence per comparison, from the table's numbers (nDCG@10)."""
    above, below = [], []
    for m in metrics:
        teacher = baselines["sets"].get(m["set"], {}).get("teacher", {}).get("ndcg@10")
        if teacher is not None:
            (above if m["ndcg_at_10"] >= teacher else below).append(f"{m['set']} {m['ndcg_at_10']:.3f} vs {teacher:.3f}")
    text = "A 16.9M-parameter model fine-tuned on 2 CPU cores."
    if above:
        text += f" At or above the teacher on {', '.join(above)};"
    if below:
        text += f" below it on {', '.join(below)}."
    return text


def card(out: Path, metrics: list[dict], baselines: dict, run: Path | None) -> str:
    config = json.loads((out / "config_sentence_transformers.json").read_text())
    max_len = json.loads((out / "tokenizer_config.json").read_text())["model_max_length"]
    rows = []
    for m in metrics:
        base = baselines["sets"].get(m["set"], {})
        bm25, teacher, projected = base.get("bm25", {}), base.get("teacher", {}), base.get("projected", {})
        rows.append(
            f"| {m['set']} | {m['queries']} | {m['ndcg_at_10']:.3f} | {bm25.get('ndcg@10', float('nan')):.3f} | "
            f"{teacher.get('ndcg@10', float('nan')):.3f} | {projected.get('ndcg@10', float('nan')):.3f} | "
            f"{m['mrr_at_10']:.3f} | {bm25.get('mrr@10', float('nan')):.3f} | "
            f"{teacher.get('mrr@10', float('nan')):.3f} | {m['recall_at_10']:.3f} | {m['recall_at_100']:.3f} |"
        )
    settings = ""
    if run is not None and (run / "best" / "finetune_config.json").is_file():
        settings = "```json\n" + (run / "best" / "finetune_config.json").read_text().strip() + "\n```\n"
    elif run is not None:
        log = run.parent / (run.name + ".log")
        if log.is_file():
            settings = "```\n" + "".join(log.read_text().splitlines(keepends=True)[:40]) + "```\n"
    prompts = ", ".join(f'`{k}`: "{v}"' for k, v in config.get("prompts", {}).items())
    return f"""---
library_name: sentence-transformers
pipeline_tag: sentence-similarity
tags: [modernbert, sentence-transformers, code-search]
---
# modernbert-mini-embed

A sentence-transformers embedding model: `models/modernbert-mini` (our 16.9M-parameter ModernBERT,
masked-LM pretrained on code and prose, see its card) fine-tuned for retrieval by
`modernbert finetune --task embedding` (InfoNCE over in-batch negatives, cosine x 20, then
distillation from all-MiniLM-L6-v2's embeddings; mean pooling, normalised 256-d vectors; inputs up
to {max_len} tokens). It is the default model of `modernbert embed`, `modernbert serve` and
code search when no `--model` is given. Prompts: {prompts}.

```bash
modernbert embed --prompt-name query "how do I read a file line by line"
```
```python
from sentence_transformers import SentenceTransformer
m = SentenceTransformer("models/modernbert-mini-embed")
q = m.encode(["how do I read a file"], prompt_name="query")
```

## Retrieval on the held-out sets (exact search)

Sets from `scripts/build_retrieval_data.py` (docs/retrieval-data.md), disjoint from training. BM25 and
the teacher (all-MiniLM-L6-v2, 22.7M parameters, trained on 1B+ pairs) from
`scripts/retrieval_baselines.py` on the same sets; "teacher 256" is the teacher through the projection
onto 256 dimensions that the distillation targets (the most a perfect student could reach). Ours: `modernbert evaluate --task retrieval --beir
work/data/retrieval/eval/SET --model models/modernbert-mini-embed` (prompts applied).

| set | queries | nDCG@10 ours | BM25 | teacher | teacher 256 | MRR@10 ours | BM25 | teacher | R@10 ours | R@100 ours |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

{summary(metrics, baselines)} Use hybrid search (BM25 + dense, the code-search default) with it, or a
larger ModernBERT embedder (`--model nomic-ai/modernbert-embed-base`, `Alibaba-NLP/gte-modernbert-base`)
where quality matters.

## Training

Data: `work/data/retrieval/train.jsonl` (28,782 query/positive pairs mined offline: docstring -> Python
function, doc comment -> Rust item, MBPP description -> code, SQuAD/SciQ/BoolQ question -> passage,
docs title -> section). Five stages, each `modernbert finetune --config` with a file from
`configs/modernbert-mini-embed/`: `stage1-mixed.toml` (from models/modernbert-mini, mixed batches;
stopped after step 225 of 900, its best checkpoint then), `stage2-by-source.toml` (batches drawn from one source at a
time, so in-batch negatives cannot be told apart by their source: 1 epoch, lr 2e-4),
`stage3-by-source-lr1e-4.toml` (1 more epoch at lr 1e-4; the model shipped until then), then
distillation: `scripts/retrieval_baselines.py --vectors` adds the teacher's embeddings of every
training text (projected onto 256 dimensions) to the pairs, and `stage4-distill.toml` and
`stage5-distill.toml` train InfoNCE + `distill_weight` x MSE to them (sentence-transformers'
MSELoss): validation (code-python nDCG@10, f32 weights in training; the table is of the shipped bf16
weights) 0.278 -> 0.330 (stage 4, stopped at step 450) -> 0.416 (stage 5, 3 epochs). `stage6-distill.toml` (2 more epochs) levelled off: code-python 0.418, code-mbpp 0.585, but
the code-search set's dense MRR@10 fell (0.495 -> 0.472, docs/code-search.md), so stage 5 ships. Its
settings:

{settings}
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--metrics", type=Path, required=True)
    ap.add_argument("--baselines", type=Path, default=ROOT / "work/data/retrieval/baselines.json")
    ap.add_argument("--run", type=Path)
    ap.add_argument("--max-seq-length", type=int, default=512,
                    help="the shipped model's input limit (tokenizer_config model_max_length); training used 128, "
                         "the backbone was pretrained to 2048, and code search chunks functions up to 512 tokens")
    args = ap.parse_args()
    src, out = args.checkpoint, args.out
    if out.exists():
        shutil.rmtree(out)
    skip = {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "finetune_config.json", "README.md",
            "checkpoints", "best", "metrics.jsonl"}
    shutil.copytree(src, out, ignore=lambda d, names: [n for n in names if n in skip and Path(d) == src])
    tensors = load_file(src / "model.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    config = json.loads((out / "config.json").read_text())
    config["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    tok_config = json.loads((out / "tokenizer_config.json").read_text())
    tok_config["model_max_length"] = args.max_seq_length
    (out / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2, ensure_ascii=False) + "\n")

    from sentence_transformers import SentenceTransformer
    import sentence_transformers
    import transformers

    torch.manual_seed(0)
    model = SentenceTransformer(str(out), device="cpu", model_kwargs={"dtype": torch.float32})
    cases = []
    for case in CASES:
        emb = model.encode(TEXTS, prompt_name=case["prompt_name"], normalize_embeddings=case["normalize_embeddings"],
                           truncate_dim=case.get("truncate_dim"), convert_to_numpy=True)
        prompt = model.prompts[case["prompt_name"]]
        ids = [model.tokenizer(prompt + t, truncation=True, max_length=model.max_seq_length)["input_ids"] for t in TEXTS]
        cases.append({"texts": TEXTS, "prompt": None, "truncate_dim": case.get("truncate_dim"), **case,
                      "input_ids": ids, "embeddings": emb.tolist()})
    fixture = ROOT / "tests" / "fixtures" / f"shipped-{out.name}"
    fixture.mkdir(parents=True, exist_ok=True)
    model_path = out.resolve()
    model_path = model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path
    expected = {"library": f"sentence-transformers {sentence_transformers.__version__}", "kind": "bi-encoder",
                "model": str(model_path), "transformers": transformers.__version__, "cases": cases}
    (fixture / "expected.json").write_text(json.dumps(expected) + "\n")

    metrics = [json.loads(line) for line in args.metrics.read_text().splitlines() if line.strip()]
    baselines = json.loads(args.baselines.read_text())
    (out / "README.md").write_text(card(out, metrics, baselines, args.run))
    size = (out / "model.safetensors").stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB weights) and {fixture}/expected.json")


if __name__ == "__main__":
    main()
