#!/usr/bin/env python3
"""Gradient-parity fixtures for the Rust fine-tuning heads and losses (issue 10).

Writes four cases under `tests/fixtures/finetune-step/<case>/`, each with `config.json` +
`model.safetensors` (the start weights, f32, written by `save_pretrained`) and
`reference.safetensors`:

| case          | class                               | pooling | labels | problem_type / HF loss                       |
|---------------|-------------------------------------|---------|--------|----------------------------------------------|
| `seqcls-ce`   | ModernBertForSequenceClassification | cls     | 3      | single_label_classification: CE, mean over B |
| `seqcls-bce`  | ModernBertForSequenceClassification | mean    | 4      | multi_label_classification: BCE-with-logits, |
|               |                                     |         |        | mean over B * 4 (multi-hot float labels)     |
| `seqcls-mse`  | ModernBertForSequenceClassification | mean    | 1      | regression: MSE, mean over B (float labels)  |
| `tokencls-ce` | ModernBertForTokenClassification    | -       | 5      | CE, mean over the tokens whose label != -100 |

Model (all four): vocab 256, hidden 32, 4 heads (head_dim 8), intermediate 48, 3 layers with
global attention at layers 0 and 2 (`global_attn_every_n_layers` 2) and a window of 8 (+-4)
at layer 1, max_position_embeddings 128, head activation gelu, every dropout 0, pad 0 / cls 1 /
sep 2 / mask 3, initializer_range 0.1. The weights are HF's own init at initializer_range 0.1
(seeded) followed by a perturbation of the parameters HF initialises to constants: every
LayerNorm weight 1 + N(0, 0.1^2), every bias (`classifier.bias`) N(0, 0.1^2), so that a
forgotten norm weight or bias shows in the gradients.

Batch: 6 sequences of lengths [23, 9, 3, 17, 1, 12]: `[CLS]`, random ids in [4, 256), `[SEP]`
(the length-1 sequence is `[CLS]` alone). HF runs them as one right-padded batch (pad id 0)
with `attention_mask`, eager attention, f32, `model.train()` (all dropouts are 0), with
`labels=` so HF's own loss code computes the loss (`problem_type` set in the config; token
labels are -100 at the pad positions), then `loss.backward()`.

`reference.safetensors` (everything unpadded, sequences concatenated in order):

* `input_ids` I64 [total_tokens]; `cu_seqlens` I64 [B + 1] = [0, end0, end1, ...];
* `labels`: seqcls-ce I64 [B] in 0..3; seqcls-bce F32 [B, 4] multi-hot 0/1; seqcls-mse F32 [B];
  tokencls-ce I64 [total_tokens], -100 on [CLS]/[SEP] and on ~30% of the other tokens;
* `logits` F32: [B, num_labels] (seqcls) or [total_tokens, 5] (tokencls, pad rows dropped);
* `loss` F32 scalar (shape []);
* `grad.{name}` F32 for every parameter in `model.named_parameters()` order and naming, e.g.
  `grad.model.embeddings.tok_embeddings.weight` (dense [256, 32]), `grad.model.layers.0.attn.Wqkv.weight`,
  `grad.head.dense.weight`, `grad.head.norm.weight`, `grad.classifier.weight`, `grad.classifier.bias`
  (24 parameters; layer 0 has no `attn_norm`, norms have no bias, Linear layers other than
  `classifier` have no bias). Rows of the embedding gradient for ids not in the batch (pad included)
  are exactly 0.
* metadata: one key `meta`, a JSON string with `case`, `lengths`, `problem_type`, `param_names`
  (the named_parameters order), `torch`, `transformers`. A re-run reproduces identical bytes.

Self-checks (printed): (1) every sequence run alone (batch of 1, no padding) gives the batched
logits (padding does not leak into the forward pass); (2) the loss and gradients rebuilt from
those per-sequence runs (the same global mean as the batch) match the batched ones (padding does
not leak into the backward pass either); (3) train() and eval() agree. Tolerance 1e-5 relative
to the largest element of each tensor.

Run: .venv/bin/python scripts/finetune_reference.py  (a few seconds on CPU, one thread)
"""

import json
import os
import pathlib
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import (  # noqa: E402
    ModernBertConfig,
    ModernBertForSequenceClassification,
    ModernBertForTokenClassification,
)
from transformers.utils import logging as hf_logging  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(1)

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/finetune-step"
LENGTHS = [23, 9, 3, 17, 1, 12]
PAD, CLS, SEP, MASK = 0, 1, 2, 3
TOL = 1e-5

