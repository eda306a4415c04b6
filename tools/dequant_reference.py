#!/usr/bin/env python3
"""Reference outputs of transformers running the weights of xlmr's own GGUF files.

For each fixture model (tiny, tiny-untied) and each quantized type, this converts the model
with the release binary, reads the GGUF with the gguf package (gguf-py, independent of
xlmr), dequantizes every tensor back to f32, loads the values into transformers'
XLMRobertaXLForMaskedLM and runs the inputs of the model's reference/reference.json.
That separates the two errors of a quantized model:

  - the runtime's own error: xlmr on the GGUF vs transformers on the same weights
    (tests/dequant_reference.rs asserts it);
  - the format's loss: transformers on the dequantized weights vs on the original f32
    weights (printed here; the test asserts it for Q8_0 and prints Q4_0/Q4_K).

Run by developers from the repository root (CI does not; the test checks a fingerprint of
the GGUF tensor data, so a converter change that alters the weights shows up there):

    python3 tools/dequant_reference.py [--skip-build]

Writes tests/fixtures/dequant/<model>-<type>.safetensors (f32):
  hidden.{i}       [seq, hidden]   final hidden state (after roberta.encoder.LayerNorm)
  mask_logits.{i}  [n_masks, vocab] MLM logits at the mask positions (inputs with a mask)
and <model>-<type>.json (see tests/fixtures/dequant/README.md). When a type's tensors are
byte-identical to an earlier type's (tiny-untied: hidden 80 fits no quantized block, so
every type falls back to F16), the JSON names that type in `same_weights_as` and no
safetensors file is written.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import load_file, save_file
from transformers import XLMRobertaXLForMaskedLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests/fixtures/dequant")
MODELS = {"tiny": "models/tiny-xlmr-xl", "tiny-untied": "tests/fixtures/tiny-untied"}
TYPES = ["f16", "q8_0", "q4_0", "q4_k"]
FNV_OFFSET = 0xCBF29CE484222325
FNV_PRIME = 0x100000001B3
MASK64 = (1 << 64) - 1

# GGUF per-layer module -> Hugging Face module (inverse of src/convert/plan.rs).
LAYER_MODULES = {
    "attn_norm": "attention.self_attn_layer_norm",
    "attn_q": "attention.self.query",
    "attn_k": "attention.self.key",
    "attn_v": "attention.self.value",
    "attn_output": "attention.output.dense",
    "ffn_norm": "LayerNorm",
    "ffn_up": "intermediate.dense",
    "ffn_down": "output.dense",
}
TOP_LEVEL = {
    "token_embd.weight": ["roberta.embeddings.word_embeddings.weight"],
    "position_embd.weight": ["roberta.embeddings.position_embeddings.weight"],
    "token_types.weight": ["roberta.embeddings.token_type_embeddings.weight"],
    "output_norm.weight": ["roberta.encoder.LayerNorm.weight"],
    "output_norm.bias": ["roberta.encoder.LayerNorm.bias"],
    "mlm.dense.weight": ["lm_head.dense.weight"],
    "mlm.dense.bias": ["lm_head.dense.bias"],
    "mlm.norm.weight": ["lm_head.layer_norm.weight"],
    "mlm.norm.bias": ["lm_head.layer_norm.bias"],
    # transformers applies lm_head.decoder.bias, which is lm_head.bias.
    "mlm.bias": ["lm_head.bias", "lm_head.decoder.bias"],
    "mlm.decoder.weight": ["lm_head.decoder.weight"],
}


def hf_names(gguf_name):
    if gguf_name in TOP_LEVEL:
        return TOP_LEVEL[gguf_name]
    blk, layer, module, part = gguf_name.split(".")
    assert blk == "blk" and module in LAYER_MODULES, f"unknown GGUF tensor {gguf_name}"
    return [f"roberta.encoder.layer.{layer}.{LAYER_MODULES[module]}.{part}"]


def fingerprint(reader):
    """FNV-1a 64 over, per tensor in header order: name (UTF-8), a zero byte, the ggml type
    id (u32 little-endian), the tensor's data bytes. tests/dequant_reference.rs computes the same."""
    h = FNV_OFFSET
    for t in reader.tensors:
        for chunk in (t.name.encode() + b"\0", int(t.tensor_type).to_bytes(4, "little"), t.data.tobytes()):
            for byte in chunk:
                h = ((h ^ byte) * FNV_PRIME) & MASK64
    return f"{h:016x}"


def dequantized_state_dict(reader, tied):
    """gguf-py's dequantization of every tensor, under transformers' names."""
    state = {}
    for t in reader.tensors:
        values = torch.from_numpy(np.array(dequantize(t.data, t.tensor_type), dtype=np.float32))
        for name in hf_names(t.name):
            state[name] = values
    if tied:
        state["lm_head.decoder.weight"] = state["roberta.embeddings.word_embeddings.weight"]
    return state


