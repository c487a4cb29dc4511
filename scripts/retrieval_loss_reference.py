#!/usr/bin/env python3
"""Gradient-parity fixtures for the Rust sentence-embedding trainer (issue 12).

`modernbert finetune --task embedding` trains sentence-transformers' MultipleNegativesRankingLoss
(InfoNCE over in-batch negatives plus given hard negatives, cosine x scale 20), optionally through
GradCache and summed over Matryoshka dimensions. This script computes that loss and every
parameter's gradient with sentence-transformers' *own* loss classes on one fixed batch and writes
them to `tests/fixtures/retrieval-step/`:

| case         | sentence-transformers loss                                              | columns               |
|--------------|-------------------------------------------------------------------------|-----------------------|
| `mnrl`       | MultipleNegativesRankingLoss(scale=20)                                  | query, positive       |
| `mnrl-hard`  | MultipleNegativesRankingLoss(scale=20)                                  | query, positive, neg. |
| `cached`     | CachedMultipleNegativesRankingLoss(scale=20, mini_batch_size=4)         | query, positive, neg. |
| `matryoshka` | MatryoshkaLoss(MNRL(scale=20), matryoshka_dims=[32, 16, 8]) (weights 1) | query, positive, neg. |
| `distill`    | MNRL(scale=20) + 100 x MSELoss to the teacher vectors, model with Normalize | query, positive, neg. |

`distill` is embedding distillation (`teacher_vectors` in the rows, `--distill-weight 100`): seeded
unit vectors (32 wide, 6 decimals) stand in for a teacher's embeddings of the 18 texts and are written
to `pairs-distill.jsonl`; the model gets a Normalize module (the trained embedder has one), which MNRL's
cos_sim does not notice, and MSELoss sees all 18 texts as one column with their 18 vectors as labels.

Model: `SentenceTransformer(modules=[models.Transformer("tests/fixtures/tiny-mlm"),
models.Pooling(32, "mean")])`, float32, eager attention, CPU, one thread, `train()` mode (tiny-mlm
has every dropout at 0). tiny-mlm is a ModernBertForMaskedLM (real tokenizer, hidden 32, 2 heads,
4 layers, window 16); ST loads its backbone as ModernBertModel (the MLM head is dropped). There is no
Normalize module: `cos_sim` normalises. Every case starts from the same weights (the loss never
changes them; gradients are reset between cases) and runs one forward/backward.

Batch: the 6 rows of `pairs.jsonl` (query, positive, one hard negative; prose, code, non-ASCII,
4 to 21 ids with `[CLS]`/`[SEP]`), no prompts. sentence-transformers feeds the columns as three
separate text lists, each tokenised `[CLS] text [SEP]` and right-padded; its loss takes column 0 as
the anchors and concatenates columns 1.. as the candidate documents: scores = 20 * cos(q_i, d_j) for
the B = 6 queries against the 2B (or B) documents [positives..., negatives...], target j = i,
cross-entropy averaged over the B queries. The Rust trainer puts the queries, then the positives,
then the negatives in one unpadded batch: the same rows in the same order.

`reference.safetensors` (F32 unless said):

* `input_ids` I64 [T], `cu_seqlens` I64 [19]: the 18 texts tokenised, unpadded, concatenated in the
  Rust order: queries 0..6, positives 6..12, negatives 12..18 (`mnrl` uses only the first 12);
* `embeddings` [18, 32]: ST's mean-pooled sentence embeddings (not normalised) in that order;
* `loss.<case>`: scalar (shape []);
* `grad.<case>.<name>` for every parameter of the transformer, named as in the HF `ModernBertModel`
  state dict (`embeddings.norm.weight`, `layers.0.attn.Wqkv.weight`, ...; the Rust trainer names
  them `model.<name>`), except the token embedding (below); 25 tensors per case;
* the token-embedding gradient ([50368, 32] dense) is zero outside the ids of the batch (asserted:
  exactly 0.0), so only those rows are stored: `token_rows` I64 [R] (sorted unique ids of
  `input_ids`, `[CLS]`/`[SEP]` included, `[PAD]` excluded) and `grad.<case>.embeddings.tok_embeddings.rows`
  [R, 32] = `grad[token_rows]`. This keeps the file at ~0.5 MB instead of ~26 MB;
* metadata: one key `meta`, a JSON string (cases, param names, versions, tolerances).

Self-checks (printed; tolerance 1e-5 relative to each tensor's max |x|):

1. `cached` equals `mnrl-hard` (loss and every gradient): GradCache is the same loss;
2. each text embedded alone (batch of 1, no padding) gives the batched embeddings;
3. the loss written the Rust way (the 18 unpadded single-text embeddings in Rust order,
   `F.normalize`, `q @ d.T * 20`, cross-entropy with targets 0..B, mean; for Matryoshka the sum over
   the truncated prefixes [:32], [:16], [:8], each renormalised) gives ST's loss and gradients;
4. the embedding gradient is exactly zero on rows outside `token_rows`.

PyLate ColBERT (`tests/fixtures/retrieval-step/colbert/`, for a future Rust ColBERT trainer; this
script re-runs itself in `.venv-pylate`: PyLate 1.6.0 on sentence-transformers 5.3.0, transformers
5.3.0, torch 2.11.0): `colbert-model/` = `pylate.models.ColBERT(tiny-mlm, embedding_size=8,
query_length=8, document_length=16)` as saved (adds `[Q] `/`[D] ` = ids 50368/50369, a Dense 32 -> 8
without bias, default query expansion and skiplist), then reloaded and trained one step with
`pylate.losses.Contrastive` on the same 6 rows (query, positive, negative) and
`pylate.losses.Distillation` on `colbert/distillation.jsonl` (each query with 4 documents of the batch
and teacher scores). Loss, MaxSim score matrices, the collated ids/masks and every gradient (Dense and
the `[Q]`/`[D]` embedding rows included) go to `colbert/reference.safetensors`; `colbert/README.md`
documents PyLate's exact batch layout and MaxSim-with-masks rule, which a self-check re-derives from
unpadded single-text encodings.

Run: .venv/bin/python scripts/retrieval_loss_reference.py   (~40 s on 2 CPUs, most of it imports;
`--no-colbert` skips the PyLate part; a re-run reproduces identical bytes). Versions: sentence-transformers
6.3.0, transformers 5.23.0, torch 2.15.0.
"""

