#!/usr/bin/env python3
"""Generate the ModernBERT parity fixtures under tests/fixtures/<name>/.

Each fixture is a random-init HF transformers ModernBERT checkpoint (real tensor
names, written by save_pretrained) plus the reference outputs that HF computes
for it (fp32, CPU, eager attention, right-padded batch with attention_mask).
See docs/fixtures.md for the format. Deterministic: every fixture reseeds.

Usage: .venv/bin/python scripts/make_fixtures.py [--only NAME ...] [--out DIR] [--no-check]
"""
import argparse
import json
import math
import os
import shutil
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from transformers import (  # noqa: E402
    ModernBertConfig,
    ModernBertForMaskedLM,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
    ModernBertModel,
)
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(1)  # deterministic reductions, and gentle on a shared 2-core box

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK_DIR = os.path.join(ROOT, "assets", "tokenizer")
ATTN = "eager"
TOL = 1e-5

CLASSES = {
    "mlm": ModernBertForMaskedLM,
    "seq_cls": ModernBertForSequenceClassification,
    "token_cls": ModernBertForTokenClassification,
    "backbone": ModernBertModel,
}

# Small-vocab fixtures use these special ids (inside the vocab).
SMALL_IDS = dict(pad_token_id=3, cls_token_id=1, sep_token_id=2, bos_token_id=1, eos_token_id=2)

TINY_MLM_TEXTS = [
    "The capital of France is [MASK].",
    "Hello World!",
    "ModernBERT alternates global attention layers with local sliding-window layers, so a token "
    "in a local layer only sees its nearest neighbours; the [MASK] token here is far from the "
    "start of the sequence, and the window has to be applied exactly, on both sides, or the "
    "hidden states will [MASK] diverge.",
    "def add(a, b):\n    return a + b  # [MASK] sum",
]

