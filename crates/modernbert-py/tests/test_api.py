"""Threads, the GIL, errors, properties and pickling."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import modernbert
from conftest import FORMATS, SHIPPED, TINY_MLM, max_diff

TEXTS = [f"Sentence number {i} talks about {'rust ' * (i % 7)}and python." for i in range(64)]


@pytest.fixture(scope="module")
def shipped():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("models/modernbert-mini not present")
    return modernbert.Model.load(str(SHIPPED), threads=2)


def test_threads_share_one_model(shipped):
    ref = shipped.encode(TEXTS)
    masks = ["Returns the [MASK] of the string.", "let v = Vec::[MASK]();"]
    ref_fill = shipped.fill_mask(masks)

    def work(k):
        texts = TEXTS[k:] + TEXTS[:k]
        got = shipped.encode(texts)
        want = np.concatenate([ref[k:], ref[:k]])
        return max_diff(got, want), shipped.fill_mask(masks) == ref_fill

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(work, range(12)))
    assert all(d <= 1e-6 for d, _ in results), results
    assert all(same for _, same in results)


def test_thread_counts_give_the_same_vectors(shipped):
    one = modernbert.Model.load(str(SHIPPED), threads=1)
    default = modernbert.Model.load(str(SHIPPED))
    assert one.threads == 1 and default.threads is None and shipped.threads == 2
    ref = shipped.encode(TEXTS)
    assert max_diff(one.encode(TEXTS), ref) <= 1e-6
    assert max_diff(default.encode(TEXTS), ref) <= 1e-6


def test_inference_releases_the_gil(shipped):
    """While one thread is inside `encode`, another Python thread keeps running."""
    texts = TEXTS * 8
    shipped.encode(texts[:4])  # warm up
    inside = {}

    def encode():
        inside["start"] = time.perf_counter()
        shipped.encode(texts)
        inside["end"] = time.perf_counter()

    ticks = []
    t = threading.Thread(target=encode)
    t.start()
    while t.is_alive():
        ticks.append(time.perf_counter())
        time.sleep(0.001)
    t.join()
    during = [x for x in ticks if inside["start"] < x < inside["end"]]
    assert inside["end"] - inside["start"] > 0.05
    assert len(during) >= 10, (len(during), inside)


def test_errors_are_python_exceptions():
    with pytest.raises(FileNotFoundError, match="does not exist"):
        modernbert.Model.load("/nonexistent/model/dir")
    with pytest.raises(ValueError, match=r'unknown precision "f16" \(f32, bf16, int8\)'):
        modernbert.Model.load(str(TINY_MLM), precision="f16")
    with pytest.raises(ValueError, match="threads must be at least 1"):
        modernbert.Model.load(str(TINY_MLM), threads=0)
    m = modernbert.Model.load(str(TINY_MLM))
    with pytest.raises(ValueError, match="input 1: empty text"):
        m.encode(["fine", "   "])
    with pytest.raises(ValueError, match="input 0 is empty"):
        m.fill_mask([""])
    with pytest.raises(ValueError, match="has no \\[MASK\\] token"):
        m.fill_mask(["no mask here"])
    with pytest.raises(ValueError, match='prompt name "query" given, but the model has no prompts'):
        m.encode("x", prompt_name="query")
    with pytest.raises(ValueError, match="reranking needs a cross-encoder or a ColBERT model"):
        m.rerank("q", ["d"])
    with pytest.raises(ValueError, match="classify needs a classification model"):
        m.classify(["text"])
    with pytest.raises(TypeError, match=r"texts\[1\] must be a str, not int"):
        m.encode(["ok", 3])
    with pytest.raises(TypeError, match="texts must be a str or a sequence of str"):
        m.encode(42)
    with pytest.raises(ValueError, match="batch_size must be at least 1"):
        m.encode(["x"], batch_size=0)
    with pytest.raises(ValueError, match="more than the model's maximum"):
        m.fill_mask(["[MASK] " + "word " * 9000])
    st = modernbert.Model.load(str(FORMATS / "st6-mean-prompts"))
    with pytest.raises(ValueError, match=r'prompt name "nope" is not one of the model\'s prompts \["document", "query"\]'):
        st.encode(["x"], prompt_name="nope")
    with pytest.raises(ValueError, match="fill-mask needs a masked-LM model"):
        st.fill_mask(["a [MASK]"])


def test_model_without_tokenizer(tmp_path):
    import shutil

    d = tmp_path / "no-tokenizer"
    d.mkdir()
    for f in ("config.json", "model.safetensors"):
        shutil.copy(TINY_MLM / f, d / f)
    m = modernbert.Model.load(str(d))
    with pytest.raises(ValueError, match="has no tokenizer.json"):
        m.encode(["x"])


def test_properties():
    m = modernbert.Model.load(str(TINY_MLM))
    cfg = m.config
    assert cfg["hidden_size"] == m.dimension == 32
    assert cfg["max_position_embeddings"] == m.max_seq_length
    assert m.format == "transformers" and m.precision == "f32"
    assert m.path.endswith("tiny-mlm") and "tiny-mlm" in repr(m)
    assert m.prompts == {} and m.default_prompt_name is None
    # max_seq_length truncates encode's inputs (and can be reset).
    long = "word " * 200
    m.max_seq_length = 16
    assert m.max_seq_length == 16
    short = m.encode(long)
    m.max_seq_length = None
    assert m.max_seq_length == cfg["max_position_embeddings"]
    ids = m.tokenize(long, max_length=16)["ids"]
    assert len(ids) == 16
    assert m.tokenize(" ".join(["word"] * 14))["ids"] == ids
    assert max_diff(short, m.encode(" ".join(["word"] * 14))) <= 1e-6
    with pytest.raises(ValueError):
        m.max_seq_length = 1


def test_default_model_is_the_shipped_one():
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("models/modernbert-mini not present")
    m = modernbert.Model.load()
    assert m.config["hidden_size"] == modernbert.Model.load(str(SHIPPED)).config["hidden_size"]


def test_pickle_reloads_from_the_path():
    m = modernbert.Model.load(TINY_MLM, precision="f32", threads=1)  # os.PathLike works too
    m2 = pickle.loads(pickle.dumps(m))
    assert isinstance(m2, modernbert.Model) and m2.threads == 1 and m2.path == m.path
    assert max_diff(m2.encode(["hello world"]), m.encode(["hello world"])) == 0.0


def test_version():
    assert isinstance(modernbert.__version__, str) and modernbert.__version__.count(".") == 2
