#!/usr/bin/env python3
"""Checks that a checkpoint written by `modernbert train` loads in HF transformers with the same
outputs as the Rust implementation.

    .venv/bin/python scripts/check_hf_checkpoint.py RUN/checkpoints/step-00000100 [--binary target/release/modernbert]

1. `transformers.AutoModelForMaskedLM.from_pretrained(CKPT)` (fp32, eager attention) must load
   every tensor: no missing or unexpected keys, the decoder tied to the token embedding.
2. For a few texts (one longer than the local attention window, some with [MASK]), the per-token
   final hidden states of HF (`model.model(...)`) and of `modernbert embed --pooling none
   --no-normalize` must agree to 1e-4, and the top-5 fill-mask ids and probabilities of HF and
   `modernbert fill-mask` must agree (probabilities to 1e-5).
Exits non-zero on any mismatch. Needs torch + transformers (.venv); CI does not run it.
"""

import argparse
import json
import pathlib
import subprocess
import sys

import torch
from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=pathlib.Path)
    ap.add_argument("--binary", type=pathlib.Path, default=ROOT / "target/release/modernbert")
    args = ap.parse_args()
    ckpt = args.checkpoint
    torch.set_num_threads(1)

    model, info = AutoModelForMaskedLM.from_pretrained(
        ckpt, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
    )
    model.eval()
    problems = {k: v for k, v in info.items() if v}
    if problems:
        sys.exit(f"FAIL: loading info not clean: {problems}")
    if model.decoder.weight.data_ptr() != model.model.embeddings.tok_embeddings.weight.data_ptr():
        sys.exit("FAIL: decoder is not tied to the token embedding")
    print(f"loaded {ckpt} as {type(model).__name__}: {sum(p.numel() for p in model.parameters())} parameters, "
          f"layer types {model.config.layer_types}, rope {model.config.rope_parameters}")

    tok = PreTrainedTokenizerFast(tokenizer_file=str(ckpt / "tokenizer.json"), mask_token="[MASK]",
                                  pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", unk_token="[UNK]")
    window = model.config.local_attention
    texts = [
        "def add(a, b):\n    return a [MASK] b",
        "The capital of France is [MASK].",
        " ".join(["the quick brown fox jumps over the lazy dog"] * max(4, window // 4)) + " [MASK] end",
        "import os\nimport [MASK]\n",
    ]

    def rust(*cmd):
        out = subprocess.run([str(args.binary), *cmd, "--model", str(ckpt), *texts], check=True,
                             capture_output=True, text=True).stdout
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    emb = rust("embed", "--pooling", "none", "--no-normalize")
    fill = rust("fill-mask", "--top-k", "5")
    worst_h, worst_p = 0.0, 0.0
    mask_id = tok.mask_token_id
    for i, text in enumerate(texts):
        ids = tok(text, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            hidden = model.model(input_ids=ids).last_hidden_state[0]
            logits = model(input_ids=ids).logits[0]
        ours = torch.tensor(emb[i]["embedding"])
        if ours.shape != hidden.shape:
            sys.exit(f"FAIL: text {i}: hidden shape {tuple(ours.shape)} vs HF {tuple(hidden.shape)}")
        worst_h = max(worst_h, (ours - hidden).abs().max().item())
        positions = (ids[0] == mask_id).nonzero().flatten().tolist()
        masks = fill[i]["masks"]
        if len(masks) != len(positions):
            sys.exit(f"FAIL: text {i}: {len(masks)} masks vs HF {len(positions)}")
        for m, pos in zip(masks, positions):
            probs = logits[pos].softmax(-1)
            top = probs.topk(5)
            ids_hf = top.indices.tolist()
            ids_rs = [p["token_id"] for p in m["predictions"]]
            if ids_hf != ids_rs:
                sys.exit(f"FAIL: text {i} mask at {pos}: top-5 ids {ids_rs} vs HF {ids_hf}")
            for p in m["predictions"]:
                worst_p = max(worst_p, abs(p["score"] - probs[p["token_id"]].item()))
    print(f"hidden states: max |rust - hf| = {worst_h:.2e} over {len(texts)} texts; "
          f"fill-mask top-5 ids identical, max |Δprob| = {worst_p:.2e}")
    if worst_h > 1e-4 or worst_p > 1e-5:
        sys.exit("FAIL: outputs differ")
    print("OK")


if __name__ == "__main__":
    main()