FIXTURES = {
    "tiny-mlm": dict(
        kind="mlm", form="legacy", seed=1001, texts=TINY_MLM_TEXTS,
        cfg=dict(vocab_size=50368, hidden_size=32, num_attention_heads=2, num_hidden_layers=4,
                 intermediate_size=48, local_attention=16, global_attn_every_n_layers=3,
                 classifier_pooling="mean"),
        notes="Real 50368-token vocabulary and tokenizer (tokenizer.json etc. copied from assets/tokenizer). "
              "Config rewritten in the legacy/released form (global_attn_every_n_layers, global/local_rope_theta, "
              "norm_eps + layer_norm_eps; no layer_types/rope_parameters). Window 16 (+-8); text 2 is > 2x window.",
    ),
    "long-window": dict(
        kind="mlm", form="hf5", seed=1002, lengths=[700, 300, 129, 130, 65, 5, 1],
        cfg=dict(vocab_size=512, hidden_size=64, num_attention_heads=4, num_hidden_layers=3,
                 intermediate_size=64, local_attention=128, global_attn_every_n_layers=3, **SMALL_IDS),
        notes="Released window size 128 (+-64) on sequences up to 700 tokens; layer 0 global, 1-2 local. "
              "Lengths straddle the window (65, 129, 130). Length 1 = [CLS] only. Random ids in [4, 512).",
    ),
    "odd-dims": dict(
        kind="mlm", form="hf5", seed=1003, lengths=[40, 17, 9, 3],
        cfg=dict(vocab_size=300, hidden_size=60, num_attention_heads=3, num_hidden_layers=5,
                 intermediate_size=70, local_attention=8, global_attn_every_n_layers=2,
                 global_rope_theta=80000.0, local_rope_theta=5000.0, **SMALL_IDS),
        notes="head_dim 20, 5 layers (global at 0, 2, 4), window 8 (+-4), RoPE theta 80000 global / 5000 local.",
    ),
    "seqcls-mean": dict(
        kind="seq_cls", form="hf5", seed=1004, lengths=[30, 12, 7],
        cfg=dict(vocab_size=400, hidden_size=48, num_attention_heads=3, num_hidden_layers=4,
                 intermediate_size=64, local_attention=8, classifier_pooling="mean", num_labels=3,
                 id2label={0: "negative", 1: "neutral", 2: "positive"},
                 label2id={"negative": 0, "neutral": 1, "positive": 2}, **SMALL_IDS),
        notes="ModernBertForSequenceClassification, mean pooling over real tokens (attention-mask weighted), "
              "head (dense, gelu, norm) then classifier.",
    ),
    "seqcls-cls": dict(
        kind="seq_cls", form="legacy", seed=1005, lengths=[30, 12, 7],
        cfg=dict(vocab_size=400, hidden_size=48, num_attention_heads=3, num_hidden_layers=4,
                 intermediate_size=64, local_attention=8, classifier_pooling="cls", num_labels=2,
                 classifier_bias=True, classifier_activation="silu", **SMALL_IDS),
        notes="CLS pooling (row 0), head.dense has a bias (classifier_bias=true), head activation silu. "
              "Legacy config form.",
    ),
    "tokencls": dict(
        kind="token_cls", form="hf5", seed=1006, lengths=[30, 12, 7],
        cfg=dict(vocab_size=400, hidden_size=48, num_attention_heads=3, num_hidden_layers=4,
                 intermediate_size=64, local_attention=8, num_labels=5,
                 id2label={0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC"},
                 label2id={"O": 0, "B-PER": 1, "I-PER": 2, "B-LOC": 3, "I-LOC": 4}, **SMALL_IDS),
        notes="ModernBertForTokenClassification: head on every token, then classifier.",
    ),
    "bf16": dict(
        kind="mlm", form="hf5", seed=1007, lengths=[20, 11, 6], dtype="bfloat16",
        cfg=dict(vocab_size=256, hidden_size=32, num_attention_heads=2, num_hidden_layers=3,
                 intermediate_size=48, local_attention=8, **SMALL_IDS),
        notes="Weights stored as BF16 (config dtype bfloat16). Reference computed in fp32 on the bf16-rounded "
              "weights (loaded back, then .float()): upcast BF16 to F32 on load and compare in fp32.",
    ),
    "backbone-sharded": dict(
        kind="backbone", form="hf5", seed=1008, lengths=[25, 10, 3], shard="40KB",
        cfg=dict(vocab_size=256, hidden_size=32, num_attention_heads=2, num_hidden_layers=3,
                 intermediate_size=40, local_attention=8, **SMALL_IDS),
        notes="Bare ModernBertModel (tensor names without the 'model.' prefix), saved sharded: "
              "model-0000k-of-0000n.safetensors + model.safetensors.index.json. Hidden outputs only.",
    ),
}


# ----------------------------------------------------------------------------- init

@torch.no_grad()
def reinit(model: torch.nn.Module, cfg: ModernBertConfig, seed: int) -> None:
    """Overwrite HF's init with larger, fully random weights so every component
    (attention pattern, RoPE, window, norms, biases) visibly affects the output.
    HF's own init (std 0.02, out-proj 0.02/sqrt(2L), norms = 1, biases = 0) makes
    attention nearly uniform and hides mistakes."""
    g = torch.Generator().manual_seed(seed)
    D, I = cfg.hidden_size, cfg.intermediate_size

    def randn(shape, std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean

    for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
        if name.endswith("norm.weight"):
            std, mean = 0.1, 1.0
        elif "tok_embeddings" in name:
            std, mean = 2.0 / math.sqrt(D), 0.0
        elif name.endswith("attn.Wqkv.weight"):
            std, mean = 1.5 / math.sqrt(D), 0.0
        elif name.endswith("attn.Wo.weight") or name.endswith("mlp.Wi.weight"):
            std, mean = 1.0 / math.sqrt(D), 0.0
        elif name.endswith("mlp.Wo.weight"):
            std, mean = 1.0 / math.sqrt(I), 0.0
        elif name.endswith("head.dense.weight") or name.endswith("classifier.weight"):
            std, mean = 1.0 / math.sqrt(D), 0.0
        elif name.endswith(".bias"):  # decoder.bias, classifier.bias, head.dense.bias
            std, mean = 0.5, 0.0
        else:
            raise RuntimeError(f"no init rule for {name}")
        p.copy_(randn(p.shape, std, mean))


# ----------------------------------------------------------------------------- inputs

def make_inputs(spec: dict, cfg: ModernBertConfig, seed: int):
    if "texts" in spec:
        tok = Tokenizer.from_file(os.path.join(TOK_DIR, "tokenizer.json"))
        return [tok.encode(t).ids for t in spec["texts"]]
    g = torch.Generator().manual_seed(seed + 7)
    out = []
    for n in spec["lengths"]:
        if n == 1:
            ids = [cfg.cls_token_id]
        else:
            body = torch.randint(4, cfg.vocab_size, (n - 2,), generator=g).tolist()
            ids = [cfg.cls_token_id] + body + [cfg.sep_token_id]
        out.append(ids)
    return out


def pad_batch(seqs, pad_id):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def mlm_columns(vocab: int, cfg: ModernBertConfig, seed: int) -> torch.Tensor:
    if vocab <= 1024:
        return torch.arange(vocab, dtype=torch.long)
    must = {0, 1, vocab - 1, 50279, 50280, 50281, 50282, 50283, 50284, 50285, 50367}
    must |= {cfg.pad_token_id, cfg.cls_token_id, cfg.sep_token_id}
    must = {c for c in must if 0 <= c < vocab}
    g = torch.Generator().manual_seed(seed + 13)
    perm = torch.randperm(vocab, generator=g).tolist()
    cols = set(must)
    for c in perm:
        if len(cols) >= 512:
            break
        cols.add(c)
    return torch.tensor(sorted(cols), dtype=torch.long)


# ----------------------------------------------------------------------------- config forms

LEGACY_KEYS = [
    "architectures", "attention_bias", "attention_dropout", "bos_token_id", "classifier_activation",
    "classifier_bias", "classifier_dropout", "classifier_pooling", "cls_token_id", "decoder_bias",
    "deterministic_flash_attn", "embedding_dropout", "eos_token_id", "global_attn_every_n_layers",
    "global_rope_theta", "gradient_checkpointing", "hidden_activation", "hidden_size", "id2label",
    "initializer_cutoff_factor", "initializer_range", "intermediate_size", "label2id", "layer_norm_eps",
    "local_attention", "local_rope_theta", "max_position_embeddings", "mlp_bias", "mlp_dropout",
    "model_type", "norm_bias", "norm_eps", "num_attention_heads", "num_hidden_layers", "pad_token_id",
    "position_embedding_type", "sep_token_id", "sparse_pred_ignore_index", "sparse_prediction",
    "torch_dtype", "transformers_version", "vocab_size",
]


def rewrite_legacy(path: str, every_n: int, kind: str, num_labels: int) -> None:
    """Turn an HF5 config.json into the original (HF 4.48 / released) key set."""
    with open(path) as f:
        c = json.load(f)
    types = c.pop("layer_types")
    assert types == ["full_attention" if i % every_n == 0 else "sliding_attention" for i in range(len(types))]
    rope = c.pop("rope_parameters")
    c["global_attn_every_n_layers"] = every_n
    c["global_rope_theta"] = float(rope["full_attention"]["rope_theta"])
    c["local_rope_theta"] = float(rope["sliding_attention"]["rope_theta"])
    c["layer_norm_eps"] = c["norm_eps"]
    c["torch_dtype"] = c.pop("dtype", "float32")
    c["gradient_checkpointing"] = False
    c["position_embedding_type"] = "absolute"
    c["transformers_version"] = "4.48.0"
    c.pop("tie_word_embeddings", None)  # default (true); HF 4.x omits defaults
    if kind == "mlm":
        c.pop("id2label", None)
        c.pop("label2id", None)
    elif "id2label" not in c:
        # HF5 omits default labels; HF 4.x always wrote them for task models.
        c["id2label"] = {str(i): f"LABEL_{i}" for i in range(num_labels)}
        c["label2id"] = {f"LABEL_{i}": i for i in range(num_labels)}
    out = {k: c[k] for k in LEGACY_KEYS if k in c}
    extra = set(c) - set(out)
    assert not extra, f"unexpected keys left: {extra}"
    with open(path, "w") as f:
        json.dump(out, f, indent=2, sort_keys=True)
        f.write("\n")


# ----------------------------------------------------------------------------- reference

@torch.no_grad()
def run(model, kind: str, ids: torch.Tensor, mask: torch.Tensor):
    backbone = model if kind == "backbone" else model.model
    hidden = backbone(input_ids=ids, attention_mask=mask).last_hidden_state
    out = {"hidden": hidden}
    if kind != "backbone":
        logits = model(input_ids=ids, attention_mask=mask).logits
        out["logits"] = logits
    return out


def pooled(hidden: torch.Tensor, mask: torch.Tensor):
    m = mask.to(hidden.dtype).unsqueeze(-1)
    mean = (hidden * m).sum(dim=1) / m.sum(dim=1)
    return mean, hidden[:, 0]


def load(dir_: str, kind: str, dtype: str):
    model = CLASSES[kind].from_pretrained(dir_, attn_implementation=ATTN)
    if dtype == "bfloat16":
        assert next(model.parameters()).dtype == torch.bfloat16
    model = model.float().eval()
    return model


def build(name: str, spec: dict, out_root: str) -> str:
    kind, seed = spec["kind"], spec["seed"]
    dtype = spec.get("dtype", "float32")
    d = os.path.join(out_root, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)

    torch.manual_seed(seed)
    cfg_kwargs = dict(spec["cfg"])
    every_n = cfg_kwargs.get("global_attn_every_n_layers", 3)
    cfg = ModernBertConfig(**cfg_kwargs)
    cfg._attn_implementation = ATTN
    model = CLASSES[kind](cfg).eval()
    reinit(model, cfg, seed)
    if kind == "mlm":
        assert model.decoder.weight.data_ptr() == model.model.embeddings.tok_embeddings.weight.data_ptr()
    if dtype == "bfloat16":
        model = model.to(torch.bfloat16)
    save_kwargs = dict(safe_serialization=True)
    if "shard" in spec:
        save_kwargs["max_shard_size"] = spec["shard"]
    model.save_pretrained(d, **save_kwargs)
    if spec["form"] == "legacy":
        rewrite_legacy(os.path.join(d, "config.json"), every_n, kind, cfg.num_labels)
    if "texts" in spec:
        for f in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
            shutil.copy(os.path.join(TOK_DIR, f), os.path.join(d, f))
    del model

    # Reload from disk: the reference uses exactly what a loader sees (legacy keys,
    # bf16-rounded weights, tied decoder, shards).
    model = load(d, kind, dtype)
    rc = model.config
    want_types = ["full_attention" if i % every_n == 0 else "sliding_attention" for i in range(rc.num_hidden_layers)]
    assert rc.layer_types == want_types, (rc.layer_types, want_types)
    assert rc.rope_parameters["full_attention"]["rope_theta"] == cfg_kwargs.get("global_rope_theta", 160000.0)
    assert rc.rope_parameters["sliding_attention"]["rope_theta"] == cfg_kwargs.get("local_rope_theta", 10000.0)
    assert rc.local_attention == cfg_kwargs["local_attention"]
    if kind in ("seq_cls", "token_cls"):
        assert rc.num_labels == cfg_kwargs["num_labels"], (rc.num_labels, cfg_kwargs["num_labels"])

    seqs = make_inputs(spec, rc, seed)
    ids, mask = pad_batch(seqs, rc.pad_token_id)
    res = run(model, kind, ids, mask)
    hidden = res["hidden"]
    mean, cls = pooled(hidden, mask)

    tensors = {}
    for i, s in enumerate(seqs):
        n = len(s)
        tensors[f"input_ids.{i}"] = torch.tensor(s, dtype=torch.long)
        tensors[f"hidden.{i}"] = hidden[i, :n].contiguous()
    tensors["mean_pooled"] = mean.contiguous()
    tensors["cls_pooled"] = cls.contiguous()
    if kind == "mlm":
        cols = mlm_columns(rc.vocab_size, rc, seed)
        tensors["mlm_logits_cols"] = cols
        for i, s in enumerate(seqs):
            tensors[f"mlm_logits.{i}"] = res["logits"][i, : len(s)][:, cols].contiguous()
    elif kind == "seq_cls":
        tensors["seq_logits"] = res["logits"].contiguous()
    elif kind == "token_cls":
        for i, s in enumerate(seqs):
            tensors[f"token_logits.{i}"] = res["logits"][i, : len(s)].contiguous()
    for k, v in tensors.items():
        if v.is_floating_point():
            assert torch.isfinite(v).all(), k
    save_file(tensors, os.path.join(d, "expected.safetensors"), metadata={"format": "pt"})

    # Cross-check: SDPA on the same padded batch agrees with eager.
    sd = CLASSES[kind].from_pretrained(d, attn_implementation="sdpa").float().eval()
    sd_hidden = run(sd, kind, ids, mask)["hidden"]
    sdpa_diff = max(float((sd_hidden[i, : len(s)] - hidden[i, : len(s)]).abs().max()) for i, s in enumerate(seqs))
    del sd

    meta = {
        "kind": kind,
        "texts": spec.get("texts"),
        "dtype": dtype,
        "notes": spec["notes"],
        "config_form": spec["form"],
        "lengths": [len(s) for s in seqs],
        "batch_padding": "right",
        "attn_implementation": ATTN,
        "seed": seed,
        "compare_tolerance": TOL,
    }
    with open(os.path.join(d, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2, ensure_ascii=False)
        f.write("\n")

    stats = {k.split(".")[0]: 0.0 for k in tensors if tensors[k].is_floating_point()}
    for k, v in tensors.items():
        if v.is_floating_point():
            stats[k.split(".")[0]] = max(stats[k.split(".")[0]], float(v.abs().max()))
    print(f"[{name}] lengths={meta['lengths']} max|x|: " +
          ", ".join(f"{k}={v:.3f}" for k, v in stats.items()) + f"; sdpa-vs-eager {sdpa_diff:.2e}")
    return d


# ----------------------------------------------------------------------------- self-check

@torch.no_grad()
def check(name: str, spec: dict, d: str) -> None:
    """Reload from disk, run every example ALONE (batch of 1, no padding) and compare
    with the batched reference: |got - want| <= TOL + TOL * |want| elementwise."""
    kind = spec["kind"]
    model = load(d, kind, spec.get("dtype", "float32"))
    exp = load_file(os.path.join(d, "expected.safetensors"))
    n = sum(1 for k in exp if k.startswith("input_ids."))
    worst = {}
    bad = []
    means, clss = [], []

    def cmp(key, got, want):
        assert got.shape == want.shape, (key, got.shape, want.shape)
        diff = (got - want).abs()
        worst[key] = max(worst.get(key, 0.0), float(diff.max()))
        if not bool((diff <= TOL + TOL * want.abs()).all()):
            bad.append(key)

    for i in range(n):
        ids = exp[f"input_ids.{i}"].unsqueeze(0)
        res = run(model, kind, ids, torch.ones_like(ids))
        h = res["hidden"][0]
        cmp("hidden", h, exp[f"hidden.{i}"])
        if kind == "mlm":
            cmp("mlm_logits", res["logits"][0][:, exp["mlm_logits_cols"]], exp[f"mlm_logits.{i}"])
        elif kind == "seq_cls":
            cmp("seq_logits", res["logits"][0], exp["seq_logits"][i])
        elif kind == "token_cls":
            cmp("token_logits", res["logits"][0], exp[f"token_logits.{i}"])
        means.append(h.mean(dim=0))
        clss.append(h[0])
    cmp("mean_pooled", torch.stack(means), exp["mean_pooled"])
    cmp("cls_pooled", torch.stack(clss), exp["cls_pooled"])
    status = "FAIL " + ",".join(sorted(set(bad))) if bad else "OK"
    print(f"[{name}] unpadded-vs-batched max|diff|: " + ", ".join(f"{k}={v:.1e}" for k, v in worst.items())
          + f" ({status}; tol {TOL} abs + {TOL} rel)")
    if bad:
        raise SystemExit(f"{name}: padding changes the reference beyond tolerance")


def dir_size(d: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures"))
    ap.add_argument("--no-check", action="store_true")
    args = ap.parse_args()
    names = args.only or list(FIXTURES)
    for nm in names:
        if nm not in FIXTURES:
            raise SystemExit(f"unknown fixture {nm}; known: {list(FIXTURES)}")
    os.makedirs(args.out, exist_ok=True)
    for nm in names:
        d = build(nm, FIXTURES[nm], args.out)
        if not args.no_check:
            check(nm, FIXTURES[nm], d)
    total = 0
    for nm in names:
        d = os.path.join(args.out, nm)
        s = dir_size(d)
        total += s
        files = ", ".join(f"{f} {os.path.getsize(os.path.join(d, f))}" for f in sorted(os.listdir(d)))
        print(f"{nm}: {s / 1e6:.2f} MB ({files})")
    print(f"total {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
