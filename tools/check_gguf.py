#!/usr/bin/env python3
"""Independent check of an xlmr GGUF file with the gguf Python package (gguf-py).

    python3 tools/check_gguf.py MODEL.gguf OURS.safetensors [--config HF_DIR/config.json]

gguf-py reads the file (its own parser), and for every tensor dequantizes the data with
`gguf.quants.dequantize`; the result must be bit-identical to OURS.safetensors, which holds
xlmr's own dequantization of the same file (tensor name -> f32 values in PyTorch shape
order, written by tests/gguf_python.rs). Bit-identical is the right bar: both sides compute
each value with the same single f32 operations (f16 -> f32 is exact; Q8_0: q*d; Q4_0:
(q-8)*d; Q4_K: (d*sc)*q - dmin*m), so any difference is a layout bug, not rounding.

The metadata checks: architecture, alignment, GGUF version, the hyperparameter keys with
their types, their agreement with the tensor shapes, and (with --config) with config.json.
Prints a summary; exits 1 on any mismatch.
"""

import argparse
import json
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize
from safetensors.numpy import load_file

ARCH = "xlm-roberta-xl"
ALIGNMENT = 32
U32 = GGUFValueType.UINT32
# Hyperparameter keys (src/gguf/keys.rs) and the value type xlmr writes for each.
HYPERPARAMETERS = {
    f"{ARCH}.context_length": U32,
    f"{ARCH}.embedding_length": U32,
    f"{ARCH}.block_count": U32,
    f"{ARCH}.feed_forward_length": U32,
    f"{ARCH}.attention.head_count": U32,
    f"{ARCH}.attention.layer_norm_epsilon": GGUFValueType.FLOAT32,
    f"{ARCH}.vocab_size": U32,
    f"{ARCH}.type_vocab_size": U32,
    f"{ARCH}.pad_token_id": U32,
    f"{ARCH}.has_mlm_head": GGUFValueType.BOOL,
    "general.architecture": GGUFValueType.STRING,
    "general.alignment": U32,
    "general.file_type": U32,
    "general.quantization_version": U32,
    "tokenizer.huggingface.json": GGUFValueType.STRING,
    "tokenizer.ggml.mask_token_id": U32,
}


class Checker:
    def __init__(self):
        self.failures = []

    def expect(self, ok, message):
        if not ok:
            self.failures.append(message)
        return ok


def field_value(reader, key):
    field = reader.get_field(key)
    return None if field is None else field.contents()


def check_metadata(reader, check, config_path):
    version = field_value(reader, "GGUF.version")
    check.expect(version == 3, f"GGUF version {version}, expected 3")
    for key, want_type in HYPERPARAMETERS.items():
        field = reader.get_field(key)
        if check.expect(field is not None, f"missing metadata key {key}"):
            check.expect(field.types == [want_type], f"{key} has type {field.types}, expected {want_type.name}")
    arch = field_value(reader, "general.architecture")
    check.expect(arch == ARCH, f"general.architecture is {arch!r}, expected {ARCH!r}")
    check.expect(reader.alignment == ALIGNMENT, f"alignment {reader.alignment}, expected {ALIGNMENT}")
    check.expect(reader.data_offset % ALIGNMENT == 0, f"data section starts at {reader.data_offset}, not aligned")
    for t in reader.tensors:
        check.expect((t.data_offset - reader.data_offset) % ALIGNMENT == 0, f"tensor {t.name} is not aligned")
    try:
        json.loads(field_value(reader, "tokenizer.huggingface.json") or "")
    except ValueError as e:
        check.expect(False, f"tokenizer.huggingface.json is not JSON: {e}")

    # The hyperparameters must agree with the tensors they describe.
    hp = {k.removeprefix(f"{ARCH}."): field_value(reader, k) for k in HYPERPARAMETERS}
    shapes = {t.name: [int(d) for d in reversed(t.shape)] for t in reader.tensors}  # PyTorch order
    layers = {int(n.split(".")[1]) for n in shapes if n.startswith("blk.")}
    check.expect(layers == set(range(hp["block_count"] or 0)), f"blk.N tensors for layers {sorted(layers)}, block_count {hp['block_count']}")
    expected_shapes = {
        "token_embd.weight": [hp["vocab_size"], hp["embedding_length"]],
        "position_embd.weight": [hp["context_length"] + hp["pad_token_id"] + 1, hp["embedding_length"]],
        "token_types.weight": [hp["type_vocab_size"], hp["embedding_length"]],
        "blk.0.ffn_up.weight": [hp["feed_forward_length"], hp["embedding_length"]],
        "blk.0.attn_q.weight": [hp["embedding_length"], hp["embedding_length"]],
    }
    if hp["has_mlm_head"]:
        expected_shapes["mlm.bias"] = [hp["vocab_size"]]
    for name, want in expected_shapes.items():
        check.expect(shapes.get(name) == want, f"{name} has shape {shapes.get(name)}, the metadata says {want}")
    heads = hp["attention.head_count"]
    check.expect(bool(heads) and hp["embedding_length"] % heads == 0, f"head_count {heads} does not divide the hidden size")

    if config_path:
        with open(config_path) as f:
            config = json.load(f)
        from_config = {
            "embedding_length": config["hidden_size"],
            "block_count": config["num_hidden_layers"],
            "feed_forward_length": config["intermediate_size"],
            "attention.head_count": config["num_attention_heads"],
            "vocab_size": config["vocab_size"],
            "type_vocab_size": config["type_vocab_size"],
            "pad_token_id": config["pad_token_id"],
            "context_length": config["max_position_embeddings"] - config["pad_token_id"] - 1,
        }
        for key, want in from_config.items():
            check.expect(hp[key] == want, f"{ARCH}.{key} is {hp[key]}, config.json says {want}")
        eps = hp["attention.layer_norm_epsilon"]
        check.expect(eps == np.float32(config["layer_norm_eps"]), f"layer_norm_epsilon {eps}, config.json says {config['layer_norm_eps']}")
    return hp


