#!/usr/bin/env python3
"""HF Trainer reference for the fine-tuning benchmark (issue 10): "our fine-tune vs HF Trainer on the
same start checkpoint, data and settings". The command line mirrors `modernbert finetune`:

  .venv/bin/python scripts/hf_finetune.py --task classification|token-classification \
      --model DIR --train FILE --validation FILE --output DIR [--epochs 3] [--learning-rate 3e-4] \
      [--batch-size 32] [--max-length 128] [--weight-decay 1e-5] [--warmup-ratio 0.1] \
      [--gradient-clip 1.0] [--seed 42] [--threads 2]

Semantics (kept identical to the Rust trainer):

* Data. classification: JSONL rows {"text", "text_pair"?, "label"}; label int or string; the label set
  is the sorted unique labels of the training file (ints sorted as ints, strings as strings) -> ids
  0..n-1 in that order (config id2label/label2id hold them as strings). token-classification: CoNLL
  files, `token<TAB>tag` per line, an empty line between sentences; the tag set is the sorted unique
  tags of the training file. A validation label/tag outside the set is an error.
* Tokenisation: the model directory's tokenizer.json (AutoTokenizer -> PreTrainedTokenizerFast),
  `[CLS] a [SEP]` / `[CLS] a [SEP] b [SEP]`, right truncation to --max-length (longest_first for
  pairs, the `tokenizers` rule). Token classification: the words are joined with single spaces, the
  string is tokenised with character offsets (ModernBERT's offsets include a word's leading space:
  `Ġcapital` covers " capital"), a token belongs to word w if its span intersects w's span; the first
  token of each word gets the word's tag id, every other token and the specials get -100. Words cut
  off by truncation get no label in training and count as predicted "O" in evaluation.
* Model: AutoModelFor{Sequence,Token}Classification.from_pretrained(--model) in f32 (SDPA attention,
  HF's default). From a ModernBertForMaskedLM checkpoint `head.dense`/`head.norm` are the MLM head's
  weights (same names); only `classifier` is new (HF init, N(0, initializer_range) truncated at
  +-initializer_cutoff_factor*std, bias 0, drawn after torch.manual_seed(--seed)).
* Optimiser: torch AdamW (optim "adamw_torch"), betas (0.9, 0.98), eps 1e-6. Our weight decay is fully
  decoupled, p <- p * (1 - (lr_t / lr_peak) * wd), so torch's weight_decay = wd / lr_peak. No decay for
  parameters with ndim <= 1 or a name ending in ".bias" (asserted equal to the Trainer's own grouping,
  which excludes biases and LayerNorm weights). Linear warmup for ceil(warmup_ratio * total_steps) steps,
  then linear decay to 0 (get_linear_schedule_with_warmup); total_steps = epochs * ceil(N / B) (last
  batch kept); max_grad_norm = --gradient-clip (0 = off); per-device batch --batch-size, no gradient
  accumulation, fp32, shuffled each epoch by the Trainer's seeded RandomSampler (train_sampling_strategy "random", i.e. no group_by_length), padding
  per batch to its longest sequence, no evaluation/logging/checkpointing during training.
* Evaluation after training on --validation (batch --batch-size, no grad). classification: accuracy,
  macro-F1 (mean over the whole label set, F1 = 0 for a class never true nor predicted), MCC
  (multiclass, Gorodkin/sklearn formula). token-classification: entity precision/recall/F1, micro over
  types, exact (type, start, end) match with seqeval's default (conlleval) chunking of BIO/IOB2 tags,
  and token accuracy over words (first sub-tokens).
* Output: one JSON line on stdout: {"task", "metric_name" ("accuracy" | "entity_f1"), "metric",
  "metrics": {...}, "train_samples", "epochs", "train_seconds", "train_samples_per_second"
  (= train_samples * epochs / train_seconds), "eval_seconds", "torch_threads", ...}; the model and
  tokenizer are saved to --output (safetensors). Logs go to stderr.

Needs: torch, transformers (the .venv of scripts/setup-python.sh) and accelerate (Trainer dependency).
"""

import argparse
import contextlib
import json
import math
import os
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorForTokenClassification,
    DataCollatorWithPadding,
    Trainer,
    TrainingArguments,
)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- data

