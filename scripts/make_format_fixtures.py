#!/usr/bin/env python3
"""Reference fixtures for the deployment formats (issue 11): sentence-transformers bi-encoders
(ST 6.x layout and the legacy ST <= 5.3 layout), cross-encoders and PyLate ColBERT.

Every fixture is tests/fixtures/formats/<name>/: a model directory exactly as the library's
save() wrote it (one change: tokenizer.json is re-serialised compactly, same JSON value, to keep the
repository small), plus expected.json with the library's own outputs for those files.
See docs/formats.md (behaviours) and docs/fixtures.md (the expected.json contract).

Two environments (scripts/setup-python-formats.sh creates both), run in this order:

    .venv-pylate/bin/python scripts/make_format_fixtures.py   # PyLate 1.6.0 + ST 5.3.0 writers:
                                                              #   colbert-*, legacy-*, ce-st5-*
    .venv/bin/python scripts/make_format_fixtures.py          # ST 6.3.0: st6-*, ce-st6-*, ce-old-*,
                                                              #   malformed-*; then completes the
                                                              #   legacy-*/ce-st5-* expected.json with
                                                              #   ST 6.3 outputs, and re-checks colbert ids

The environment is chosen by what is importable (pylate present -> the PyLate/ST 5.3 env).
Options: --only NAME ... (a subset), --out DIR (default tests/fixtures/formats).
Deterministic: fixed seeds, one CPU thread; a re-run reproduces the same files.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import traceback

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import ModernBertConfig, ModernBertForSequenceClassification, ModernBertModel  # noqa: E402
from transformers.utils import logging as hf_logging  # noqa: E402

import sentence_transformers  # noqa: E402

hf_logging.set_verbosity_error()
hf_logging.disable_progress_bar()
torch.set_num_threads(1)

try:
    import pylate  # noqa: F401

    ENV = "pylate"
except ImportError:
    ENV = "st6"

import logging  # noqa: E402

logging.getLogger("sentence_transformers").setLevel(logging.ERROR)
logging.getLogger("pylate").setLevel(logging.ERROR)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK_DIR = os.path.join(ROOT, "assets", "tokenizer")
TOK_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json")
ST_VERSION = sentence_transformers.__version__

# Real ModernBERT ids (assets/tokenizer).
REAL_IDS = dict(pad_token_id=50283, cls_token_id=50281, sep_token_id=50282, bos_token_id=50281, eos_token_id=50282)
BACKBONE = dict(vocab_size=50368, hidden_size=16, num_attention_heads=2, intermediate_size=32, num_hidden_layers=3,
                global_attn_every_n_layers=2, local_attention=8, max_position_embeddings=512, **REAL_IDS)

# ----------------------------------------------------------------------------- inputs

LONG_CODE = ("fn main() { let v: Vec<u32> = (0..10).map(|x| x * x).filter(|x| x % 2 == 0).collect(); "
             "println!(\"{:?}\", v); } // squares of the even numbers below ten, printed as a vector")
TEXTS = [
    "The quick brown fox jumps over the lazy dog near the riverbank.",
    "def add(a, b):\n    return a + b",
    "Zürich ist die größte Stadt der Schweiz; 東京 is the capital of Japan 🚀",
    LONG_CODE,
    "Hi",
]
TEXTS2 = [
    "How do I reverse a list in Python?",
    "SELECT name, COUNT(*) FROM users GROUP BY name ORDER BY 2 DESC;",
    "Café crème, naïve façade: accents everywhere — and a dash.",
    "Sentence embeddings map a whole text to one vector; late interaction keeps one vector per token "
    "and scores with MaxSim, which is slower but usually more accurate on out-of-domain retrieval.",
]
# Leading/trailing whitespace: ST <= 5.3 strips every text before tokenising, ST >= 5.4 does not.
TEXTS_WS = ["  leading and trailing spaces  ", "\tfn f() {}\n", "no edges here", "x"]

CE_PAIRS = [
    ["How do I sort a list in Python?", "Use sorted(xs) for a new list or xs.sort() to sort in place."],
    ["How do I sort a list in Python?", "The Eiffel Tower is in Paris."],
    ["Wie spät ist es?", "Es ist halb drei — 14:30 Uhr."],
    ["what does this function return?", "def add(a, b):\n    return a + b  # the sum of a and b, "
     "which for two lists is their concatenation and for two strings is the joined string"],
    ["a", "b"],
]

# Queries. With attend_to_expansion_tokens false, every query has >= 8 real tokens ([CLS] [Q] ... [SEP])
# so that with query_length 12 each [MASK] expansion position lies within the +-4 local window of
# some real token (a position whose whole local window is masked has no well-defined output; with the
# released 128-token window this needs query_length > 65). With attention to expansion tokens, a
# short query (7 expansion positions) is fine.
QUERY_LONG = "fn main() { println!(\"hello\"); } -- rust program that prints hello to stdout, explained"
QUERIES_DEFAULT = ["reverse a list in python", "Zürich ist groß", "what is the capital of Japan", QUERY_LONG]
QUERIES_ATTEND = ["hi there", "café au lait recipe", "reverse a list in python", QUERY_LONG]
DOCUMENTS = [
    "Use xs[::-1] or reversed(xs); list.reverse() works in place.",
    "Tokyo (東京) is the capital of Japan.",
    "Zürich ist die größte Stadt der Schweiz.",
    "fn main() { println!(\"hello\"); } prints hello, then exits; nothing else happens, really: "
    "no arguments are parsed, no files are read, and the exit code is zero.",
    "Paris!",
]

# ----------------------------------------------------------------------------- fixtures

FIXTURES = {
    # --- ST 6.x layout (written and computed by ST 6.3) ---
    "st6-mean-prompts": dict(
        env="st6", kind="bi-encoder", seed=3101,
        covers="ST 6 layout; pooling 'mean' (include_prompt true); Normalize; prompts query/document with "
               "default_prompt_name 'document'; max_seq_length 24 (stored as tokenizer_config.json "
               "model_max_length in ST 6) so the long text is truncated; explicit prompt, empty prompt "
               "overriding the default, truncate_dim 8 with and without normalize_embeddings.",
        pooling=dict(pooling_mode="mean", include_prompt=True), dense=None, normalize=True, max_seq_length=24,
        prompts={"query": "search_query: ", "document": "search_document: "}, default_prompt_name="document",
        cases=[
            dict(texts=TEXTS),
            dict(texts=TEXTS, prompt_name="query"),
            dict(texts=TEXTS2, prompt="Represent this text for retrieval: "),
            dict(texts=TEXTS2, prompt=""),
            dict(texts=TEXTS, prompt_name="query", truncate_dim=8),
            dict(texts=TEXTS2, truncate_dim=8, normalize_embeddings=True),
        ]),
    "st6-cls-dense-tanh": dict(
        env="st6", kind="bi-encoder", seed=3102,
        covers="ST 6 layout; pooling 'cls' with include_prompt false (ST >= 5.4 then takes the first "
               "position after the prompt, and prompt_length counts the prompt's trailing-space token); "
               "Dense 16->12 with bias, Tanh; no Normalize; prompts without default; max_seq_length unset "
               "(tokenizer 8192 capped to max_position_embeddings 512).",
        pooling=dict(pooling_mode="cls", include_prompt=False),
        dense=[dict(out=12, bias=True, act="tanh")], normalize=False, max_seq_length=None,
        prompts={"query": "search_query: ", "document": "search_document: "}, default_prompt_name=None,
        cases=[
            dict(texts=TEXTS),
            dict(texts=TEXTS, prompt_name="query"),
            dict(texts=TEXTS2, prompt="Instruct: find similar code\nQuery:"),
            dict(texts=TEXTS2, prompt_name="document", normalize_embeddings=True),
        ]),
    "st6-combo-matryoshka": dict(
        env="st6", kind="bi-encoder", seed=3103,
        covers="ST 6 layout; pooling_mode list ['lasttoken', 'max', 'mean_sqrt_len_tokens', 'weightedmean'] "
               "(concatenated in list order, not the legacy order) with include_prompt false; Dense 64->10 "
               "without bias, Identity; Normalize; truncate_dim 6 saved in config_sentence_transformers.json "
               "(used when encode() gets none); max_seq_length 20.",
        pooling=dict(pooling_mode=["lasttoken", "max", "mean_sqrt_len_tokens", "weightedmean"], include_prompt=False),
        dense=[dict(out=10, bias=False, act="identity")], normalize=True, max_seq_length=20, truncate_dim=6,
        prompts={"query": "query: "}, default_prompt_name=None,
        cases=[
            dict(texts=TEXTS),
            dict(texts=TEXTS, truncate_dim=10),
            dict(texts=TEXTS2, prompt_name="query", truncate_dim=10),
            dict(texts=TEXTS2, prompt_name="query", normalize_embeddings=True),
        ]),
    # --- legacy layout: written by ST 5.3 (PyLate env); embeddings computed by ST 6.3 ---
    "legacy-allmodes-dense-bin": dict(
        env="pylate", kind="bi-encoder", seed=3201,
        covers="legacy layout written by ST 5.3.0 (sentence_transformers.models.* types, boolean "
               "pooling_mode_* keys, word_embedding_dimension, max_seq_length in sentence_bert_config.json); "
               "all six pooling booleans true (legacy concatenation order cls, max, mean, mean_sqrt_len, "
               "weightedmean, lasttoken); Dense 96->12 with bias, Tanh, weights in pytorch_model.bin; "
               "Normalize; prompts with default_prompt_name 'query'; max_seq_length 20. The last case has "
               "whitespace-edged texts: ST 5.3 strips them, ST 6.3 does not (writer_embeddings differ).",
        pooling=dict(modes=["cls", "max", "mean", "mean_sqrt_len_tokens", "weightedmean", "lasttoken"],
                     include_prompt=True),
        dense=[dict(out=12, bias=True, act="tanh", bin=True)], normalize=True, max_seq_length=20,
        prompts={"query": "search_query: ", "document": "search_document: "}, default_prompt_name="query",
        cases=[
            dict(texts=TEXTS),
            dict(texts=TEXTS, prompt_name="document"),
            dict(texts=TEXTS2, prompt=""),
            dict(texts=TEXTS2, truncate_dim=4),
            dict(texts=TEXTS_WS, prompt="", strip_differs=True),
        ]),
    "legacy-mean-prompt-excluded": dict(
        env="pylate", kind="bi-encoder", seed=3202,
        covers="legacy layout written by ST 5.3.0 like nomic modernbert-embed-base (mean, Normalize, "
               "search_query/search_document prompts, no default) but with include_prompt false and a Dense "
               "16->16 Identity with bias in model.safetensors. ST 5.3 measures the prompt on the stripped "
               "prompt ('search_query:' -> 5 tokens incl. [CLS]); ST 6.3 on the unstripped one (6 tokens, the "
               "lone 'Ġ' included), so the first real token is also dropped from the mean: writer_embeddings "
               "differ from embeddings in the prompt cases.",
        pooling=dict(modes=["mean"], include_prompt=False),
        dense=[dict(out=16, bias=True, act="identity")], normalize=True, max_seq_length=None,
        prompts={"query": "search_query: ", "document": "search_document: "}, default_prompt_name=None,
        cases=[
            dict(texts=TEXTS),
            dict(texts=TEXTS, prompt_name="query", strip_differs=True),
            dict(texts=TEXTS2, prompt_name="document", strip_differs=True),
            dict(texts=TEXTS2, prompt="query:", truncate_dim=8),
        ]),
    # --- cross-encoders ---
    "ce-st6-sigmoid": dict(
        env="st6", kind="cross-encoder", seed=3301, num_labels=1, max_length=32,
        covers="ST 6 CrossEncoder save (modules.json with one Transformer, transformer_task "
               "sequence-classification, activation_fn Sigmoid in config_sentence_transformers.json); "
               "num_labels 1, classifier_pooling mean; max_length 32 (tokenizer_config.json model_max_length) "
               "so the long pair is truncated (longest_first)."),
    "ce-old-identity": dict(
        env="st6", kind="cross-encoder", seed=3302, num_labels=1, max_length=None,
        covers="pre-ST-4 cross-encoder layout, hand-written: a plain transformers save of "
               "ModernBertForSequenceClassification (num_labels 1, classifier_pooling mean) whose config.json "
               "has sbert_ce_default_activation_function = torch.nn.modules.linear.Identity (so scores are "
               "raw logits, not sigmoid); no modules.json, no config_sentence_transformers.json."),
    "ce-st5-3labels": dict(
        env="pylate", kind="cross-encoder", seed=3303, num_labels=3, max_length=40,
        covers="ST 5.3 CrossEncoder save (no modules.json; activation stored in config.json "
               "'sentence_transformers': {'activation_fn': Identity, 'version': '5.3.0'}); num_labels 3, "
               "classifier_pooling cls, classifier_bias and id2label; max_length 40 in tokenizer_config.json (the long pair is truncated)."),
    # --- PyLate ColBERT ---
    "colbert-default": dict(
        env="pylate", kind="colbert", seed=3401, attend=False, query_length=12, document_length=20,
        queries=QUERIES_DEFAULT,
        covers="PyLate 1.6.0 save: [Q]/[D] added tokens (ids 50368/50369, embeddings resized to 50370), "
               "query_length 12 with [MASK] expansion and attend_to_expansion_tokens false (expansion "
               "positions masked as keys but encoded and kept), document_length 20 (one document "
               "truncated), default punctuation skiplist, 1_Dense 16->8 without bias (Identity), L2 norm."),
    "colbert-attend": dict(
        env="pylate", kind="colbert", seed=3402, attend=True, query_length=12, document_length=24,
        queries=QUERIES_ATTEND,
        covers="as colbert-default but attend_to_expansion_tokens true (query attention mask all ones), "
               "document_length 24."),
    # --- malformed directories (tiny vocab, WordLevel tokenizer) ---
    "malformed-unknown-module": dict(
        env="st6", kind="malformed", seed=3501, defect="unknown_module", error="custom_st_modules.Whitening",
        covers="modules.json names a module type no loader knows (custom_st_modules.Whitening, path "
               "3_Whitening): loading must fail and name it, never skip it."),
    "malformed-dense-mismatch": dict(
        env="st6", kind="malformed", seed=3502, defect="dense_mismatch", error="2_Dense",
        covers="2_Dense/config.json (and its weight) say in_features 24 but the Pooling output is 16: "
               "loading must fail and name the module."),
    "malformed-pooling-no-config": dict(
        env="st6", kind="malformed", seed=3503, defect="pooling_no_config", error="1_Pooling",
        covers="modules.json lists the Pooling module at path 1_Pooling but there is no 1_Pooling/config.json "
               "(the folder is absent: git keeps no empty folders): loading must fail and name it."),
}

# ----------------------------------------------------------------------------- helpers


def fl(x) -> float:
    """Full-precision float of an f32 value."""
    return float(np.float32(x))


def to_list(a):
    a = np.asarray(a)
    if a.ndim == 0:
        return fl(a)
    if a.dtype.kind == "f":
        return [to_list(v) for v in a] if a.ndim > 1 else [fl(v) for v in a]
    return a.tolist()


def write_json(path: str, obj) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1, ensure_ascii=False)
        f.write("\n")


def drop_empty_dirs(d: str) -> None:
    """Git keeps no empty directories (a legacy Normalize folder has no files), so drop them here too and
    compute the expected outputs on what a checkout holds."""
    for r, ds, fs in sorted(os.walk(d), key=lambda x: -len(x[0])):
        if r != d and not os.listdir(r):
            os.rmdir(r)


def compact_tokenizer_json(d: str) -> None:
    """Re-serialise tokenizer.json compactly (same JSON value; the saved one is pretty-printed, 3.6 MB)."""
    p = os.path.join(d, "tokenizer.json")
    if not os.path.exists(p):
        return
    with open(p, encoding="utf-8") as f:
        obj = json.load(f)
    with open(p, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, separators=(",", ":"))


def reinit_backbone(model: torch.nn.Module, cfg: ModernBertConfig, g: torch.Generator) -> None:
    """Same scheme as scripts/make_fixtures.py: large random weights so that attention pattern, RoPE,
    window, norms and biases all visibly change the output."""
    D, I = cfg.hidden_size, cfg.intermediate_size

    def randn(shape, std, mean=0.0):
        return torch.randn(shape, generator=g, dtype=torch.float32) * std + mean

    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):
                std, mean = 0.1, 1.0
            elif "tok_embeddings" in name:
                std, mean = 2.0 / math.sqrt(D), 0.0
            elif name.endswith("attn.Wqkv.weight"):
                std, mean = 1.5 / math.sqrt(D), 0.0
            elif name.endswith("attn.Wo.weight") or name.endswith("mlp.Wi.weight"):
                std, mean = 1.0 / math.sqrt(D), 0.0
            elif name.endswith("mlp.Wo.weight"):
                std, mean = 1.0 / math.sqrt(I), 0.0
            elif name.endswith("head.dense.weight") or name.endswith("classifier.weight"):
                std, mean = 1.0 / math.sqrt(D), 0.0
            elif name.endswith(".bias"):
                std, mean = 0.5, 0.0
            else:
                raise RuntimeError(f"no init rule for {name}")
            p.copy_(randn(p.shape, std, mean))


def reinit_linear(lin: torch.nn.Linear, g: torch.Generator) -> None:
    with torch.no_grad():
        lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * (1.5 / math.sqrt(lin.in_features)))
        if lin.bias is not None:
            lin.bias.copy_(torch.randn(lin.bias.shape, generator=g) * 0.5)


def write_backbone(d: str, seed: int, cls=ModernBertModel, tokenizer_dir: str = TOK_DIR, **extra) -> None:
    """A bf16 random ModernBERT saved by transformers, plus the repo tokenizer files: the input of the
    library's own Transformer/CrossEncoder/ColBERT constructors."""
    torch.manual_seed(seed)
    cfg = ModernBertConfig(**{**BACKBONE, **extra})
    model = cls(cfg).eval()
    reinit_backbone(model, cfg, torch.Generator().manual_seed(seed))
    model = model.to(torch.bfloat16)
    model.save_pretrained(d)
    if tokenizer_dir is not None:
        for f in TOK_FILES:
            shutil.copy(os.path.join(tokenizer_dir, f), os.path.join(d, f))