BASE = dict(
    vocab_size=256, hidden_size=32, num_attention_heads=4, intermediate_size=48, num_hidden_layers=3,
    global_attn_every_n_layers=2, local_attention=8, max_position_embeddings=128,
    classifier_activation="gelu", hidden_activation="gelu",
    attention_dropout=0.0, embedding_dropout=0.0, mlp_dropout=0.0, classifier_dropout=0.0,
    pad_token_id=PAD, cls_token_id=CLS, sep_token_id=SEP, bos_token_id=CLS, eos_token_id=SEP,
    initializer_range=0.1,
)

CASES = {
    "seqcls-ce": dict(cls=ModernBertForSequenceClassification, seed=2101, num_labels=3,
                      classifier_pooling="cls", problem_type="single_label_classification"),
    "seqcls-bce": dict(cls=ModernBertForSequenceClassification, seed=2102, num_labels=4,
                       classifier_pooling="mean", problem_type="multi_label_classification"),
    "seqcls-mse": dict(cls=ModernBertForSequenceClassification, seed=2103, num_labels=1,
                       classifier_pooling="mean", problem_type="regression"),
    "tokencls-ce": dict(cls=ModernBertForTokenClassification, seed=2104, num_labels=5,
                        classifier_pooling=None, problem_type=None),
}


@torch.no_grad()
def perturb(model, seed):
    """HF init leaves LayerNorm weights at 1 and biases at 0: randomise them a little."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("norm.weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        elif name.endswith(".bias"):
            p.copy_(0.1 * torch.randn(p.shape, generator=g))


def make_sequences(seed):
    g = torch.Generator().manual_seed(seed)
    seqs = []
    for n in LENGTHS:
        if n == 1:
            seqs.append([CLS])
        else:
            seqs.append([CLS] + torch.randint(4, BASE["vocab_size"], (n - 2,), generator=g).tolist() + [SEP])
    return seqs, g


def make_labels(case, spec, seqs, g):
    """Unpadded labels: per sequence for seqcls, per token (concatenated) for tokencls."""
    B = len(seqs)
    if case == "seqcls-ce":
        return torch.randint(0, spec["num_labels"], (B,), generator=g)
    if case == "seqcls-bce":
        return (torch.rand((B, spec["num_labels"]), generator=g) < 0.5).float()
    if case == "seqcls-mse":
        return torch.randn((B,), generator=g) * 2.0
    labels = []
    for s in seqs:
        for j, tok in enumerate(s):
            special = tok in (CLS, SEP) and (j == 0 or j == len(s) - 1)
            if special or float(torch.rand((), generator=g)) < 0.3:
                labels.append(-100)
            else:
                labels.append(int(torch.randint(0, spec["num_labels"], (), generator=g)))
    return torch.tensor(labels, dtype=torch.long)


def pad_batch(seqs):
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), PAD, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
    return ids, mask


def padded_labels(case, labels, seqs):
    if case != "tokencls-ce":
        return labels
    T = max(len(s) for s in seqs)
    out = torch.full((len(seqs), T), -100, dtype=torch.long)
    off = 0
    for i, s in enumerate(seqs):
        out[i, : len(s)] = labels[off: off + len(s)]
        off += len(s)
    return out


def forward_backward(model, case, seqs, labels):
    """HF's loss on the padded batch; returns (loss, unpadded logits, {name: grad})."""
    model.zero_grad(set_to_none=True)
    ids, mask = pad_batch(seqs)
    out = model(input_ids=ids, attention_mask=mask, labels=padded_labels(case, labels, seqs))
    out.loss.backward()
    logits = out.logits.detach()
    if case == "tokencls-ce":
        logits = torch.cat([logits[i, : len(s)] for i, s in enumerate(seqs)])
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in model.named_parameters()}
    return out.loss.detach(), logits, grads


def per_sequence(model, case, seqs, labels):
    """The same loss rebuilt from batch-of-1 runs without padding (explicit global mean)."""
    model.zero_grad(set_to_none=True)
    logits = []
    for s in seqs:
        logits.append(model(input_ids=torch.tensor([s])).logits[0])
    if case == "tokencls-ce":
        logits = torch.cat(logits)
        loss = torch.nn.functional.cross_entropy(logits, labels, ignore_index=-100, reduction="mean")
    else:
        logits = torch.stack(logits)
        if case == "seqcls-ce":
            loss = torch.nn.functional.cross_entropy(logits, labels)
        elif case == "seqcls-bce":
            loss = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
        else:
            loss = torch.nn.functional.mse_loss(logits[:, 0], labels)
    loss.backward()
    grads = {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p))
             for n, p in model.named_parameters()}
    return loss.detach(), logits.detach(), grads


