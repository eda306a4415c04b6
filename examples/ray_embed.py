#!/usr/bin/env python3
"""Embed a corpus with xlmr on Ray Data: read texts from Parquet or JSONL, embed them on a
pool of actors (each loads the GGUF file once, memory-mapped), write Parquet with the vectors.

    pip install ./python "ray[data]" pyarrow
    python examples/ray_embed.py --model model-q8_0.gguf --input texts.parquet \
        --output vectors/ --workers 2 --threads-per-worker 4

Input: Parquet files or folders (`ray.data.read_parquet`), or JSON-lines files ending in
`.jsonl` / `.json` (`ray.data.read_json`), with a string column (`--text-column`, default
`text`). Output: the input's columns plus `embedding`, a fixed-size list of float32 (what
any Parquet reader understands). Inputs longer than the model's maximum are cut unless
`--no-truncate`. By default each actor repacks the encoder's matrices into a private copy
(fastest); with `--share-weights` every actor on a node uses the one mapped copy in the page
cache (less memory per actor, slower matmuls; see README "Scale-out"); with `--pack-cache DIR`
the first actor on a node writes the packed matrices to a file in DIR and every actor maps it:
packed speed and one shared copy (README "Performance", `XLMR_PACK_CACHE`). On a cluster, pass
`--address auto` and put the GGUF file on every node (or a shared file system).
"""

import argparse
import time

import numpy as np
import pyarrow as pa
import ray


class XlmrEmbedder:
    """A Ray Data callable class: `ds.map_batches(XlmrEmbedder, fn_constructor_kwargs=...)`.
    The model is loaded once per actor; each batch (a pyarrow Table) gets an `embedding`
    column."""

    def __init__(self, model_path, n_threads=None, text_column="text", pooling="mean", normalize=False, truncate=True, batch_size=8, share_weights=False, pack_cache=None):
        import os

        import xlmr

        if share_weights:
            # Use the encoder's weights in place from the shared map instead of repacking
            # a private copy per actor: less memory per actor, slower matmuls (README).
            os.environ["XLMR_PACK"] = "0"
        if pack_cache:
            # Map the packed weights from a cache file shared by the node's actors.
            os.environ["XLMR_PACK_CACHE"] = pack_cache
        self.model = xlmr.Model(model_path, n_threads=n_threads)
        self.text_column = text_column
        self.options = dict(pooling=pooling, normalize=normalize, truncate=truncate, batch_size=batch_size)

    def __call__(self, batch: pa.Table) -> pa.Table:
        texts = batch.column(self.text_column).to_pylist()
        vectors = self.model.embed(texts, **self.options)
        dim = self.model.get_sentence_embedding_dimension()
        column = pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vectors).reshape(-1), pa.float32()), dim)
        return batch.append_column("embedding", column)


def read_texts(path):
    if path.endswith((".jsonl", ".json")):
        return ray.data.read_json(path)
    return ray.data.read_parquet(path)


def embed_dataset(ds, model, workers=1, threads_per_worker=1, rows_per_batch=64, cpus_per_worker=None, **embedder_kwargs):
    """`ds` with an `embedding` column, computed by `workers` actors of `threads_per_worker`
    threads each, each reserving `cpus_per_worker` Ray CPUs (default: its threads). Leave Ray
    some CPUs for the read and write tasks: actors holding all of them stall the job."""
    return ds.map_batches(
        XlmrEmbedder,
        fn_constructor_kwargs=dict(model_path=model, n_threads=threads_per_worker, **embedder_kwargs),
        batch_size=rows_per_batch,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads_per_worker if cpus_per_worker is None else cpus_per_worker,
    )


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="GGUF file written by `xlmr convert`")
    p.add_argument("--input", required=True, help="Parquet file/folder, or a .jsonl file")
    p.add_argument("--output", required=True, help="output folder for the Parquet files")
    p.add_argument("--workers", type=int, default=1, help="actors (each loads the model once)")
    p.add_argument("--threads-per-worker", type=int, default=1, help="compute threads (and Ray CPUs) per actor")
    p.add_argument("--cpus-per-worker", type=float, default=None, help="Ray CPUs each actor reserves (default: its threads); keep some free for reading and writing")
    p.add_argument("--rows-per-batch", type=int, default=64, help="rows Ray hands an actor at a time")
    p.add_argument("--batch-size", type=int, default=8, help="inputs per forward pass inside an actor")
    p.add_argument("--text-column", default="text")
    p.add_argument("--pooling", choices=["mean", "cls"], default="mean")
    p.add_argument("--normalize", action="store_true", help="unit-length vectors")
    p.add_argument("--share-weights", action="store_true", help="actors use the weights in place from the shared file map (less memory per actor, slower; README \"Scale-out\")")
    p.add_argument("--pack-cache", default=None, metavar="DIR", help="actors map the packed weights from a cache file in DIR (written by the first): packed speed, one shared copy per node")
    p.add_argument("--no-truncate", action="store_true", help="fail on inputs longer than the model's maximum")
    p.add_argument("--address", default=None, help="Ray cluster address (`auto` on a cluster node); default: a local Ray")
    args = p.parse_args()

    if args.workers < 1 or args.threads_per_worker < 1:
        p.error("--workers and --threads-per-worker must be at least 1")
    ray.init(address=args.address)
    started = time.perf_counter()
    ds = embed_dataset(
        read_texts(args.input),
        args.model,
        workers=args.workers,
        threads_per_worker=args.threads_per_worker,
        rows_per_batch=args.rows_per_batch,
        cpus_per_worker=args.cpus_per_worker,
        text_column=args.text_column,
        pooling=args.pooling,
        normalize=args.normalize,
        truncate=not args.no_truncate,
        batch_size=args.batch_size,
        share_weights=args.share_weights,
        pack_cache=args.pack_cache,
    )
    ds.write_parquet(args.output)
    elapsed = time.perf_counter() - started
    rows = ray.data.read_parquet(args.output).count()
    print(f"embedded {rows} texts in {elapsed:.1f} s ({rows / elapsed:.1f} texts/s) with {args.workers} x {args.threads_per_worker} threads -> {args.output}")


if __name__ == "__main__":
    main()
