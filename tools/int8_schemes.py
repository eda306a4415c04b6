#!/usr/bin/env python3
"""Error of int8 matmul schemes on XL-width shapes, with and without outlier channels.

Why: xlmr's Q8_0 GEMM scales every 32 weights and every 32 activations (ggml's
arithmetic), which costs float work beside each block's `vpdpbusd`s. fbgemm (PyTorch's
int8-dynamic) scales weights per row and activations per tensor, so whole rows sum in
int32. This prints what each scheme costs in accuracy on a [64 x 2560] x [2560 x 1024]
product: Gaussian weights, unit-variance activations whose first 4 of 2560 channels are
scaled up (BERT-family LayerNorm outputs carry such outlier channels; random test
checkpoints do not). Schemes: per-32 (`q8_0`), per-row (weights, from the Q8_0
values), per-token and per-tensor (activations).

Usage: python3 tools/int8_schemes.py   (numpy only)
"""
import numpy as np


def quant_blocks(a, block):
    """Symmetric int8 with one scale per `block` values along the last axis."""
    s = a.reshape(a.shape[0], -1, block)
    d = np.abs(s).max(-1, keepdims=True) / 127
    d[d == 0] = 1
    return (np.round(s / d) * d).reshape(a.shape)


def quant_rows(a):
    return quant_blocks(a, a.shape[1])


def quant_tensor(a):
    d = np.abs(a).max() / 127
    return np.round(a / d) * d


def main():
    rng = np.random.default_rng(0)
    tokens, cols, rows = 64, 2560, 1024
    w = rng.normal(0, 0.02, (rows, cols)).astype(np.float32)
    w_q8_0 = quant_blocks(w, 32)
    w_row = quant_rows(w_q8_0)
    print(f"relative error of y = x wT ({tokens} x {cols} x {rows}), and the worst per-token cosine")
    print(f"{'outliers':>8}  {'weights':8} {'activations':12} {'rel. error':>10}  {'min cosine':>10}")
    for outlier in [1, 20, 60]:
        x = rng.normal(0, 1, (tokens, cols)).astype(np.float32)
        x[:, :4] *= outlier
        y = x @ w.T
        for w_name, wq in [("q8_0", w_q8_0), ("per-row", w_row)]:
            for x_name, xq in [("q8_0", quant_blocks(x, 32)), ("per-token", quant_rows(x)), ("per-tensor", quant_tensor(x))]:
                yq = xq @ wq.T
                rel = np.linalg.norm(yq - y) / np.linalg.norm(y)
                cos = ((yq * y).sum(1) / np.linalg.norm(yq, axis=1) / np.linalg.norm(y, axis=1)).min()
                print(f"{outlier:>7}x  {w_name:8} {x_name:12} {rel:10.4f}  {cos:10.6f}")


if __name__ == "__main__":
    main()
