#!/usr/bin/env python3
"""sentence-transformers reference for the embedding fine-tuning benchmark (issue 12,
bench/embed_finetune.sh): the SentenceTransformerTrainer on the same start checkpoint, pairs and settings
as `modernbert finetune --task embedding`. The command line mirrors ours:

  .venv/bin/python scripts/st_finetune.py --model DIR --train PAIRS.jsonl --output DIR [--epochs 1] \
      [--learning-rate 2e-4] [--batch-size 64] [--mini-batch-size 0] [--max-length 128] \
      [--weight-decay 0.01] [--warmup-ratio 0.1] [--gradient-clip 1.0] [--scale 20] [--seed 42] \
      [--query-prompt "query: "] [--document-prompt "document: "] [--threads 2]

Semantics (kept identical to the Rust trainer):

* Data: JSONL rows {"query" | "anchor", "positive"} (other fields ignored), file order; columns
  anchor/positive; `--query-prompt` / `--document-prompt` prepended through the trainer's `prompts`
  (and kept in the pooled tokens, ST's default `include_prompt=True`, as ours).
* Model: `SentenceTransformer([Transformer(--model, max_seq_length=--max-length), Pooling(mean)])`, f32,
  HF's default attention (SDPA), CPU, `torch.set_num_threads(--threads)`.
* Loss: MultipleNegativesRankingLoss(scale) (cosine similarity x scale, cross-entropy against the own
  positive among every positive of the batch); with `--mini-batch-size` > 0 CachedMultipleNegativesRankingLoss
  (GradCache) with that mini-batch. Batches: NO_DUPLICATES sampler, per-device batch `--batch-size`.
* Optimiser: torch AdamW, betas (0.9, 0.98), eps 1e-6; our decay is fully decoupled,
  p <- p * (1 - (lr_t / lr_peak) * wd), so torch's weight_decay = wd / lr_peak (Trainer groups: no decay
  for biases and LayerNorm weights). Linear warmup for ceil(warmup_ratio * total_steps), then linear decay
  to 0; max_grad_norm = --gradient-clip; no evaluation, logging or checkpoints during training.
* Timing as ours: the sum over optimizer steps of each step's time (on_step_begin to on_step_end: forward,
  backward, clipping, AdamW), so the trainer's start-up (model-card widget embeddings, data loader) and
  the collator's tokenisation between steps are not counted (ours counts its tokenisation).
* Output: one JSON line on stdout {"train_samples", "epochs", "step_seconds", "train_seconds" (all of
  `train()`), "train_samples_per_second" (= rows * epochs / step_seconds), "loss", "torch_threads", ...};
  the model is saved to --output as a sentence-transformers directory (which `modernbert evaluate
  --task retrieval` reads, so both sides are scored by one evaluator).

Needs: the .venv of scripts/setup-python.sh + scripts/setup-python-formats.sh st6 (sentence-transformers,
datasets).
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
os.environ.setdefault("WANDB_DISABLED", "true")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--learning-rate", type=float, default=2e-4)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--mini-batch-size", type=int, default=0)
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--warmup-ratio", type=float, default=0.1)
    ap.add_argument("--gradient-clip", type=float, default=1.0)
    ap.add_argument("--scale", type=float, default=20.0)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--query-prompt", default="")
    ap.add_argument("--document-prompt", default="")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bf16", action="store_true",
                    help="mixed precision: torch.autocast bf16 on CPU (bf16=True), f32 master weights")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    import datasets
    import sentence_transformers
    import transformers
    from sentence_transformers import SentenceTransformer, SentenceTransformerTrainer
    from sentence_transformers import SentenceTransformerTrainingArguments
    from sentence_transformers.base.modules import Transformer
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer import losses
    from sentence_transformers.sentence_transformer.modules import Pooling
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Sums the time of each optimizer step."""

        seconds = 0.0

        def on_step_begin(self, args, state, control, **kwargs):
            self.t0 = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds += time.perf_counter() - self.t0

    anchors, positives = [], []
    with open(args.train, encoding="utf-8") as f:
        for i, line in enumerate(f, 1):
            row = json.loads(line)
            query = row.get("query", row.get("anchor"))
            positive = row.get("positive", row.get("document"))
            if not isinstance(query, str) or not isinstance(positive, str):
                sys.exit(f"{args.train}:{i}: a row needs string \"query\" (or \"anchor\") and \"positive\"")
            anchors.append(query)
            positives.append(positive)
    train = datasets.Dataset.from_dict({"anchor": anchors, "positive": positives})

    torch.manual_seed(args.seed)
    transformer = Transformer(args.model, max_seq_length=args.max_length, model_kwargs={"dtype": torch.float32})
    model = SentenceTransformer(
        modules=[transformer, Pooling(transformer.get_embedding_dimension(), "mean")], device="cpu"
    )
    if args.mini_batch_size > 0:
        loss = losses.CachedMultipleNegativesRankingLoss(
            model, scale=args.scale, mini_batch_size=args.mini_batch_size
        )
    else:
        loss = losses.MultipleNegativesRankingLoss(model, scale=args.scale)

    steps = args.epochs * math.ceil(len(train) / args.batch_size)
    prompts = {k: v for k, v in (("anchor", args.query_prompt), ("positive", args.document_prompt)) if v}
    targs = SentenceTransformerTrainingArguments(
        output_dir=os.path.join(args.output, "trainer"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        weight_decay=args.weight_decay / args.learning_rate,
        adam_beta1=0.9,
        adam_beta2=0.98,
        adam_epsilon=1e-6,
        max_grad_norm=args.gradient_clip if args.gradient_clip > 0 else 1e30,
        lr_scheduler_type="linear",
        warmup_steps=math.ceil(args.warmup_ratio * steps),
        optim="adamw_torch",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        prompts=prompts or None,
        seed=args.seed,
        data_seed=args.seed,
        use_cpu=True,
        bf16=args.bf16,
        fp16=False,
        logging_strategy="no",
        eval_strategy="no",
        save_strategy="no",
        report_to=[],
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    timer = StepTimer()
    trainer = SentenceTransformerTrainer(model=model, args=targs, train_dataset=train, loss=loss, callbacks=[timer])
    # stdout carries exactly one JSON line: the Trainer's own prints go to stderr.
    with contextlib.redirect_stdout(sys.stderr):
        start = time.perf_counter()
        result = trainer.train()
        seconds = time.perf_counter() - start
        model.save(args.output)
    print(
        json.dumps(
            {
                "train_samples": len(train),
                "epochs": args.epochs,
                "steps": result.global_step,
                "step_seconds": timer.seconds,
                "train_seconds": seconds,
                "train_samples_per_second": len(train) * args.epochs / timer.seconds,
                "loss": result.training_loss,
                "torch_threads": torch.get_num_threads(),
                "bf16": args.bf16,
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "sentence_transformers": sentence_transformers.__version__,
            }
        )
    )


if __name__ == "__main__":
    main()
