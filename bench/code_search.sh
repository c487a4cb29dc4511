#!/usr/bin/env bash
# Code-search speed (docs/code-search.md, "Speed"): index throughput and query latency, cold and
# warm, for bm25 / dense / hybrid. A benchmark, not a test.
#
#   bash bench/code_search.sh [MODEL]          # default models/modernbert-mini
#
# Corpora (indexes under work/bench/code-search, rebuilt from scratch every run):
#   repo      this repository, as `modernbert index .` sees it (.gitignore'd work/ and target/ left out)
#   rustlib   rust-src's library/ (apt-get install -y rust-src): ~10^5 chunks. Embedding all of
#             them with a real model takes hours on 2 cores, so it is indexed with the tiny test
#             model (tests/fixtures/tiny-mlm, 32-wide vectors): chunking + BM25 + commit throughput
#             and BM25 latency at full size. Dense at full size: `search_bench --scan` on a random
#             matrix of the same rows x MODEL's width, and of 10^5 rows (the exact scan and top-10,
#             without the query embedding).
#   alloc     rust-src's library/alloc with MODEL: embedding throughput, dense and hybrid latency.
# Queries: 205 first sentences of `///` doc comments of each corpus (5 untimed warm-up queries).
# Warm = p50/p99 over the other 200 in one process (crates/modernbert-search/examples/search_bench.rs).
# Cold = a fresh `modernbert search` process per query (open the index, load the model, search,
# print), wall clock, COLD_RUNS per mode. Results: work/bench/code-search/results.jsonl + tables.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:-models/modernbert-mini}
OUT=${OUT:-work/bench/code-search}
COLD_RUNS=${COLD_RUNS:-15}
RUSTLIB=${RUSTLIB:-$(ls -d /usr/src/rustc-*/library 2>/dev/null | tail -1)}
[ -d "$RUSTLIB" ] || { echo "rust-src not found: apt-get install -y rust-src (or RUSTLIB=DIR)" >&2; exit 1; }
nice -n 5 cargo build --release -q -p modernbert-cli
nice -n 5 cargo build --release -q -p modernbert-search --example search_bench
BIN=target/release/modernbert
BENCH=target/release/examples/search_bench
mkdir -p "$OUT"
RESULTS=$OUT/results.jsonl
: > "$RESULTS"
machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $machine; model $MODEL" >&2
jq -nc --arg m "$machine" --arg model "$MODEL" '{machine: $m, model: $model, date: (now|todate)}' >> "$RESULTS"

# 205 doc-comment sentences of the .rs files under $1 (deterministic), as {"query": ...} rows.
doc_queries() {
    python3 - "$1" <<'EOF'
import json, os, random, re, sys
seen, out = set(), []
for d, dirs, files in os.walk(sys.argv[1]):
    dirs[:] = sorted(x for x in dirs if x not in ("target", "work", ".git"))
    for f in sorted(files):
        if not f.endswith(".rs"):
            continue
        prev = ""
        for line in open(os.path.join(d, f), encoding="utf-8", errors="replace"):
            s = line.strip()
            if s.startswith("///") and not prev.startswith("///"):
                text = re.split(r"(?<=[.!?])\s", s[3:].strip())[0]
                words = text.split()
                if 4 <= len(words) <= 20 and "`" not in text and text.lower() not in seen:
                    seen.add(text.lower())
                    out.append(text)
            prev = s
random.Random(13).shuffle(out)
for q in out[:205]:
    print(json.dumps({"query": q}))
EOF
}

# index NAME ROOT MODEL: a fresh index; its summary goes to results.
index() {
    local name=$1 root=$2 model=$3
    rm -rf "$OUT/$name"
    echo "indexing $name ($root) with $model ..." >&2
    nice -n 5 "$BIN" index "$root" --index "$OUT/$name" --model "$model" -q --checkpoint-secs 0 > "$OUT/$name.summary.json"
    local lines
    lines=$(jq -r '.[].path' "$OUT/$name"/gen-*/files.json | (cd "$root" && tr '\n' '\0' | xargs -0 cat) | wc -l)
    jq -c --arg n "$name" --arg model "$model" --argjson lines "$lines" \
        '{corpus: $n, model: $model, files, lines: $lines, chunks, seconds, chunk_seconds, embed_seconds,
          chunks_per_second_total: (.chunks / .seconds), chunks_per_second_embedding: .chunks_per_second}' \
        "$OUT/$name.summary.json" | tee -a "$RESULTS" >&2
}