def run_inputs(model, inputs):
    """Each input alone (no padding), as tools/make_fixtures.py ran the original reference."""
    tensors, entries = {}, []
    for inp in inputs:
        i = inp["index"]
        with torch.no_grad():
            out = model(torch.tensor([inp["input_ids"]]), output_hidden_states=True)
        tensors[f"hidden.{i}"] = out.hidden_states[-1][0].float().numpy().copy()
        entry = {"index": i}
        if inp["mask_positions"]:
            logits = out.logits[0, inp["mask_positions"]].float()
            tensors[f"mask_logits.{i}"] = logits.numpy().copy()
            top2 = logits.topk(2, dim=-1)
            entry["top1_ids"] = top2.indices[:, 0].tolist()
            entry["top2_logit_margin"] = (top2.values[:, 0] - top2.values[:, 1]).tolist()
        entries.append(entry)
    return tensors, entries


def cosine_rows(a, b):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a * b).sum(-1) / np.maximum(np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1), 1e-30)


def format_loss(ours, original, num_layers, hidden):
    """Cosine of final hidden states per token, and top-1 / top-5 agreement of the MLM logits."""
    cosines, top1, top5 = [], [], []
    for name, value in ours.items():
        i = name.split(".")[1]
        if name.startswith("hidden."):
            want = original[f"hidden.{i}"][num_layers]  # last entry: after the final LayerNorm
            cosines += cosine_rows(value, want).tolist()
        else:
            want = original[f"mask_logits.{i}"]
            for got_row, want_row in zip(value, want):
                top1.append(int(got_row.argmax() == want_row.argmax()))
                got5, want5 = set(np.argsort(-got_row)[:5]), set(np.argsort(-want_row)[:5])
                top5.append(len(got5 & want5) / 5)
    return {
        "cosine_min": float(min(cosines)),
        "cosine_mean": float(np.mean(cosines)),
        "top1_agreement": float(np.mean(top1)),
        "top5_overlap": float(np.mean(top5)),
        "masks": len(top1),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-build", action="store_true", help="use target/release/xlmr as it is")
    args = parser.parse_args()
    if not args.skip_build:
        subprocess.run(["cargo", "build", "--release"], cwd=ROOT, check=True)
    xlmr = os.path.join(ROOT, "target/release/xlmr")
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.manual_seed(0)

    for model_name, rel_dir in MODELS.items():
        model_dir = os.path.join(ROOT, rel_dir)
        with open(os.path.join(model_dir, "reference/reference.json")) as f:
            reference = json.load(f)
        original = load_file(os.path.join(model_dir, "reference/reference.safetensors"))
        model = XLMRobertaXLForMaskedLM.from_pretrained(model_dir).eval()
        tied = model.config.tie_word_embeddings
        layers, hidden = model.config.num_hidden_layers, model.config.hidden_size

        # The setup must reproduce the original reference before it means anything.
        check, _ = run_inputs(model, reference["inputs"])
        for inp in reference["inputs"]:
            i = inp["index"]
            diff = np.abs(check[f"hidden.{i}"] - original[f"hidden.{i}"][layers]).max()
            assert diff < 1e-5, f"{model_name}: rerun of the original weights differs by {diff} on input {i}"

        seen = {}  # fingerprint -> first type with those weights
        with tempfile.TemporaryDirectory() as tmp:
            for ty in TYPES:
                gguf_path = os.path.join(tmp, f"{model_name}-{ty}.gguf")
                subprocess.run([xlmr, "convert", model_dir, "-o", gguf_path, "--type", ty], check=True, stdout=subprocess.DEVNULL)
                reader = GGUFReader(gguf_path)
                fp = fingerprint(reader)
                types = sorted({t.tensor_type.name for t in reader.tensors})
                summary = {"model": model_name, "model_dir": rel_dir, "type": ty, "fingerprint_fnv1a64": fp, "tensor_types": types}
                stem = os.path.join(OUT_DIR, f"{model_name}-{ty}")
                if fp in seen:
                    summary["same_weights_as"] = seen[fp]
                    if os.path.exists(stem + ".safetensors"):
                        os.remove(stem + ".safetensors")
                    print(f"{model_name} {ty}: tensors identical to {seen[fp]} ({', '.join(types)})")
                else:
                    seen[fp] = ty
                    state = dequantized_state_dict(reader, tied)
                    model.load_state_dict(state, strict=True)
                    assert not tied or model.lm_head.decoder.weight is model.roberta.embeddings.word_embeddings.weight
                    tensors, entries = run_inputs(model, reference["inputs"])
                    save_file(tensors, stem + ".safetensors")
                    summary["inputs"] = entries
                    summary["format_loss"] = format_loss(tensors, original, layers, hidden)
                    loss = summary["format_loss"]
                    print(f"{model_name} {ty} ({', '.join(types)}): format loss vs f32: cosine min {loss['cosine_min']:.6f} "
                          f"mean {loss['cosine_mean']:.6f}, top-1 {loss['top1_agreement']:.3f}, "
                          f"top-5 overlap {loss['top5_overlap']:.3f} over {loss['masks']} masks")
                with open(stem + ".json", "w") as f:
                    json.dump(summary, f, indent=1)
                    f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
