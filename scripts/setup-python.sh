#!/usr/bin/env bash
# Creates ./.venv with the pinned Python toolchain used to build the tokenizer
# asset and the reference fixtures (scripts/build_tokenizer.py,
# scripts/make_tokenizer_cases.py, scripts/make_fixtures.py).
#
# Idempotent: re-running only installs what is missing / mismatched.
# CI never runs this (the Rust tests consume the committed fixtures).
#
# Usage: bash scripts/setup-python.sh
#
# Note: the Linux torch wheel on PyPI is the CUDA build and pulls the nvidia-*
# wheels (several GB). Installing it with --no-deps does not work: `import torch`
# preloads libcudart/libcublasLt and fails without them (checked with torch
# 2.15.0). Everything here runs on CPU anyway.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"

TORCH_VERSION=2.15.0
TRANSFORMERS_VERSION=5.23.0
TOKENIZERS_VERSION=0.23.3
SAFETENSORS_VERSION=0.8.0
NUMPY_VERSION=2.4.6
ACCELERATE_VERSION=1.16.0

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"

"$PY" -m pip install --quiet --upgrade pip

"$PY" -m pip install --quiet \
  "torch==$TORCH_VERSION" \
  "transformers==$TRANSFORMERS_VERSION" \
  "tokenizers==$TOKENIZERS_VERSION" \
  "safetensors==$SAFETENSORS_VERSION" \
  "numpy==$NUMPY_VERSION" \
  "accelerate==$ACCELERATE_VERSION"

"$PY" - <<'PYEOF'
import torch, transformers, tokenizers, safetensors, numpy
print("python", __import__("sys").version.split()[0])
for m in (torch, transformers, tokenizers, safetensors, numpy):
    print(m.__name__, m.__version__)
PYEOF
