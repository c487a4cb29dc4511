#!/usr/bin/env bash
# Embedding fine-tuning speed and quality: `modernbert finetune --task embedding` vs sentence-transformers'
# SentenceTransformerTrainer (scripts/st_finetune.py) from the same start checkpoint, on the same pairs
# with the same settings, one after the other on this machine; then both outputs scored by the same
# evaluator (`modernbert evaluate --task retrieval`) on a held-out set. Prints each side's samples/s and
# the ratio, and both nDCG@10 / MRR@10.
#
#   bash bench/embed_finetune.sh                 # 2,048 python-stdlib pairs, batch 64, MNRL (in-batch negatives)
#   MINI=16 bash bench/embed_finetune.sh         # the same with gradient caching (CachedMNRL, mini-batch 16)
#   SOURCE=rust-std EVAL=code-rust ROWS=3000 BATCH=128 bash bench/embed_finetune.sh
#   PRECISION=bf16 bash bench/embed_finetune.sh  # mixed precision on both sides (ours --precision bf16,
#                                                # sentence-transformers bf16=True: torch.autocast on CPU)
#
# Needs: the release binary (cargo build --release -p modernbert-cli), .venv from scripts/setup-python.sh
# and scripts/setup-python-formats.sh st6, and the data of scripts/fetch_retrieval_data.sh (run here).
# Both sides: 2 threads, f32, max length 128, prompts "query: " / "document: ", mean pooling, scale 20,
# AdamW (0.9, 0.98, 1e-6), lr 2e-4, weight decay 0.01 (decoupled), warmup 10% then linear decay, clip 1.0.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-models/modernbert-mini}
ROWS=${ROWS:-2048}
BATCH=${BATCH:-64}
MINI=${MINI:-0}
SOURCE=${SOURCE:-python-stdlib}   # one source of train.jsonl (mixed sources need --batch-by-source: docs/finetuning.md)
EVAL=${EVAL:-code-python}         # its held-out set
SEED=${SEED:-42}
PRECISION=${PRECISION:-f32}
D=work/data/retrieval
OUT=work/bench-embed-finetune/$SOURCE-rows$ROWS-batch$BATCH-mini$MINI-$PRECISION
bash scripts/fetch_retrieval_data.sh >&2
rm -rf "$OUT"; mkdir -p "$OUT"
# A seeded sample of one source's training pairs, query and positive only: both trainers read it.
python3 - "$D/train.jsonl" "$OUT/pairs.jsonl" "$ROWS" "$SOURCE" <<'PY'
import json, random, sys
rows = [json.loads(l) for l in open(sys.argv[1], encoding="utf-8")]
rows = [r for r in rows if r["source"] == sys.argv[4]]
if not rows:
    sys.exit(f"no training pairs of source {sys.argv[4]!r}")
random.Random(42).shuffle(rows)
with open(sys.argv[2], "w", encoding="utf-8") as f:
    for r in rows[: int(sys.argv[3])]:
        f.write(json.dumps({"query": r["query"], "positive": r["positive"]}, ensure_ascii=False) + "\n")
PY
COMMON=(--model "$MODEL" --train "$OUT/pairs.jsonl" --epochs 1 --learning-rate 2e-4 --batch-size "$BATCH"
        --max-length 128 --weight-decay 0.01 --warmup-ratio 0.1 --gradient-clip 1.0 --seed "$SEED" --scale 20
        --query-prompt "query: " --document-prompt "document: ")
MINI_ARGS=()
if [ "$MINI" != 0 ]; then MINI_ARGS=(--mini-batch-size "$MINI"); fi
echo "== ours" >&2
RAYON_NUM_THREADS=2 target/release/modernbert finetune --task embedding "${COMMON[@]}" "${MINI_ARGS[@]}" \
    --validation "$D/eval/$EVAL" --output "$OUT/ours" --no-progress --precision "$PRECISION" > "$OUT/ours.json"
echo "== sentence-transformers" >&2
ST_BF16=(); [ "$PRECISION" = bf16 ] && ST_BF16=(--bf16)
.venv/bin/python scripts/st_finetune.py "${COMMON[@]}" "${MINI_ARGS[@]}" --output "$OUT/st" --threads 2 "${ST_BF16[@]}" \
    > "$OUT/st.json"
echo "== evaluation on $EVAL (the same evaluator for both)" >&2
for side in ours st; do
  RAYON_NUM_THREADS=2 target/release/modernbert evaluate --task retrieval --model "$OUT/$side" \
      --beir "$D/eval/$EVAL" > "$OUT/$side-eval.json"
done
python3 - "$OUT" "$(wc -l < "$OUT/pairs.jsonl")" "$BATCH" "$MINI" "$EVAL" "$SOURCE" "$PRECISION" <<'PY'
import json, sys, pathlib
out, rows, batch, mini, eval_set, source, precision = pathlib.Path(sys.argv[1]), *sys.argv[2:]
ours = json.loads((out / "ours.json").read_text())["samples_per_sec"]
st = json.loads((out / "st.json").read_text().splitlines()[-1])
def metrics(side):
    m = json.loads((out / f"{side}-eval.json").read_text().splitlines()[-1])
    return m["ndcg_at_10"], m["mrr_at_10"]
(on, om), (sn, sm) = metrics("ours"), metrics("st")
loss = "CachedMNRL mini-batch " + mini if mini != "0" else "MNRL"
print(f"embedding fine-tuning ({precision} both sides), {rows} {source} pairs, batch {batch}, {loss}: held-out {eval_set} nDCG@10 ours {on:.4f}, "
      f"sentence-transformers {sn:.4f}; MRR@10 ours {om:.4f}, sentence-transformers {sm:.4f}")
print(f"training samples/s: ours {ours:.1f}, sentence-transformers {st['train_samples_per_second']:.1f} "
      f"-> {ours / st['train_samples_per_second']:.2f}x")
PY
