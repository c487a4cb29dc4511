#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer_cases.json: reference encodings produced by the
HF `tokenizers` Python package from assets/tokenizer/tokenizer.json.

Each case is
  {"text": str, "pair": str|null, "add_special_tokens": bool, "max_length": int|null,
   "ids": [int], "tokens": [str], "offsets": [[start, end], ...],
   "byte_offsets": [[start, end], ...], "sequence_ids": [0|1|null, ...],
   "special_tokens_mask": [0|1, ...], "type_ids": [int, ...]}

* offsets: what the Python binding returns, i.e. Unicode code-point (char) offsets
  into the ORIGINAL input (text, or pair for tokens whose sequence_id is 1).
* byte_offsets: the same spans as UTF-8 byte offsets (what the Rust `tokenizers`
  crate returns by default). Special tokens added by the template get [0, 0].
* max_length (when not null): truncation enabled with
  tokenizer.enable_truncation(max_length, stride=0, strategy="longest_first",
  direction="right"); max_length counts the template's special tokens when
  add_special_tokens is true. With budget = max_length - specials, the
  `tokenizers` "longest_first" rule for a pair that does not fit is: the shorter
  sequence (A on ties) keeps min(len_short, budget // 2) tokens and the longer
  keeps budget - that (NOT the remove-one-at-a-time rule of the slow Python
  tokenizers). A single sequence is cut from its end.

Usage: python scripts/make_tokenizer_cases.py [TOKENIZER_JSON] [OUT_JSON]
"""
import json
import os
import sys

from tokenizers import Tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LONG_TEXT = (
    "ModernBERT is an encoder-only transformer trained on two trillion tokens of English prose, "
    "scientific articles and source code. Unlike the original BERT, it uses rotary position "
    "embeddings, so it can read sequences of up to 8,192 tokens, and it alternates between "
    "global attention, where every token sees every other token, and local attention, where a "
    "token only sees a window of 128 neighbours. Every third layer is global; the others are "
    "local, which keeps the cost of long inputs manageable. The feed-forward blocks use a gated "
    "linear unit with a GELU activation, the layer norms have no bias, and none of the linear "
    "layers has a bias either. Padding tokens are removed before the first layer when the "
    "FlashAttention kernels are available, so no compute is wasted on them.\n\n"
    "The tokenizer is a byte-level BPE derived from the OLMo tokenizer, which itself descends "
    "from GPT-NeoX. It keeps runs of spaces as single tokens (useful for code), adds the usual "
    "[CLS], [SEP], [PAD], [MASK] and [UNK] tokens, and pads the vocabulary to 50,368 entries, a "
    "multiple of 64, with eighty-three unused tokens. In a masked-language-modelling demo one "
    "writes: \"The capital of France is [MASK].\" and expects \" Paris\" as the top prediction. "
    "Fine-tuned variants reach strong scores on GLUE, BEIR and CodeSearchNet, while running about "
    "twice as fast as DeBERTa-v3 on long contexts. Benchmarks were measured on an NVIDIA RTX 4090 "
    "with batch sizes chosen to fill its 24 GB of memory (see Table 3, p. 7); results may vary."
)

PY_CODE = '''def fib(n: int) -> int:
    """Return the n-th Fibonacci number."""
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a


if __name__ == "__main__":
    print([fib(i) for i in range(10)])  # [0, 1, 1, 2, ...]
'''

RUST_CODE = '''impl<'a> Iterator for Tokens<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<Self::Item> {
        let s = self.rest.trim_start();
        if s.is_empty() { return None; }
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        self.rest = &s[end..];
        Some(&s[..end])
    }
}
'''

JSON_TEXT = '{"name": "modernbert", "layers": 22, "dims": [768, 1152], "ok": true, "x": null, "pi": 3.14}'

SHELL = "for f in *.json; do\n\tjq -r '.ids | length' \"$f\" 2>/dev/null || echo \"bad: $f\" >&2\ndone | sort -n | uniq -c"

# (text, pair, add_special_tokens, max_length)
CASES = [
    # --- prose ---
    ("Hello World!", None, True, None),
    ("The capital of France is [MASK].", None, True, None),
    ("The capital of France is [MASK].", None, False, None),
    ("the man worked as a [MASK].", None, True, None),
    ("It was the best of times, it was the worst of times; it was the age of wisdom...", None, True, None),
    ("ALL CAPS, Title Case and mIxEd cAsE words: iPhone, eBay, McDonald's.", None, True, None),
    ("punctuation!?,;:'\"()[]{}<>|/\\-_=+*&^%$#@~`", None, True, None),
    # --- code ---
    (PY_CODE, None, True, None),
    (RUST_CODE, None, True, None),
    (JSON_TEXT, None, True, None),
    (SHELL, None, True, None),
    ("x = foo(bar, baz)  # comment\n\tindented_with_tab()\n        deeply_indented = {'k': [1, 2]}", None, False, None),
    # --- whitespace ---
    ("a b", None, False, None),
    ("a  b", None, False, None),
    ("a   b", None, False, None),
    ("a" + " " * 5 + "b", None, False, None),
    ("a" + " " * 8 + "b", None, False, None),
    ("a" + " " * 16 + "b", None, False, None),
    ("a" + " " * 23 + "b", None, False, None),
    ("a" + " " * 24 + "b", None, False, None),
    ("a" + " " * 25 + "b", None, False, None),
    ("x" + " " * 30 + "y", None, True, None),
    (" ", None, True, None),
    ("   ", None, False, None),
    (" leading space", None, True, None),
    ("   three leading spaces", None, True, None),
    ("trailing space ", None, True, None),
    ("trailing spaces   ", None, True, None),
    ("tab\tseparated\t\tvalues\t", None, True, None),
    ("line1\r\nline2\r\n\r\nline4", None, True, None),
    ("\n\n\nparagraph\n\n", None, True, None),
    (" \t \n \r\n  mixed  \t whitespace \u00a0nbsp\u3000ideographic", None, True, None),
    # --- unicode ---
    ("naïve café résumé Zürich façade", None, True, None),
    ("Cafe\u0301 decomposed", None, False, None),  # NFD input -> NFC normalizer
    ("Caf\u00e9 composed", None, False, None),
    ("e\u0301 \u00c5 A\u030a \ufb01 ligature \u2126 ohm", None, True, None),
    ("日本語のテキストです。東京は日本の首都です。", None, True, None),
    ("中文分词测试：我爱自然语言处理。", None, True, None),
    ("한국어 텍스트", None, True, None),
    ("Русский текст: Привет, мир!", None, True, None),
    ("العربية نص: مرحبا بالعالم", None, True, None),
    ("हिन्दी पाठ", None, True, None),
    ("Emoji 🚀🔥 and symbols ©®™ ≈ ∑ √ ∞", None, True, None),
    ("family 👨‍👩‍👧‍👦, flag 🇫🇷, thumbs 👍🏽, heart ❤️", None, True, None),
    ("😀😀😀", None, False, None),
    # --- numbers / contractions / urls ---
    ("1234567890 3.14159 1,000,000 -42 +7 1e-5 0x1F 2024-12-19 12:30pm 50%", None, True, None),
    ("I'm you're he's we've they'll she'd can't won't don't y'all", None, True, None),
    ("'s 't 're 've 'm 'll 'd", None, False, None),
    ("See https://huggingface.co/answerdotai/ModernBERT-base?tab=files#readme or http://x.org/a_b", None, True, None),
    ("Mail john.doe+tag@example.org, ssh git@github.com, IP 192.168.0.1", None, True, None),
    # --- special / added tokens inline ---
    ("[CLS] [SEP] [MASK] [PAD] [UNK] <|endoftext|> <|padding|>", None, False, None),
    ("[CLS] [SEP] [MASK] [PAD] [UNK] <|endoftext|> <|padding|>", None, True, None),
    ("[unused5] and [unused0][unused82] [unused83]", None, True, None),
    ("|||IP_ADDRESS||| |||EMAIL_ADDRESS||| |||PHONE_NUMBER|||", None, True, None),
    ("a [MASK] b  [MASK]c", None, False, None),
    ("text with [MASK] inside", None, True, None),
    ("[MASK] at the start", None, True, None),
    ("at the end [MASK]", None, True, None),
    ("[MASK][MASK][MASK]", None, True, None),
    ("a[MASK]b", None, True, None),
    ("spaces before   [MASK] and tab\t[MASK] and newline\n[MASK]", None, True, None),
    ("[mask] lowercase, [MASK ] broken, [[MASK]]", None, True, None),
    ("word[SEP]word [CLS]x", None, False, None),
    # --- empty ---
    ("", None, True, None),
    ("", None, False, None),
    # --- long ---
    (LONG_TEXT, None, True, None),
    # --- pairs ---
    ("How old are you?", "I am 6 years old.", True, None),
    ("Is this a question?", "[MASK] it is.", True, None),
    ("def f(x):\n    return x", "A function that returns its argument.", True, None),
    ("Привет", "日本語 😀", True, None),
    ("", "second only", True, None),
    ("first only", "", True, None),
    ("no specials", "in this pair", False, None),
    # --- truncation: single ---
    (LONG_TEXT, None, True, 16),
    (LONG_TEXT, None, True, 128),
    (LONG_TEXT, None, False, 10),
    ("The capital of France is [MASK].", None, True, 3),
    ("short text", None, True, 64),
    # --- truncation: pair (longest_first) ---
    (LONG_TEXT, "A short second segment.", True, 20),
    ("A short first segment.", LONG_TEXT, True, 20),
    (LONG_TEXT, PY_CODE, True, 25),
    (PY_CODE, RUST_CODE, True, 64),
    (LONG_TEXT, "tail", False, 12),
    ("one two three four five six", LONG_TEXT, True, 10),  # shorter side cut to budget//2 = 3
    ("one two three four five six", "alpha beta gamma delta epsilon zeta", True, 10),  # tie: A 3, B 4
]


def byte_offsets(s: str, offs):
    # Python offsets are code-point indices; convert to UTF-8 byte indices.
    pref = [0]
    for ch in s:
        pref.append(pref[-1] + len(ch.encode("utf-8")))
    return [[pref[a], pref[b]] for a, b in offs]


def main() -> None:
    tok_path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "assets", "tokenizer", "tokenizer.json")
    out_path = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "tests", "fixtures", "tokenizer_cases.json")
    out = []
    for text, pair, add, max_len in CASES:
        tok = Tokenizer.from_file(tok_path)
        if max_len is not None:
            tok.enable_truncation(max_len, stride=0, strategy="longest_first", direction="right")
        enc = tok.encode(text, pair, add_special_tokens=add)
        if enc.overflowing:
            pass  # overflow pieces are not recorded
        seq_ids = enc.sequence_ids
        offs = [list(o) for o in enc.offsets]
        boffs = []
        for (a, b), sid in zip(offs, seq_ids):
            src = text if sid in (0, None) else pair
            if sid is None:
                boffs.append([a, b])  # [0, 0] for template specials
            else:
                boffs.append(byte_offsets(src, [(a, b)])[0])
        if max_len is not None:
            assert len(enc.ids) <= max_len, (text[:30], len(enc.ids), max_len)
        out.append({
            "text": text,
            "pair": pair,
            "add_special_tokens": add,
            "max_length": max_len,
            "ids": enc.ids,
            "tokens": enc.tokens,
            "offsets": offs,
            "byte_offsets": boffs,
            "sequence_ids": seq_ids,
            "special_tokens_mask": enc.special_tokens_mask,
            "type_ids": enc.type_ids,
        })
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    n_long = max(len(c["ids"]) for c in out)
    print(f"wrote {out_path}: {len(out)} cases, longest {n_long} ids, {os.path.getsize(out_path)} bytes")


if __name__ == "__main__":
    main()
