"""Check that HF transformers and our CLI agree on a shipped model's masked-LM outputs.

    .venv/bin/python scripts/check_shipped_model.py models/modernbert-mini [target/release/modernbert]

Loads the directory with `AutoModelForMaskedLM` (weights upcast to fp32, eager attention), runs
`modernbert fill-mask --model DIR --top-k K` on the same texts, and compares, for every [MASK]: the
top-K token ids, their logits and their probabilities. Prints the largest differences and exits
non-zero if a logit differs by more than 1e-4 or the rankings differ.
"""

import json
import subprocess
import sys
from pathlib import Path

import torch
from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
TOP_K = 10
TEXTS = [
    "The capital of France is [MASK].",
    "To be, or not to be, that is the [MASK].",
    "def add(a, b):\n    return a [MASK] b",
    "fn main() {\n    let v: Vec<u32> = Vec::[MASK]();\n    println!(\"{}\", v.[MASK]());\n}",
    "import os\nfor name in os.[MASK](path):\n    print(name)",
    "It was the best of times, it was the [MASK] of times.",
]


def main() -> int:
    model_dir = Path(sys.argv[1])
    binary = sys.argv[2] if len(sys.argv) > 2 else str(ROOT / "target" / "release" / "modernbert")
    model = AutoModelForMaskedLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    mask_id = tok.convert_tokens_to_ids("[MASK]")

    out = subprocess.run([binary, "fill-mask", "--model", str(model_dir), "--top-k", str(TOP_K), *TEXTS],
                         check=True, capture_output=True, text=True).stdout
    ours = [json.loads(line) for line in out.splitlines()]
    assert len(ours) == len(TEXTS), f"{len(ours)} results for {len(TEXTS)} texts"

    max_logit, max_score, rank_mismatch, masks = 0.0, 0.0, 0, 0
    with torch.inference_mode():
        for text, result in zip(TEXTS, ours):
            ids = torch.tensor([tok(text)["input_ids"]])
            logits = model(input_ids=ids).logits[0]
            positions = (ids[0] == mask_id).nonzero().flatten().tolist()
            assert [m["position"] for m in result["masks"]] == positions, text
            for m, pos in zip(result["masks"], positions):
                masks += 1
                probs = logits[pos].softmax(-1)
                top = logits[pos].topk(TOP_K).indices.tolist()
                got = [p["token_id"] for p in m["predictions"]]
                if got != top:
                    rank_mismatch += 1
                    print(f"ranking differs at {pos} of {text!r}: ours {got}, HF {top}")
                for p in m["predictions"]:
                    max_logit = max(max_logit, abs(p["logit"] - logits[pos, p["token_id"]].item()))
                    max_score = max(max_score, abs(p["score"] - probs[p["token_id"]].item()))
            best = [(p["token"], round(p["score"], 4)) for p in result["masks"][0]["predictions"][:3]]
            print(f"{text!r}: {best}")
    print(f"{masks} masks, top-{TOP_K} each: max |logit diff| {max_logit:.2e}, max |prob diff| {max_score:.2e}, "
          f"ranking mismatches {rank_mismatch}")
    return 0 if max_logit <= 1e-4 and rank_mismatch == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
