#!/usr/bin/env python3
"""Throughput and latency of `xlmr serve` against the other ways to embed texts.

    python3 tools/bench_serve.py -m model.gguf [--clients 1,8,64] [--requests 256]
        [--words 24] [--threads N] [--process-requests 32] [--xlmr target/release/xlmr]
        [--lib target/release/libxlmr.so]

Needs only the Python standard library (any python3 >= 3.8) and a release build
(`cargo build --release`, which also builds libxlmr.so). Not a test: run it by hand on a quiet
machine, e.g. on XL-width layers (a GGUF from `tools/make_full_xl.py` with fewer layers).

For each number of concurrent clients it sends `--requests` requests of one text each
(texts of about `--words` words, all different) and reports texts/s, tokens/s and the
p50/p99 latency of a request, for:
  serve    one `xlmr serve` process; each client a keep-alive HTTP connection posting /embed;
  process  one `xlmr run --task embed` process per request (model loaded every time);
  clib     libxlmr through ctypes, one shared model, each client a thread calling xlmr_embed
           (ctypes releases the GIL, so the calls overlap as C threads would).
All three use the same model file, pooling (mean), normalization and thread count.
"""
import argparse
import ctypes
import http.client
import json
import os
import re
import statistics
import subprocess
import sys
import threading
import time

WORDS = ("the quick brown fox jumps over a lazy dog while seven wizards quietly judge "
         "boxing matches in paris berlin tokyo madrid and lagos every single evening").split()