def fresh(d: str) -> None:
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)


def lib_versions() -> dict:
    v = {"sentence_transformers": ST_VERSION, "transformers": transformers.__version__,
         "torch": torch.__version__, "tokenizers": __import__("tokenizers").__version__,
         "numpy": np.__version__, "python": sys.version.split()[0]}
    if ENV == "pylate":
        v["pylate"] = pylate.__version__
    return v


def assert_finite(x, what):
    x = np.asarray(x, dtype=np.float64)
    if not np.all(np.isfinite(x)):
        raise RuntimeError(f"non-finite values in {what}")


# ----------------------------------------------------------------------------- bi-encoders


def act_module(name: str):
    return {"tanh": torch.nn.Tanh(), "identity": torch.nn.Identity()}[name]


def build_st6_bi(name: str, spec: dict, d: str) -> None:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    tmp = d + ".base"
    fresh(tmp)
    write_backbone(tmp, spec["seed"])
    g = torch.Generator().manual_seed(spec["seed"] + 7)
    t_kwargs = {"model_kwargs": {"dtype": torch.bfloat16}}
    if spec["max_seq_length"] is not None:
        t_kwargs["max_seq_length"] = spec["max_seq_length"]
    modules = [Transformer(tmp, **t_kwargs)]
    pool = Pooling(BACKBONE["hidden_size"], **spec["pooling"])
    modules.append(pool)
    dim = pool.get_embedding_dimension()
    for dn in spec["dense"] or []:
        layer = Dense(dim, dn["out"], bias=dn["bias"], activation_function=act_module(dn["act"]))
        reinit_linear(layer.linear, g)
        modules.append(layer.to(torch.bfloat16))
        dim = dn["out"]
    if spec["normalize"]:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, prompts=spec["prompts"], default_prompt_name=spec["default_prompt_name"],
                             truncate_dim=spec.get("truncate_dim"), device="cpu")
    st.save(d)
    shutil.rmtree(tmp)
    compact_tokenizer_json(d)