def rel_diff(a, b):
    return float((a - b).abs().max()) / max(float(b.abs().max()), 1e-30)


def build(case, spec):
    d = OUT / case
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    seed = spec["seed"]
    kw = dict(BASE, num_labels=spec["num_labels"])
    if spec["classifier_pooling"]:
        kw["classifier_pooling"] = spec["classifier_pooling"]
    if spec["problem_type"]:
        kw["problem_type"] = spec["problem_type"]
    torch.manual_seed(seed)
    cfg = ModernBertConfig(**kw)
    model = spec["cls"](cfg)
    perturb(model, seed + 1)
    model.save_pretrained(d, safe_serialization=True)
    del model

    # Reload: the reference sees exactly the saved config and weights.
    model = spec["cls"].from_pretrained(d, attn_implementation="eager", dtype=torch.float32)
    rc = model.config
    assert rc.layer_types == ["full_attention", "sliding_attention", "full_attention"], rc.layer_types
    assert rc.num_labels == spec["num_labels"] and rc.problem_type == spec["problem_type"], (rc.num_labels, rc.problem_type)
    assert spec["classifier_pooling"] is None or rc.classifier_pooling == spec["classifier_pooling"]
    for k in ("attention_dropout", "embedding_dropout", "mlp_dropout", "classifier_dropout"):
        assert getattr(rc, k) == 0.0, k

    seqs, g = make_sequences(seed + 2)
    labels = make_labels(case, spec, seqs, g)
    model.train()  # every dropout is 0
    loss, logits, grads = forward_backward(model, case, seqs, labels)

    # (1) + (2): per-sequence runs without padding
    loss1, logits1, grads1 = per_sequence(model, case, seqs, labels)
    leak_logits = rel_diff(logits1, logits)
    leak_loss = abs(float(loss1) - float(loss)) / abs(float(loss))
    leak_grad = max(rel_diff(grads1[n], grads[n]) for n in grads)
    # (3) eval() gives the same
    model.eval()
    loss_e, logits_e, grads_e = forward_backward(model, case, seqs, labels)
    evd = max(rel_diff(logits_e, logits), max(rel_diff(grads_e[n], grads[n]) for n in grads))
    ok = max(leak_logits, leak_loss, leak_grad, evd) <= TOL
    assert ok, (case, leak_logits, leak_loss, leak_grad, evd)

    ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long)
    cu = torch.tensor([0] + [sum(LENGTHS[: i + 1]) for i in range(len(LENGTHS))], dtype=torch.long)
    out = {"input_ids": ids, "cu_seqlens": cu, "labels": labels, "logits": logits.float(),
           "loss": loss.float().reshape(())}
    names = [n for n, _ in model.named_parameters()]
    for n in names:
        g_ = grads[n]
        assert torch.isfinite(g_).all(), n
        out[f"grad.{n}"] = g_
    meta = {"case": case, "lengths": json.dumps(LENGTHS), "problem_type": str(spec["problem_type"]),
            "param_names": json.dumps(names), "torch": torch.__version__,
            "transformers": __import__("transformers").__version__}
    # one metadata key: safetensors writes a multi-key metadata map in random order (bytes would differ)
    save_file({k: v.contiguous() for k, v in out.items()}, d / "reference.safetensors",
              metadata={"meta": json.dumps(meta, sort_keys=True)})

    gmax = {n: float(grads[n].abs().max()) for n in names}
    zero = [n for n in names if gmax[n] == 0.0]
    nlab = int((labels != -100).sum()) if case == "tokencls-ce" else len(seqs)
    print(f"[{case}] loss {float(loss):.6f}  logits max|x| {float(logits.abs().max()):.3f}  "
          f"labelled {nlab}  params {len(names)} ({sum(p.numel() for p in model.parameters())})")
    print(f"    grad max|g|: min {min(gmax.values()):.2e} ({min(gmax, key=gmax.get)}), "
          f"max {max(gmax.values()):.2e} ({max(gmax, key=gmax.get)}); all-zero: {zero or 'none'}")
    print(f"    padding leak (batch vs each sequence alone, rel. to max): logits {leak_logits:.1e}, "
          f"loss {leak_loss:.1e}, grads {leak_grad:.1e}; train vs eval {evd:.1e}")
    emb = grads["model.embeddings.tok_embeddings.weight"]
    used = sorted(set(ids.tolist()))
    unused = torch.ones(emb.shape[0], dtype=torch.bool)
    unused[used] = False
    print(f"    embedding grad: {len(used)} rows used, max|g| on unused rows (incl. pad) "
          f"{float(emb[unused].abs().max()):.1e}")


def main():
    for case, spec in CASES.items():
        build(case, spec)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
