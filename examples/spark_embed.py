#!/usr/bin/env python3
"""Embed a corpus with xlmr on Spark: `pyspark.ml.functions.predict_batch_udf` loads the GGUF
once per Python worker (memory-mapped: workers on one node share the file's pages) and embeds
the rows in batches.

    pip install ./python pyspark          # and a Java runtime (e.g. default-jre-headless)
    python examples/spark_embed.py --model model-q8_0.gguf --input texts.parquet \
        --output vectors/ --master "local[2]" --threads-per-worker 1

Input: Parquet (or `.jsonl` / `.json` lines) with a string column (`--text-column`, default
`text`); output: Parquet with the input's columns plus `embedding` (array<float>). Inputs
longer than the model's maximum are cut. On a cluster, pass `--master` (or use spark-submit)
and put the GGUF file at the same path on every node. Spark's Python workers need xlmr,
pandas and pyarrow: set `PYSPARK_PYTHON` to the interpreter of the venv that has them.
"""

import argparse

import numpy as np


def make_embed_udf(model_path, n_threads=1, batch_size=64, pooling="mean", normalize=False):
    """A `predict_batch_udf` column function: `df.withColumn("embedding", udf("text"))`."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql.types import ArrayType, FloatType

    def make_predict_fn():
        import xlmr  # on the worker, once per Python worker process

        model = xlmr.Model(model_path, n_threads=n_threads)

        def predict(texts: np.ndarray) -> np.ndarray:
            return model.embed([str(t) for t in texts], pooling=pooling, normalize=normalize, truncate=True)

        return predict

    return predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=batch_size)


def main():
    from pyspark.sql import SparkSession

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="GGUF file written by `xlmr convert`")
    p.add_argument("--input", required=True, help="Parquet file/folder, or a .jsonl file")
    p.add_argument("--output", required=True, help="output folder for the Parquet files")
    p.add_argument("--master", default=None, help='Spark master, e.g. "local[2]" (default: spark-submit\'s)')
    p.add_argument("--threads-per-worker", type=int, default=1, help="compute threads per Python worker")
    p.add_argument("--batch-size", type=int, default=64, help="rows per predict call")
    p.add_argument("--text-column", default="text")
    p.add_argument("--normalize", action="store_true", help="unit-length vectors")
    args = p.parse_args()

    builder = SparkSession.builder.appName("xlmr-embed")
    if args.master:
        builder = builder.master(args.master)
    spark = builder.getOrCreate()
    df = spark.read.json(args.input) if args.input.endswith((".jsonl", ".json")) else spark.read.parquet(args.input)
    embed = make_embed_udf(args.model, n_threads=args.threads_per_worker, batch_size=args.batch_size, normalize=args.normalize)
    df.withColumn("embedding", embed(args.text_column)).write.mode("overwrite").parquet(args.output)
    print(f"wrote {spark.read.parquet(args.output).count()} rows to {args.output}")
    spark.stop()


if __name__ == "__main__":
    main()