def check_tensors(reader, ours, check):
    """Dequantizes every tensor with gguf-py and compares bit for bit with `ours`."""
    per_type = {}
    names = [t.name for t in reader.tensors]
    check.expect(len(set(names)) == len(names), "duplicate tensor names")
    check.expect(set(names) == set(ours), f"tensor sets differ: only in GGUF {sorted(set(names) - set(ours))}, "
                 f"only in ours {sorted(set(ours) - set(names))}")
    for t in reader.tensors:
        if t.name not in ours:
            continue
        theirs = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        mine = ours[t.name]
        shape = [int(d) for d in reversed(t.shape)]
        if not check.expect(list(theirs.shape) == shape, f"{t.name}: gguf-py dequantized shape {list(theirs.shape)}, header says {shape}"):
            continue
        if not check.expect(list(mine.shape) == shape, f"{t.name}: our shape {list(mine.shape)}, gguf-py says {shape}"):
            continue
        # Compare the bit patterns, so -0.0 vs 0.0 or differing NaNs count too.
        differ = theirs.view(np.uint32) != mine.view(np.uint32)
        n_differ = int(differ.sum())
        if n_differ:
            first = np.unravel_index(int(np.argmax(differ)), shape)
            check.expect(False, f"{t.name} ({t.tensor_type.name}): {n_differ} of {t.n_elements} values differ, first at "
                         f"{list(map(int, first))}: gguf-py {theirs[first]!r}, ours {mine[first]!r}")
        stats = per_type.setdefault(t.tensor_type.name, [0, 0, 0])
        stats[0] += 1
        stats[1] += t.n_elements
        stats[2] += n_differ
    return per_type


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("gguf", help="GGUF file written by xlmr convert")
    parser.add_argument("ours", help="safetensors with xlmr's dequantization of every tensor (f32)")
    parser.add_argument("--config", help="the Hugging Face config.json the file was converted from")
    args = parser.parse_args()

    check = Checker()
    reader = GGUFReader(args.gguf)
    ours = load_file(args.ours)
    for name, array in ours.items():
        check.expect(array.dtype == np.float32, f"{args.ours}: {name} is {array.dtype}, expected float32")
    hp = check_metadata(reader, check, args.config)
    per_type = check_tensors(reader, ours, check)

    print(f"{args.gguf}: GGUF v3, {ARCH}, hidden {hp['embedding_length']}, {hp['block_count']} layers, "
          f"{len(reader.tensors)} tensors, {len(reader.fields)} metadata keys")
    for ty, (count, elements, differing) in sorted(per_type.items()):
        print(f"  {ty:5} {count:3} tensors {elements:9} values, {differing} differ from xlmr's dequantization")
    for failure in check.failures:
        print(f"MISMATCH: {failure}")
    print("OK: gguf-py agrees bit for bit" if not check.failures else f"FAILED: {len(check.failures)} problem(s)")
    return 1 if check.failures else 0


if __name__ == "__main__":
    sys.exit(main())
