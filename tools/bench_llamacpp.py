#!/usr/bin/env python3
"""llama.cpp on XL-width layers: the same per-layer timing as `xlmr bench`, for the README's table.

    /work/venvllama/bin/python tools/bench_llamacpp.py [--layers 4] [--tokens 8,128,512]
        [--types q8_0,q4_0,q4_k] [--runs 5] [--threads 2] [--flash-attn auto|on|off]
        [--dir /tmp/xlmr-llamacpp] [--verify]

The venv holds `gguf`, `numpy` and llama-cpp-python built from source with native flags (a
developer tool, never installed in CI):

    python3.11 -m venv /work/venvllama && /work/venvllama/bin/pip install gguf numpy
    CMAKE_ARGS="-DGGML_NATIVE=ON" FORCE_CMAKE=1 /work/venvllama/bin/pip install \
        --no-binary llama-cpp-python llama-cpp-python

llama.cpp cannot run XLM-RoBERTa-XL (pre-LayerNorm); it runs BERT (llama.cpp's `bert`
architecture: post-LayerNorm, as XLM-R base/large are). So this writes a **post-LN stand-in with
XL's widths**: hidden 2560, 32 heads of 80, FFN 10240, GELU, 512 positions, one token type,
LayerNorm eps 1e-5, biases everywhere, random weights (N(0, 0.02), seeded). Per layer the work is
the same as XL's: the Q/K/V, output, FFN-up and FFN-down matmuls, attention and two LayerNorms
(only their position differs). The vocabulary is cut to --vocab rows (default 8192, not 250880):
the lookup reads one row per token whatever the table's size, so it does not change the forward
time and keeps the files small. The tokenizer section is llama.cpp's "no_vocab" (token ids are fed
directly). The F16 file is written with gguf-py's GGUFWriter (tensor names and `bert.*` keys as
llama.cpp's convert_hf_to_gguf.py writes BERT), then quantized by llama.cpp itself
(`llama_model_quantize`, `pure`: every matmul in the named type, the token embeddings in q8_0 as
in xlmr's files; Q4_K through the Q4_K_S file type). Files are cached in --dir.

Timing: llama-cpp-python's low-level API; one context per model with n_ctx = n_batch = n_ubatch =
512, `embeddings` on, pooling none (per-token hidden states, as `xlmr bench` computes), n_threads =
--threads, flash attention as llama.cpp's default ("auto", which resolves to enabled on CPU) unless
--flash-attn says otherwise; one sequence per llama_decode, every token an output (embeddings mode
makes all tokens outputs, so the last layer also runs on every token). Median of --runs forwards
after one warm-up, divided by the layer count: like xlmr's numbers, the embedding lookup and the
copy-out of the hidden states are included. --verify first checks that llama.cpp computes the
whole stack: its F16 output for 8 tokens against a NumPy forward of the same weights, and the
forward time against the layer count (a 1-layer file must take a fraction of the N-layer one).

Prints JSON lines like tools/perf_report.py: one line of settings, then (per type) one line of
per-length details, and last one flat line {"llama.cpp TYPE@TOKENS": ms per layer, ...}.
"""
import argparse
import ctypes
import json
import os
import statistics
import sys
import time

import numpy as np

XL = {"hidden": 2560, "heads": 32, "ffn": 10240, "positions": 512, "eps": 1e-5}
GGML_TYPE_Q8_0 = 8
# llama_ftype per type; with `pure` every quantizable tensor gets the type's base ggml type.
FTYPES = {"q8_0": 7, "q4_0": 2, "q4_k": 14}


