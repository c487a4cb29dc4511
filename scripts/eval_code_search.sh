#!/usr/bin/env bash
# Code-search evaluation (docs/code-search.md): MRR@10, Recall@10/100 and nDCG@10 at function
# level for bm25, dense and hybrid, with one embedding model.
#
#   bash scripts/eval_code_search.sh [MODEL]      # MODEL: a directory or Hub id; default models/modernbert-mini-embed
#
# 1. Builds the set once (scripts/build_code_search_eval.py → work/eval/code-search: ~60k lines of
#    the Python 3.11 standard library with every docstring removed; 500 queries = a removed
#    docstring's first sentence, answered by its function's file and `def` line).
# 2. Indexes the stripped copy with MODEL into work/eval/code-search/index-<MODEL as a name>
#    (re-runs reuse it; a model whose files changed is re-indexed with --rebuild).
# 3. `modernbert search --queries ... --evaluate` in each mode; prints a Markdown table and writes
#    work/eval/code-search/results-<name>.jsonl (one JSON line per mode, with query latencies).
#
# Environment: MODERNBERT_BIN (default: build and use target/release/modernbert), PRECISION (f32),
# RERANK (a cross-encoder or ColBERT model: adds a "hybrid + rerank" row), EVAL_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/modernbert-mini-embed}
EVAL_DIR=${EVAL_DIR:-work/eval/code-search}
PRECISION=${PRECISION:-f32}
if [ -z "${MODERNBERT_BIN:-}" ]; then
    nice -n 5 cargo build --release -q -p modernbert-cli
    MODERNBERT_BIN=target/release/modernbert
fi
[ -f "$EVAL_DIR/queries.jsonl" ] || python3 scripts/build_code_search_eval.py --out "$EVAL_DIR"

name=$(printf '%s' "${MODEL%/}" | sed -E 's#^(\./)+##; s#[^A-Za-z0-9._-]+#-#g')
index="$EVAL_DIR/index-$name"
results="$EVAL_DIR/results-$name.jsonl"
echo "model $MODEL ($PRECISION), index $index" >&2
index_args=("$EVAL_DIR/repo" --index "$index" --model "$MODEL" --precision "$PRECISION" -q)
if ! nice -n 5 "$MODERNBERT_BIN" index "${index_args[@]}" > "$index.summary.json" 2> "$index.err"; then
    if grep -q "is a different model" "$index.err"; then
        echo "the model changed since $index was built: re-indexing with --rebuild" >&2
        nice -n 5 "$MODERNBERT_BIN" index "${index_args[@]}" --rebuild > "$index.summary.json"
    else
        cat "$index.err" >&2
        exit 1
    fi
fi
jq -c '{files, chunks, chunks_embedded, seconds, chunks_per_second}' "$index.summary.json" >&2

modes=(bm25 dense hybrid)
[ -n "${RERANK:-}" ] && modes+=(rerank)
: > "$results"
for mode in "${modes[@]}"; do
    args=(--mode "$mode")
    [ "$mode" = rerank ] && args=(--mode hybrid --rerank "$RERANK")
    metrics=$(nice -n 5 "$MODERNBERT_BIN" search --index "$index" --queries "$EVAL_DIR/queries.jsonl" --evaluate \
        --timings --precision "$PRECISION" "${args[@]}" 2> "$EVAL_DIR/search.err") || { cat "$EVAL_DIR/search.err" >&2; exit 1; }
    grep '^{"' "$EVAL_DIR/search.err" | tail -1 > "$EVAL_DIR/timings.json"
    jq -c --arg model "$MODEL" --arg lab "$mode" --slurpfile t "$EVAL_DIR/timings.json" \
        '. + {model: $model, "label": $lab, p50_ms: $t[0].p50_ms, p99_ms: $t[0].p99_ms}' <<< "$metrics" >> "$results"
done

echo
echo "| model | mode | queries | MRR@10 | Recall@10 | Recall@100 | nDCG@10 | query p50 (ms) |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
jq -r '"| \(.model) | \(.label) | \(.queries) | \(.mrr_at_10*1000|round/1000) | \(.recall_at_10*1000|round/1000) | \(.recall_at_100*1000|round/1000) | \(.ndcg_at_10*1000|round/1000) | \(.p50_ms*10|round/10) |"' "$results"
