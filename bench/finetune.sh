#!/usr/bin/env bash
# Fine-tuning speed and quality: `modernbert finetune` vs HF Trainer (scripts/hf_finetune.py) from the
# same start checkpoint, on the same data with the same settings, run one after the other on this
# machine. Prints each side's final-epoch metric and training samples/s, and the ratio.
#
#   bash bench/finetune.sh sentiment   # Rotten Tomatoes train (8,530) -> SST-2 validation (872), accuracy
#   bash bench/finetune.sh ner         # WNUT-16 train (1,915 sentences) -> seeded test split (479), entity F1
#   bash bench/finetune.sh sentiment-small   # 500 RT rows, 1 epoch: a quick check
#   SEED=7 bash bench/finetune.sh ner  # another seed (default 42): head init and data order differ
#   PRECISION=bf16 bash bench/finetune.sh ner  # mixed precision on both sides: ours --precision bf16,
#                                              # HF Trainer bf16=True (torch.autocast on CPU)
#
# Needs: the release binary (cargo build --release -p modernbert-cli), .venv from
# scripts/setup-python.sh plus `accelerate`, and the data from scripts/fetch_finetune_data.sh (run here).
# Both sides use 2 threads, f32, max length 128, AdamW (0.9, 0.98, 1e-6), linear warmup 10% then decay.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-sentiment}
MODEL=${MODEL:-models/modernbert-mini}
D=work/data/finetune
SEED=${SEED:-42}
PRECISION=${PRECISION:-f32}
OUT=work/bench-finetune/$which-seed$SEED-$PRECISION
bash scripts/fetch_finetune_data.sh >&2
case $which in
  sentiment) task=classification; train=$D/rt-train.jsonl; val=$D/sst2-validation.jsonl; epochs=3; lr=3e-4; bs=32 ;;
  sentiment-small) task=classification; train=$D/rt-train-500.jsonl; val=$D/sst2-validation.jsonl; epochs=1; lr=3e-4; bs=32 ;;
  ner) task=token-classification; train=$D/wnut16-train.conll; val=$D/wnut16-test.conll; epochs=10; lr=1e-3; bs=16 ;;
  *) echo "unknown benchmark $which (sentiment, sentiment-small, ner)" >&2; exit 2 ;;
esac
COMMON=(--task "$task" --model "$MODEL" --train "$train" --validation "$val" --epochs "$epochs" --learning-rate "$lr"
        --batch-size "$bs" --max-length 128 --weight-decay 1e-5 --warmup-ratio 0.1 --gradient-clip 1.0 --seed "$SEED")
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== ours" >&2
RAYON_NUM_THREADS=2 target/release/modernbert finetune "${COMMON[@]}" --output "$OUT/ours" --no-progress \
  --precision "$PRECISION" > "$OUT/ours.json"
echo "== HF Trainer" >&2
HF_BF16=(); [ "$PRECISION" = bf16 ] && HF_BF16=(--bf16)
.venv/bin/python scripts/hf_finetune.py "${COMMON[@]}" --output "$OUT/hf" --threads 2 "${HF_BF16[@]}" > "$OUT/hf.json"
python3 - "$OUT" "$which" "$PRECISION" <<'PY'
import json, sys, pathlib
out, which, precision = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
hf = json.loads((out / "hf.json").read_text())
evals = [json.loads(l) for l in (out / "ours/metrics.jsonl").read_text().splitlines() if '"eval"' in l]
last = evals[-1]
ours_metric = last["metrics"]["accuracy"] if "accuracy" in last["metrics"] else last["metrics"]["f1"]
ours_rate = json.loads((out / "ours.json").read_text())["samples_per_sec"]
name = "accuracy" if "accuracy" in last["metrics"] else "entity F1"
print(f"{which} ({precision} both sides): final-epoch {name}: ours {ours_metric:.4f}, HF Trainer {hf['metric']:.4f} "
      f"(difference {100 * (ours_metric - hf['metric']):+.2f} points)")
print(f"training samples/s: ours {ours_rate:.1f}, HF Trainer {hf['train_samples_per_second']:.1f} "
      f"-> {ours_rate / hf['train_samples_per_second']:.2f}x")
PY
