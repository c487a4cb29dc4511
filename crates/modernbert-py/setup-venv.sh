#!/usr/bin/env bash
# Creates the Python environment for building and testing the Python package: $VENV (default
# .venv-py at the repository root) with the pinned tools of requirements-dev.txt (maturin, numpy,
# pytest, Ray Data, PySpark, pandas, pyarrow). Idempotent. Spark also needs Java 17+: without a
# `java` on PATH (or $JAVA_HOME), it installs Debian's default-jre-headless when it runs as root
# with apt-get (MODERNBERT_NO_APT=1 to skip), else says so (the Spark test is then skipped).
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

if ! command -v java >/dev/null 2>&1 && [ -z "${JAVA_HOME:-}" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && [ "${MODERNBERT_NO_APT:-0}" != 1 ]; then
    echo "no java: installing default-jre-headless for Spark"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq default-jre-headless >/dev/null
  else
    echo "warning: no java on PATH: the Spark test will be skipped (install Java 17+, e.g. default-jre-headless)" >&2
  fi
fi
if command -v java >/dev/null 2>&1; then
  java -version 2>&1 | head -1
fi