def build_st5_bi(name: str, spec: dict, d: str) -> None:
    """Legacy layout, written by ST 5.3 (PyLate env)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer

    tmp = d + ".base"
    fresh(tmp)
    write_backbone(tmp, spec["seed"])
    g = torch.Generator().manual_seed(spec["seed"] + 7)
    t_kwargs = {"model_args": {"dtype": torch.bfloat16}}
    if spec["max_seq_length"] is not None:
        t_kwargs["max_seq_length"] = spec["max_seq_length"]
    modules = [Transformer(tmp, **t_kwargs)]
    key = {"cls": "pooling_mode_cls_token", "max": "pooling_mode_max_tokens", "mean": "pooling_mode_mean_tokens",
           "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
           "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken"}
    flags = {k: False for k in key.values()}
    for m in spec["pooling"]["modes"]:
        flags[key[m]] = True
    pool = Pooling(BACKBONE["hidden_size"], include_prompt=spec["pooling"]["include_prompt"], **flags)
    modules.append(pool)
    dim = pool.get_sentence_embedding_dimension()
    bin_dense = []
    for dn in spec["dense"] or []:
        layer = Dense(dim, dn["out"], bias=dn["bias"], activation_function=act_module(dn["act"]))
        reinit_linear(layer.linear, g)
        modules.append(layer.to(torch.bfloat16))
        if dn.get("bin"):
            bin_dense.append(len(modules) - 1)
        dim = dn["out"]
    if spec["normalize"]:
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, prompts=spec["prompts"], default_prompt_name=spec["default_prompt_name"],
                             device="cpu")
    st.save(d)
    # Older saves keep Dense weights in pytorch_model.bin: re-save those modules with ST's own
    # Dense.save(safe_serialization=False).
    for idx in bin_dense:
        sub = os.path.join(d, f"{idx}_Dense")
        os.remove(os.path.join(sub, "model.safetensors"))
        st[idx].save(sub, safe_serialization=False)
    shutil.rmtree(tmp)
    compact_tokenizer_json(d)
    drop_empty_dirs(d)


def resolve_case(case: dict) -> dict:
    return dict(texts=case["texts"], prompt_name=case.get("prompt_name"), prompt=case.get("prompt"),
                truncate_dim=case.get("truncate_dim"), normalize_embeddings=case.get("normalize_embeddings", False))


def encode_case(st, c: dict):
    emb = st.encode(c["texts"], prompt_name=c["prompt_name"], prompt=c["prompt"], truncate_dim=c["truncate_dim"],
                    normalize_embeddings=c["normalize_embeddings"], convert_to_numpy=True, batch_size=32)
    assert_finite(emb, "embeddings")
    return emb


def st_resolved_prompt(st, c: dict):
    if c["prompt"] is not None:
        return c["prompt"]
    if c["prompt_name"] is not None:
        return st.prompts[c["prompt_name"]]
    if st.default_prompt_name is not None:
        return st.prompts.get(st.default_prompt_name)
    return None


def st6_case_inputs(st, c: dict) -> dict:
    """The ids ST 6 feeds the encoder, and the prompt_length Pooling sees."""
    prompt = st_resolved_prompt(st, c)
    ids, plen = [], None
    for t in c["texts"]:
        f = st.preprocess([t], prompt=prompt)
        ids.append(f["input_ids"][0][f["attention_mask"][0].bool()].tolist())
        plen = f.get("prompt_length", plen)
    return dict(resolved_prompt=prompt, prompt_length=None if plen is None else int(plen), input_ids=ids)


def st5_case_inputs(st, c: dict) -> dict:
    prompt = st_resolved_prompt(st, c)
    texts = c["texts"] if not prompt else [prompt + t for t in c["texts"]]
    ids = []
    for t in texts:
        f = st.tokenize([t])
        ids.append(f["input_ids"][0][f["attention_mask"][0].bool()].tolist())
    plen = st._get_prompt_length(prompt) if prompt else None
    return dict(resolved_prompt=prompt, prompt_length=plen, input_ids=ids)


def load_st(d: str):
    from sentence_transformers import SentenceTransformer

    if ENV == "st6":
        return SentenceTransformer(d, device="cpu", model_kwargs={"dtype": torch.float32})
    return SentenceTransformer(d, device="cpu", model_kwargs={"dtype": torch.float32})


def expected_st6_bi(name: str, spec: dict, d: str) -> dict:
    st = load_st(d)
    assert next(st.parameters()).dtype == torch.float32
    cases = []
    for case in spec["cases"]:
        c = resolve_case(case)
        emb = encode_case(st, c)
        info = st6_case_inputs(st, c)
        eff_td = c["truncate_dim"] if c["truncate_dim"] is not None else st.truncate_dim
        cases.append(dict(**c, effective_truncate_dim=eff_td, **info, embeddings=to_list(emb)))
    return dict(library=f"sentence-transformers {ST_VERSION}", kind="bi-encoder", layout="st6",
                versions=lib_versions(), max_seq_length=st.max_seq_length, config_truncate_dim=st.truncate_dim,
                covers=spec["covers"], cases=cases)


def writer_st5_bi(name: str, spec: dict, d: str) -> dict:
    st = load_st(d)
    cases = []
    for case in spec["cases"]:
        c = resolve_case(case)
        emb = encode_case(st, c)
        info = st5_case_inputs(st, c)
        cases.append(dict(**c, writer_prompt_length=info["prompt_length"], writer_input_ids=info["input_ids"],
                          writer_embeddings=to_list(emb)))
    return dict(kind="bi-encoder", layout="legacy", writer=f"sentence-transformers {ST_VERSION}",
                writer_versions=lib_versions(), writer_max_seq_length=st.max_seq_length, covers=spec["covers"],
                cases=cases)


def complete_legacy_bi(name: str, spec: dict, d: str, exp: dict) -> dict:
    """ST 6 env: compute the ST 6 outputs for a legacy dir written by ST 5.3."""
    st = load_st(d)
    worst_same = 0.0
    for case, want in zip(spec["cases"], exp["cases"]):
        c = resolve_case(case)
        emb = encode_case(st, c)
        info = st6_case_inputs(st, c)
        wemb = np.asarray(want["writer_embeddings"], dtype=np.float64)
        diff = float(np.max(np.abs(wemb - emb.astype(np.float64))))
        want.update(effective_truncate_dim=c["truncate_dim"], **info, embeddings=to_list(emb),
                    max_abs_diff_vs_writer=diff, writer_agrees=not case.get("strip_differs", False))
        if case.get("strip_differs"):
            if diff < 1e-4:
                raise RuntimeError(f"{name}: expected ST 5.3 and ST 6 to differ on this case, diff {diff}")
        else:
            worst_same = max(worst_same, diff)
            if want["writer_input_ids"] != info["input_ids"]:
                raise RuntimeError(f"{name}: ST 5.3 and ST 6 tokenised differently")
            if diff > 2e-5:
                raise RuntimeError(f"{name}: ST 5.3 and ST 6 disagree by {diff}")
    head = dict(library=f"sentence-transformers {ST_VERSION}", kind="bi-encoder", layout="legacy",
                versions=lib_versions(), max_seq_length=st.max_seq_length, config_truncate_dim=st.truncate_dim)
    out = {**head, **{k: v for k, v in exp.items() if k not in head}}
    out["max_abs_diff_vs_writer_on_agreeing_cases"] = worst_same
    return out


# ----------------------------------------------------------------------------- cross-encoders


def ce_inputs(model, pairs):
    tok = model.tokenizer
    enc = tok([p[0] for p in pairs], [p[1] for p in pairs], truncation=True, padding=False)
    return enc["input_ids"]


def ce_outputs(model, pairs) -> dict:
    scores = model.predict(pairs, convert_to_numpy=True, batch_size=32)
    raw = model.predict(pairs, activation_fn=torch.nn.Identity(), convert_to_numpy=True, batch_size=32)
    assert_finite(scores, "scores")
    out = dict(scores=to_list(scores), raw_scores=to_list(raw))
    if np.asarray(raw).ndim == 2:
        out["logits_per_label"] = to_list(raw)
    return out


def build_ce(name: str, spec: dict, d: str) -> None:
    from sentence_transformers import CrossEncoder

    extra = dict(num_labels=spec["num_labels"], classifier_pooling="mean")
    if name == "ce-st5-3labels":
        extra.update(classifier_pooling="cls", classifier_bias=True,
                     id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
                     label2id={"contradiction": 0, "entailment": 1, "neutral": 2})
    if name == "ce-old-identity":
        # pre-v4 CrossEncoder.save(): model.save_pretrained + tokenizer.save_pretrained, with the
        # activation written into config.json.
        fresh(d)
        write_backbone(d, spec["seed"], cls=ModernBertForSequenceClassification, **extra)
        p = os.path.join(d, "config.json")
        cfg = json.load(open(p))
        cfg["sbert_ce_default_activation_function"] = "torch.nn.modules.linear.Identity"
        write_json(p, dict(sorted(cfg.items())))
        return
    tmp = d + ".base"
    fresh(tmp)
    write_backbone(tmp, spec["seed"], cls=ModernBertForSequenceClassification, **extra)
    kw = {}
    if spec["max_length"] is not None:
        kw["max_length"] = spec["max_length"]
    if ENV == "st6":
        ce = CrossEncoder(tmp, device="cpu", model_kwargs={"dtype": torch.bfloat16}, **kw)
    else:
        ce = CrossEncoder(tmp, device="cpu", model_kwargs={"dtype": torch.bfloat16}, **kw)
    ce.save(d)
    shutil.rmtree(tmp)
    compact_tokenizer_json(d)


def load_ce(d: str):
    from sentence_transformers import CrossEncoder

    if ENV == "st6":
        return CrossEncoder(d, device="cpu", model_kwargs={"dtype": torch.float32})
    return CrossEncoder(d, device="cpu", model_kwargs={"dtype": torch.float32})


def ce_meta(model) -> dict:
    return dict(activation=f"{type(model.activation_fn).__module__}.{type(model.activation_fn).__name__}",
                num_labels=int(model.config.num_labels), max_length=int(model.tokenizer.model_max_length))


def expected_ce(name: str, spec: dict, d: str) -> dict:
    model = load_ce(d)
    assert next(model.parameters()).dtype == torch.float32
    return dict(library=f"sentence-transformers {ST_VERSION}", kind="cross-encoder", versions=lib_versions(),
                **ce_meta(model), covers=spec["covers"], pairs=CE_PAIRS, input_ids=ce_inputs(model, CE_PAIRS),
                **ce_outputs(model, CE_PAIRS))


def writer_ce(name: str, spec: dict, d: str) -> dict:
    model = load_ce(d)
    o = ce_outputs(model, CE_PAIRS)
    return dict(kind="cross-encoder", writer=f"sentence-transformers {ST_VERSION}", writer_versions=lib_versions(),
                covers=spec["covers"], pairs=CE_PAIRS, writer_input_ids=ce_inputs(model, CE_PAIRS),
                writer_scores=o["scores"], writer_raw_scores=o["raw_scores"])


def complete_ce(name: str, spec: dict, d: str, exp: dict) -> dict:
    out = expected_ce(name, spec, d)
    if out["input_ids"] != exp["writer_input_ids"]:
        raise RuntimeError(f"{name}: ST 5.3 and ST 6 tokenised the pairs differently")
    diff = float(np.max(np.abs(np.asarray(out["raw_scores"]) - np.asarray(exp["writer_raw_scores"]))))
    if diff > 2e-5:
        raise RuntimeError(f"{name}: ST 5.3 and ST 6 disagree by {diff}")
    out.update(writer=exp["writer"], writer_versions=exp["writer_versions"], writer_scores=exp["writer_scores"],
               writer_raw_scores=exp["writer_raw_scores"], max_abs_diff_vs_writer=diff)
    return out


# ----------------------------------------------------------------------------- ColBERT (PyLate env)


def build_colbert(name: str, spec: dict, d: str) -> None:
    from pylate import models

    tmp = d + ".base"
    fresh(tmp)
    write_backbone(tmp, spec["seed"])
    torch.manual_seed(spec["seed"])  # the resized [Q]/[D] rows are drawn from torch's global RNG
    m = models.ColBERT(tmp, device="cpu", embedding_size=8, query_length=spec["query_length"],
                       document_length=spec["document_length"], attend_to_expansion_tokens=spec["attend"],
                       model_kwargs={"dtype": torch.bfloat16})
    reinit_linear(m[1].linear, torch.Generator().manual_seed(spec["seed"] + 7))
    m.save(d)
    shutil.rmtree(tmp)
    compact_tokenizer_json(d)


def expected_colbert(name: str, spec: dict, d: str) -> dict:
    from pylate import models, rank, scores

    m = models.ColBERT(d, device="cpu", model_kwargs={"dtype": torch.float32})
    assert next(m.parameters()).dtype == torch.float32
    assert m.query_length == spec["query_length"] and m.attend_to_expansion_tokens == spec["attend"]
    QUERIES = spec["queries"]
    q = m.encode(QUERIES, is_query=True, output_value=None, convert_to_numpy=True)
    dd = m.encode(DOCUMENTS, is_query=False, output_value=None, convert_to_numpy=True)
    q_emb = m.encode(QUERIES, is_query=True)  # the default call: list of [n_kept, dim]
    d_emb = m.encode(DOCUMENTS, is_query=False)
    query_ids, query_mask, q_vecs = [], [], []
    for i in range(len(QUERIES)):
        ids, att, keep = q["input_ids"][i], q["attention_mask"][i], q["masks"][i].astype(bool)
        assert keep.all() == m.do_query_expansion
        if not spec["attend"]:
            real = int(att.sum())
            assert att[:real].all() and len(ids) - 1 - (real - 1) <= 4, "an expansion position has no real token in its local window"
        query_ids.append(ids.tolist())
        query_mask.append(att.tolist())
        assert np.allclose(q_emb[i], q["token_embeddings"][i][keep], atol=0, rtol=0)
        q_vecs.append(q_emb[i])
    doc_ids, kept, d_vecs = [], [], []
    for i in range(len(DOCUMENTS)):
        ids, att, keep = dd["input_ids"][i], dd["attention_mask"][i].astype(bool), dd["masks"][i].astype(bool)
        n = int(att.sum())
        assert att[:n].all() and not att[n:].any()
        doc_ids.append(ids[:n].tolist())
        kept.append([int(j) for j in np.nonzero(keep)[0]])
        assert np.array_equal(d_emb[i], dd["token_embeddings"][i][keep])
        d_vecs.append(d_emb[i])
    for v in q_vecs + d_vecs:
        assert_finite(v, "colbert vectors")
    # exact MaxSim per pair (no padding): pylate.scores.colbert_scores on one query and one document
    exact = [[fl(scores.colbert_scores(torch.from_numpy(qv)[None], torch.from_numpy(dv)[None])[0, 0]) for dv in d_vecs]
             for qv in q_vecs]
    # what pylate.rank.rerank reports: documents zero-padded to a common length, no mask
    rr = rank.rerank(documents_ids=[list(range(len(DOCUMENTS)))] * len(QUERIES), queries_embeddings=q_vecs,
                     documents_embeddings=[d_vecs] * len(QUERIES))
    rerank_scores = []
    for res in rr:
        by_id = {r["id"]: r["score"] for r in res}
        rerank_scores.append([fl(by_id[j]) for j in range(len(DOCUMENTS))])
    return dict(
        library=f"pylate {pylate.__version__}", kind="colbert", versions=lib_versions(), covers=spec["covers"],
        query_prefix=m.query_prefix, document_prefix=m.document_prefix, query_prefix_id=int(m.query_prefix_id),
        document_prefix_id=int(m.document_prefix_id), query_length=m.query_length,
        document_length=m.document_length, do_query_expansion=m.do_query_expansion,
        attend_to_expansion_tokens=m.attend_to_expansion_tokens, pad_token_id=int(m.tokenizer.pad_token_id),
        skiplist_ids=[int(x) for x in m.skiplist], queries=QUERIES, documents=DOCUMENTS,
        query_ids=query_ids, query_attention_mask=query_mask, document_ids=doc_ids,
        kept_document_positions=kept, query_embeddings=[to_list(v) for v in q_vecs],
        document_embeddings=[to_list(v) for v in d_vecs], scores=exact, rerank_scores=rerank_scores)


def check_colbert_ids(name: str, d: str) -> None:
    """ST 6 env: the ids PyLate recorded (tokenizers 0.22) against tokenizers 0.23 on the saved file."""
    from tokenizers import Tokenizer

    exp = json.load(open(os.path.join(d, "expected.json")))
    tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    for texts, ids_list, pid, length, is_q in ((exp["queries"], exp["query_ids"], exp["query_prefix_id"],
                                                exp["query_length"], True),
                                               (exp["documents"], exp["document_ids"], exp["document_prefix_id"],
                                                exp["document_length"], False)):
        for t, ids in zip(texts, ids_list):
            enc = tok.encode(t.strip()).ids  # ST 5.3 strips; [CLS] ... [SEP]
            if len(enc) > length - 1:
                enc = enc[: length - 2] + [enc[-1]]
            want = enc[:1] + [pid] + enc[1:]
            if is_q and exp["do_query_expansion"]:
                want = want + [exp["pad_token_id"]] * (length - len(want))
            if want != ids:
                raise RuntimeError(f"{name}: ids of {t!r} differ: {want} vs {ids}")


def cross_check_colbert(name: str, d: str, exp: dict) -> dict:
    """ST 6 env: ST 6.3's MultiVectorEncoder loads PyLate saves natively; record how far it is from PyLate."""
    from sentence_transformers import MultiVectorEncoder

    m = MultiVectorEncoder(d, device="cpu", model_kwargs={"dtype": torch.float32})
    worst = 0.0
    for got, want in ((m.encode_query(exp["queries"]), exp["query_embeddings"]),
                      (m.encode_document(exp["documents"]), exp["document_embeddings"])):
        for a, b in zip(got, want):
            a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
            if a.shape != b.shape:
                raise RuntimeError(f"{name}: MultiVectorEncoder shape {a.shape} vs PyLate {b.shape}")
            worst = max(worst, float(np.max(np.abs(a - b))))
    if worst > 2e-5:
        raise RuntimeError(f"{name}: MultiVectorEncoder differs from PyLate by {worst}")
    exp["cross_check"] = dict(library=f"sentence-transformers {ST_VERSION} MultiVectorEncoder (encode_query / "
                                      "encode_document on the same directory)", versions=lib_versions(),
                              max_abs_diff=worst)
    return exp