def write_f16(path, layers, vocab, seed):
    """The post-LN BERT stand-in with XL's widths, random weights, as an F16 GGUF."""
    import gguf

    h, ffn = XL["hidden"], XL["ffn"]
    rng = np.random.default_rng(seed)
    normal = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
    ones, zeros = (lambda n: np.ones(n, np.float32)), (lambda n: np.zeros(n, np.float32))
    w = gguf.GGUFWriter(path + ".part", "bert")
    w.add_name("xl-width post-LN stand-in")
    w.add_context_length(XL["positions"])
    w.add_embedding_length(h)
    w.add_feed_forward_length(ffn)
    w.add_block_count(layers)
    w.add_head_count(XL["heads"])
    w.add_layer_norm_eps(XL["eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.NONE)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("no_vocab")
    w.add_vocab_size(vocab)
    w.add_token_type_count(1)
    # numpy shape (rows = outputs, cols = inputs) is GGUF's [inputs, outputs], as llama.cpp expects.
    w.add_tensor("token_embd.weight", normal(vocab, h))
    w.add_tensor("token_types.weight", normal(1, h).astype(np.float32))
    w.add_tensor("position_embd.weight", normal(XL["positions"], h).astype(np.float32))
    w.add_tensor("token_embd_norm.weight", ones(h))
    w.add_tensor("token_embd_norm.bias", zeros(h))
    for i in range(layers):
        for name, rows, cols in [("attn_q", h, h), ("attn_k", h, h), ("attn_v", h, h), ("attn_output", h, h),
                                 ("ffn_up", ffn, h), ("ffn_down", h, ffn)]:
            w.add_tensor(f"blk.{i}.{name}.weight", normal(rows, cols))
            w.add_tensor(f"blk.{i}.{name}.bias", normal(rows).astype(np.float32))
        for norm in ("attn_output_norm", "layer_output_norm"):
            w.add_tensor(f"blk.{i}.{norm}.weight", ones(h))
            w.add_tensor(f"blk.{i}.{norm}.bias", zeros(h))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(path + ".part", path)


def model_file(L, directory, layers, vocab, ty):
    """Path of the cached GGUF for `ty` ("f16" or a quantized type), writing it when missing."""
    os.makedirs(directory, exist_ok=True)
    f16 = os.path.join(directory, f"bert-xlwidth-L{layers}-V{vocab}-f16.gguf")
    if not os.path.exists(f16):
        write_f16(f16, layers, vocab, seed=layers)
    if ty == "f16":
        return f16
    out = os.path.join(directory, f"bert-xlwidth-L{layers}-V{vocab}-{ty}.gguf")
    if not os.path.exists(out):
        p = L.llama_model_quantize_default_params()
        p.ftype = FTYPES[ty]
        p.pure = True
        p.token_embedding_type = GGML_TYPE_Q8_0
        p.nthread = 2
        if L.llama_model_quantize(f16.encode(), (out + ".part").encode(), ctypes.byref(p)) != 0:
            raise SystemExit(f"llama_model_quantize failed for {ty}")
        os.replace(out + ".part", out)
    return out


class Runner:
    """One llama.cpp model + context, forwarding one sequence of token ids at a time."""

    def __init__(self, L, path, threads, flash_attn):
        self.L = L
        mp = L.llama_model_default_params()
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            raise SystemExit(f"llama.cpp could not load {path}")
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = XL["positions"]
        cp.n_threads = cp.n_threads_batch = threads
        cp.embeddings = True
        cp.pooling_type = L.LLAMA_POOLING_TYPE_NONE
        cp.flash_attn_type = {"auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED,
                              "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED}[flash_attn]
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            raise SystemExit(f"llama.cpp could not create a context for {path}")
        self.layers = L.llama_model_n_layer(self.model)
        self.batch = L.llama_batch_init(XL["positions"], 0, 1)

    def forward(self, ids):
        """Runs one forward; returns (seconds, hidden states [tokens, 2560])."""
        b, n = self.batch, len(ids)
        for i, t in enumerate(ids):
            b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = int(t), i, 1, 1
            b.seq_id[i][0] = 0
        b.n_tokens = n
        start = time.perf_counter()
        if self.L.llama_decode(self.ctx, b) != 0:
            raise SystemExit("llama_decode failed")
        self.L.llama_synchronize(self.ctx)
        out = np.ctypeslib.as_array(self.L.llama_get_embeddings(self.ctx), shape=(n * XL["hidden"],))
        return time.perf_counter() - start, out.reshape(n, XL["hidden"]).copy()

    def ms_per_layer(self, ids, runs):
        self.forward(ids)
        times = sorted(self.forward(ids)[0] for _ in range(runs))
        return statistics.median(times) * 1e3 / self.layers, times[0] * 1e3 / self.layers

    def close(self):
        self.L.llama_batch_free(self.batch)
        self.L.llama_free(self.ctx)
        self.L.llama_model_free(self.model)


def input_ids(tokens, vocab, seed):
    ids = np.random.default_rng(seed).integers(5, vocab, tokens)
    ids[0], ids[-1] = 0, 2
    return ids


def numpy_forward(path, ids):
    """llama.cpp's BERT graph in NumPy (tanh GELU, as ggml_gelu), from the F16 file's weights."""
    import gguf

    t = {x.name: np.asarray(x.data, dtype=np.float32) for x in gguf.GGUFReader(path).tensors}
    eps, heads = XL["eps"], XL["heads"]

    def ln(x, name):
        m, v = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
        return (x - m) / np.sqrt(v + eps) * t[name + ".weight"] + t[name + ".bias"]

    lin = lambda x, name: x @ t[name + ".weight"].T + t[name + ".bias"]
    n = len(ids)
    x = ln(t["token_embd.weight"][ids] + t["token_types.weight"][0] + t["position_embd.weight"][:n], "token_embd_norm")
    i = 0
    while f"blk.{i}.attn_q.weight" in t:
        p = f"blk.{i}."
        q, k, v = (lin(x, p + w).reshape(n, heads, -1).transpose(1, 0, 2) for w in ("attn_q", "attn_k", "attn_v"))
        s = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])
        s = np.exp(s - s.max(-1, keepdims=True))
        a = ((s / s.sum(-1, keepdims=True)) @ v).transpose(1, 0, 2).reshape(n, -1)
        x = ln(lin(a, p + "attn_output") + x, p + "attn_output_norm")
        u = lin(x, p + "ffn_up")
        u = 0.5 * u * (1 + np.tanh(np.sqrt(2 / np.pi) * (u + 0.044715 * u ** 3)))
        x = ln(lin(u, p + "ffn_down") + x, p + "layer_output_norm")
        i += 1
    return x


def verify(L, a):
    """llama.cpp runs every layer on every token: F16 output matches NumPy, time grows with layers."""
    path = model_file(L, a.dir, a.layers, a.vocab, "f16")
    ids = input_ids(8, a.vocab, 1)
    r = Runner(L, path, a.threads, a.flash_attn)
    _, got = r.forward(ids)
    r.close()
    want = numpy_forward(path, ids)
    cos = (got * want).sum(-1) / np.linalg.norm(got, axis=-1) / np.linalg.norm(want, axis=-1)
    ok = bool(cos.min() > 0.999)
    print(json.dumps({"verify": "f16 vs numpy, 8 tokens", "layers": a.layers, "min_cosine": round(float(cos.min()), 6),
                      "max_abs_diff": round(float(np.abs(got - want).max()), 4), "ok": ok}), flush=True)
    one, full = model_file(L, a.dir, 1, a.vocab, a.types[0]), model_file(L, a.dir, a.layers, a.vocab, a.types[0])
    ids = input_ids(128, a.vocab, 1)
    forward_ms = {}
    for n, p in ((1, one), (a.layers, full)):
        r = Runner(L, p, a.threads, a.flash_attn)
        forward_ms[n] = r.ms_per_layer(ids, a.runs)[0] * r.layers
        r.close()
    print(json.dumps({"verify": f"{a.types[0]} forward ms at 128 tokens by layer count",
                      **{f"layers={n}": round(v, 2) for n, v in forward_ms.items()},
                      "ratio": round(forward_ms[a.layers] / forward_ms[1], 2)}), flush=True)
    if not ok:
        raise SystemExit("llama.cpp's F16 output does not match the NumPy forward")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--tokens", default="8,128,512")
    ap.add_argument("--types", default="q8_0,q4_0,q4_k")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vocab", type=int, default=8192)
    ap.add_argument("--flash-attn", choices=["auto", "on", "off"], default="auto")
    ap.add_argument("--dir", default="/tmp/xlmr-llamacpp")
    ap.add_argument("--verify", action="store_true", help="check that all layers run on all tokens first")
    ap.add_argument("--verbose", action="store_true", help="show llama.cpp's own log")
    a = ap.parse_args()
    a.types = a.types.split(",")
    tokens = [int(t) for t in a.tokens.split(",")]
    if any(t not in FTYPES for t in a.types) or any(not 1 <= t <= XL["positions"] for t in tokens):
        raise SystemExit(f"--types must be among {list(FTYPES)}, --tokens between 1 and {XL['positions']}")

    import llama_cpp as L

    log = []
    # Keep llama.cpp quiet unless asked, but remember what it says about flash attention.
    @L.llama_log_callback
    def on_log(level, text, _):
        s = text.decode(errors="replace")
        if "flash" in s.lower():
            log.append(s.strip())
        if a.verbose:
            print(s, end="", file=sys.stderr)

    L.llama_log_set(on_log, ctypes.c_void_p())
    L.llama_backend_init()
    print(json.dumps({"llama_cpp_python": L.__version__, "system_info": L.llama_print_system_info().decode().strip(),
                      "layers": a.layers, "threads": a.threads, "vocab": a.vocab, "flash_attn": a.flash_attn}), flush=True)
    if a.verify:
        verify(L, a)
    flat = {}
    for ty in a.types:
        r = Runner(L, model_file(L, a.dir, a.layers, a.vocab, ty), a.threads, a.flash_attn)
        rows = []
        for t in tokens:
            med, best = r.ms_per_layer(input_ids(t, a.vocab, t), a.runs)
            rows.append({"tokens": t, "ms_per_layer": round(med, 3), "min_ms_per_layer": round(best, 3)})
            flat[f"llama.cpp {ty}@{t}"] = round(med, 3)
        r.close()
        print(json.dumps({"type": ty, "layers": a.layers, "flash_attn_log": log[-1:], "rows": rows}), flush=True)
    print(json.dumps(flat), flush=True)


if __name__ == "__main__":
    main()
