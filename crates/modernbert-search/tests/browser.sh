#!/usr/bin/env bash
# Opt-in headless-browser test of the search page (not run by `cargo test`: it needs Chromium).
#
#   apt-get install -y chromium          # Debian's; `which chromium`
#   bash crates/modernbert-search/tests/browser.sh
#
# Builds `modernbert` (release) unless MODERNBERT_BIN names one, indexes a copy of
# crates/modernbert-search with the default model (MODEL=DIR for another), starts
# `modernbert serve --index`, loads /search?q=... in headless Chromium (--dump-dom after a
# virtual-time budget: the page's fetch and rendering have finished) and checks that
#   1. the page searched (body data-state="done") and says how many results it got;
#   2. its results, file:start-end in order, are exactly `modernbert search --json`'s for the same
#      query, mode and top-k (bm25 and hybrid; hybrid embeds the query with the model);
#   3. the code is shown with line numbers and the query's identifier parts are highlighted;
#   4. a query with no match says "0 results", and a server error is shown on the page.
# Prints "browser test: PASS" and exits 0, or names the failed check and exits 1.
set -euo pipefail
cd "$(dirname "$0")/../../.."
ROOT=$PWD
WORK=${WORK:-$ROOT/work/search-browser-test}
CHROMIUM=${CHROMIUM:-$(command -v chromium || command -v chromium-browser || true)}
[ -n "$CHROMIUM" ] || { echo "browser test: chromium not found (apt-get install -y chromium)" >&2; exit 2; }
if [ -z "${MODERNBERT_BIN:-}" ]; then
    nice -n 5 cargo build --release -q -p modernbert-cli
    MODERNBERT_BIN=$ROOT/target/release/modernbert
fi
MODEL_ARGS=()
[ -n "${MODEL:-}" ] && MODEL_ARGS=(--model "$MODEL")

rm -rf "$WORK" && mkdir -p "$WORK"
cp -r "$ROOT/crates/modernbert-search" "$WORK/repo"
"$MODERNBERT_BIN" index "$WORK/repo" --index "$WORK/index" -q "${MODEL_ARGS[@]}" > "$WORK/index.json"

"$MODERNBERT_BIN" serve --index "$WORK/index" --port 0 "${MODEL_ARGS[@]}" > "$WORK/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
PORT=
for _ in $(seq 600); do
    PORT=$(grep -o 'listening on http://127.0.0.1:[0-9]*' "$WORK/serve.log" | head -1 | sed 's/.*://' || true)
    if [ -n "$PORT" ] && curl -sf "http://127.0.0.1:$PORT/health" > /dev/null; then break; fi
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log" >&2; echo "browser test: the server stopped" >&2; exit 1; }
    sleep 0.1
done
curl -sf "http://127.0.0.1:$PORT/health" > /dev/null || { echo "browser test: server not ready" >&2; exit 1; }

fail() { echo "browser test: FAIL: $*" >&2; exit 1; }

# The page at /search?QUERYSTRING, as Chromium leaves it after running its script.
page() {
    timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --no-first-run \
        --user-data-dir="$WORK/chromium-profile" --virtual-time-budget=30000 \
        --dump-dom "http://127.0.0.1:$PORT/search?$1" 2> "$WORK/chromium.err"
}
# file:start-end of every result on a dumped page, one a line.
page_locs() { grep -oE 'class="loc">[^<]+:[0-9]+-[0-9]+</span>' | sed -E 's/class="loc">//; s/<\/span>//'; }
# The same from `modernbert search --json`.
cli_locs() {
    "$MODERNBERT_BIN" search --index "$WORK/index" --json --mode "$1" -k "$2" "$3" |
        jq -r '.results[] | "\(.path):\(.start_line)-\(.end_line)"'
}
urlencode() { jq -rn --arg s "$1" '$s|@uri'; }

checked=0
for spec in "bm25|10|parse_request" "hybrid|10|reciprocal rank fusion of two ranked lists" "bm25|5|identifier tokens camelCase"; do
    IFS='|' read -r mode k query <<< "$spec"
    dom=$(page "q=$(urlencode "$query")&mode=$mode&k=$k")
    grep -q 'data-state="done"' <<< "$dom" || fail "$mode '$query': the page did not finish: $(grep -o 'id="status"[^<]*' <<< "$dom")"
    want=$(cli_locs "$mode" "$k" "$query")
    got=$(page_locs <<< "$dom")
    [ -n "$got" ] || fail "$mode '$query': no results on the page"
    [ "$got" = "$want" ] || fail "$mode '$query': the page shows
$got
but modernbert search --json gives
$want"
    n=$(wc -l <<< "$got")
    grep -qE "id=\"status\"[^>]*>$n results? \\($mode, [0-9]+ ms\\)" <<< "$dom" || fail "$mode '$query': no '$n results ($mode, ... ms)' status"
    grep -qE '<span class="ln">[0-9]+</span>' <<< "$dom" || fail "no line numbers"
    echo "ok: $mode '$query': $n results, first $(head -1 <<< "$got"), same as the CLI"
    checked=$((checked + 1))
done

# The identifier's parts are highlighted in the code.
dom=$(page "q=parse_request&mode=bm25")
grep -q '<mark>parse_request</mark>' <<< "$dom" || fail "parse_request is not highlighted"
echo "ok: the query's identifiers are highlighted"

# No match, and an error from the server (top_k out of range), are both shown as such.
nonword=$(printf 'zq%sxj' vvkw)  # spelled apart: this file is in the index
dom=$(page "q=$nonword&mode=bm25")
grep -qE 'id="status"[^>]*>0 results \(bm25' <<< "$dom" || fail "no '0 results' for a query without a match"
dom=$(curl -s "http://127.0.0.1:$PORT/search" -H 'Content-Type: application/json' -d '{"query": "x", "top_k": 0}')
[ "$(jq -r .error_type <<< "$dom")" = validation ] || fail "top_k 0 is not a 400 validation error: $dom"
dom=$(page "q=x&mode=fuzzy")
grep -qE 'id="status"[^>]*class="error"[^>]*>Error: unknown search mode' <<< "$dom" ||
    fail "a bad mode is not shown as an error: $(grep -o 'id="status"[^<]*' <<< "$dom")"
echo "ok: no match says 0 results; a server error is shown on the page"

echo "browser test: PASS ($checked searches compared with the CLI, $(jq .chunks "$WORK/index.json") chunks, $("$CHROMIUM" --version 2>/dev/null))"
