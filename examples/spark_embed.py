"""Embed a text column with PySpark and the `modernbert` Python package.

A `pandas_udf` over an *iterator* of Series loads the model once per task (not once per batch) and
returns `array<float>`. Give every task `spark.task.cpus = threads` so Spark runs as many tasks per
executor as the cores allow, each with `threads` inference threads.

    pip install crates/modernbert-py pyspark pandas pyarrow
    python examples/spark_embed.py --model models/modernbert-mini --input texts.jsonl \\
        --output embeddings/ --master 'local[2]' --threads 1

Input: JSONL lines `{"text": ...}` (other fields are kept), Parquet with a `text` column, or plain
text (one text per line). Output: Parquet with the input columns plus `embedding`. On a cluster
(`spark-submit --master ...`), install the wheel on every executor and use a model path that
exists there (or a Hugging Face Hub id); `--batch-size` sets the Arrow batch (texts per encode call).
"""

import argparse
import os
import sys
from typing import Any, Iterator, Optional

# At module level, not inside embed_udf: Spark reads the UDF's type hints (Iterator[pd.Series]) to
# pick the iterator-of-Series flavour, and resolves them in this module's globals.
import pandas as pd


def embed_udf(model: Optional[str] = None, threads: int = 1, precision: str = "f32", **encode_kwargs: Any):
    """A `pandas_udf` (`array<float>`) that embeds a string column: `df.withColumn("embedding",
    embed_udf(...)("text"))`. `encode_kwargs` are `Model.encode`'s (`prompt_name`, `prompt`,
    `normalize_embeddings`, `truncate_dim`, `is_query`)."""
    from pyspark.sql.functions import pandas_udf
    from pyspark.sql.types import ArrayType, FloatType

    @pandas_udf(ArrayType(FloatType()))
    def embed(batches: Iterator[pd.Series]) -> Iterator[pd.Series]:
        import modernbert

        m = modernbert.Model.load(model, precision=precision, threads=threads)  # once per task
        for texts in batches:
            vectors = m.encode(texts.tolist(), batch_size=max(len(texts), 1), **encode_kwargs)
            yield pd.Series(list(vectors))

    return embed


def session(master: str = "local[2]", threads: int = 1, batch_size: int = 256, app: str = "modernbert-embed"):
    """A SparkSession whose Python workers use this interpreter, one task per `threads` cores."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # stay on this machine
    return (
        SparkSession.builder.master(master)
        .appName(app)
        .config("spark.task.cpus", str(threads))
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(batch_size))
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )


def read(spark, path: str):
    if path.endswith((".jsonl", ".json")):
        return spark.read.json(path)
    if path.endswith(".parquet"):
        return spark.read.parquet(path)
    return spark.read.text(path).withColumnRenamed("value", "text")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default=None, help="model directory or Hub id (default: the shipped modernbert-mini)")
    p.add_argument("--input", required=True, help="JSONL ({'text': ...}), Parquet (text column) or a text file")
    p.add_argument("--output", required=True, help="output folder (Parquet)")
    p.add_argument("--master", default="local[2]", help="Spark master (ignored under spark-submit --master)")
    p.add_argument("--threads", type=int, default=1, help="inference threads (= spark.task.cpus) per task")
    p.add_argument("--batch-size", type=int, default=256, help="texts per Arrow batch / encode call")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16", "int8"])
    p.add_argument("--partitions", type=int, default=None, help="repartition the input into this many tasks")
    p.add_argument("--prompt-name", default=None)
    p.add_argument("--normalize", action="store_true", help="L2-normalise the vectors")
    args = p.parse_args()

    spark = session(args.master, args.threads, args.batch_size)
    kwargs = {"normalize_embeddings": args.normalize}
    if args.prompt_name:
        kwargs["prompt_name"] = args.prompt_name
    udf = embed_udf(args.model, threads=args.threads, precision=args.precision, **kwargs)
    df = read(spark, args.input)
    if args.partitions:
        df = df.repartition(args.partitions)
    df.withColumn("embedding", udf("text")).write.mode("overwrite").parquet(args.output)
    print(f"wrote {args.output}")
    spark.stop()


if __name__ == "__main__":
    main()
