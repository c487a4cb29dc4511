#!/usr/bin/env python3
"""Reference training steps in HF transformers / PyTorch for the Rust gradient-parity test.

For the `tests/fixtures/odd-dims` checkpoint (ModernBertForMaskedLM, head_dim 20, 5 layers,
window 8, theta 80000/5000) and two fixed packed MLM batches, this script runs two training
steps in PyTorch and writes `tests/fixtures/train-step/reference.safetensors`:

* `batch{k}.input_ids`, `batch{k}.cu_seqlens`, `batch{k}.labels` (I64): the packed batches,
  unpadded like `modernbert_train::MlmBatch` (documents concatenated, -100 = not predicted);
* `loss1`, `loss2` (F32 scalars): mean cross-entropy over predicted tokens before step 1 / 2;
* `grad1.{name}`, `grad2.{name}`: every parameter's gradient before step 1 / step 2;
* `param1.{name}`, `param2.{name}`: every parameter after StableAdamW step 1 and step 2.

Per-document semantics (no attention across documents, RoPE positions restarting per
document) are obtained by running HF's model on each document separately (batch of 1, no
padding, eager attention), gathering the logits of predicted positions of all documents, and
taking the mean cross-entropy over all of them (one global mean, as sparse prediction does).

StableAdamW is written out below from spec section 7.4 (beta1 0.9, beta2 0.98, eps 1e-6,
bias correction folded into the betas, update clipping by RMS, fully decoupled weight decay
scaled by lr/max_lr; no decay for ndim <= 1, biases and the token embedding).

Run: .venv/bin/python scripts/train_reference.py  (about 5 s on CPU)
"""

import json
import math
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import ModernBertForMaskedLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
MODEL = ROOT / "tests/fixtures/odd-dims"
OUT = ROOT / "tests/fixtures/train-step"

LRS = [4e-3, 1e-2]  # learning rate of step 1 and step 2
MAX_LR = 1e-2
WEIGHT_DECAY = 0.1
BETAS = (0.9, 0.98)
EPS = 1e-6
LENGTHS = [[40, 17, 9, 3, 25, 1, 2], [12, 33, 5, 20, 7]]


def make_batch(rng, vocab, lengths):
    """Random documents, 30% predicted with 80/10/10 (mask id 4), like the packer's masking."""
    ids, labels, cu = [], [], [0]
    for n in lengths:
        doc = rng.integers(5, vocab, size=n)
        for tok in doc:
            r = rng.random()
            if r < 0.3:
                labels.append(int(tok))
                if r < 0.24:
                    ids.append(4)
                elif r < 0.27:
                    ids.append(int(rng.integers(5, vocab)))
                else:
                    ids.append(int(tok))
            else:
                labels.append(-100)
                ids.append(int(tok))
        cu.append(len(ids))
    return torch.tensor(ids), torch.tensor(cu), torch.tensor(labels)


def loss_fn(model, ids, cu, labels):
    logits, targets = [], []
    for b in range(len(cu) - 1):
        s, e = int(cu[b]), int(cu[b + 1])
        lab = labels[s:e]
        keep = lab != -100
        if not keep.any():
            # still run the document: it contributes nothing to the loss
            continue
        out = model(input_ids=ids[s:e][None]).logits[0]
        logits.append(out[keep])
        targets.append(lab[keep])
    logits = torch.cat(logits)
    targets = torch.cat(targets)
    return torch.nn.functional.cross_entropy(logits, targets, reduction="mean")


class StableAdamW:
    def __init__(self, named_params):
        self.params = named_params
        self.t = 0
        self.m = {n: torch.zeros_like(p) for n, p in named_params}
        self.v = {n: torch.zeros_like(p) for n, p in named_params}

    @staticmethod
    def decays(name, p):
        return p.ndim > 1 and not name.endswith(".bias") and name != "model.embeddings.tok_embeddings.weight"

    @torch.no_grad()
    def step(self, lr, max_lr, wd):
        self.t += 1
        b1, b2 = BETAS
        b1h = (b1**self.t - b1) / (b1**self.t - 1)
        b2h = (b2**self.t - b2) / (b2**self.t - 1)
        for name, p in self.params:
            g = p.grad
            m, v = self.m[name], self.v[name]
            m.add_((g - m) * (1 - b1h))
            v.mul_(b2h).add_(g * g * (1 - b2h))
            rms = torch.sqrt(torch.mean(g * g / torch.clamp(v, min=EPS * EPS))).item()
            eta = lr / max(1.0, rms)
            if wd > 0 and self.decays(name, p):
                p.mul_(1 - eta / max_lr * wd)
            p.add_(-eta * m / (torch.sqrt(v) + EPS))


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    model = ModernBertForMaskedLM.from_pretrained(MODEL, attn_implementation="eager", dtype=torch.float32)
    assert model.decoder.weight is model.model.embeddings.tok_embeddings.weight, "decoder must be tied"
    model.train()  # every dropout of this config is 0
    vocab = model.config.vocab_size
    rng = np.random.default_rng(2024)
    batches = [make_batch(rng, vocab, lengths) for lengths in LENGTHS]
    params = [(n, p) for n, p in model.named_parameters()]
    opt = StableAdamW(params)
    out = {}
    for k, (ids, cu, labels) in enumerate(batches, start=1):
        out[f"batch{k}.input_ids"] = ids.to(torch.int64)
        out[f"batch{k}.cu_seqlens"] = cu.to(torch.int64)
        out[f"batch{k}.labels"] = labels.to(torch.int64)
    for step, (ids, cu, labels) in enumerate(batches, start=1):
        model.zero_grad(set_to_none=True)
        loss = loss_fn(model, ids, cu, labels)
        loss.backward()
        out[f"loss{step}"] = loss.detach().clone().reshape(())
        for n, p in params:
            out[f"grad{step}.{n}"] = p.grad.detach().clone()
        opt.step(LRS[step - 1], MAX_LR, WEIGHT_DECAY)
        for n, p in params:
            out[f"param{step}.{n}"] = p.detach().clone()
        print(f"step {step}: loss {loss.item():.6f}")
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {
        "model": "tests/fixtures/odd-dims",
        "lrs": json.dumps(LRS),
        "max_lr": repr(MAX_LR),
        "weight_decay": repr(WEIGHT_DECAY),
        "torch": torch.__version__,
    }
    save_file({k: v.contiguous() for k, v in out.items()}, OUT / "reference.safetensors", metadata=meta)
    print(f"wrote {OUT / 'reference.safetensors'} ({len(out)} tensors, {sum(p.numel() for _, p in params)} parameters)")


if __name__ == "__main__":
    main()
