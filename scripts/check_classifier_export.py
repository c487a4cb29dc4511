#!/usr/bin/env python3
"""Checks that a classifier or tagger written by `modernbert finetune` loads in HF transformers with
the logits of `modernbert classify` (issue 10: "HF AutoModelFor{Sequence,Token}Classification load it
with equal logits").

    .venv/bin/python scripts/check_classifier_export.py DIR [DIR ...] [--binary target/release/modernbert]

The architecture comes from DIR/config.json. For a few fixed texts (prose, code, non-ASCII, one past
the local-attention window of small models) HF runs in float32 on CPU (one text at a time, no
padding) and the CLI `classify` on all of them; prints the max abs logit difference per model, PASS
when <= 1e-4 (`--tolerance`). Exit status 1 on a mismatch or a load failure (missing/unexpected keys).
Needs torch + transformers (.venv of scripts/setup-python.sh); CI does not run it.
"""

import argparse
import json
import pathlib
import subprocess
import sys

import torch
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification
from transformers import PreTrainedTokenizerFast

TEXTS = [
    "I loved this movie, the acting was superb.",
    "Terrible. Two hours I will never get back.",
    "Barack Obama visited Paris with Angela Merkel last Tuesday .",
    "fn main() { println!(\"héllo, wörld\"); }",
    " ".join(["The quick brown fox jumps over the lazy dog near the river bank."] * 12),
]


def check(model_dir: pathlib.Path, binary: str, tolerance: float) -> bool:
    config = json.loads((model_dir / "config.json").read_text())
    arch = config["architectures"][0]
    cls = AutoModelForTokenClassification if "TokenClassification" in arch else AutoModelForSequenceClassification
    model, info = cls.from_pretrained(model_dir, dtype=torch.float32, output_loading_info=True)
    model.eval()
    if info["missing_keys"] or info["unexpected_keys"]:
        print(f"{model_dir}: FAIL: missing {info['missing_keys']}, unexpected {info['unexpected_keys']}")
        return False
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    out = subprocess.run(
        [binary, "classify", "--model", str(model_dir), *TEXTS], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    worst = 0.0
    for text, line in zip(TEXTS, out, strict=True):
        ours = json.loads(line)
        ids = tok(text, return_tensors="pt")
        with torch.no_grad():
            hf = model(**ids).logits[0]
        if isinstance(ours, list):  # token classification: one entry per token, specials excluded
            ours_logits = torch.tensor([t["logits"] for t in ours])
            hf = hf[1 : 1 + len(ours)]
        else:
            ours_logits = torch.tensor(ours["logits"])
        if ours_logits.shape != hf.shape:
            print(f"{model_dir}: FAIL: shapes {tuple(ours_logits.shape)} vs HF {tuple(hf.shape)} on {text[:40]!r}")
            return False
        worst = max(worst, (ours_logits - hf).abs().max().item())
    verdict = "PASS" if worst <= tolerance else "FAIL"
    print(f"{model_dir}: {arch}, {len(TEXTS)} texts, max |logit difference| {worst:.2e}: {verdict}")
    return worst <= tolerance


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dirs", nargs="+", type=pathlib.Path)
    ap.add_argument("--binary", default="target/release/modernbert")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_num_threads(1)
    ok = all([check(d, args.binary, args.tolerance) for d in args.dirs])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
