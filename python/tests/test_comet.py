"""COMET metrics through the package: a tiny random XCOMET (tests/fixtures/comet/xcomet, made
by tools/make_comet_fixtures.py) converted with `xlmr.convert(..., encoder=...)` and scored
with `Model.score`, against unbabel-comet's own float32 `predict` (the reference.json beside
it): scores within 1e-5, error spans identical (confidence within 1e-4), as tests/comet.rs
checks the library."""

import json
import os
import shutil

import pytest

import xlmr
from conftest import ROOT, TINY

COMET = os.path.join(ROOT, "tests", "fixtures", "comet")


@pytest.fixture(scope="module")
def xcomet(tmp_path_factory):
    d = tmp_path_factory.mktemp("comet")
    encoder = d / "encoder"
    encoder.mkdir()
    shutil.copy(os.path.join(COMET, "encoder-config.json"), encoder / "config.json")
    shutil.copy(os.path.join(TINY, "sentencepiece.bpe.model"), encoder / "sentencepiece.bpe.model")
    out = d / "xcomet-f32.gguf"
    xlmr.convert(os.path.join(COMET, "xcomet"), out, type="f32", progress=False, encoder=encoder)
    with open(os.path.join(COMET, "xcomet", "reference.json"), encoding="utf-8") as f:
        reference = json.load(f)
    return xlmr.Model(str(out)), reference


def assert_close(got, want, what):
    assert len(got) == len(want), what
    for i, (g, w) in enumerate(zip(got, want)):
        assert abs(g - w) <= 1e-5, f"{what}[{i}]: {g} vs COMET {w}"


@pytest.mark.parametrize("run", ["with_ref", "no_ref"])
def test_score_matches_comet(xcomet, run):
    model, reference = xcomet
    samples = [{k: t[k] for k in (("src", "mt", "ref") if run == "with_ref" else ("src", "mt"))} for t in reference["triplets"]]
    got = model.score(samples, batch_size=3)
    want = reference["predictions"][run]
    assert_close(got.scores, want["scores"], "scores")
    assert abs(got.system_score - want["system_score"]) <= 1e-5
    assert sorted(got.metadata) == sorted(want["metadata"])
    for key, values in want["metadata"].items():
        if key != "error_spans":
            assert_close(got.metadata[key], values, key)
    for i, (g, w) in enumerate(zip(got.metadata.error_spans, want["metadata"]["error_spans"], strict=True)):
        assert len(g) == len(w), f"segment {i}: {g} vs COMET {w}"
        for a, b in zip(g, w):
            assert {k: a[k] for k in ("text", "start", "end", "severity")} == {k: b[k] for k in ("text", "start", "end", "severity")}
            assert abs(a["confidence"] - b["confidence"]) <= 1e-4


def test_score_bad_input(xcomet, tiny_f32):
    model, _ = xcomet
    with pytest.raises(ValueError, match="src"):
        model.score([{"mt": "no source"}])
    with pytest.raises(ValueError, match="reference"):
        model.score([{"src": "a", "mt": "b", "ref": "c"}, {"src": "a", "mt": "b"}])
    with pytest.raises(ValueError, match="not a COMET metric"):
        xlmr.Model(tiny_f32).score([{"src": "a", "mt": "b"}])
