#!/usr/bin/env python3
"""Training throughput: `modernbert train` vs HF transformers (PyTorch, CPU) on the same packed data.

    .venv/bin/python bench/train_throughput.py [--steps 30] [--threads 2]

1. Trains a 4096-id BPE on Python standard-library sources and prepares shards
   (`modernbert tokenizer train`, `modernbert data prepare`) under target/train-bench/.
2. Runs `modernbert train -c bench/train_tiny.toml --max-steps N --dump-batches ...`: our trainer
   writes every step's packed micro-batches (unpadded rows with cu_seqlens and labels).
3. Trains HF `ModernBertForMaskedLM` (same config.json, fp32, SDPA attention, sparse prediction)
   on exactly those micro-batches: each packed row becomes a right-padded batch of its documents
   with an attention mask (HF has no unpadded CPU path), the row losses are weighted by their
   share of predicted tokens like ours, and StableAdamW (spec §7.4, per-tensor torch ops) steps.
4. Prints tokens/s of both (real tokens / step time, first 3 steps skipped as warm-up) and the ratio.
Both sides use the same number of threads (RAYON_NUM_THREADS / torch.set_num_threads).
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
WORK = ROOT / "target/train-bench"
BIN = ROOT / "target/release/modernbert"
CORPUS = [pathlib.Path("/usr/lib/python3.11") / d for d in ("email", "json", "asyncio", "unittest", "http", "xml")]
WARMUP = 3


def sh(*cmd, env=None):
    subprocess.run([str(c) for c in cmd], check=True, cwd=ROOT, env=env)


def prepare():
    WORK.mkdir(parents=True, exist_ok=True)
    inputs = [p for p in CORPUS if p.is_dir()]
    if not inputs:
        sys.exit("no Python standard library under /usr/lib/python3.11")
    if not (WORK / "shards/manifest.json").exists():
        sh(BIN, "tokenizer", "train", "--vocab-size", "4096", "-o", WORK / "tokenizer.json", "--quiet", "--include", "*.py", *inputs)
        sh(BIN, "data", "prepare", "--tokenizer", WORK / "tokenizer.json", "-o", WORK / "shards", "--quiet",
           "--include", "*.py", "--heldout-fraction", "0.02", "--max-seq-len", "256", "--row-tokens", "2048", *inputs)


def ours(steps, threads):
    env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
    out = WORK / "run"
    if out.exists():
        subprocess.run(["rm", "-rf", str(out)], check=True)
    sh(BIN, "train", "-c", "bench/train_tiny.toml", "--max-steps", steps, "--no-progress",
       "--dump-batches", WORK / "batches.jsonl", env=env)
    recs = [json.loads(l) for l in open(out / "metrics.jsonl")]
    recs = [r for r in recs if r["type"] == "train"][WARMUP:]
    per_step = [json.loads(l) for l in open(WORK / "batches.jsonl")][WARMUP:]
    tokens = sum(s["tokens"] for s in per_step)
    secs = sum(s["tokens"] / r["tokens_per_sec"] for s, r in zip(per_step, recs))
    ckpt = out / "checkpoints" / (open(out / "checkpoints/latest").read().strip())
    return tokens / secs, [r["loss"] for r in recs], ckpt


class StableAdamW:
    def __init__(self, params, betas=(0.9, 0.98), eps=1e-6):
        self.params, self.betas, self.eps, self.t = params, betas, eps, 0
        self.m = {n: torch.zeros_like(p) for n, p in params}
        self.v = {n: torch.zeros_like(p) for n, p in params}

    @torch.no_grad()
    def step(self, lr, max_lr, wd):
        self.t += 1
        b1, b2 = self.betas
        b1h = (b1**self.t - b1) / (b1**self.t - 1)
        b2h = (b2**self.t - b2) / (b2**self.t - 1)
        for name, p in self.params:
            g, m, v = p.grad, self.m[name], self.v[name]
            m.lerp_(g, 1 - b1h)
            v.mul_(b2h).addcmul_(g, g, value=1 - b2h)
            rms = torch.sqrt(torch.mean(g * g / torch.clamp(v, min=self.eps**2))).item()
            eta = lr / max(1.0, rms)
            if wd > 0 and p.ndim > 1 and name != "model.embeddings.tok_embeddings.weight":
                p.mul_(1 - eta / max_lr * wd)
            p.addcdiv_(m, v.sqrt().add_(self.eps), value=-eta)


def theirs(steps, threads, ckpt):
    torch.set_num_threads(threads)
    cfg = ModernBertConfig.from_pretrained(ckpt)
    cfg.sparse_prediction = True
    model = ModernBertForMaskedLM(cfg)  # random init, same architecture
    model.train()
    opt = StableAdamW([(n, p) for n, p in model.named_parameters()])
    pad = cfg.pad_token_id
    batches = [json.loads(l) for l in open(WORK / "batches.jsonl")][:steps]
    rates, losses = [], []
    for k, step in enumerate(batches):
        t0 = time.perf_counter()
        total = sum(sum(1 for l in row["labels"] if l != -100) for row in step["rows"])
        model.zero_grad(set_to_none=True)
        loss_value = 0.0
        for row in step["rows"]:
            cu = row["cu_seqlens"]
            n = len(cu) - 1
            longest = max(cu[i + 1] - cu[i] for i in range(n))
            ids = torch.full((n, longest), pad, dtype=torch.long)
            labels = torch.full((n, longest), -100, dtype=torch.long)
            mask = torch.zeros((n, longest), dtype=torch.long)
            for i in range(n):
                s, e = cu[i], cu[i + 1]
                ids[i, : e - s] = torch.tensor(row["input_ids"][s:e])
                labels[i, : e - s] = torch.tensor(row["labels"][s:e])
                mask[i, : e - s] = 1
            predicted = int((labels != -100).sum())
            if predicted == 0:
                continue
            out = model(input_ids=ids, attention_mask=mask, labels=labels)
            (out.loss * (predicted / total)).backward()
            loss_value += out.loss.item() * predicted / total
        opt.step(1e-3 * min(1.0, (k + 1) / 10), 1e-3, 1e-5)
        dt = time.perf_counter() - t0
        if k >= WARMUP:
            rates.append((step["tokens"], dt))
        losses.append(loss_value)
    return sum(t for t, _ in rates) / sum(d for _, d in rates), losses


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeat", type=int, default=3, help="alternate the two runs this often; report the best of each")
    args = ap.parse_args()
    if not BIN.exists():
        sys.exit("build first: cargo build --release -p modernbert-cli")
    prepare()
    runs_ours, runs_theirs = [], []
    for r in range(args.repeat):
        ours_tps, ours_loss, ckpt = ours(args.steps, args.threads)
        theirs_tps, theirs_loss = theirs(args.steps, args.threads, ckpt)
        runs_ours.append(ours_tps)
        runs_theirs.append(theirs_tps)
        print(f"run {r + 1}: ours {ours_tps:.0f} tokens/s, HF {theirs_tps:.0f} tokens/s", flush=True)
    ours_tps, theirs_tps = max(runs_ours), max(runs_theirs)
    print(f"config: {ckpt / 'config.json'} ({args.steps} steps, {args.threads} threads, first {WARMUP} skipped, "
          f"best of {args.repeat})")
    print(f"ours (modernbert train):        {ours_tps:10.0f} tokens/s   loss {ours_loss[0]:.3f} -> {ours_loss[-1]:.3f}")
    print(f"HF transformers (PyTorch {torch.__version__}): {theirs_tps:10.0f} tokens/s   loss {theirs_loss[0]:.3f} -> {theirs_loss[-1]:.3f}")
    print(f"ratio ours/theirs: {ours_tps / theirs_tps:.2f}x")


if __name__ == "__main__":
    main()