import json
import os
import pathlib
import shutil
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
warnings.filterwarnings("ignore", category=DeprecationWarning)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(1)
torch.manual_seed(0)

import sentence_transformers  # noqa: E402

# sentence-transformers 6.3 (.venv) for the bi-encoder cases, PyLate 1.6 on ST 5.3 (.venv-pylate) for
# ColBERT: this script runs in both (see main()).
ST6 = int(sentence_transformers.__version__.split(".")[0]) >= 6
if ST6:
    from sentence_transformers import SentenceTransformer  # noqa: E402
    from sentence_transformers.base.modules import Transformer  # noqa: E402
    from sentence_transformers.sentence_transformer import losses  # noqa: E402
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests/fixtures/tiny-mlm"
OUT = ROOT / "tests/fixtures/retrieval-step"
SCALE = 20.0
MINI_BATCH = 4
DIMS = [32, 16, 8]
TOL = 1e-5
EMB = "embeddings.tok_embeddings.weight"

# (query, positive, hard negative): prose, code, non-ASCII; all 18 texts distinct.
ROWS = [
    ("how do I reverse a list in python",
     "Use reversed(items) or items[::-1] to reverse a Python list.",
     "Python lists are mutable sequences of arbitrary objects and they grow as you append new items"),
    ("what is the capital of France?",
     "Paris is the capital and largest city of France.",
     "Lyon is a large city in the south-east of France."),
    ("rust read file to string",
     'let s = std::fs::read_to_string("in.txt")?;',
     'let mut f = File::create("out.txt")?;'),
    ("boiling point of water",
     "Water boils at 100 °C at sea level.",
     "Ice melts at 0 °C."),
    ("sort numbers in JavaScript",
     "arr.sort((a, b) => a - b);",
     "arr.filter(x => x > 0)"),
    ("who wrote Hamlet",
     "Hamlet is a tragedy written by William Shakespeare around 1600.",
     "Macbeth"),
]

CASES = ["mnrl", "mnrl-hard", "cached", "matryoshka", "distill"]
DISTILL_WEIGHT = 100.0


def teacher_vectors():
    """[6 rows, 3 texts, 32]: seeded unit vectors, rounded to 6 decimals as written to JSON."""
    g = torch.Generator().manual_seed(7)
    v = F.normalize(torch.randn(len(ROWS), 3, 32, generator=g, dtype=torch.float64), dim=-1)
    return torch.tensor([[[round(x, 6) for x in t] for t in r] for r in v.tolist()], dtype=torch.float32)


def rust_order_vectors():
    """The teacher vectors in the Rust batch order: queries, positives, negatives."""
    return teacher_vectors().transpose(0, 1).reshape(3 * len(ROWS), 32)


def build_model():
    t = Transformer(str(MODEL), model_kwargs={"attn_implementation": "eager", "dtype": torch.float32})
    m = SentenceTransformer(modules=[t, Pooling(32, "mean")], device="cpu")
    m.train()
    cfg = t.model.config
    for k in ("attention_dropout", "embedding_dropout", "mlp_dropout"):
        assert getattr(cfg, k) == 0.0, k
    return m


def make_loss(case, model):
    if case in ("mnrl", "mnrl-hard"):
        return losses.MultipleNegativesRankingLoss(model, scale=SCALE)
    if case == "cached":
        return losses.CachedMultipleNegativesRankingLoss(model, scale=SCALE, mini_batch_size=MINI_BATCH)
    if case == "matryoshka":
        return losses.MatryoshkaLoss(model, losses.MultipleNegativesRankingLoss(model, scale=SCALE),
                                     matryoshka_dims=DIMS)
    if case == "distill":
        normalized = SentenceTransformer(modules=[model[0], model[1], Normalize()], device="cpu")
        normalized.train()
        mnrl = losses.MultipleNegativesRankingLoss(normalized, scale=SCALE)
        mse = losses.MSELoss(normalized)

        def loss(features, _labels):
            every_text = normalized.preprocess([t for col in columns(case) for t in col])
            return mnrl(features, None) + DISTILL_WEIGHT * mse([every_text], rust_order_vectors())

        return loss
    raise ValueError(case)


