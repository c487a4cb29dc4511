"""The Python package gives the library's numbers: equal to the CLI's JSON (<= 1e-6) and to the
Hugging Face reference outputs of the parity fixtures (<= 1e-4, the Rust tests' tolerance)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import modernbert
from conftest import (
    FIXTURES,
    SHIPPED,
    TINY_MLM,
    ids_to_text,
    max_diff,
    read_safetensors,
    with_word_tokenizer,
)

TINY_TEXTS = json.loads((TINY_MLM / "meta.json").read_text())["texts"]
MASKED = [(i, t) for i, t in enumerate(TINY_TEXTS) if "[MASK]" in t]
PROSE = [
    "Returns the length of the string.",
    "let v: Vec<u32> = Vec::new();",
    "Die Katze sitzt auf der Matte, und der Hund schläft.",
    "A much longer input " * 30,
]


@pytest.fixture(scope="module")
def tiny():
    return modernbert.Model.load(str(TINY_MLM))


def test_fill_mask_equals_cli(tiny, cli):
    texts = [t for _, t in MASKED]
    got = tiny.fill_mask(texts, top_k=7)
    want = cli("fill-mask", "--model", str(TINY_MLM), "--top-k", "7", "--", *texts)
    assert len(got) == len(want) == len(texts) == 3
    worst = 0.0
    for g, w in zip(got, want):
        assert g["text"] == w["text"]
        assert [m["position"] for m in g["masks"]] == [m["position"] for m in w["masks"]]
        for gm, wm in zip(g["masks"], w["masks"]):
            assert [p["token_id"] for p in gm["predictions"]] == [p["token_id"] for p in wm["predictions"]]
            assert [p["token"] for p in gm["predictions"]] == [p["token"] for p in wm["predictions"]]
            for key in ("score", "logit"):
                worst = max(worst, max_diff([p[key] for p in gm["predictions"]], [p[key] for p in wm["predictions"]]))
    assert worst <= 1e-6, worst


def test_fill_mask_equals_hf_logits(tiny):
    """Top-k logits of every [MASK] equal HF's MLM logits at the sampled vocabulary columns."""
    exp = read_safetensors(TINY_MLM / "expected.safetensors")
    cols = {int(c): j for j, c in enumerate(exp["mlm_logits_cols"])}
    checked = 0
    results = tiny.fill_mask([t for _, t in MASKED], top_k=500)
    for (i, _), r in zip(MASKED, results):
        assert list(tiny.tokenize(TINY_TEXTS[i])["ids"]) == exp[f"input_ids.{i}"].tolist()
        for m in r["masks"]:
            row = exp[f"mlm_logits.{i}"][m["position"]]
            for p in m["predictions"]:
                if p["token_id"] in cols:
                    assert abs(p["logit"] - row[cols[p["token_id"]]]) <= 1e-4
                    checked += 1
    assert checked >= 4


def test_single_string_returns_one_result(tiny):
    one = tiny.fill_mask(MASKED[0][1])
    assert isinstance(one, dict) and one["text"] == MASKED[0][1]
    assert one == tiny.fill_mask([MASKED[0][1]])[0]


def test_encode_equals_cli_and_hf_mean_pooling(tiny, cli):
    got = tiny.encode(TINY_TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TINY_TEXTS), tiny.dimension)
    want = cli("embed", "--model", str(TINY_MLM), "--no-normalize", "--", *TINY_TEXTS)
    assert max_diff(got, [w["embedding"] for w in want]) <= 1e-6
    # A plain checkpoint is mean-pooled, as sentence-transformers does: HF's mean_pooled.
    exp = read_safetensors(TINY_MLM / "expected.safetensors")
    assert max_diff(got, exp["mean_pooled"]) <= 1e-4
    # normalize_embeddings=True equals the CLI's default (L2-normalised).
    normed = tiny.encode(TINY_TEXTS, normalize_embeddings=True)
    want = cli("embed", "--model", str(TINY_MLM), "--", *TINY_TEXTS)
    assert max_diff(normed, [w["embedding"] for w in want]) <= 1e-6
    assert np.allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-6)


def test_encode_shapes(tiny):
    one = tiny.encode(TINY_TEXTS[1])
    assert one.shape == (tiny.dimension,) and one.dtype == np.float32
    assert max_diff(one, tiny.encode([TINY_TEXTS[1]])[0]) == 0.0
    assert tiny.encode([]).shape == (0, tiny.dimension)
    assert tiny.encode(TINY_TEXTS, truncate_dim=5).shape == (len(TINY_TEXTS), 5)
    # Any iterable of str: tuple, numpy array, generator.
    arr = np.array(TINY_TEXTS)
    assert max_diff(tiny.encode(arr), tiny.encode(list(TINY_TEXTS))) <= 1e-6
    assert tiny.encode(t for t in TINY_TEXTS).shape == (len(TINY_TEXTS), tiny.dimension)


def test_batch_size_does_not_change_results(tiny):
    texts = TINY_TEXTS * 5
    ref = tiny.encode(texts, batch_size=len(texts))
    for bs in (1, 3, 32):
        assert max_diff(tiny.encode(texts, batch_size=bs), ref) <= 1e-6