# ----------------------------------------------------------------------------- malformed (ST 6 env)


def tiny_tokenizer_dir(d: str) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"] + (
        "the a an of to and in is it for on with as this that be by are from at or code text query "
        "document hello world python rust list sort find def return fn main").split()
    vocab = {w: i for i, w in enumerate(words)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B [SEP]",
                                                       special_tokens=[("[CLS]", 1), ("[SEP]", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]",
                                   pad_token="[PAD]", mask_token="[MASK]", model_max_length=64)
    fast.save_pretrained(d)
    return len(vocab)


def build_malformed(name: str, spec: dict, d: str) -> dict:
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Dense, Normalize, Pooling, Transformer

    tmp = d + ".base"
    fresh(tmp)
    tokdir = d + ".tok"
    fresh(tokdir)
    V = tiny_tokenizer_dir(tokdir)
    write_backbone(tmp, spec["seed"], tokenizer_dir=None, vocab_size=V, pad_token_id=3, cls_token_id=1,
                   sep_token_id=2, bos_token_id=1, eos_token_id=2, max_position_embeddings=64)
    for f in os.listdir(tokdir):
        shutil.copy(os.path.join(tokdir, f), os.path.join(tmp, f))
    shutil.rmtree(tokdir)
    g = torch.Generator().manual_seed(spec["seed"] + 7)
    t = Transformer(tmp, model_kwargs={"dtype": torch.bfloat16})
    dense_in = 24 if spec["defect"] == "dense_mismatch" else 16
    dense = Dense(dense_in, 8, bias=True, activation_function=torch.nn.Tanh())
    reinit_linear(dense.linear, g)
    st = SentenceTransformer(modules=[t, Pooling(16, pooling_mode="mean"), dense.to(torch.bfloat16), Normalize()],
                             device="cpu")
    st.save(d, create_model_card=False)
    shutil.rmtree(tmp)
    if spec["defect"] == "unknown_module":
        p = os.path.join(d, "modules.json")
        mods = json.load(open(p))
        mods.insert(3, {"idx": 3, "name": "3", "path": "3_Whitening", "type": "custom_st_modules.Whitening"})
        mods[4].update(idx=4, name="4", path="4_Normalize")
        os.rename(os.path.join(d, "3_Normalize"), os.path.join(d, "4_Normalize"))
        os.makedirs(os.path.join(d, "3_Whitening"))
        write_json(os.path.join(d, "3_Whitening", "config.json"), {"dim": 8, "eps": 1e-6})
        with open(p, "w") as f:
            json.dump(mods, f, indent=2)
    elif spec["defect"] == "pooling_no_config":
        os.remove(os.path.join(d, "1_Pooling", "config.json"))
    # What ST itself says about the directory.
    try:
        m = SentenceTransformer(d, device="cpu", model_kwargs={"dtype": torch.float32})
        m.encode(["hello world"])
        lib_err = None
    except Exception as e:  # noqa: BLE001
        msg = str(e).replace(os.path.abspath(d), "<dir>").replace(d, "<dir>")
        lib_err = f"{type(e).__name__}: {msg.splitlines()[0][:300]}"
    if lib_err is None:
        raise RuntimeError(f"{name}: ST accepted the malformed directory")
    return dict(error=spec["error"], kind="malformed", covers=spec["covers"],
                library=f"sentence-transformers {ST_VERSION}", library_error=lib_err)


# ----------------------------------------------------------------------------- driver


def dir_size(d: str) -> int:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def run_one(name: str, spec: dict, out_root: str) -> None:
    d = os.path.join(out_root, name)
    kind = spec["kind"]
    if spec["env"] == ENV:
        fresh(d)
        if kind == "malformed":
            exp = build_malformed(name, spec, d)
        elif kind == "bi-encoder":
            if ENV == "st6":
                build_st6_bi(name, spec, d)
                exp = expected_st6_bi(name, spec, d)
            else:
                build_st5_bi(name, spec, d)
                exp = writer_st5_bi(name, spec, d)
        elif kind == "cross-encoder":
            build_ce(name, spec, d)
            exp = expected_ce(name, spec, d) if ENV == "st6" else writer_ce(name, spec, d)
        elif kind == "colbert":
            build_colbert(name, spec, d)
            exp = expected_colbert(name, spec, d)
        write_json(os.path.join(d, "expected.json"), exp)
        drop_empty_dirs(d)
        print(f"{name}: written by {ENV} ({dir_size(d) / 1e6:.2f} MB)", flush=True)
    elif ENV == "st6":
        p = os.path.join(d, "expected.json")
        if not os.path.exists(p):
            print(f"{name}: SKIPPED (run the .venv-pylate pass first)", flush=True)
            return
        exp = json.load(open(p))
        if kind == "colbert":
            check_colbert_ids(name, d)
            exp = cross_check_colbert(name, d, exp)
            write_json(p, exp)
            print(f"{name}: ids re-checked with tokenizers {__import__('tokenizers').__version__}, vectors with "
                  f"ST {ST_VERSION} MultiVectorEncoder (max |diff| {exp['cross_check']['max_abs_diff']:.3g})",
                  flush=True)
            return
        if kind == "bi-encoder":
            exp = complete_legacy_bi(name, spec, d, exp)
        elif kind == "cross-encoder":
            exp = complete_ce(name, spec, d, exp)
        write_json(p, exp)
        print(f"{name}: ST {ST_VERSION} outputs added", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "fixtures", "formats"))
    args = ap.parse_args()
    names = args.only or list(FIXTURES)
    for n in names:
        if n not in FIXTURES:
            sys.exit(f"unknown fixture {n!r}; known: {', '.join(FIXTURES)}")
    os.makedirs(args.out, exist_ok=True)
    print(f"env {ENV}: sentence-transformers {ST_VERSION}, transformers {transformers.__version__}, "
          f"torch {torch.__version__}", flush=True)
    failed = []
    for n in names:
        try:
            run_one(n, FIXTURES[n], args.out)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            failed.append(n)
    total = sum(dir_size(os.path.join(args.out, n)) for n in FIXTURES if os.path.isdir(os.path.join(args.out, n)))
    print(f"total {total / 1e6:.2f} MB in {args.out}")
    if failed:
        sys.exit(f"FAILED: {', '.join(failed)}")


if __name__ == "__main__":
    main()
