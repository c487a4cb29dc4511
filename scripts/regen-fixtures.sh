#!/usr/bin/env bash
# Regenerates every Python-side asset: tokenizer files, tokenizer cases, model fixtures.
# Deterministic: a re-run on the same pinned versions reproduces identical bytes.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup-python.sh
bash scripts/fetch-tokenizer.sh
.venv/bin/python scripts/make_tokenizer_cases.py
.venv/bin/python scripts/make_fixtures.py
