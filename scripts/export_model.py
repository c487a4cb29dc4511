"""Ship a trained checkpoint: bf16 weights + config + tokenizer into models/NAME, and write HF's
reference outputs for it so `cargo test` checks our logits against HF on the shipped model.

    .venv/bin/python scripts/export_model.py work/runs/modernbert-mini/checkpoints/final models/modernbert-mini

Writes OUT/{config.json, model.safetensors (bf16), tokenizer.json, tokenizer_config.json,
special_tokens_map.json} and tests/fixtures/shipped-<name>/expected.safetensors (HF transformers,
fp32 compute on the bf16 weights, eager attention), in the format of scripts/make_fixtures.py.
"""

import argparse
import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForMaskedLM, PreTrainedTokenizerFast

ROOT = Path(__file__).resolve().parent.parent
TEXTS = [
    "The capital of France is [MASK].",
    "def add(a, b):\n    return a [MASK] b",
    "fn main() {\n    let v: Vec<u32> = Vec::[MASK]();\n    println!(\"{}\", v.len());\n}",
    "To be, or not to be, that is the [MASK].",
    "import numpy as np\nx = np.zeros((3, 4))\nprint(x.[MASK])",
    " ".join(["The quick brown fox jumps over the lazy dog."] * 20),
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)

    tensors = load_file(args.checkpoint / "model.safetensors")
    save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, out / "model.safetensors",
              metadata={"format": "pt"})
    config = json.loads((args.checkpoint / "config.json").read_text())
    config["torch_dtype"] = "bfloat16"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for name in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
        shutil.copy(ROOT / "assets" / "tokenizer" / name, out / name)

    torch.manual_seed(0)
    model = AutoModelForMaskedLM.from_pretrained(out, dtype=torch.float32, attn_implementation="eager").eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=str(out / "tokenizer.json"))
    vocab = model.config.vocab_size
    expected = {}
    hidden_rows, logit_rows = [], []
    with torch.inference_mode():
        for i, text in enumerate(TEXTS):
            ids = torch.tensor([tok(text)["input_ids"]])
            result = model(input_ids=ids, output_hidden_states=True)
            hidden = model.model(input_ids=ids).last_hidden_state[0]
            expected[f"input_ids.{i}"] = ids[0].to(torch.int64)
            expected[f"hidden.{i}"] = hidden.float()
            hidden_rows.append(hidden)
            logit_rows.append(result.logits[0].float())
    top = torch.cat(logit_rows).topk(8, dim=-1).indices.flatten().unique()
    rest = torch.randperm(vocab, generator=torch.Generator().manual_seed(0))[:400]
    cols = torch.cat([top, rest, torch.tensor([0, vocab - 1, 50281, 50282, 50284])]).unique()[:512]
    expected["mlm_logits_cols"] = cols.to(torch.int64)
    for i, logits in enumerate(logit_rows):
        expected[f"mlm_logits.{i}"] = logits[:, cols].contiguous()
    expected["mean_pooled"] = torch.stack([h.mean(0) for h in hidden_rows])
    expected["cls_pooled"] = torch.stack([h[0] for h in hidden_rows])
    fixture = ROOT / "tests" / "fixtures" / f"shipped-{out.name}"
    fixture.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in expected.items()}, fixture / "expected.safetensors")
    model_path = out.resolve()
    model_path = model_path.relative_to(ROOT) if model_path.is_relative_to(ROOT) else model_path
    (fixture / "meta.json").write_text(json.dumps({"kind": "mlm", "model": str(model_path),
                                                   "texts": TEXTS}, indent=2) + "\n")
    size = (out / "model.safetensors").stat().st_size
    print(f"wrote {out} ({size / 1e6:.1f} MB weights) and {fixture}/expected.safetensors")


if __name__ == "__main__":
    main()