def make_texts(n, words):
    return [f"request {i}: " + " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(words)) for i in range(n)]


def run_clients(n_clients, jobs, one):
    """Runs `one(client_state, job)` for every job on n_clients threads; latencies in s."""
    lock = threading.Lock()
    todo = list(enumerate(jobs))
    latencies = []
    errors = []

    def client(state):
        while True:
            with lock:
                if not todo:
                    return
                _, job = todo.pop()
            t = time.perf_counter()
            try:
                one(state, job)
            except Exception as e:  # noqa: BLE001 - reported, not hidden
                with lock:
                    errors.append(repr(e))
                continue
            with lock:
                latencies.append(time.perf_counter() - t)

    threads = [threading.Thread(target=client, args=({},)) for _ in range(n_clients)]
    start = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return time.perf_counter() - start, latencies, errors


def pct(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def report(rows, mode, clients, wall, latencies, errors, tokens):
    n = len(latencies)
    rows.append((mode, clients, n, n / wall, tokens / wall, pct(latencies, 0.5) * 1e3, pct(latencies, 0.99) * 1e3, len(errors)))
    print(f"{mode:8} clients {clients:3}  {n:5} texts  {n / wall:9.2f} texts/s  {tokens / wall:10.1f} tokens/s  "
          f"p50 {pct(latencies, 0.5) * 1e3:9.1f} ms  p99 {pct(latencies, 0.99) * 1e3:9.1f} ms  errors {len(errors)}"
          + (f" ({errors[0]})" if errors else ""), flush=True)


def start_server(args):
    cmd = [args.xlmr, "serve", "-m", args.model, "--port", "0", "--max-concurrent-requests", "4096"]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on http://([\d.]+):(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
            return proc, m.group(1), int(m.group(2))
        if not line and proc.poll() is not None:
            break
    proc.kill()
    sys.exit("xlmr serve did not start")


def post(host, port, path, body, conn=None):
    c = conn or http.client.HTTPConnection(host, port, timeout=600)
    c.request("POST", path, json.dumps(body), {"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    if r.status != 200:
        raise RuntimeError(f"{path}: {r.status} {data[:200]!r}")
    return json.loads(data), c


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--clients", default="1,8,64")
    ap.add_argument("--requests", type=int, default=256)
    ap.add_argument("--process-requests", type=int, default=32, help="requests per level for one-process-per-request (0: skip)")
    ap.add_argument("--words", type=int, default=24)
    ap.add_argument("--threads", type=int, default=0, help="compute threads (default: all cores)")
    ap.add_argument("--xlmr", default="target/release/xlmr")
    ap.add_argument("--lib", default="target/release/libxlmr.so")
    ap.add_argument("--modes", default="serve,process,clib")
    args = ap.parse_args()
    levels = [int(c) for c in args.clients.split(",")]
    modes = args.modes.split(",")
    texts = make_texts(args.requests, args.words)
    print(f"model {args.model}; {len(texts)} texts of {args.words} words; clients {levels}; "
          f"threads {args.threads or os.cpu_count()}; cpu: {cpu_name()}", flush=True)

    proc, host, port = start_server(args)
    try:
        counts, _ = post(host, port, "/tokenize", {"inputs": texts[:32]})
        per_text = statistics.mean(len(t) for t in counts)  # texts are alike: mean of 32 is enough
        rows = []
        if "serve" in modes:
            post(host, port, "/embed", {"inputs": texts[0]})  # warm

            def one(state, text):
                _, state["conn"] = post(host, port, "/embed", {"inputs": text}, state.get("conn"))

            for c in levels:
                wall, lat, err = run_clients(c, texts, one)
                report(rows, "serve", c, wall, lat, err, per_text * len(lat))
    finally:
        proc.terminate()
        proc.wait(timeout=120)

    if "process" in modes and args.process_requests:
        def one(_, text):
            cmd = [args.xlmr, "run", "-m", args.model, "--task", "embed", "--normalize", "--json", text]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        for c in levels:
            wall, lat, err = run_clients(c, texts[: args.process_requests], one)
            report(rows, "process", c, wall, lat, err, per_text * len(lat))

    if "clib" in modes:
        lib = load_lib(args.lib)
        params = lib.xlmr_model_default_params()
        params.n_threads = args.threads
        model = ctypes.c_void_p()
        check(lib, lib.xlmr_model_load(args.model.encode(), params, ctypes.byref(model)))

        def one(_, text):
            arr = (ctypes.c_char_p * 1)(text.encode())
            out = ctypes.c_void_p()
            check(lib, lib.xlmr_embed(model, arr, 1, 1, True, False, ctypes.byref(out)))
            lib.xlmr_embeddings_free(out)

        one(None, texts[0])  # warm
        for c in levels:
            wall, lat, err = run_clients(c, texts, one)
            report(rows, "clib", c, wall, lat, err, per_text * len(lat))
        lib.xlmr_model_free(model)

    print("\n| mode | clients | texts/s | tokens/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|")
    for mode, c, _, tps, toks, p50, p99, _ in rows:
        print(f"| {mode} | {c} | {tps:.2f} | {toks:.0f} | {p50:.1f} | {p99:.1f} |")


class Params(ctypes.Structure):
    _fields_ = [("n_threads", ctypes.c_uint32), ("n_batch", ctypes.c_uint32), ("use_mmap", ctypes.c_bool)]


def load_lib(path):
    lib = ctypes.CDLL(path)
    lib.xlmr_model_default_params.restype = Params
    lib.xlmr_model_load.argtypes = [ctypes.c_char_p, Params, ctypes.POINTER(ctypes.c_void_p)]
    lib.xlmr_embed.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_size_t, ctypes.c_int32,
                               ctypes.c_bool, ctypes.c_bool, ctypes.POINTER(ctypes.c_void_p)]
    lib.xlmr_embeddings_free.argtypes = [ctypes.c_void_p]
    lib.xlmr_model_free.argtypes = [ctypes.c_void_p]
    lib.xlmr_last_error.restype = ctypes.c_char_p
    return lib


def check(lib, status):
    if status != 0:
        raise RuntimeError(lib.xlmr_last_error().decode())


def cpu_name():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(l.split(":", 1)[1].strip() for l in out.splitlines() if l.startswith("Model name"))
    except (OSError, StopIteration):
        return "unknown"


if __name__ == "__main__":
    main()
