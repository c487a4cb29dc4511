#!/usr/bin/env bash
# Every held-out retrieval set (docs/retrieval-data.md) with one model: one JSON line per set, the
# metrics `modernbert evaluate --task retrieval` prints plus "set" — the --metrics file of
# scripts/ship_embedder.py.
#
#   bash scripts/eval_retrieval_sets.sh MODEL OUT.jsonl   # MODERNBERT_BIN: default target/release/modernbert
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -eq 2 ] || { echo "usage: $0 MODEL OUT.jsonl" >&2; exit 2; }
model=$1; out=$2
bin=${MODERNBERT_BIN:-target/release/modernbert}
sets=(work/data/retrieval/eval/*/)
[ -d "${sets[0]}" ] || { echo "no sets under work/data/retrieval/eval: run scripts/fetch_retrieval_data.sh" >&2; exit 1; }
: > "$out"
for d in "${sets[@]}"; do
  name=$(basename "$d")
  line=$("$bin" evaluate --task retrieval --beir "$d" --model "$model" | tail -1)
  python3 -c 'import json, sys; d = json.loads(sys.argv[1]); d["set"] = sys.argv[2]; print(json.dumps(d))' \
    "$line" "$name" >> "$out"
  echo "$name nDCG@10 $(python3 -c 'import json, sys; print(round(json.loads(sys.argv[1])["ndcg_at_10"], 4))' "$line")"
done
