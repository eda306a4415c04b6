#!/usr/bin/env python3
"""Times one XLM-RoBERTa-XL layer in PyTorch (fp32 and int8 dynamic quantization, the anchors
of issue 4) and xlmr on the same shapes, in the same run, and prints xlmr's ratio to each.

    python3 tools/bench_pytorch.py --gguf big/xl-2l-q8_0.gguf [--gguf big/xl-2l-q4_k.gguf ...]
        [--tokens 8,128,512] [--runs 5] [--threads 2]

PyTorch runs a single `XLMRobertaXLLayer` with XL's shapes (hidden 2560, 32 heads of 80,
FFN 10240, random weights) on one input of each length. xlmr runs `xlmr bench` on each GGUF
and its per-layer time is the whole forward's median divided by the file's layer count
(embedding lookup and final LayerNorm included, so it slightly favours PyTorch).
Medians of --runs timed runs after one warm-up. Developer tool: needs torch + transformers.
"""
import argparse
import json
import statistics
import subprocess
import time

import torch
from transformers import XLMRobertaXLConfig
from transformers.models.xlm_roberta_xl.modeling_xlm_roberta_xl import XLMRobertaXLLayer


def xl_layer():
    cfg = XLMRobertaXLConfig(hidden_size=2560, num_attention_heads=32, intermediate_size=10240)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    layer = XLMRobertaXLLayer(cfg).eval()
    with torch.no_grad():
        for p in layer.parameters():
            p.normal_(0.0, 0.02)
    return layer


def time_layer(layer, tokens, runs):
    x = torch.randn(1, tokens, 2560)
    times = []
    with torch.inference_mode():
        for i in range(runs + 1):
            t0 = time.perf_counter()
            layer(x)
            if i:
                times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", action="append", default=[], help="xlmr GGUF with XL shapes (any layer count)")
    ap.add_argument("--xlmr", default="target/release/xlmr")
    ap.add_argument("--tokens", default="8,128,512")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    tokens = [int(t) for t in args.tokens.split(",")]
    torch.set_num_threads(args.threads)

    fp32 = xl_layer()
    int8 = torch.ao.quantization.quantize_dynamic(fp32, {torch.nn.Linear}, dtype=torch.qint8)
    rows = {t: {"fp32": time_layer(fp32, t, args.runs), "int8": time_layer(int8, t, args.runs)} for t in tokens}

    for path in args.gguf:
        out = subprocess.run(
            [args.xlmr, "bench", "-m", path, "--tokens", args.tokens, "--runs", str(args.runs),
             "--threads", str(args.threads), "--json"],
            check=True, capture_output=True, text=True).stdout
        for r in json.loads(out):
            rows[r["tokens"]][path] = r["ms_per_layer"]

    print(f"per XL layer, batch 1, {args.threads} threads, median of {args.runs} runs (ms)")
    header = f"{'tokens':>6} {'torch fp32':>11} {'torch int8':>11}" + "".join(
        f" | {p.split('/')[-1]:>24} {'/fp32':>6} {'/int8':>6}" for p in args.gguf)
    print(header)
    for t in tokens:
        r = rows[t]
        line = f"{t:>6} {r['fp32']:>11.2f} {r['int8']:>11.2f}"
        for p in args.gguf:
            line += f" | {r[p]:>24.2f} {r[p] / r['fp32']:>6.2f} {r[p] / r['int8']:>6.2f}"
        print(line)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
