"""examples/ray_embed.py and examples/spark_embed.py, run as their docstrings say, on a local Ray
(2 CPUs: 2 one-thread actors) and a `local[2]` Spark over a few hundred texts: every vector equals
a local `encode` (<= 1e-6). About a minute each on 2 cores; MODERNBERT_SKIP_SCALEOUT=1 skips them."""

from __future__ import annotations

import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import modernbert
from conftest import ROOT, SHIPPED, max_diff

pytestmark = pytest.mark.skipif(os.environ.get("MODERNBERT_SKIP_SCALEOUT") == "1", reason="MODERNBERT_SKIP_SCALEOUT=1")

N = 300


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("models/modernbert-mini not present")
    d = tmp_path_factory.mktemp("scaleout")
    texts = [
        f"Document {i}: " + " ".join(["rust", "and", "python", "über", "données", "🙂"][: 1 + i % 6]) * (1 + i % 9)
        for i in range(N)
    ]
    path = d / "texts.jsonl"
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in enumerate(texts)))
    return d, path, texts


def read_output(folder) -> dict[int, np.ndarray]:
    import pyarrow.parquet as pq

    files = sorted(glob.glob(str(folder / "*.parquet")))
    assert files, f"no Parquet files in {folder}"
    out = {}
    for f in files:
        t = pq.read_table(f, columns=["id", "embedding"]).to_pydict()
        for i, v in zip(t["id"], t["embedding"]):
            out[int(i)] = np.asarray(v, dtype=np.float32)
    return out


def run_example(script: str, *args: str, timeout: int = 420) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", RAY_USAGE_STATS_ENABLED="0")
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{script} failed:\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"


def check(got: dict[int, np.ndarray], want: np.ndarray) -> None:
    assert sorted(got) == list(range(N))
    assert max_diff(np.stack([got[i] for i in range(N)]), want) <= 1e-6


def test_ray_data_example(corpus):
    if importlib.util.find_spec("ray") is None:
        pytest.skip("ray is not installed")
    d, path, texts = corpus
    out = d / "ray-out"
    shutil.rmtree(out, ignore_errors=True)
    # 2 actors x 1 thread = ray.init(num_cpus=2).
    run_example(
        "ray_embed.py", "--model", str(SHIPPED), "--input", str(path), "--output", str(out),
        "--actors", "2", "--threads", "1", "--batch-size", "64",
    )
    check(read_output(out), modernbert.Model.load(str(SHIPPED)).encode(texts))


def test_spark_example(corpus):
    if importlib.util.find_spec("pyspark") is None:
        pytest.skip("pyspark is not installed")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java (17+)")
    d, path, texts = corpus
    out = d / "spark-out"
    run_example(
        "spark_embed.py", "--model", str(SHIPPED), "--input", str(path), "--output", str(out),
        "--master", "local[2]", "--threads", "1", "--partitions", "4", "--batch-size", "50", "--normalize",
    )
    check(read_output(out), modernbert.Model.load(str(SHIPPED)).encode(texts, normalize_embeddings=True))
