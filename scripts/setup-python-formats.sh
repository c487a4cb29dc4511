#!/usr/bin/env bash
# Python side of the deployment-format fixtures (scripts/make_format_fixtures.py,
# tests/fixtures/formats/, docs/formats.md).
#
#   1. adds sentence-transformers 6.x to ./.venv (created by scripts/setup-python.sh:
#      torch 2.15.0, transformers 5.23.0);
#   2. creates ./.venv-pylate with PyLate and the versions it pins: PyLate 1.6.0 requires
#      sentence-transformers==5.3.0 and transformers<=5.3.0, and its dependency fast-plaid
#      1.4.6.2110 requires torch==2.11.0. That venv therefore also provides an ST 5.x
#      (legacy-layout) writer: ST <= 5.3 is the last release with the `sentence_transformers.models.*`
#      module types and the boolean `pooling_mode_*` keys. torch is the PyPI wheel (CUDA build, it pulls
#      a few GB of nvidia-* wheels; download.pytorch.org is not reachable here). Fixtures run on CPU.
#
# Idempotent: re-running only installs what is missing / mismatched.
# CI never runs this (the Rust tests consume the committed fixtures).
#
# Usage: bash scripts/setup-python.sh && bash scripts/setup-python-formats.sh
#        (or: bash scripts/setup-python-formats.sh st6   /   ... pylate   to do one half)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
VENV_PYLATE="${VENV_PYLATE:-$ROOT/.venv-pylate}"
PYTHON="${PYTHON:-python3}"
WHAT="${1:-all}"

ST6_VERSION=6.3.0
DATASETS_VERSION=5.2.0   # the SentenceTransformerTrainer of scripts/st_finetune.py (bench/embed_finetune.sh)
SCIKIT_LEARN_VERSION=1.9.1
SCIPY_VERSION=1.17.1

PYLATE_VERSION=1.6.0
PYLATE_ST_VERSION=5.3.0          # pinned by pylate 1.6.0
PYLATE_TRANSFORMERS_VERSION=5.3.0 # pylate 1.6.0: transformers<=5.3.0
PYLATE_TORCH_VERSION=2.11.0       # fast-plaid 1.4.6.2110: torch==2.11.0
PYLATE_TOKENIZERS_VERSION=0.22.2  # what transformers 5.3.0 resolves to (< 0.23)
PYLATE_HF_HUB_VERSION=1.33.0
NUMPY_VERSION=2.4.6
SAFETENSORS_VERSION=0.8.0

if [ "$WHAT" = all ] || [ "$WHAT" = st6 ]; then
  if [ ! -x "$VENV/bin/python" ]; then
    echo "missing $VENV: run scripts/setup-python.sh first" >&2
    exit 1
  fi
  "$VENV/bin/python" -m pip install --quiet \
    "sentence-transformers==$ST6_VERSION" \
    "datasets==$DATASETS_VERSION" \
    "scikit-learn==$SCIKIT_LEARN_VERSION" \
    "scipy==$SCIPY_VERSION"
  "$VENV/bin/python" - <<'PYEOF'
import torch, transformers, sentence_transformers
for m in (torch, transformers, sentence_transformers):
    print(m.__name__, m.__version__)
PYEOF
fi

if [ "$WHAT" = all ] || [ "$WHAT" = pylate ]; then
  if [ ! -x "$VENV_PYLATE/bin/python" ]; then
    "$PYTHON" -m venv "$VENV_PYLATE"
  fi
  PY="$VENV_PYLATE/bin/python"
  "$PY" -m pip install --quiet --upgrade pip
  "$PY" -m pip install --quiet \
    "torch==$PYLATE_TORCH_VERSION" \
    "pylate==$PYLATE_VERSION" \
    "sentence-transformers==$PYLATE_ST_VERSION" \
    "transformers==$PYLATE_TRANSFORMERS_VERSION" \
    "tokenizers==$PYLATE_TOKENIZERS_VERSION" \
    "huggingface_hub==$PYLATE_HF_HUB_VERSION" \
    "numpy==$NUMPY_VERSION" \
    "safetensors==$SAFETENSORS_VERSION" \
    "scipy==$SCIPY_VERSION" \
    "scikit-learn==$SCIKIT_LEARN_VERSION"
  "$PY" - <<'PYEOF'
import torch, transformers, tokenizers, sentence_transformers, pylate
for m in (torch, transformers, tokenizers, sentence_transformers, pylate):
    print(m.__name__, m.__version__)
PYEOF
fi