def read_jsonl(path):
    rows = []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            if not line.strip():
                continue
            r = json.loads(line)
            if "text" not in r or "label" not in r:
                raise SystemExit(f"{path}:{ln}: need \"text\" and \"label\"")
            rows.append(r)
    return rows


def read_conll(path):
    sents, cur = [], []
    with open(path, encoding="utf-8") as f:
        for ln, line in enumerate(f, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                if cur:
                    sents.append(cur)
                    cur = []
                continue
            parts = line.split("\t")
            if len(parts) != 2 or not parts[0] or not parts[1]:
                raise SystemExit(f"{path}:{ln}: expected token<TAB>tag, got {line!r}")
            cur.append((parts[0], parts[1]))
    if cur:
        sents.append(cur)
    return sents


def label_set(values, what):
    kinds = {type(v) for v in values}
    if kinds == {int}:
        return sorted(set(values))
    if kinds == {str}:
        return sorted(set(values))
    raise SystemExit(f"{what}: labels must be all ints or all strings, got {sorted(k.__name__ for k in kinds)}")


class ListDataset(torch.utils.data.Dataset):
    def __init__(self, items):
        self.items = items

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def encode_classification(tok, rows, label2id, max_length, path):
    items = []
    for i, r in enumerate(rows):
        if r["label"] not in label2id:
            raise SystemExit(f"{path}: row {i + 1}: label {r['label']!r} not in the training label set")
        pair = r.get("text_pair")
        enc = tok(r["text"], pair, truncation=True, max_length=max_length)
        items.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                      "labels": label2id[r["label"]]})
    return items


def align_words(tok, words, max_length):
    """ids, and for each token the index of the word whose first token it is (else None)."""
    text = " ".join(words)
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    enc = tok(text, truncation=True, max_length=max_length, return_offsets_mapping=True)
    first = [None] * len(enc["input_ids"])
    seen = set()
    w = 0
    for t, (s, e) in enumerate(enc["offset_mapping"]):
        if e <= s:  # [CLS]/[SEP] have (0, 0)
            continue
        while w < len(spans) and spans[w][1] <= s:  # word spans are sorted, tokens move forward
            w += 1
        if w < len(spans) and spans[w][0] < e and s < spans[w][1] and w not in seen:
            seen.add(w)
            first[t] = w
    return enc, first


