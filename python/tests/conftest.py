"""Shared fixtures: GGUF files converted once per session from the repository's tiny models
(models/tiny-xlmr-xl, tests/fixtures/heads), and the `xlmr` CLI to compare against."""

import json
import os
import shutil
import subprocess

import pytest

import xlmr

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
TINY = os.path.join(ROOT, "models", "tiny-xlmr-xl")
HEADS = os.path.join(ROOT, "tests", "fixtures", "heads")


@pytest.fixture(scope="session")
def gguf_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gguf")


@pytest.fixture(scope="session")
def tiny_q8(gguf_dir):
    path = gguf_dir / "tiny-q8_0.gguf"
    xlmr.convert(TINY, path, type="q8_0", progress=False)
    return str(path)


@pytest.fixture(scope="session")
def tiny_f32(gguf_dir):
    path = gguf_dir / "tiny-f32.gguf"
    xlmr.convert(TINY, path, type="f32", progress=False)
    return str(path)


@pytest.fixture(scope="session")
def head_gguf(gguf_dir):
    """`head_gguf(name)`: the F32 GGUF of tests/fixtures/heads/<name>, assembled as
    tests/common/mod.rs assembles it (the head's files + the tiny encoder and tokenizer)."""
    done = {}

    def make(name):
        if name not in done:
            src = gguf_dir / f"{name}-src"
            shutil.copytree(os.path.join(HEADS, name), src, ignore=shutil.ignore_patterns("reference.json"))
            if not (src / "model.safetensors").exists():
                shutil.copy(os.path.join(TINY, "model.safetensors"), src / "encoder.safetensors")
            for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model"]:
                shutil.copy(os.path.join(TINY, f), src / f)
            out = gguf_dir / f"{name}-f32.gguf"
            xlmr.convert(src, out, type="f32", progress=False)
            done[name] = str(out)
        return done[name]

    return make


def head_reference(name):
    with open(os.path.join(HEADS, name, "reference.json"), encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="session")
def cli():
    """`cli(args...)` -> the parsed JSON that `xlmr run ... --json` prints."""
    exe = os.environ.get("XLMR_CLI") or os.path.join(ROOT, "target", "release", "xlmr")
    if not os.path.exists(exe):
        pytest.skip(f"no xlmr CLI at {exe} (build it with cargo build --release, or set XLMR_CLI)")

    def run(*args):
        out = subprocess.run([exe, "run", "--json", *args], check=True, capture_output=True, text=True)
        return json.loads(out.stdout)

    return run