def test_shipped_model_equals_cli(cli):
    if not (SHIPPED / "config.json").is_file():
        pytest.skip("models/modernbert-mini not present")
    m = modernbert.Model.load(str(SHIPPED))
    got = m.encode(PROSE)
    want = cli("embed", "--model", str(SHIPPED), "--no-normalize", "--", *PROSE)
    assert max_diff(got, [w["embedding"] for w in want]) <= 1e-6
    masked = ["let v: Vec<u32> = Vec::[MASK]();", "Returns the [MASK] of the string."]
    got = m.fill_mask(masked)
    want = cli("fill-mask", "--model", str(SHIPPED), "--", *masked)
    for g, w in zip(got, want):
        for gm, wm in zip(g["masks"], w["masks"]):
            assert [p["token_id"] for p in gm["predictions"]] == [p["token_id"] for p in wm["predictions"]]
            assert max_diff([p["score"] for p in gm["predictions"]], [p["score"] for p in wm["predictions"]]) <= 1e-6


def test_tokenize_equals_cli_and_reference_cases(tiny, cli):
    got = tiny.tokenize(TINY_TEXTS)
    want = cli("tokenize", "--model", str(TINY_MLM), "--", *TINY_TEXTS)
    for g, w in zip(got, want):
        assert g["ids"] == w["ids"] and g["tokens"] == w["tokens"]
        assert [list(o) for o in g["offsets"]] == w["offsets"]
    cases = json.loads((FIXTURES / "tokenizer_cases.json").read_text())
    checked = 0
    for c in cases:
        if not c["add_special_tokens"] or not c["text"].strip():
            continue
        pairs = None if c["pair"] is None else [c["pair"]]
        r = tiny.tokenize([c["text"]], pairs=pairs, max_length=c["max_length"])[0]
        assert r["ids"] == c["ids"], c["text"]
        assert r["tokens"] == c["tokens"], c["text"]
        assert [list(o) for o in r["offsets"]] == c["offsets"], c["text"]
        checked += 1
    assert checked > 40


@pytest.mark.parametrize("name", ["seqcls-mean", "seqcls-cls", "tokencls"])
def test_classify_equals_hf_and_cli(name, tmp_path, cli):
    """Random-id classifier fixtures, given a tokenizer whose word `w<N>` is id N so the texts
    reproduce the fixture's inputs exactly: logits equal HF's; the output equals the CLI's JSON."""
    d = with_word_tokenizer(FIXTURES / name, tmp_path)
    exp = read_safetensors(FIXTURES / name / "expected.safetensors")
    n = sum(1 for k in exp if k.startswith("input_ids."))
    texts = [ids_to_text(exp[f"input_ids.{i}"]) for i in range(n)]
    m = modernbert.Model.load(str(d))
    got = m.classify(texts)
    for i, (t, r) in enumerate(zip(texts, got)):
        assert m.tokenize(t)["ids"] == exp[f"input_ids.{i}"].tolist()
        if name == "tokencls":
            assert max_diff([tok["logits"] for tok in r], exp[f"token_logits.{i}"][1:-1]) <= 1e-4
        else:
            assert max_diff(r["logits"], exp["seq_logits"][i]) <= 1e-4
            assert r["label"] == m.config["id2label"][str(int(np.argmax(r["logits"])))]
    want = cli("classify", "--model", str(d), "--", *texts)
    _assert_same_classification(got, want)
    # Pairs and (token classification) entity grouping, against the CLI.
    firsts, seconds = texts[:2], texts[1:3]
    got = m.classify(firsts, pairs=seconds)
    args = [x for ab in zip(firsts, seconds) for x in ab]
    _assert_same_classification(got, cli("classify", "--model", str(d), "--pair", "--", *args))
    if name == "tokencls":
        got = m.classify(texts, aggregate=True)
        want = cli("classify", "--model", str(d), "--aggregate", "--", *texts)
        for g, w in zip(got, want):
            assert [e["word"] for e in g["entities"]] == [e["word"] for e in w["entities"]]
            assert max_diff([e["score"] for e in g["entities"]], [e["score"] for e in w["entities"]]) <= 1e-6


def _assert_same_classification(got, want):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if isinstance(w, list):  # token classification
            assert [t["label"] for t in g] == [t["label"] for t in w]
            assert [(t["start"], t["end"], t["token"]) for t in g] == [(t["start"], t["end"], t["token"]) for t in w]
            assert max_diff([t["logits"] for t in g], [t["logits"] for t in w]) <= 1e-6
        else:
            assert g["label"] == w["label"]
            assert max_diff(g["logits"], w["logits"]) <= 1e-6
            assert abs(g["score"] - w["score"]) <= 1e-6


@pytest.mark.parametrize("name", ["long-window", "odd-dims", "bf16", "backbone-sharded"])
def test_encode_equals_hf_mean_pooling(name, tmp_path):
    """Window edges, odd head sizes, bf16 weights, sharded checkpoints: `encode` (mean pooling)
    equals HF's mean-pooled hidden states."""
    d = with_word_tokenizer(FIXTURES / name, tmp_path)
    exp = read_safetensors(FIXTURES / name / "expected.safetensors")
    n = sum(1 for k in exp if k.startswith("input_ids."))
    m = modernbert.Model.load(str(d))
    rows = [(i, ids_to_text(exp[f"input_ids.{i}"])) for i in range(n)]
    rows = [(i, t) for i, t in rows if t is not None]
    got = m.encode([t for _, t in rows])
    assert max_diff(got, exp["mean_pooled"][[i for i, _ in rows]]) <= 1e-4


def test_precisions_load_and_approximate_f32():
    ref = modernbert.Model.load(str(SHIPPED)).encode(PROSE, normalize_embeddings=True)
    for p in ("bf16", "int8"):
        m = modernbert.Model.load(str(SHIPPED), precision=p)
        assert m.precision == p
        got = m.encode(PROSE, normalize_embeddings=True)
        cos = np.sum(got * ref, axis=1)
        assert np.all(cos > 0.95), (p, cos)
