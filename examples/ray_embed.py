"""Embed a text dataset with Ray Data and the `modernbert` Python package.

Each Ray actor loads the model once (a callable class) and embeds batches with `threads` inference
threads; Ray gives every actor `num_cpus=threads`, so `actors * threads` should be the CPUs you
want to use (per node, or across a cluster).

    pip install crates/modernbert-py "ray[data]"
    python examples/ray_embed.py --model models/modernbert-mini --input texts.jsonl \\
        --output embeddings/ --actors 2 --threads 1

Input: JSONL lines `{"text": ...}` (other fields are kept), Parquet with a `text` column, or plain
text (one text per line). Output: Parquet files with the input columns plus `embedding`
(float32 list). On a cluster, run it on the head node (`ray.init()` connects to the running
cluster when RAY_ADDRESS is set or `--address auto` is given); the model path must exist on every
node (or use a Hugging Face Hub id).
"""

from __future__ import annotations

import argparse
from typing import Any, Optional

import numpy as np


class Embedder:
    """Ray Data callable class: the model is loaded once per actor, in `__init__`."""

    def __init__(self, model: Optional[str] = None, threads: int = 1, precision: str = "f32", **encode_kwargs: Any):
        import modernbert

        self.model = modernbert.Model.load(model, precision=precision, threads=threads)
        self.encode_kwargs = encode_kwargs

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = batch["text"].tolist()
        # (batch, dimension) float32: Ray stores it as a tensor column.
        batch["embedding"] = self.model.encode(texts, batch_size=len(texts), **self.encode_kwargs)
        return batch


def embed_dataset(
    ds,
    model: Optional[str] = None,
    *,
    actors: int = 2,
    threads: int = 1,
    batch_size: int = 256,
    precision: str = "f32",
    **encode_kwargs: Any,
):
    """`ds` (a Ray Dataset with a `text` column) plus an `embedding` column.

    `actors` model replicas run at once (a fixed actor pool), each with `threads` inference threads and `num_cpus=threads`
    reserved; `batch_size` texts go to each `encode` call. `encode_kwargs` are `Model.encode`'s
    (`prompt_name`, `prompt`, `normalize_embeddings`, `truncate_dim`, `is_query`).
    """
    import ray

    return ds.map_batches(
        Embedder,
        fn_constructor_kwargs=dict(model=model, threads=threads, precision=precision, **encode_kwargs),
        batch_size=batch_size,
        batch_format="numpy",
        # `actors` replicas (Ray < 2.51: `concurrency=actors`), each reserving `threads` CPUs.
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_cpus=threads,
    )


# Reading and writing tasks reserve no CPU: the actors hold `actors * threads` CPUs for the whole
# run, and a read or write task that waited for a free CPU would wait for ever when that is all of
# them (e.g. `ray.init(num_cpus=2)` with 2 one-thread actors).
IO_CPUS = 0


def read(path: str):
    import ray

    if path.endswith((".jsonl", ".json")):
        return ray.data.read_json(path, num_cpus=IO_CPUS)
    if path.endswith(".parquet"):
        return ray.data.read_parquet(path, num_cpus=IO_CPUS)
    return ray.data.read_text(path, num_cpus=IO_CPUS)


def start_local_ray(num_cpus: int) -> None:
    """A Ray on this machine only: bound to 127.0.0.1, no dashboard, no usage reporting."""
    import os

    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model directory or Hub id (default: the shipped modernbert-mini)")
    p.add_argument("--input", required=True, help="JSONL ({'text': ...}), Parquet (text column) or a text file")
    p.add_argument("--output", required=True, help="output folder (Parquet)")
    p.add_argument("--actors", type=int, default=2, help="model replicas running at once")
    p.add_argument("--threads", type=int, default=1, help="inference threads (= CPUs reserved) per actor")
    p.add_argument("--batch-size", type=int, default=256, help="texts per encode call")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16", "int8"])
    p.add_argument("--prompt-name", default=None)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    p.add_argument("--address", default=None, help="Ray cluster address ('auto'); default: a local Ray")
    args = p.parse_args()

    if args.address:
        import ray

        ray.init(address=args.address)
    else:
        start_local_ray(args.actors * args.threads)
    kwargs = {"normalize_embeddings": args.normalize}
    if args.prompt_name:
        kwargs["prompt_name"] = args.prompt_name
    ds = embed_dataset(
        read(args.input),
        args.model,
        actors=args.actors,
        threads=args.threads,
        batch_size=args.batch_size,
        precision=args.precision,
        **kwargs,
    )
    ds.write_parquet(args.output, ray_remote_args={"num_cpus": IO_CPUS})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
