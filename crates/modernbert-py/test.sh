#!/usr/bin/env bash
# Opt-in tests of the Python package (CI does not run them): makes the venv (setup-venv.sh), builds
# the abi3 wheel with maturin, installs it, builds the CLI (for the parity tests), runs pytest.
#
#   bash crates/modernbert-py/test.sh                    # everything, ~5 min after the first build
#   bash crates/modernbert-py/test.sh -k formats -x      # extra arguments go to pytest
#   MODERNBERT_SKIP_SCALEOUT=1 bash crates/modernbert-py/test.sh   # without the Ray / Spark runs
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${VENV:-$ROOT/.venv-py}"
cd "$ROOT"

bash "$HERE/setup-venv.sh"
rm -rf target/wheels/modernbert-*.whl
"$VENV/bin/maturin" build --release -m crates/modernbert-py/Cargo.toml -i "$VENV/bin/python" -o target/wheels
"$VENV/bin/python" -m pip install --quiet --force-reinstall --no-deps target/wheels/modernbert-*.whl
cargo build --release -p modernbert-cli
cd "$HERE"
"$VENV/bin/python" -m pytest tests "$@"
