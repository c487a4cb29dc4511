"""Write a random-init ModernBERT checkpoint of the real base or large size (for speed tests).

    .venv/bin/python scripts/make_random_checkpoint.py --size base --out /tmp/modernbert-base-random

Not committed (600 MB / 1.6 GB in f32). Uses HF transformers' own init and the real tokenizer.
"""

import argparse
import shutil
from pathlib import Path

import torch
from transformers import ModernBertConfig, ModernBertForMaskedLM

SIZES = {
    "base": dict(hidden_size=768, intermediate_size=1152, num_hidden_layers=22, num_attention_heads=12),
    "large": dict(hidden_size=1024, intermediate_size=2624, num_hidden_layers=28, num_attention_heads=16),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=SIZES, default="base")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    args = ap.parse_args()
    torch.manual_seed(0)
    config = ModernBertConfig(vocab_size=50368, classifier_pooling="mean", **SIZES[args.size])
    model = ModernBertForMaskedLM(config).to(getattr(torch, args.dtype))
    model.save_pretrained(args.out, safe_serialization=True)
    assets = Path(__file__).resolve().parent.parent / "assets" / "tokenizer"
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(assets / name, args.out / name)
    print(f"wrote {args.out} ({sum(p.numel() for p in model.parameters()):,} parameters)")


if __name__ == "__main__":
    main()
