#!/usr/bin/env bash
# Creates the Python environment for building and testing the Python package: $VENV (default
# .venv-py at the repository root) with the pinned tools of requirements-dev.txt (maturin, numpy,
# pytest, Ray Data, PySpark, pandas, pyarrow). Idempotent. Spark also needs Java 17+ on PATH.
#
#   bash crates/modernbert-py/setup-venv.sh          # PYTHON=python3.12 VENV=/tmp/venv to choose
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv-py}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --upgrade pip
"$VENV/bin/python" -m pip install --quiet -r "$HERE/requirements-dev.txt"
"$VENV/bin/python" - <<'PYEOF'
import sys, importlib.metadata as md
print("python", sys.version.split()[0], "|", ", ".join(
    f"{p} {md.version(p)}" for p in ("maturin", "numpy", "pytest", "ray", "pyspark", "pandas", "pyarrow")))
PYEOF
