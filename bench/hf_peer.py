"""HF transformers ModernBERT on the inputs written by `modernbert bench --dump-inputs`.

    .venv/bin/python bench/hf_peer.py CHECKPOINT_DIR INPUTS.json DATASET [--dtype float32|bfloat16]
        [--batch-size 8] [--repeat 1] [--threads 2]

Prints one JSON line. Batches are padded to their longest member (SDPA, attention mask),
which is how transformers runs ModernBERT on CPU.
"""

import argparse
import json
import time

import torch
from transformers import AutoModel


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint")
    ap.add_argument("inputs")
    ap.add_argument("dataset")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    model = AutoModel.from_pretrained(args.checkpoint, attn_implementation="sdpa", dtype=dtype).eval()
    pad = model.config.pad_token_id
    docs = json.load(open(args.inputs))[args.dataset]
    tokens = sum(len(d) for d in docs)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(args.repeat):
            start = time.perf_counter()
            for i in range(0, len(docs), args.batch_size):
                chunk = docs[i : i + args.batch_size]
                width = max(len(d) for d in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for r, d in enumerate(chunk):
                    ids[r, : len(d)] = torch.tensor(d)
                    mask[r, : len(d)] = 1
                model(input_ids=ids, attention_mask=mask)
            best = min(best, time.perf_counter() - start)
    print(json.dumps({"peer": f"hf-transformers-{args.dtype}", "dataset": args.dataset, "tokens": tokens,
                      "seconds": best, "tokens_per_second": tokens / best}))


if __name__ == "__main__":
    main()
