#!/usr/bin/env python3
"""Write a full-size, random-weight facebook/xlm-roberta-xl checkpoint in Hugging Face layout.

    python3 tools/make_full_xl.py OUT_DIR [--size xl|xxl] [--dtype f32|f16|bf16] [--layers N] [--untied] [--check]

--size xxl writes facebook/xlm-roberta-xxl's shapes instead (same code: hidden 4096, FFN 16384,
32 heads of 128, 48 layers; ~43 GB in f32 at 48 layers, so use --layers 2 for a quick run:
~2.4 GB in f32, mostly the 250880 x 4096 word embedding).

OUT_DIR gets config.json (the real XL's, with num_hidden_layers = --layers), model.safetensors
and tokenizer files. The weights are streamed to disk: the safetensors header is computed up
front, then each tensor is generated chunk by chunk with numpy, so memory stays near 100 MB
whatever the model size (full XL: ~14 GB in f32, ~7 GB in f16/bf16). Only numpy is needed;
--check also needs torch and transformers.

Tensor names and shapes are those transformers' XLMRobertaXLForMaskedLM saves: with tied word
embeddings (the default, as in the real XL) lm_head.decoder.weight and lm_head.decoder.bias are
left out, transformers ties them to roberta.embeddings.word_embeddings.weight and lm_head.bias;
with --untied both are written and config.json says tie_word_embeddings false.

The tokenizer files are copied from models/tiny-xlmr-xl: the real 250002-token XLM-R tokenizer
cannot be downloaded here. That tokenizer only produces ids below 4002, which the 250880-row
embedding covers, so the checkpoint runs; it just does not tokenize like the real model.
Values are random (normal, std 0.02; LayerNorm weights near 1), so outputs are meaningless:
the checkpoint is for conversion, memory and speed tests, not for accuracy.
"""

import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOKENIZER_DIR = os.path.join(ROOT, "models", "tiny-xlmr-xl")
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model"]
CHUNK_ELEMENTS = 8 * 1024 * 1024  # 32 MB of f32 per generated chunk
SEED = 20240611

XL_CONFIG = {
    "architectures": ["XLMRobertaXLForMaskedLM"],
    "attention_probs_dropout_prob": 0.1,
    "bos_token_id": 0,
    "classifier_dropout": None,
    "eos_token_id": 2,
    "hidden_act": "gelu",
    "hidden_dropout_prob": 0.1,
    "hidden_size": 2560,
    "initializer_range": 0.02,
    "intermediate_size": 10240,
    "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514,
    "model_type": "xlm-roberta-xl",
    "num_attention_heads": 32,
    "num_hidden_layers": 36,
    "pad_token_id": 1,
    "position_embedding_type": "absolute",
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "type_vocab_size": 1,
    "use_cache": True,
    "vocab_size": 250880,
}

# facebook/xlm-roberta-xxl: the same architecture at 10.7 B parameters.
XXL_CONFIG = dict(XL_CONFIG, hidden_size=4096, intermediate_size=16384, num_hidden_layers=48)
SIZES = {"xl": XL_CONFIG, "xxl": XXL_CONFIG}

DTYPES = {"f32": ("F32", 4, "float32"), "f16": ("F16", 2, "float16"), "bf16": ("BF16", 2, "bfloat16")}


def tensor_plan(config, untied):
    """[(name, shape, kind)] in the order transformers' state_dict lists them.
    kind: 'normal' (std 0.02), 'ln_weight' (near 1), 'bias' (small)."""
    hidden, ffn, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    plan = [
        ("roberta.embeddings.word_embeddings.weight", [vocab, hidden], "normal"),
        ("roberta.embeddings.token_type_embeddings.weight", [config["type_vocab_size"], hidden], "normal"),
        ("roberta.embeddings.position_embeddings.weight", [config["max_position_embeddings"], hidden], "normal"),
    ]
    for n in range(config["num_hidden_layers"]):
        p = f"roberta.encoder.layer.{n}."
        for proj in ("query", "key", "value"):
            plan += [(f"{p}attention.self.{proj}.weight", [hidden, hidden], "normal"),
                     (f"{p}attention.self.{proj}.bias", [hidden], "bias")]
        plan += [
            (f"{p}attention.output.dense.weight", [hidden, hidden], "normal"),
            (f"{p}attention.output.dense.bias", [hidden], "bias"),
            (f"{p}attention.self_attn_layer_norm.weight", [hidden], "ln_weight"),
            (f"{p}attention.self_attn_layer_norm.bias", [hidden], "bias"),
            (f"{p}intermediate.dense.weight", [ffn, hidden], "normal"),
            (f"{p}intermediate.dense.bias", [ffn], "bias"),
            (f"{p}output.dense.weight", [hidden, ffn], "normal"),
            (f"{p}output.dense.bias", [hidden], "bias"),
            (f"{p}LayerNorm.weight", [hidden], "ln_weight"),
            (f"{p}LayerNorm.bias", [hidden], "bias"),
        ]
    plan += [
        ("roberta.encoder.LayerNorm.weight", [hidden], "ln_weight"),
        ("roberta.encoder.LayerNorm.bias", [hidden], "bias"),
        ("lm_head.bias", [vocab], "bias"),
        ("lm_head.dense.weight", [hidden, hidden], "normal"),
        ("lm_head.dense.bias", [hidden], "bias"),
        ("lm_head.layer_norm.weight", [hidden], "ln_weight"),
        ("lm_head.layer_norm.bias", [hidden], "bias"),
    ]
    if untied:
        plan += [("lm_head.decoder.weight", [vocab, hidden], "normal"),
                 ("lm_head.decoder.bias", [vocab], "bias")]
    return plan


