#!/usr/bin/env bash
# Same inputs, same run: ours vs HF transformers (f32, bf16) vs candle-transformers, per dataset.
#
#   bash bench/compare.sh [DATASETS] [DOCS]      e.g.  bash bench/compare.sh fixed-512,var-256 16
#
# Needs the Python venv (bash scripts/setup-python.sh) for the HF peer and the random base
# checkpoint (written here on first use). Set PEERS="hf candle" to choose peers, REPEAT for passes,
# SIZE=large for the large config. Results: bench/results/compare-<time>.jsonl and a table.
set -euo pipefail
cd "$(dirname "$0")/.."
DATASETS=${1:-fixed-512,var-256}
DOCS=${2:-16}
REPEAT=${REPEAT:-2}
SIZE=${SIZE:-base}
PEERS=${PEERS:-hf candle}
CKPT=${CKPT:-/tmp/modernbert-$SIZE-random}
PY=.venv/bin/python
mkdir -p bench/results
OUT=bench/results/compare-$(date +%Y%m%d-%H%M%S).jsonl

[ -f "$CKPT/model.safetensors" ] || $PY scripts/make_random_checkpoint.py --size "$SIZE" --out "$CKPT"
cargo build -q --release -p modernbert-cli --no-default-features
[[ " $PEERS " == *" candle "* ]] && cargo build -q --release --manifest-path bench/candle-peer/Cargo.toml --target-dir target

echo "# $(uname -n) $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), load $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT"
INPUTS=$(mktemp)
for P in ${PRECISIONS:-f32}; do
  ./target/release/modernbert bench --model "$CKPT" --dataset "$DATASETS" --docs "$DOCS" --repeat "$REPEAT" \
    --dump-inputs "$INPUTS" $([ "$P" != f32 ] && echo --precision "$P") | sed "s/^{/{\"peer\":\"ours-$P\",/" | tee -a "$OUT"
done
for D in ${DATASETS//,/ }; do
  if [[ " $PEERS " == *" hf "* ]]; then
    for DT in float32 bfloat16; do
      $PY bench/hf_peer.py "$CKPT" "$INPUTS" "$D" --dtype $DT --repeat "$REPEAT" | tee -a "$OUT"
    done
  fi
  if [[ " $PEERS " == *" candle "* ]]; then
    ./target/release/candle-peer "$CKPT" "$INPUTS" "$D" 8 "$REPEAT" | tee -a "$OUT"
  fi
done
rm -f "$INPUTS"
$PY bench/ratios.py "$OUT"
