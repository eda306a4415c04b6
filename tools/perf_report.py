#!/usr/bin/env python3
"""The README's performance table, measured in one run: xlmr vs PyTorch on XL-width layers.

    /path/to/venv/bin/python tools/perf_report.py HF_DIR XLMR_BIN GGUF_PREFIX [--tokens 8,128,512] [--rounds 3]

HF_DIR is a Hugging Face checkpoint with XL's widths (tools/make_full_xl.py OUT --layers 4 writes
one); GGUF_PREFIX names its conversions GGUF_PREFIX-{q8_0,q4_0,q4_k}.gguf (xlmr convert). Needs
torch + transformers (a developer venv, not CI).

Each round runs, one after the other so that neighbours' noise hits all of them alike:
PyTorch fp32 and int8-dynamic (quantize_dynamic, fbgemm) on the same checkpoint, PyTorch fp32
restricted to AVX2 (in a subprocess with MKL/oneDNN/ATen capped at AVX2: the laptop anchor),
then `xlmr bench --json` on each GGUF at the best ISA level with packed weights, q8_0 with
XLMR_PACK=0 (the shared read-only mapping), and q8_0/q4_0 at XLMR_ISA=avx2; with --llamacpp-python,
also llama.cpp q8_0/q4_0/q4_k on a post-LN stand-in with the same widths and layer count
(tools/bench_llamacpp.py in that venv, in a subprocess). Per-layer times are
the whole forward's median of 5 runs divided by the layer count. Prints JSON lines per round,
then a Markdown table of the medians over rounds and of the per-round ratios.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

AVX2_ENV = {"MKL_ENABLE_INSTRUCTIONS": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def torch_times(hf_dir, tokens, int8):
    """ms per layer for each length: fp32 (and int8-dynamic when asked)."""
    import torch
    from transformers import XLMRobertaXLModel

    m = XLMRobertaXLModel.from_pretrained(hf_dir, add_pooling_layer=False).eval()
    models = {"torch-fp32": m}
    if int8:
        models["torch-int8"] = torch.ao.quantization.quantize_dynamic(m, {torch.nn.Linear}, dtype=torch.qint8)
    layers = m.config.num_hidden_layers
    out = {}
    for t in tokens:
        ids = torch.randint(5, 4000, (1, t))
        ids[0, 0], ids[0, -1] = 0, 2
        for name, model in models.items():
            with torch.inference_mode():
                model(input_ids=ids)
                runs = []
                for _ in range(5):
                    s = time.perf_counter()
                    model(input_ids=ids)
                    runs.append(time.perf_counter() - s)
            out[f"{name}@{t}"] = statistics.median(runs) * 1e3 / layers
    return out


def xlmr_times(xbin, gguf, tokens, label, env):
    res = subprocess.run([xbin, "bench", "-m", gguf, "--tokens", ",".join(map(str, tokens)), "--runs", "5", "--json"],
                         capture_output=True, text=True, check=True, env={**os.environ, **env})
    return {f"{label}@{e['tokens']}": e["ms_per_layer"] for e in json.loads(res.stdout)}


def llamacpp_times(python, hf_dir, tokens, types):
    """llama.cpp's ms per layer (tools/bench_llamacpp.py's last JSON line), as many layers as HF_DIR."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        layers = json.load(f)["num_hidden_layers"]
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_llamacpp.py")
    res = subprocess.run([python, script, "--layers", str(layers), "--tokens", tokens, "--types", ",".join(types), "--runs", "5"],
                         capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("hf_dir")
    ap.add_argument("xlmr_bin")
    ap.add_argument("gguf_prefix")
    ap.add_argument("--tokens", default="8,128,512")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--avx2-tokens", default="8,128", help="lengths for the AVX2 rows (its unpacked path is slow at 512)")
    ap.add_argument("--llamacpp-python", help="python of a venv with llama-cpp-python: adds llama.cpp columns")
    ap.add_argument("--child-avx2", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    tokens = [int(t) for t in a.tokens.split(",")]
    if a.child_avx2:
        print(json.dumps({k.replace("torch-fp32", "torch-fp32-avx2"): v for k, v in torch_times(a.hf_dir, tokens, False).items()}))
        return
    configs = [
        ("q8_0", "q8_0", {}), ("q4_0", "q4_0", {}), ("q4_k", "q4_k", {}),
        ("q8_0 XLMR_PACK=0", "q8_0", {"XLMR_PACK": "0"}),
        ("q8_0 avx2", "q8_0", {"XLMR_ISA": "avx2"}), ("q4_0 avx2", "q4_0", {"XLMR_ISA": "avx2"}),
    ]
    llama_types = ["q8_0", "q4_0", "q4_k"] if a.llamacpp_python else []
    rows = []
    for r in range(a.rounds):
        row = torch_times(a.hf_dir, tokens, True)
        child = subprocess.run([sys.executable, __file__, a.hf_dir, a.xlmr_bin, a.gguf_prefix, "--tokens", a.tokens, "--child-avx2"],
                               capture_output=True, text=True, check=True, env={**os.environ, **AVX2_ENV})
        row.update(json.loads(child.stdout.strip().splitlines()[-1]))
        avx2_tokens = [int(t) for t in a.avx2_tokens.split(",")]
        for label, ty, env in configs:
            lengths = avx2_tokens if env.get("XLMR_ISA") == "avx2" else tokens
            row.update(xlmr_times(a.xlmr_bin, f"{a.gguf_prefix}-{ty}.gguf", lengths, label, env))
        if llama_types:
            row.update(llamacpp_times(a.llamacpp_python, a.hf_dir, a.tokens, llama_types))
        print(json.dumps({k: round(v, 3) for k, v in row.items()}), flush=True)
        rows.append(row)

    med = lambda key: statistics.median(r[key] for r in rows)
    ratio = lambda key, anchor: statistics.median(r[key] / r[anchor] for r in rows)
    print(f"\nms per XL-width layer, median of {a.rounds} interleaved rounds (ratio to PyTorch int8-dynamic; AVX2 rows: to PyTorch fp32 on AVX2)\n")
    print("| tokens | PyTorch fp32 | PyTorch int8 | PyTorch fp32 AVX2 | " + " | ".join(f"xlmr {c[0]}" for c in configs)
          + "".join(f" | llama.cpp {ty}" for ty in llama_types) + " |")
    print("|---" * (4 + len(configs) + len(llama_types)) + "|")
    for t in tokens:
        cells = [f"{med(f'torch-fp32@{t}'):.1f}", f"{med(f'torch-int8@{t}'):.2f}", f"{med(f'torch-fp32-avx2@{t}'):.1f}"]
        for label, _, env in configs:
            anchor = f"torch-fp32-avx2@{t}" if env.get("XLMR_ISA") == "avx2" else f"torch-int8@{t}"
            key = f"{label}@{t}"
            cells.append(f"{med(key):.2f} ({ratio(key, anchor):.2f}x)" if key in rows[0] else "-")
        for ty in llama_types:
            key = f"llama.cpp {ty}@{t}"
            cells.append(f"{med(key):.2f} ({ratio(key, f'torch-int8@{t}'):.2f}x)")
        print(f"| {t} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