def safetensors_header(plan, dtype):
    """The header bytes (length prefix included), padded with spaces to 8 bytes like safetensors does."""
    st_dtype, width, _ = DTYPES[dtype]
    header, offset = {"__metadata__": {"format": "pt"}}, 0
    for name, shape, _ in plan:
        size = int(np.prod(shape)) * width
        header[name] = {"dtype": st_dtype, "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text, offset


def random_chunks(name, count, kind):
    """f32 values for one tensor, CHUNK_ELEMENTS at a time, seeded by the tensor's name."""
    seed = int.from_bytes(hashlib.sha256(f"{SEED}:{name}".encode()).digest()[:8], "little")
    rng = np.random.default_rng(seed)
    for start in range(0, count, CHUNK_ELEMENTS):
        chunk = rng.standard_normal(min(CHUNK_ELEMENTS, count - start), dtype=np.float32)
        if kind == "ln_weight":
            chunk *= 0.05
            chunk += 1.0
        elif kind == "bias":
            chunk *= 0.01
        else:
            chunk *= 0.02
        yield chunk


def encode(chunk, dtype):
    if dtype == "f32":
        return chunk.tobytes()
    if dtype == "f16":
        return chunk.astype(np.float16).tobytes()
    # bf16: the top 16 bits of the f32, rounded to nearest even (numpy has no bfloat16).
    bits = chunk.view(np.uint32)
    rounded = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return rounded.astype(np.uint16).tobytes()


def write_checkpoint(out_dir, dtype, layers, untied, size="xl"):
    config = dict(SIZES[size], num_hidden_layers=layers, tie_word_embeddings=not untied, torch_dtype=DTYPES[dtype][2])
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
        f.write("\n")
    for name in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(TOKENIZER_DIR, name), os.path.join(out_dir, name))

    plan = tensor_plan(config, untied)
    header, data_bytes = safetensors_header(plan, dtype)
    path = os.path.join(out_dir, "model.safetensors")
    print(f"writing {path}: {len(plan)} tensors, {data_bytes / 1e9:.2f} GB of {dtype}", flush=True)
    started, written = time.time(), 0
    with open(path, "wb") as f:
        f.write(header)
        for index, (name, shape, kind) in enumerate(plan):
            for chunk in random_chunks(name, int(np.prod(shape)), kind):
                data = encode(chunk, dtype)
                f.write(data)
                written += len(data)
            if name.endswith("LayerNorm.bias") or index == len(plan) - 1 or index == 2:
                rate = written / max(time.time() - started, 1e-9) / 1e6
                print(f"  {written / 1e9:6.2f} / {data_bytes / 1e9:.2f} GB ({rate:.0f} MB/s)  {name}", flush=True)
    assert written == data_bytes, "tensor bytes do not match the header"
    return path, config


def check(path, config):
    """The file opens with safetensors and matches transformers' model built from the config
    (on the meta device, so nothing is allocated)."""
    import torch
    from safetensors import safe_open
    from transformers import XLMRobertaXLConfig, XLMRobertaXLForMaskedLM

    with torch.device("meta"):
        model = XLMRobertaXLForMaskedLM(XLMRobertaXLConfig(**config))
    expected = {k: list(v.shape) for k, v in model.state_dict().items()}
    if config["tie_word_embeddings"]:
        for tied in ("lm_head.decoder.weight", "lm_head.decoder.bias"):
            expected.pop(tied)
    with safe_open(path, "pt") as f:
        found = {k: list(f.get_slice(k).get_shape()) for k in f.keys()}
        first = f.get_slice("roberta.embeddings.word_embeddings.weight")[:2, :4]
    assert found == expected, f"mismatch: {set(found) ^ set(expected)}"
    print(f"check ok: {len(found)} tensors match transformers' XLMRobertaXLForMaskedLM; "
          f"word_embeddings[:2,:4] = {first.float().round(decimals=4).tolist()}")


def main():
    parser = argparse.ArgumentParser(description="Write a random-weight XLM-RoBERTa-XL checkpoint (HF layout).")
    parser.add_argument("out_dir")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    parser.add_argument("--size", choices=sorted(SIZES), default="xl", help="xl (3.5 B) or xxl (10.7 B) shapes")
    parser.add_argument("--layers", type=int, default=None, help="encoder layers (default: 36 for xl, 48 for xxl)")
    parser.add_argument("--untied", action="store_true", help="write lm_head.decoder.* as separate tensors")
    parser.add_argument("--check", action="store_true", help="verify names and shapes against transformers")
    args = parser.parse_args()
    layers = SIZES[args.size]["num_hidden_layers"] if args.layers is None else args.layers
    if layers < 1:
        parser.error("--layers must be at least 1")
    path, config = write_checkpoint(args.out_dir, args.dtype, layers, args.untied, args.size)
    if args.check:
        check(path, config)
    return 0


if __name__ == "__main__":
    sys.exit(main())