# latency NAME MODES: warm (search_bench) and cold (fresh processes) per mode.
latency() {
    local name=$1 modes=$2
    nice -n 5 "$BENCH" --index "$OUT/$name" --queries "$OUT/$name.queries.jsonl" --modes "$modes" |
        jq -c --arg n "$name" '. + {corpus: $n, kind: "warm"}' | tee -a "$RESULTS" >&2
    for mode in ${modes//,/ }; do
        python3 - "$BIN" "$OUT/$name" "$mode" "$OUT/$name.queries.jsonl" "$COLD_RUNS" "$name" <<'EOF' | tee -a "$RESULTS" >&2
import json, subprocess, sys, time
bin_, index, mode, queries, runs, name = sys.argv[1:7]
qs = [json.loads(l)["query"] for l in open(queries)][5:5 + int(runs)]
ms = []
for q in qs:
    t = time.perf_counter()
    subprocess.run(["nice", "-n", "5", bin_, "search", "--index", index, "--mode", mode, "-k", "10", "--json", q],
                   check=True, stdout=subprocess.DEVNULL)
    ms.append((time.perf_counter() - t) * 1e3)
s = sorted(ms)
pct = lambda p: s[min(len(s) - 1, round(p * (len(s) - 1)))]
print(json.dumps({"corpus": name, "kind": "cold", "mode": mode, "queries": len(ms),
                  "p50_ms": round(pct(0.5), 1), "p99_ms": round(pct(0.99), 1), "max_ms": round(s[-1], 1)}))
EOF
    done
}

doc_queries . > "$OUT/repo.queries.jsonl"
doc_queries "$RUSTLIB" > "$OUT/rustlib.queries.jsonl"
doc_queries "$RUSTLIB/alloc" > "$OUT/alloc.queries.jsonl"

index repo . "$MODEL"
latency repo bm25,dense,hybrid
index alloc "$RUSTLIB/alloc" "$MODEL"
latency alloc bm25,dense,hybrid
index rustlib "$RUSTLIB" tests/fixtures/tiny-mlm
latency rustlib bm25
rows=$(jq -r 'select(.corpus == "rustlib" and .chunks_per_second_total) | .chunks' "$RESULTS")
dim=$(jq -r '.model.dimension' "$OUT/alloc/manifest.json")
for n in "$rows" 100000; do
    nice -n 5 "$BENCH" --scan "${n}x${dim}" | jq -c '. + {corpus: "rustlib", kind: "scan"}' | tee -a "$RESULTS" >&2
done

echo
echo "# $machine; model $MODEL"
echo
echo "| corpus | files | lines | chunks | index s | chunks/s (all) | chunks/s (embedding) |"
echo "|---|---:|---:|---:|---:|---:|---:|"
jq -r 'select(.chunks_per_second_total) | "| \(.corpus) (\(.model | split("/") | last)) | \(.files) | \(.lines) | \(.chunks) | \(.seconds*10|round/10) | \(.chunks_per_second_total*10|round/10) | \(.chunks_per_second_embedding*10|round/10) |"' "$RESULTS"
echo
echo "| corpus | mode | warm p50 ms | warm p99 ms | query embedding p50 ms | first query ms | cold p50 ms | cold p99 ms |"
echo "|---|---|---:|---:|---:|---:|---:|---:|"
jq -rs 'map(select(.kind == "warm" or .kind == "cold")) | group_by([.corpus, .mode])[] |
    (map(select(.kind == "warm"))[0]) as $w | (map(select(.kind == "cold"))[0]) as $c |
    "| \($w.corpus) | \($w.mode) | \($w.p50_ms) | \($w.p99_ms) | \($w.embed_p50_ms // "-") | \($w.first_ms*10|round/10) | \($c.p50_ms) | \($c.p99_ms) |"' "$RESULTS"
echo
jq -r 'select(.kind == "scan") | "Dense scan + top-10 alone, \(.scan_rows) x \(.dim) (random unit vectors, \(.threads) threads): p50 \(.p50_ms) ms, p99 \(.p99_ms) ms"' "$RESULTS"
