#!/usr/bin/env python3
"""Writes the small PyTorch checkpoint fixtures of tests/pickle.rs into tests/fixtures/pickle/.

Run by developers (not CI) after changing a case:  python3 tools/make_pickle_cases.py

Good cases are written by torch.save itself; each comes with `<case>.json`, the expected
tensors (dtype, shape, every value as a float). Bad cases are built by hand (a zip of a
hand-made data.pkl), and none of them is ever loaded with torch or pickle.
"""

import collections
import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import torch

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "pickle"
DTYPE_NAMES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def values(n, dtype, seed):
    """Deterministic, exactly representable-ish values with varied signs and magnitudes."""
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, generator=g) * 3).to(dtype)


def write_expected(name, state):
    tensors = {}
    for key, t in state.items():
        if t.dtype not in DTYPE_NAMES:
            continue
        tensors[key] = {
            "dtype": DTYPE_NAMES[t.dtype],
            "shape": list(t.shape),
            "values": [float(x) for x in t.reshape(-1).float().tolist()],
        }
    (OUT / f"{name}.json").write_text(json.dumps({"tensors": tensors}, indent=1) + "\n")


def state_dict_case():
    """What `model.state_dict()` gives: an OrderedDict with `_metadata`, several dtypes,
    an integer `position_ids` buffer (expanded, stride 0) and an integer counter."""
    sd = collections.OrderedDict()
    sd["embeddings.word_embeddings.weight"] = values(5 * 4, torch.float32, 1).reshape(5, 4)
    sd["embeddings.position_ids"] = torch.arange(6).expand((1, -1))
    sd["layer.0.dense.weight"] = values(3 * 4, torch.float16, 2).reshape(3, 4)
    sd["layer.0.dense.bias"] = values(3, torch.float16, 3)
    sd["layer.0.norm.weight"] = values(4, torch.bfloat16, 4)
    sd["layer.0.norm.scalar"] = torch.tensor(2.5, dtype=torch.float32)  # zero dimensions
    sd["layer.0.empty"] = torch.zeros(0, 4, dtype=torch.float32)
    sd["bn.num_batches_tracked"] = torch.tensor(7, dtype=torch.int64)
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("layer.0", {"version": 1})])
    # torch names the archive's top folder after the file: here `state_dict/`.
    torch.save(sd, OUT / "state_dict.bin")
    write_expected("state_dict", sd)
    return sd


def shared_case():
    """Tied weights (one storage, two names, as lm_head.decoder and word_embeddings) and
    views with nonzero storage offsets; saved with protocol 4 to also cover FRAME,
    SHORT_BINUNICODE, MEMOIZE and STACK_GLOBAL."""
    word = values(6 * 4, torch.float32, 5).reshape(6, 4)
    sd = collections.OrderedDict()
    sd["roberta.embeddings.word_embeddings.weight"] = word
    sd["lm_head.decoder.weight"] = word
    sd["row_view"] = word[2]  # offset 8
    sd["block_view"] = word[3:5]  # offset 12, shape [2, 4]
    halves = values(10, torch.float16, 6)
    sd["half_tail"] = halves[7:]
    sd["half_head"] = halves[:3]
    torch.save(sd, OUT / "pytorch_model.bin", pickle_protocol=4)
    write_expected("pytorch_model", sd)


def non_contiguous_case():
    sd = collections.OrderedDict()
    sd["ok"] = values(4, torch.float32, 7)
    sd["transposed"] = values(6, torch.float32, 8).reshape(2, 3).t()
    torch.save(sd, OUT / "non_contiguous.bin")


def legacy_case():
    sd = collections.OrderedDict(w=values(2, torch.float32, 9))
    torch.save(sd, OUT / "legacy.bin", _use_new_zipfile_serialization=False)


# ---- hand-built archives (never loaded) ----


class Storage:
    """Pickled as torch does: persistent id ('storage', <class>, key, location, numel)."""

    def __init__(self, cls, key, numel):
        self.cls, self.key, self.numel = cls, key, numel


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())


class TorchLikePickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None

    def reducer_override(self, obj):
        if isinstance(obj, Tensor):
            return (torch._utils._rebuild_tensor_v2, obj.args)
        return NotImplemented


class RunsShell:
    """What a malicious checkpoint holds: unpickling it would run a shell command."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


def dumps(obj):
    buf = io.BytesIO()
    TorchLikePickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_zip(name, pickle_bytes, storages, top="archive", compress_storages=False):
    with zipfile.ZipFile(OUT / name, "w", zipfile.ZIP_STORED) as z:
        if pickle_bytes is not None:
            z.writestr(f"{top}/data.pkl", pickle_bytes)
        z.writestr(f"{top}/byteorder", b"little")
        for key, data in storages.items():
            method = zipfile.ZIP_DEFLATED if compress_storages else zipfile.ZIP_STORED
            z.writestr(zipfile.ZipInfo(f"{top}/data/{key}"), data, compress_type=method)
        z.writestr(f"{top}/version", b"3\n")


def f32_bytes(n):
    return torch.arange(n, dtype=torch.float32).numpy().tobytes()


def bad_cases(good):
    six = Storage(torch.FloatStorage, "0", 6)
    ok = collections.OrderedDict(w=Tensor(six, 0, [2, 3], [3, 1]))
    ok_pickle = dumps(ok)

    # A forbidden global before anything else, then one inside an otherwise valid state dict.
    write_zip("forbidden_global.bin", dumps(RunsShell()), {})
    evil = collections.OrderedDict(w=Tensor(six, 0, [2, 3], [3, 1]), x=RunsShell())
    write_zip("forbidden_global_nested.bin", dumps(evil), {"0": f32_bytes(6)})

    # DICT (`d`) is a protocol-0 opcode torch never emits.
    write_zip("unknown_opcode.bin", b"\x80\x02(X\x01\x00\x00\x00aK\x01d.", {})
    write_zip("truncated_pickle.bin", ok_pickle[: len(ok_pickle) // 2], {"0": f32_bytes(6)})
    write_zip("missing_data_pkl.bin", None, {"0": f32_bytes(6)})
    write_zip("missing_storage.bin", ok_pickle, {"1": f32_bytes(6)})
    write_zip("compressed_storage.bin", ok_pickle, {"0": f32_bytes(6)}, compress_storages=True)
    # The view reaches element 3 + 4 = 7 of a 6-element storage.
    write_zip("out_of_bounds.bin", dumps(collections.OrderedDict(w=Tensor(six, 3, [4], [1]))), {"0": f32_bytes(6)})
    # The persistent id promises 6 floats (24 bytes); the entry holds 16.
    write_zip("storage_too_small.bin", ok_pickle, {"0": f32_bytes(4)})
    # A custom top folder name must work as well as torch's.
    write_zip("custom_top.bin", ok_pickle, {"0": f32_bytes(6)}, top="my model")

    # A torch.save archive cut in half (its zip directory is at the end, so it is lost).
    data = (OUT / "state_dict.bin").read_bytes()
    (OUT / "truncated.bin").write_bytes(data[: len(data) // 2])
    (OUT / "not_a_checkpoint.bin").write_bytes(b"hello, this is text\n")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    good = state_dict_case()
    shared_case()
    non_contiguous_case()
    legacy_case()
    bad_cases(good)
    for p in sorted(OUT.iterdir()):
        print(f"{p.stat().st_size:7d}  {p.relative_to(OUT.parent.parent.parent)}")


if __name__ == "__main__":
    main()
