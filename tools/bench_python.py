#!/usr/bin/env python3
"""Measurements for the README's "Scale-out" section (not run by CI):

  memory      node memory with 1, 2 and 4 workers that each load one model and embed a few
              texts: per worker RSS, PSS, shared and private memory from /proc/<pid>/smaps_rollup
              read while every worker is alive (PSS splits each shared page between the
              processes that map it, so the sum of PSS is the node's memory).
  throughput  texts/s on the same generated texts: one process (xlmr.Model, all threads), the
              Ray job of examples/ray_embed.py with 1 actor x 2 threads and 2 actors x 1 thread,
              and Ray's overhead per batch (the tiny model, where compute is ~0).

Run from the repository root:

  # xlmr workers as Ray actors (venv with the package and Ray: pip install ./python "ray[data]")
  /work/venvpy/bin/python tools/bench_python.py memory --engine xlmr --model /work/big/xl4-q8_0.gguf
  XLMR_PACK=0 /work/venvpy/bin/python tools/bench_python.py memory --engine xlmr --model /work/big/xl4-q8_0.gguf
  # PyTorch workers as processes (venv with torch + transformers; same code path per worker)
  /work/venv/bin/python tools/bench_python.py memory --engine torch --model /work/big/xl4
  /work/venvpy/bin/python tools/bench_python.py throughput --model /work/big/xl4-q8_0.gguf --tiny target/tiny.gguf

/work/big/xl4 is `tools/make_full_xl.py --layers 4` (XL widths, 4 layers, random weights) and
xl4-q8_0.gguf its `xlmr convert`. Workers use one thread each for the memory runs.
"""

import argparse
import json
import multiprocessing as mp
import os
import random
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIELDS = ["Rss", "Pss", "Pss_Anon", "Pss_File", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty"]


def texts(n, seed=13):
    rng = random.Random(seed)
    words = "the file could not be opened because it is locked by another process Datei fichier 文件 файл".split()
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 48))) for _ in range(n)]


def smaps(pid):
    """kB of each FIELDS entry of /proc/<pid>/smaps_rollup."""
    out = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts and parts[0].rstrip(":") in FIELDS:
                out[parts[0].rstrip(":")] = int(parts[1])
    return out


def load_and_embed(engine, model_path, sample):
    """Loads the model as a worker does and embeds `sample`; returns the model (kept alive)."""
    if engine == "xlmr":
        import xlmr

        m = xlmr.Model(model_path, n_threads=1)
        m.embed(sample)
        return m
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(1)
    tok = AutoTokenizer.from_pretrained(model_path)
    m = AutoModel.from_pretrained(model_path, dtype=torch.float32).eval()
    with torch.no_grad():
        enc = tok(sample, padding=True, return_tensors="pt")
        m(**enc).last_hidden_state.mean(dim=1)
    return m, tok


def process_worker(engine, model_path, ready, release):
    keep = load_and_embed(engine, model_path, texts(8))
    ready.put(os.getpid())
    release.wait()
    del keep


def memory_with_processes(engine, model_path, n):
    ctx = mp.get_context("spawn")
    ready, release = ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=process_worker, args=(engine, model_path, ready, release)) for _ in range(n)]
    for p in procs:
        p.start()
    pids = [ready.get(timeout=600) for _ in procs]
    time.sleep(1)
    rows = [smaps(pid) for pid in pids]
    release.set()
    for p in procs:
        p.join()
    return rows


def memory_with_ray(model_path, n):
    import ray

    @ray.remote(num_cpus=0.25)
    class Worker:
        def load(self):
            self.keep = load_and_embed("xlmr", model_path, texts(8))
            return os.getpid()

    env = {k: os.environ[k] for k in ["XLMR_PACK", "XLMR_PACK_CACHE"] if k in os.environ}
    actors = [Worker.options(runtime_env={"env_vars": env}).remote() for _ in range(n)]
    pids = ray.get([a.load.remote() for a in actors])
    time.sleep(1)
    rows = [smaps(pid) for pid in pids]
    for a in actors:
        ray.kill(a)
    time.sleep(2)
    return rows


def start_ray():
    import ray

    # Ray starts its workers at niceness 15 by default (to keep its daemons responsive); on a
    # machine shared with other work that starves the actors, so they get the driver's.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)


