"""Shared helpers for the Python package's tests (run them with crates/modernbert-py/test.sh).

The tests import the *installed* `modernbert` wheel, read the repository's fixtures
(tests/fixtures) and, for CLI parity, run the `modernbert` binary (target/release/modernbert,
or $MODERNBERT_CLI).
"""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures"
FORMATS = FIXTURES / "formats"
TINY_MLM = FIXTURES / "tiny-mlm"
SHIPPED = ROOT / "models" / "modernbert-mini"


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """A safetensors file as numpy arrays (F32, I64 and BF16 tensors), without the package."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    body = data[8 + n :]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        start, end = info["data_offsets"]
        raw = body[start:end]
        dtype = info["dtype"]
        if dtype == "F32":
            a = np.frombuffer(raw, dtype="<f4")
        elif dtype == "I64":
            a = np.frombuffer(raw, dtype="<i8")
        elif dtype == "BF16":
            a = (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            raise ValueError(f"{path}: {name}: dtype {dtype} not handled")
        out[name] = a.reshape(info["shape"])
    return out


def word_level_tokenizer(vocab_size: int, cls_id: int = 1, sep_id: int = 2) -> dict:
    """A WordLevel tokenizer.json whose word `w<N>` is id N, so a text reproduces any id
    sequence of a random-id fixture: "w17 w250" -> [CLS] 17 250 [SEP]."""
    specials = {0: "[UNK]", cls_id: "[CLS]", sep_id: "[SEP]", 3: "[PAD]"}
    vocab = {specials.get(i, f"w{i}"): i for i in range(vocab_size)}
    added = [
        {"id": i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
         "normalized": False, "special": True}
        for i, t in sorted(specials.items())
    ]
    spec = lambda t: {"SpecialToken": {"id": t, "type_id": 0}}  # noqa: E731
    seq = lambda s: {"Sequence": {"id": s, "type_id": 0}}  # noqa: E731
    return {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": None,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [spec("[CLS]"), seq("A"), spec("[SEP]")],
            "pair": [spec("[CLS]"), seq("A"), spec("[SEP]"), seq("B"), spec("[SEP]")],
            "special_tokens": {
                "[CLS]": {"id": "[CLS]", "ids": [cls_id], "tokens": ["[CLS]"]},
                "[SEP]": {"id": "[SEP]", "ids": [sep_id], "tokens": ["[SEP]"]},
            },
        },
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "[UNK]"},
    }


def with_word_tokenizer(fixture: Path, tmp: Path) -> Path:
    """A copy of a random-id fixture (config + weights) with a `w<N>` tokenizer."""
    out = tmp / fixture.name
    out.mkdir()
    for f in fixture.iterdir():
        if f.name == "config.json" or f.name.startswith("model"):
            shutil.copy(f, out / f.name)
    config = json.loads((fixture / "config.json").read_text())
    tok = word_level_tokenizer(config["vocab_size"], config.get("cls_token_id", 1), config.get("sep_token_id", 2))
    (out / "tokenizer.json").write_text(json.dumps(tok))
    return out


def ids_to_text(ids) -> str | None:
    """The `w<N>` text of a fixture input `[CLS] ... [SEP]`, or None when it has no text."""
    ids = [int(i) for i in ids]
    if len(ids) < 3 or ids[0] != 1 or ids[-1] != 2:
        return None
    return " ".join(f"w{i}" for i in ids[1:-1])


def expected_json(d: Path) -> dict:
    return json.loads((d / "expected.json").read_text())


def format_dirs(kind: str) -> list[Path]:
    return sorted(d for d in FORMATS.iterdir() if (d / "expected.json").is_file() and expected_json(d)["kind"] == kind)


def max_diff(a, b) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.max(np.abs(a - b))) if a.size else 0.0


@pytest.fixture(scope="session")
def cli():
    """Runs the `modernbert` binary; returns its JSON lines."""
    exe = Path(os.environ.get("MODERNBERT_CLI", ROOT / "target" / "release" / "modernbert"))
    if not exe.is_file():
        pytest.skip(f"CLI parity needs {exe} (cargo build --release -p modernbert-cli)")

    def run(*args: str) -> list:
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        out = subprocess.run([str(exe), *args], capture_output=True, text=True, env=env)
        assert out.returncode == 0, f"{args}: {out.stderr}"
        return [json.loads(line) for line in out.stdout.splitlines() if line.strip()]

    return run
