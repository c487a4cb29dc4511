"""Deployment formats (tests/fixtures/formats): the package gives what sentence-transformers and
PyLate computed (<= 1e-4, the fixtures' tolerance) with the same call arguments, and the CLI's
numbers (<= 1e-6)."""

from __future__ import annotations

import numpy as np
import pytest

import modernbert
from conftest import expected_json, format_dirs, max_diff

BI = format_dirs("bi-encoder")
CE = format_dirs("cross-encoder")
COLBERT = format_dirs("colbert")
MALFORMED = format_dirs("malformed")


def test_fixtures_found():
    assert len(BI) >= 5 and len(CE) >= 3 and len(COLBERT) >= 2 and len(MALFORMED) >= 3


@pytest.mark.parametrize("d", BI, ids=lambda d: d.name)
def test_bi_encoder_equals_sentence_transformers(d, cli):
    e = expected_json(d)
    m = modernbert.Model.load(str(d))
    assert m.format == "sentence-transformers"
    assert m.max_seq_length == e["max_seq_length"]
    for case in e["cases"]:
        got = m.encode(
            case["texts"],
            prompt_name=case["prompt_name"],
            prompt=case["prompt"],
            truncate_dim=case["truncate_dim"],
            normalize_embeddings=case["normalize_embeddings"],
        )
        want = np.asarray(case["embeddings"], dtype=np.float32)
        assert got.shape == want.shape
        assert max_diff(got, want) <= 1e-4, case
        # The same through the CLI.
        args = ["embed", "--model", str(d)]
        if not case["normalize_embeddings"]:
            args.append("--no-normalize")
        if case["prompt_name"] is not None:
            args += ["--prompt-name", case["prompt_name"]]
        if case["prompt"] is not None:
            args.append(f"--prompt={case['prompt']}")
        if case["truncate_dim"] is not None:
            args += ["--dimensions", str(case["truncate_dim"])]
        lines = cli(*args, "--", *case["texts"])
        assert max_diff(got, [line["embedding"] for line in lines]) <= 1e-6
    # The default width is after the saved truncate_dim.
    dim = m.encode(e["cases"][0]["texts"][0]).shape[0]
    assert m.dimension == dim


def test_prompts_and_encode_query_document():
    d = next(d for d in BI if d.name == "st6-mean-prompts")
    m = modernbert.Model.load(str(d))
    assert set(m.prompts) >= {"query", "document"}
    assert m.default_prompt_name == "document"
    texts = ["what is rust?", "Rust is a language."]
    assert max_diff(m.encode_query(texts), m.encode(texts, prompt_name="query")) == 0.0
    assert max_diff(m.encode_document(texts), m.encode(texts, prompt_name="document")) == 0.0
    assert max_diff(m.encode_query(texts, prompt=""), m.encode(texts, prompt="")) == 0.0


@pytest.mark.parametrize("d", CE, ids=lambda d: d.name)
def test_cross_encoder_equals_sentence_transformers(d, cli):
    e = expected_json(d)
    m = modernbert.Model.load(str(d))
    assert m.format == "cross-encoder"
    pairs = [tuple(p) for p in e["pairs"]]
    for raw, key in ((False, "scores"), (True, "raw_scores")):
        want = np.asarray(e[key], dtype=np.float32)
        got = m.predict(pairs, raw_scores=raw)
        assert got.dtype == np.float32
        assert max_diff(got.reshape(want.shape), want) <= 1e-4, key
        assert max_diff(m.predict(list(pairs[0]), raw_scores=raw), want[0]) <= 1e-4
    if e["num_labels"] != 1:
        with pytest.raises(ValueError, match="one output"):
            m.rerank(pairs[0][0], [pairs[0][1]])
        return
    # rerank: one query at a time, sorted, against ST's scores and the CLI's ranking.
    want = np.asarray(e["scores"], dtype=np.float32)
    for i, (q, doc) in enumerate(pairs):
        r = m.rerank(q, [doc])
        assert r[0]["corpus_id"] == r[0]["index"] == 0 and r[0]["text"] == doc
        assert abs(r[0]["score"] - want[i]) <= 1e-4
    q = pairs[0][0]
    docs = [p[1] for p in pairs]
    got = m.rerank(q, docs)
    scores = [r["score"] for r in got]
    assert scores == sorted(scores, reverse=True)
    lines = cli("rerank", "--model", str(d), "--query", q, "--", *docs)
    assert [r["index"] for r in got] == [line["index"] for line in lines]
    assert max_diff(scores, [line["score"] for line in lines]) <= 1e-6
    top = m.rerank(q, docs, top_k=2, return_documents=False)
    assert len(top) == 2 and "text" not in top[0] and top[0]["corpus_id"] == got[0]["corpus_id"]
    raw = m.rerank(q, docs, raw_scores=True)
    lines = cli("rerank", "--model", str(d), "--raw-scores", "--query", q, "--", *docs)
    assert max_diff([r["score"] for r in raw], [line["score"] for line in lines]) <= 1e-6


@pytest.mark.parametrize("d", COLBERT, ids=lambda d: d.name)
def test_colbert_equals_pylate(d, cli):
    e = expected_json(d)
    m = modernbert.Model.load(str(d))
    assert m.format == "colbert"
    q = m.encode(e["queries"], is_query=True)
    assert isinstance(q, list) and len(q) == len(e["queries"])
    for got, want in zip(q, e["query_embeddings"]):
        assert got.dtype == np.float32 and got.shape == np.asarray(want).shape
        assert max_diff(got, want) <= 1e-4
    docs = m.encode(e["documents"])
    for got, want in zip(docs, e["document_embeddings"]):
        assert max_diff(got, want) <= 1e-4
    assert max_diff(m.encode_query(e["queries"][0]), q[0]) <= 1e-6
    # Token vectors equal the CLI's.
    lines = cli("embed", "--model", str(d), "--input-type", "query", "--", *e["queries"])
    for got, line in zip(q, lines):
        assert max_diff(got, line["token_embeddings"]) <= 1e-6
    # MaxSim scores: rerank and predict.
    for qi, query in enumerate(e["queries"]):
        want = np.asarray(e["scores"][qi], dtype=np.float32)
        r = m.rerank(query, e["documents"])
        got = np.zeros(len(want), dtype=np.float32)
        for item in r:
            got[item["corpus_id"]] = item["score"]
        assert max_diff(got, want) <= 1e-4
        p = m.predict([(query, doc) for doc in e["documents"]])
        assert max_diff(p, want) <= 1e-4


@pytest.mark.parametrize("d", MALFORMED, ids=lambda d: d.name)
def test_malformed_directories_raise(d):
    e = expected_json(d)
    with pytest.raises(ValueError) as err:
        modernbert.Model.load(str(d))
    assert e["error"] in str(err.value)