def memory(args):
    use_ray = args.engine == "xlmr" and not args.processes
    if use_ray:
        start_ray()
    label = args.engine + (" packed" if args.engine == "xlmr" and os.environ.get("XLMR_PACK", "1") not in ("0", "false", "no", "off") else "")
    label += " (pack cache)" if args.engine == "xlmr" and os.environ.get("XLMR_PACK_CACHE") else ""
    label += " (Ray actors)" if use_ray else " (processes)"
    results = []
    for n in args.workers:
        rows = memory_with_ray(args.model, n) if use_ray else memory_with_processes(args.engine, args.model, n)
        mib = lambda kb: round(kb / 1024, 1)
        summary = {
            "engine": label,
            "workers": n,
            "rss_per_worker_mib": mib(statistics.median(r["Rss"] for r in rows)),
            "pss_per_worker_mib": mib(statistics.median(r["Pss"] for r in rows)),
            "shared_per_worker_mib": mib(statistics.median(r["Shared_Clean"] + r["Shared_Dirty"] for r in rows)),
            "private_per_worker_mib": mib(statistics.median(r["Private_Clean"] + r["Private_Dirty"] for r in rows)),
            "node_pss_mib": mib(sum(r["Pss"] for r in rows)),
        }
        print(json.dumps(summary), flush=True)
        results.append(summary)
    return results


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def throughput(args):
    import ray

    sys.path.insert(0, os.path.join(ROOT, "examples"))
    import ray_embed
    import xlmr

    ray.cloudpickle.register_pickle_by_value(ray_embed)
    start_ray()
    data = texts(args.texts)
    items = [{"text": t} for t in data]
    model = xlmr.Model(args.model, n_threads=2)
    n_tokens = sum(len(ids) for ids in model.tokenize(data))

    def ray_job(path, workers, threads, rows):
        ds = ray_embed.embed_dataset(ray.data.from_items(items), path, workers=workers, threads_per_worker=threads, cpus_per_worker=0.75 * threads, rows_per_batch=rows)
        return lambda: ds.materialize()

    configs = {
        "one process, 2 threads": lambda: model.embed(data),
        "Ray, 1 actor x 2 threads": lambda: ray_job(args.model, 1, 2, 32)(),
        "Ray, 2 actors x 1 thread": lambda: ray_job(args.model, 2, 1, 32)(),
    }
    times = {k: [] for k in configs}
    for r in range(args.rounds):  # interleaved rounds, medians reported
        for name, fn in configs.items():
            times[name].append(timed(fn))
            print(f"round {r + 1}: {name}: {times[name][-1]:.2f} s", file=sys.stderr, flush=True)
    for name, ts in times.items():
        med = statistics.median(ts)
        print(json.dumps({"config": name, "texts": len(data), "tokens": n_tokens, "seconds": [round(t, 2) for t in ts], "median_s": round(med, 2), "texts_per_s": round(len(data) / med, 1)}), flush=True)

    # Ray's cost per batch: the tiny model, 64 batches of 32 rows, minus the compute itself.
    tiny = xlmr.Model(args.tiny, n_threads=1)
    many = texts(2048, seed=7)
    items = [{"text": t} for t in many]
    compute = statistics.median(timed(lambda: tiny.embed(many, truncate=True)) for _ in range(3))
    job = statistics.median(timed(ray_job(args.tiny, 1, 1, 32)) for _ in range(3))
    print(json.dumps({"ray_overhead": "tiny model", "batches": 64, "job_s": round(job, 2), "compute_s": round(compute, 2), "overhead_per_batch_ms": round((job - compute) / 64 * 1000, 1)}), flush=True)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    m = sub.add_parser("memory")
    m.add_argument("--engine", choices=["xlmr", "torch"], required=True)
    m.add_argument("--model", required=True)
    m.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    m.add_argument("--processes", action="store_true", help="xlmr workers as plain processes instead of Ray actors")
    t = sub.add_parser("throughput")
    t.add_argument("--model", required=True)
    t.add_argument("--tiny", required=True, help="a tiny GGUF, for Ray's overhead per batch")
    t.add_argument("--texts", type=int, default=256)
    t.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    memory(args) if args.what == "memory" else throughput(args)


if __name__ == "__main__":
    main()