def encode_tokens(tok, sents, tag2id, max_length, path):
    items, dropped = [], 0
    for i, sent in enumerate(sents):
        words = [w for w, _ in sent]
        for _, t in sent:
            if t not in tag2id:
                raise SystemExit(f"{path}: sentence {i + 1}: tag {t!r} not in the training tag set")
        enc, first = align_words(tok, words, max_length)
        labels = [-100 if w is None else tag2id[sent[w][1]] for w in first]
        dropped += len(words) - sum(w is not None for w in first)
        items.append({"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                      "labels": labels, "_words": len(words)})
    return items, dropped


# ----------------------------------------------------------------------------- metrics

def classification_metrics(gold, pred, n):
    total = len(gold)
    conf = [[0] * n for _ in range(n)]
    for g, p in zip(gold, pred):
        conf[g][p] += 1
    correct = sum(conf[k][k] for k in range(n))
    f1s = []
    for k in range(n):
        tp = conf[k][k]
        fp = sum(conf[j][k] for j in range(n)) - tp
        fn = sum(conf[k]) - tp
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    t = [sum(conf[k]) for k in range(n)]
    p = [sum(conf[j][k] for j in range(n)) for k in range(n)]
    cov_ytyp = correct * total - sum(p[k] * t[k] for k in range(n))
    cov_ypyp = total * total - sum(x * x for x in p)
    cov_ytyt = total * total - sum(x * x for x in t)
    mcc = 0.0 if cov_ypyp * cov_ytyt == 0 else cov_ytyp / math.sqrt(cov_ypyp * cov_ytyt)
    return {"accuracy": correct / total, "macro_f1": sum(f1s) / n, "mcc": mcc, "eval_samples": total}


def entities(tags):
    """seqeval.metrics.sequence_labeling.get_entities (prefix mode) on one sentence."""
    out, prev_tag, prev_type, begin = [], "O", "", 0
    for i, chunk in enumerate(list(tags) + ["O"]):
        tag, typ = chunk[0], (chunk[1:].split("-", 1)[-1] or "_")
        end = (prev_tag in ("E", "S") or (prev_tag in ("B", "I") and tag in ("B", "S", "O"))
               or (prev_tag not in ("O", ".") and prev_type != typ))
        start = (tag in ("B", "S") or (prev_tag in ("E", "S", "O") and tag in ("E", "I"))
                 or (tag not in ("O", ".") and prev_type != typ))
        if end:
            out.append((prev_type, begin, i - 1))
        if start:
            begin = i
        prev_tag, prev_type = tag, typ
    return out


def ner_metrics(gold_sents, pred_sents):
    tp = n_pred = n_true = 0
    words = correct_words = 0
    for g, p in zip(gold_sents, pred_sents):
        eg, ep = set(entities(g)), set(entities(p))
        tp += len(eg & ep)
        n_pred += len(ep)
        n_true += len(eg)
        words += len(g)
        correct_words += sum(a == b for a, b in zip(g, p))
    prec = tp / n_pred if n_pred else 0.0
    rec = tp / n_true if n_true else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    return {"precision": prec, "recall": rec, "f1": f1, "token_accuracy": correct_words / words,
            "true_entities": n_true, "pred_entities": n_pred, "correct_entities": tp,
            "eval_sentences": len(gold_sents), "eval_words": words}


# ----------------------------------------------------------------------------- main

def decay_names(model):
    return {n for n, p in model.named_parameters() if p.ndim > 1 and not n.endswith(".bias")}


def main():
    # stdout carries exactly one JSON line: everything else (Trainer's PrinterCallback too) goes to stderr
    real_stdout = sys.stdout
    with contextlib.redirect_stdout(sys.stderr):
        out = run()
    print(json.dumps(out), file=real_stdout, flush=True)


def run():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True, choices=["classification", "token-classification"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--validation", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--learning-rate", type=float, default=3e-4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--weight-decay", type=float, default=1e-5)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--gradient-clip", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true",
                    help="mixed precision: torch.autocast bf16 on CPU (TrainingArguments(bf16=True)), f32 master weights")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    transformers.set_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(args.model)
    if not tok.is_fast:
        raise SystemExit("need a fast tokenizer (tokenizer.json) for offsets")

    t0 = time.perf_counter()
    if args.task == "classification":
        train_rows = read_jsonl(args.train)
        val_rows = read_jsonl(args.validation)
        labels = label_set([r["label"] for r in train_rows], args.train)
        label2id = {lab: i for i, lab in enumerate(labels)}
        train_items = encode_classification(tok, train_rows, label2id, args.max_length, args.train)
        val_items = encode_classification(tok, val_rows, label2id, args.max_length, args.validation)
        collator = DataCollatorWithPadding(tok)
        model_cls = AutoModelForSequenceClassification
        dropped = {}
    else:
        train_sents = read_conll(args.train)
        val_sents = read_conll(args.validation)
        labels = sorted({t for s in train_sents for _, t in s})
        label2id = {lab: i for i, lab in enumerate(labels)}
        train_items, d_train = encode_tokens(tok, train_sents, label2id, args.max_length, args.train)
        val_items, d_val = encode_tokens(tok, val_sents, label2id, args.max_length, args.validation)
        dropped = {"train_words_truncated": d_train, "eval_words_truncated": d_val}
        collator = DataCollatorForTokenClassification(tok)
        model_cls = AutoModelForTokenClassification
    for it in train_items + val_items:
        it.pop("_words", None)
    prep_seconds = time.perf_counter() - t0
    n_train = len(train_items)
    id2label = {i: str(lab) for i, lab in enumerate(labels)}
    log(f"{args.task}: {n_train} train / {len(val_items)} eval examples, {len(labels)} labels, "
        f"prep {prep_seconds:.1f}s, {dropped or ''}")

    model, info = model_cls.from_pretrained(
        args.model, num_labels=len(labels), id2label=id2label,
        label2id={v: k for k, v in id2label.items()}, dtype=torch.float32, output_loading_info=True)
    log(f"new (randomly initialised) parameters: {sorted(info['missing_keys'])}; "
        f"checkpoint tensors not used: {sorted(info['unexpected_keys'])}")
    model.config.problem_type = "single_label_classification" if args.task == "classification" else None

    steps_per_epoch = math.ceil(n_train / args.batch_size)
    total_steps = steps_per_epoch * args.epochs
    warmup_steps = math.ceil(args.warmup_ratio * total_steps)
    targs = TrainingArguments(
        output_dir=os.path.join(args.output, "trainer-tmp"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        per_device_eval_batch_size=args.batch_size,
        gradient_accumulation_steps=1,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay / args.learning_rate,
        adam_beta1=0.9, adam_beta2=0.98, adam_epsilon=1e-6,
        optim="adamw_torch",
        lr_scheduler_type="linear",
        warmup_steps=warmup_steps,
        max_grad_norm=args.gradient_clip if args.gradient_clip > 0 else 0.0,
        seed=args.seed, data_seed=args.seed,
        train_sampling_strategy="random",  # not group_by_length
        dataloader_drop_last=False,
        dataloader_num_workers=0,
        eval_strategy="no", save_strategy="no", logging_strategy="no",
        report_to="none", disable_tqdm=True,
        use_cpu=True, bf16=args.bf16, fp16=False,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=ListDataset(train_items),
                      eval_dataset=ListDataset(val_items), data_collator=collator)
    # The optimiser grouping must be ours: no decay for ndim <= 1 and *.bias.
    opt = trainer.create_optimizer()
    hf_decay = set()
    names = {id(p): n for n, p in model.named_parameters()}
    for g in opt.param_groups:
        assert g["betas"] == (0.9, 0.98) and g["eps"] == 1e-6, g
        if g["weight_decay"] > 0:
            hf_decay |= {names[id(p)] for p in g["params"]}
    want = decay_names(model)
    if hf_decay != want:
        raise SystemExit(f"Trainer decay grouping differs: extra {sorted(hf_decay - want)}, missing {sorted(want - hf_decay)}")

    t0 = time.perf_counter()
    result = trainer.train()
    train_seconds = time.perf_counter() - t0
    assert result.global_step == total_steps, (result.global_step, total_steps)

    t0 = time.perf_counter()
    pred = trainer.predict(ListDataset(val_items))
    logits, gold = pred.predictions, pred.label_ids
    if args.task == "classification":
        p = logits.argmax(-1).tolist()
        metrics = classification_metrics(gold.tolist(), p, len(labels))
        metric_name, metric = "accuracy", metrics["accuracy"]
    else:
        p = logits.argmax(-1)
        gold_sents, pred_sents = [], []
        for i, sent in enumerate(val_sents):
            row_p = [int(x) for x, y in zip(p[i], gold[i]) if y != -100]
            tags = [t for _, t in sent]
            pt = [labels[x] for x in row_p] + ["O"] * (len(tags) - len(row_p))  # truncated words -> O
            gold_sents.append(tags)
            pred_sents.append(pt)
        metrics = ner_metrics(gold_sents, pred_sents)
        metric_name, metric = "entity_f1", metrics["f1"]
    eval_seconds = time.perf_counter() - t0

    trainer.save_model(args.output)
    with contextlib.suppress(OSError):
        os.rmdir(targs.output_dir)  # the Trainer's (empty) scratch dir
    tok.save_pretrained(args.output)
    metrics.update(dropped)
    out = {
        "task": args.task, "metric_name": metric_name, "metric": metric, "metrics": metrics,
        "train_samples": n_train, "epochs": args.epochs, "train_seconds": round(train_seconds, 3),
        "train_samples_per_second": round(n_train * args.epochs / train_seconds, 3),
        "eval_seconds": round(eval_seconds, 3), "torch_threads": torch.get_num_threads(),
        "steps": total_steps, "warmup_steps": warmup_steps, "train_loss": result.training_loss,
        "num_labels": len(labels), "implementation": "hf-trainer", "bf16": args.bf16,
        "torch": torch.__version__, "transformers": transformers.__version__,
    }
    return out


if __name__ == "__main__":
    main()