def columns(case):
    cols = [[r[0] for r in ROWS], [r[1] for r in ROWS]]
    if case != "mnrl":
        cols.append([r[2] for r in ROWS])
    return cols


def grads_of(model):
    return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in model[0].model.named_parameters()}


def st_case(model, case):
    """sentence-transformers' loss on the batch: one forward/backward from the start weights."""
    model.zero_grad(set_to_none=True)
    loss_fn = make_loss(case, model)
    # What the trainer does: the collator preprocesses each column (model.preprocess, no prompt),
    # compute_loss hands the list of per-column feature dicts to the loss, labels unused.
    features = [model.preprocess(col) for col in columns(case)]
    loss = loss_fn(features, None)
    loss.backward()
    return loss.detach().float(), grads_of(model)


def single_embeddings(model, texts):
    """Each text alone (batch of 1, no padding), with the graph kept."""
    out = []
    for t in texts:
        f = model.preprocess([t])
        assert int(f["attention_mask"].sum()) == f["input_ids"].shape[1]
        out.append(model(f)["sentence_embedding"][0])
    return torch.stack(out)


def rust_loss(emb, b, dims):
    """The Rust trainer's formula on its batch layout: rows 0..b queries, then the documents."""
    q, d = emb[:b], emb[b:]
    total = 0.0
    for k in dims:
        qk, dk = F.normalize(q[:, :k], dim=-1), F.normalize(d[:, :k], dim=-1)
        scores = qk @ dk.T * SCALE
        total = total + F.cross_entropy(scores, torch.arange(b))
    return total


def rel(a, b):
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


def grad_rel(ga, gb):
    return max((rel(ga[n], gb[n]), n) for n in gb)


def bi_encoder_part():
    OUT.mkdir(parents=True, exist_ok=True)
    for name in ("pairs.jsonl", "pairs-distill.jsonl", "reference.safetensors", "README.md"):
        (OUT / name).unlink(missing_ok=True)
    with open(OUT / "pairs.jsonl", "w", encoding="utf-8") as f:
        for q, p, n in ROWS:
            f.write(json.dumps({"query": q, "positive": p, "negatives": [n]}, ensure_ascii=False) + "\n")
    with open(OUT / "pairs-distill.jsonl", "w", encoding="utf-8") as f:
        for (q, p, n), v in zip(ROWS, teacher_vectors().tolist()):
            vectors = [[round(x, 6) for x in t] for t in v]
            f.write(json.dumps({"query": q, "positive": p, "negatives": [n], "teacher_vectors": vectors},
                               ensure_ascii=False) + "\n")

    model = build_model()
    tok = model.tokenizer
    rust_order = [r[0] for r in ROWS] + [r[1] for r in ROWS] + [r[2] for r in ROWS]
    assert len(set(rust_order)) == len(rust_order), "duplicate texts"
    seqs = [tok(t)["input_ids"] for t in rust_order]
    ids = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
    cu = torch.tensor([0] + torch.tensor([len(s) for s in seqs]).cumsum(0).tolist(), dtype=torch.long)
    pad = tok.pad_token_id
    assert pad not in ids.tolist()

    # ST's batched embeddings (as the loss sees them: each column padded on its own) vs each text alone
    with torch.no_grad():
        batched = torch.cat([model(model.preprocess(col))["sentence_embedding"] for col in columns("mnrl-hard")])
        alone = single_embeddings(model, rust_order)
    emb_leak = rel(alone, batched)

    names = [n for n, _ in model[0].model.named_parameters()]
    out = {"input_ids": ids, "cu_seqlens": cu, "embeddings": batched.float().contiguous()}
    token_rows = torch.tensor(sorted(set(ids.tolist())), dtype=torch.long)
    out["token_rows"] = token_rows
    unused = torch.ones(model[0].model.config.vocab_size, dtype=torch.bool)
    unused[token_rows] = False

    results = {}
    checks = {}
    b = len(ROWS)
    for case in CASES:
        loss, grads = st_case(model, case)
        results[case] = (loss, grads)
        # (3) the Rust formula on the unpadded single-text embeddings
        model.zero_grad(set_to_none=True)
        n_texts = 2 * b if case == "mnrl" else 3 * b
        emb = single_embeddings(model, rust_order[:n_texts])
        ours = rust_loss(emb, b, DIMS if case == "matryoshka" else [32])
        if case == "distill":
            ours = ours + DISTILL_WEIGHT * ((F.normalize(emb, dim=-1) - rust_order_vectors()) ** 2).mean()
        ours.backward()
        g_ours = grads_of(model)
        l_rel = abs(float(ours.detach()) - float(loss)) / abs(float(loss))
        print(f"    [{case}] ST loss {float(loss)!r}, Rust-layout loss {float(ours.detach())!r}")
        g_rel, g_name = grad_rel(g_ours, grads)
        checks[case] = (l_rel, g_rel, g_name)
        assert l_rel <= TOL and g_rel <= TOL, (case, l_rel, g_rel, g_name)
        # (4) embedding gradient sparsity
        g_emb = grads[EMB]
        assert float(g_emb[unused].abs().max()) == 0.0, case

        out[f"loss.{case}"] = loss.reshape(())
        for n in names:
            g = grads[n]
            assert torch.isfinite(g).all(), (case, n)
            if n == EMB:
                out[f"grad.{case}.embeddings.tok_embeddings.rows"] = g[token_rows].contiguous()
            else:
                out[f"grad.{case}.{n}"] = g.contiguous()

    # (1) GradCache == plain MNRL with the negative
    lb, gb = results["mnrl-hard"]
    lc, gc = results["cached"]
    cache_loss = abs(float(lc) - float(lb)) / abs(float(lb))
    cache_grad, cache_name = grad_rel(gc, gb)
    print(f"(1) cached vs mnrl-hard: loss {float(lc):.7f} vs {float(lb):.7f} (rel {cache_loss:.1e}), "
          f"worst gradient rel {cache_grad:.1e} ({cache_name})")
    assert cache_loss <= TOL and cache_grad <= TOL

    print(f"(2) each text alone vs ST's padded column batches: embeddings rel {emb_leak:.1e}")
    assert emb_leak <= TOL
    for case in CASES:
        l_rel, g_rel, g_name = checks[case]
        print(f"(3) [{case}] Rust-layout formula vs ST loss: loss rel {l_rel:.1e}, worst gradient rel "
              f"{g_rel:.1e} ({g_name})")
    print(f"(4) embedding gradient: {len(token_rows)} rows used (of {len(unused)}), exactly 0 elsewhere")

    meta = {
        "cases": json.dumps(CASES), "scale": SCALE, "mini_batch_size": MINI_BATCH,
        "matryoshka_dims": json.dumps(DIMS), "matryoshka_weights": json.dumps([1, 1, 1]),
        "distill_weight": DISTILL_WEIGHT,
        "param_names": json.dumps(names), "order": "queries, positives, negatives",
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "sentence_transformers": sentence_transformers.__version__, "tolerance": 1e-4,
    }
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "reference.safetensors",
              metadata={"meta": json.dumps(meta, sort_keys=True)})

    lengths = [len(s) for s in seqs]
    gmax = {(c, n): float(results[c][1][n].abs().max()) for c in CASES for n in names}
    lo = min(gmax, key=gmax.get)
    hi = max(gmax, key=gmax.get)
    print(f"lengths (Rust order): {lengths}")
    for case in CASES:
        print(f"[{case}] loss {float(results[case][0]):.6f}")
    print(f"grad max|g| per tensor: min {gmax[lo]:.2e} {lo}, max {gmax[hi]:.2e} {hi}")
    write_readme(results, lengths, len(token_rows), (cache_loss, cache_grad), emb_leak, checks, gmax[lo], lo)
    print(f"wrote {OUT}")


def write_readme(results, lengths, n_rows, cache, emb_leak, checks, gmin, gmin_at):
    loss_rows = "\n".join(
        f"| `{c}` | {desc} | {float(results[c][0]):.6f} |"
        for c, desc in [
            ("mnrl", "`MultipleNegativesRankingLoss(scale=20)` on (query, positive): 6 x 6 scores"),
            ("mnrl-hard", "the same with the hard negative as 3rd column: 6 x 12 scores"),
            ("cached", "`CachedMultipleNegativesRankingLoss(scale=20, mini_batch_size=4)`, with the negative"),
            ("matryoshka", "`MatryoshkaLoss(MNRL(scale=20), [32, 16, 8])`, weights 1, summed, with the negative"),
            ("distill", "MNRL with the negative + 100 x `MSELoss` to `pairs-distill.jsonl`'s teacher vectors "
                        "(model with Normalize)"),
        ])
    worst3 = max(v[1] for v in checks.values())
    text = f"""# retrieval-step: gradient parity for `finetune --task embedding`

Written by `scripts/retrieval_loss_reference.py` (sentence-transformers {sentence_transformers.__version__},
transformers {__import__("transformers").__version__}, torch {torch.__version__}, CPU, one thread; a re-run
reproduces identical bytes). The script's docstring is the full description.

Start model: `tests/fixtures/tiny-mlm` as `SentenceTransformer([Transformer, Pooling(32, "mean")])` (no
Normalize; f32, eager attention, dropouts 0). Batch: the 6 rows of `pairs.jsonl` (query, positive, one hard
negative; no prompts). Each case runs one forward/backward of sentence-transformers' own loss from the same
weights.

| case | loss | value |
|---|---|---|
{loss_rows}

`reference.safetensors`:

* `input_ids` I64, `cu_seqlens` I64 [19]: the 18 texts unpadded in the Rust batch order, queries (0..6),
  positives (6..12), negatives (12..18); lengths {lengths} (with `[CLS]`/`[SEP]`). `mnrl` uses the first 12.
* `embeddings` F32 [18, 32]: ST's mean-pooled embeddings (not normalised), same order.
* `loss.<case>` F32 scalar; `grad.<case>.<name>` F32 for the 25 transformer parameters other than the token
  embedding, named as in HF `ModernBertModel` (`embeddings.norm.weight`, `layers.0.attn.Wqkv.weight`, ...;
  the Rust trainer's names are `model.<name>`).
* **Token embedding, sparse**: `token_rows` I64 [{n_rows}] = the sorted distinct ids of `input_ids`, and
  `grad.<case>.embeddings.tok_embeddings.rows` F32 [{n_rows}, 32] = rows `token_rows` of the dense
  [50368, 32] gradient. Every other row is exactly 0 (asserted), so a test compares
  `grad[token_rows]` and checks the rest is zero. (Dense it would be 26 MB for the four cases.)

Self-checks in the generator (relative to each tensor's max |x|):

* `cached` vs `mnrl-hard`: loss rel {cache[0]:.1e}, worst gradient rel {cache[1]:.1e} (GradCache is the same loss);
* each text alone (no padding) vs ST's padded column batches: embeddings rel {emb_leak:.1e};
* the Rust formula (normalise, `q·dᵀ·20`, cross-entropy over targets 0..6, mean; Matryoshka = sum over
  the renormalised prefixes 32, 16, 8) on the unpadded embeddings in Rust order vs ST: worst loss rel
  {max(v[0] for v in checks.values()):.1e}, worst gradient rel {worst3:.1e}.

Smallest per-tensor max |grad| is {gmin:.1e} (`{gmin_at[1]}`, {gmin_at[0]}). Suggested Rust tolerance: 1e-4
relative to each tensor's max |x| (issue 12).

`colbert/`: the same rows through PyLate's ColBERT losses (Contrastive, Distillation), for a ColBERT trainer;
see `colbert/README.md`.
"""
    (OUT / "README.md").write_text(text, encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# PyLate ColBERT (runs in .venv-pylate)


COLBERT = OUT / "colbert"
Q_LEN, D_LEN, COLBERT_DIM = 8, 16, 8
COLBERT_SEED = 1212
# Distillation: each query against 4 documents of the batch (its positive, its negative, the next
# row's positive, the row after next's negative), with teacher scores (positive first).
def distill_rows():
    rows = []
    for i, (q, p, n) in enumerate(ROWS):
        docs = [p, n, ROWS[(i + 1) % len(ROWS)][1], ROWS[(i + 2) % len(ROWS)][2]]
        teacher = [10.0, 7.0 - 0.5 * i, 3.0 + 0.75 * i, 1.0 - 0.25 * i]
        rows.append((q, docs, teacher))
    return rows


def colbert_part():
    import pylate
    from pylate import losses as plosses
    from pylate import models as pmodels
    from pylate.utils import ColBERTCollator

    if COLBERT.exists():
        shutil.rmtree(COLBERT)
    COLBERT.mkdir(parents=True)
    mdir = COLBERT / "colbert-model"

    # Build from tiny-mlm: PyLate adds the [Q]/[D] tokens (resizing the embeddings; the two new rows
    # come from transformers' mean-resizing, drawn from torch's global RNG) and a Dense 32 -> 8 without
    # bias, redrawn here N(0, (1.5/sqrt(32))^2) so that it does not depend on torch's default init.
    torch.manual_seed(COLBERT_SEED)
    m = pmodels.ColBERT(str(MODEL), device="cpu", embedding_size=COLBERT_DIM, query_length=Q_LEN,
                        document_length=D_LEN, model_kwargs={"dtype": torch.float32})
    lin = m[1].linear
    assert lin.bias is None and tuple(lin.weight.shape) == (COLBERT_DIM, 32)
    with torch.no_grad():
        g = torch.Generator().manual_seed(COLBERT_SEED + 1)
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (1.5 / 32 ** 0.5))
    m.save(str(mdir))
    tj = mdir / "tokenizer.json"
    obj = json.loads(tj.read_text(encoding="utf-8"))
    tj.write_text(json.dumps(obj, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    del m

    # The reference reloads the saved directory (f32, eager attention), as a trainer would start.
    m = pmodels.ColBERT(str(mdir), device="cpu",
                        model_kwargs={"dtype": torch.float32, "attn_implementation": "eager"})
    m.train()
    assert (m.query_length, m.document_length) == (Q_LEN, D_LEN)
    assert m.do_query_expansion and not m.attend_to_expansion_tokens
    tok = m.tokenizer
    q_id, d_id = m.query_prefix_id, m.document_prefix_id
    mask_id = tok.mask_token_id
    assert (q_id, d_id, tok.pad_token_id, mask_id) == (50368, 50369, 50284, 50284), (q_id, d_id, tok.pad_token_id)
    skiplist = sorted(int(x) for x in m.skiplist)
    backbone = m[0].auto_model
    names = [n for n, _ in backbone.named_parameters()]

    def grads():
        out = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
               for n, p in backbone.named_parameters()}
        out["1_Dense.linear.weight"] = lin_w().grad.detach().clone()
        return out

    def lin_w():
        return m[1].linear.weight

    collator = ColBERTCollator(tokenize_fn=m.tokenize)

    def features(batch, columns):
        # what the trainer does: split the collated batch by column prefix
        return [{k[len(c) + 1:]: v for k, v in batch.items() if k.startswith(c + "_")} for c in columns]

    out, report, floors = {"skiplist_ids": torch.tensor(skiplist, dtype=torch.long)}, {}, {}

    # --- Contrastive: columns query, positive, negative
    rows_c = [{"query": q, "positive": p, "negative": n} for q, p, n in ROWS]
    batch = collator(rows_c)
    feats = features(batch, ["query", "positive", "negative"])
    m.zero_grad(set_to_none=True)
    loss_c = plosses.Contrastive(m)(feats, None)
    loss_c.backward()
    g_c = grads()
    with torch.no_grad():
        emb = [F.normalize(m(f)["token_embeddings"], dim=-1) for f in feats]
        masks = [f["attention_mask"].bool() & ~torch.isin(f["input_ids"], torch.tensor(skiplist)) for f in feats]
        docs = torch.stack(emb[1:], 1)  # [B, N, L, dim]
        dmask = torch.stack(masks[1:], 1)
        sims = torch.einsum("ash,bnth->abnst", emb[0], docs) * dmask[None, :, :, None, :]
        scores_c = sims.max(-1).values.sum(-1).reshape(len(ROWS), -1)  # [B, B*N], column j*N + k
    for c in ("query", "positive", "negative"):
        out[f"contrastive.{c}_input_ids"] = batch[f"{c}_input_ids"].long()
        out[f"contrastive.{c}_attention_mask"] = batch[f"{c}_attention_mask"].long()
    out["contrastive.scores"] = scores_c.float()
    assert abs(float(F.cross_entropy(scores_c, torch.arange(len(ROWS)) * 2)) - float(loss_c.detach())) < 1e-5

    # --- Distillation: columns query, documents (4 per query, flattened row-major), scores (teacher)
    drows = distill_rows()
    batch_d = collator([{"query": q, "documents": docs, "scores": t} for q, docs, t in drows])
    teacher = batch_d["label"]
    feats_d = features(batch_d, ["query", "documents"])
    m.zero_grad(set_to_none=True)
    loss_d = plosses.Distillation(m)(feats_d, teacher)
    loss_d.backward()
    g_d = grads()
    with torch.no_grad():
        qe = F.normalize(m(feats_d[0])["token_embeddings"], dim=-1)
        de = F.normalize(m(feats_d[1])["token_embeddings"], dim=-1).view(len(drows), 4, D_LEN, -1)
        dm = (feats_d[1]["attention_mask"].bool() & ~torch.isin(feats_d[1]["input_ids"], torch.tensor(skiplist)))
        dm = dm.view(len(drows), 4, D_LEN)
        scores_d = (torch.einsum("ash,akth->akst", qe, de) * dm[:, :, None, :]).max(-1).values.sum(-1)
    for c in ("query", "documents"):
        out[f"distillation.{c}_input_ids"] = batch_d[f"{c}_input_ids"].long()
        out[f"distillation.{c}_attention_mask"] = batch_d[f"{c}_attention_mask"].long()
    out["distillation.teacher_scores"] = teacher.float()
    out["distillation.scores"] = scores_d.float()

    # --- independent formula on unpadded single texts (what a Rust trainer would compute)
    def one(text, is_query):
        f = m.tokenize([text], is_query=is_query)
        e = F.normalize(m(f)["token_embeddings"][0], dim=-1)
        if is_query:  # every query_length position is scored, expansion [MASK]s included
            return e, None
        keep = ~torch.isin(f["input_ids"][0], torch.tensor(skiplist))
        return e, keep

    floor = {"floored": 0, "positions": 0, "full_docs": 0, "docs": 0}

    def maxsim(qv, dv, keep):
        s = (qv @ dv[keep].T).max(-1).values if keep.any() else torch.zeros(qv.shape[0])
        floor["docs"] += 1
        floor["positions"] += s.numel()
        if int(keep.sum()) < D_LEN:  # PyLate multiplies masked slots by 0: they compete in the max as 0
            floor["floored"] += int((s < 0).sum())
            s = s.clamp(min=0.0)
        else:
            floor["full_docs"] += 1
        return s.sum()

    def rebuild(case):
        m.zero_grad(set_to_none=True)
        if case == "contrastive":
            qs = [one(q, True)[0] for q, _, _ in ROWS]
            cands = [(p, n) for _, p, n in ROWS]
            dv = [[one(t, False) for t in pair] for pair in cands]
            sc = torch.stack([torch.stack([maxsim(qv, *dv[j][k]) for j in range(len(ROWS)) for k in range(2)])
                              for qv in qs])
            loss = F.cross_entropy(sc, torch.arange(len(ROWS)) * 2)
        else:
            sc = []
            for q, docs, _ in drows:
                qv = one(q, True)[0]
                sc.append(torch.stack([maxsim(qv, *one(d, False)) for d in docs]))
            sc = torch.stack(sc)
            lo, hi = sc.min(1, keepdim=True).values, sc.max(1, keepdim=True).values
            sc_n = (sc - lo) / (hi - lo + 1e-8)
            loss = F.kl_div(F.log_softmax(sc_n, -1), F.log_softmax(teacher, -1), reduction="batchmean",
                            log_target=True)
        loss.backward()
        return loss.detach(), sc.detach(), grads()

    for case, loss, g, sc in (("contrastive", loss_c.detach(), g_c, scores_c), ("distillation", loss_d.detach(), g_d, scores_d)):
        floor.update(floored=0, positions=0, full_docs=0, docs=0)
        l2, sc2, g2 = rebuild(case)
        floors[case] = dict(floor)
        l_rel = abs(float(l2) - float(loss)) / abs(float(loss))
        s_rel = rel(sc2, sc)
        g_rel, g_name = grad_rel(g2, g)
        report[case] = (float(loss), l_rel, s_rel, g_rel, g_name)
        assert max(l_rel, s_rel, g_rel) <= TOL, (case, l_rel, s_rel, g_rel, g_name)

    ids_all = torch.cat([v.flatten() for k, v in out.items() if k.endswith("_input_ids")])
    token_rows = torch.tensor(sorted(set(ids_all.tolist())), dtype=torch.long)
    out["token_rows"] = token_rows
    unused = torch.ones(backbone.config.vocab_size, dtype=torch.bool)
    unused[token_rows] = False
    for case, loss, g in (("contrastive", loss_c, g_c), ("distillation", loss_d, g_d)):
        out[f"loss.{case}"] = loss.detach().float().reshape(())
        assert float(g[EMB][unused].abs().max()) == 0.0, case
        for n, t in g.items():
            assert torch.isfinite(t).all(), (case, n)
            if n == EMB:
                out[f"grad.{case}.embeddings.tok_embeddings.rows"] = t[token_rows].contiguous()
            else:
                out[f"grad.{case}.{n}"] = t.contiguous()
        for pid in (q_id, d_id):
            assert float(g[EMB][pid].abs().max()) > 0, (case, pid)

    meta = {
        "query_length": Q_LEN, "document_length": D_LEN, "embedding_size": COLBERT_DIM,
        "query_prefix_id": q_id, "document_prefix_id": d_id, "pad_id": mask_id,
        "param_names": json.dumps(names + ["1_Dense.linear.weight"]),
        "torch": torch.__version__, "transformers": __import__("transformers").__version__,
        "sentence_transformers": sentence_transformers.__version__, "pylate": pylate.__version__,
        "tolerance": 1e-4,
    }
    save_file({k: v.contiguous() for k, v in out.items()}, COLBERT / "reference.safetensors",
              metadata={"meta": json.dumps(meta, sort_keys=True)})
    with open(COLBERT / "distillation.jsonl", "w", encoding="utf-8") as f:
        for q, docs, t in drows:
            f.write(json.dumps({"query": q, "positive": docs[0], "negatives": docs[1:], "teacher_scores": t},
                               ensure_ascii=False) + "\n")
    for case, (lv, l_rel, s_rel, g_rel, g_name) in report.items():
        print(f"[colbert {case}] loss {lv:.6f}; unpadded single-text formula vs PyLate: loss rel {l_rel:.1e}, "
              f"scores rel {s_rel:.1e}, worst gradient rel {g_rel:.1e} ({g_name})")
    gq = {c: float(out[f"grad.{c}.embeddings.tok_embeddings.rows"][(token_rows == q_id).nonzero()[0, 0]].abs().max())
          for c in report}
    print(f"[colbert] {len(token_rows)} embedding rows used; max|grad| of the [Q] row: {gq}; skiplist {len(skiplist)} ids")
    for case, f in floors.items():
        print(f"[colbert {case}] MaxSim terms floored at 0 (max over kept < 0, row has masked slots): "
              f"{f['floored']} of {f['positions']}; documents with all {D_LEN} slots kept: {f['full_docs']} of {f['docs']}")
    write_colbert_readme(report, out, token_rows, skiplist, floors)
    print(f"wrote {COLBERT}")


def write_colbert_readme(report, out, token_rows, skiplist, floors):
    import pylate

    qi = out["contrastive.query_input_ids"][5].tolist()
    qm = out["contrastive.query_attention_mask"][5].tolist()
    di = out["contrastive.positive_input_ids"][5].tolist()
    dm = out["contrastive.positive_attention_mask"][5].tolist()
    text = f"""# retrieval-step/colbert: PyLate ColBERT losses (for a future Rust ColBERT trainer)

Written by `scripts/retrieval_loss_reference.py` (its ColBERT part runs in `.venv-pylate`: PyLate
{pylate.__version__}, sentence-transformers {sentence_transformers.__version__}, transformers
{__import__("transformers").__version__}, torch {torch.__version__}; CPU, one thread, deterministic).

`colbert-model/`: the start model, as `pylate.models.ColBERT("tests/fixtures/tiny-mlm", embedding_size=8,
query_length=8, document_length=16)` saved it (f32): `[Q] `/`[D] ` added as tokens 50368/50369 (the two
new embedding rows from transformers' mean-resizing, seeded), `1_Dense` 32 -> 8 without bias (weights redrawn
N(0, (1.5/sqrt 32)^2)), default query expansion (`[MASK]` = pad, not attended), default skiplist
(`string.punctuation`, {len(skiplist)} ids). `tokenizer.json` re-serialised compactly (same JSON). The
reference reloads this directory (f32, eager attention, `train()`; dropouts 0) and runs each loss once.

| case | PyLate loss | batch | loss |
|---|---|---|---|
| `contrastive` | `pylate.losses.Contrastive(model)` (temperature 1, mean) | the 6 rows of `../pairs.jsonl`: columns query, positive, negative | {report["contrastive"][0]:.6f} |
| `distillation` | `pylate.losses.Distillation(model)` (KL, batchmean, `normalize_scores=True`) | `distillation.jsonl`: each query with 4 documents of the batch and teacher scores | {report["distillation"][0]:.6f} |

## Exact batch layout (what PyLate's trainer builds; `ColBERTCollator(model.tokenize)`)

* A column is tokenised as queries when its name contains `query` or `anchor`, else as documents; every
  text with `pad=True`.
* **Query** (length exactly 8): `[CLS] [Q] q... [SEP]` then `[MASK]` up to 8 — the ST tokenizer runs with
  `max_seq_length` 7, `padding="max_length"`, then `[Q]` is inserted at position 1 with attention 1. The
  attention mask is 1 on `[CLS] [Q] q... [SEP]`, 0 on the expansion `[MASK]`s (they are still encoded: as
  queries they attend to the real tokens, no one attends to them). At most 5 query tokens (longer queries are
cut: row 0 has no expansion). Row 5 ("who wrote Hamlet"): ids {qi}, mask {qm}.
* **Document** (length exactly 16 in training): `[CLS] [D] d... [SEP]` (at most 13 text tokens, truncated)
  then `[MASK]` padding to 16 with attention 0. Row 5 of the positives: ids {di}, mask {dm}
(15 = `.` is a skiplist id: attended, but not scored).
* Vectors: last hidden state -> Dense (every position) -> L2-normalise each token vector.
* **MaxSim as trained** (`colbert_scores`/`colbert_kd_scores` with masks): `sim[s, t] = <q_s, d_t> * keep[t]`,
  `keep = attention_mask & id not in skiplist`; `score = sum over ALL 8 query positions s` (no query mask
  with query expansion: the `[MASK]` expansions count) `of max over ALL 16 document slots t`. A masked slot
  is multiplied by 0, not removed: it competes in the max as 0. So for a document with any masked slot
  (padding or a skiplist token), `max_t = max(0, max over kept t)`; only a 16-token document with no
  skiplist token takes the plain max. (Inference `encode()` + exact MaxSim has no such floor.)
* **Contrastive**: `scores[i, j*N + k] = MaxSim(query i, document column k+1 of row j)`, N = 2 (positive,
  negative), i.e. candidates ordered pos_0, neg_0, pos_1, neg_1, ... (row-major, not sentence-transformers'
  column order; cross-entropy is the same under any consistent permutation). Target `i*N`; cross-entropy /
  temperature 1, mean over the 6 queries. No scale: scores are sums of cosines (<= 8).
* **Distillation**: documents column = a list per row, flattened row-major (`[q0d0..q0d3, q1d0, ...]`, 24 texts),
  `scores[i, k] = MaxSim(query i, its document k)` ([6, 4]); min-max normalised per row:
  `(s - min) / (max - min + 1e-8)`; loss = `KLDivLoss(batchmean, log_target=True)(log_softmax(scores_norm),
  log_softmax(teacher))` = sum_i sum_k p_teacher (log p_teacher - log p_student) / 6. The teacher scores are raw
  (log_softmax of them, no normalisation).

## `reference.safetensors`

* `skiplist_ids` I64; `contrastive.{{query,positive,negative}}_input_ids` / `_attention_mask` I64 [6, 8] / [6, 16];
  `contrastive.scores` F32 [6, 12] (layout above); `distillation.{{query,documents}}_input_ids` / `_attention_mask`
  I64 [6, 8] / [24, 16]; `distillation.teacher_scores` F32 [6, 4]; `distillation.scores` F32 [6, 4] (before
  min-max);
* `loss.<case>` F32 scalar; `grad.<case>.<name>` F32 for the transformer parameters (HF `ModernBertModel` names)
  other than the token embedding, and `grad.<case>.1_Dense.linear.weight` [8, 32];
* token embedding (now [50370, 32]) sparse as in `../README.md`: `token_rows` I64 [{len(token_rows)}] (all ids of
  both batches, `[MASK]` 50284 and `[Q]`/`[D]` 50368/50369 included) and `grad.<case>.embeddings.tok_embeddings.rows`;
  every other row is exactly 0 (asserted). The `[Q]` and `[D]` rows have non-zero gradients (asserted).

Self-check in the generator: the same losses rebuilt from each text encoded alone (no batch padding) with
the MaxSim rule above (max over kept positions, floored at 0 when the 16-slot row has a masked slot):
contrastive loss rel {report["contrastive"][1]:.1e}, scores {report["contrastive"][2]:.1e}, worst gradient
{report["contrastive"][3]:.1e}; distillation loss rel {report["distillation"][1]:.1e}, scores
{report["distillation"][2]:.1e}, worst gradient {report["distillation"][3]:.1e}. The 0 floor matters here:
{floors["contrastive"]["floored"]} of {floors["contrastive"]["positions"]} (contrastive) and {floors["distillation"]["floored"]} of
{floors["distillation"]["positions"]} (distillation) query-position maxima are negative and become 0; the
truncated negative of row 0 fills all 16 slots with no skiplist token, so it takes the plain max
({floors["contrastive"]["full_docs"]} / {floors["distillation"]["full_docs"]} such score terms). Suggested Rust
tolerance: 1e-4 relative to each tensor's max |x|.
"""
    (COLBERT / "README.md").write_text(text, encoding="utf-8")


def main():
    import subprocess
    import sys

    if ST6:
        bi_encoder_part()
        if "--no-colbert" not in sys.argv:
            py = ROOT / ".venv-pylate/bin/python"
            subprocess.run([str(py), str(pathlib.Path(__file__).resolve()), "--colbert"], check=True)
    else:
        assert "--colbert" in sys.argv, "run with .venv/bin/python (the ColBERT part re-runs itself in .venv-pylate)"
        colbert_part()


if __name__ == "__main__":
    main()
