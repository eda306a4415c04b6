"""The core API against the `xlmr` CLI (the same library path, already checked against
transformers by the Rust tests) and transformers' tokenizer; shapes, dtypes and errors."""

import json
import os

import numpy as np
import pytest

import xlmr
from conftest import TINY

TEXTS = ["Hello world!", "Le fichier n'a pas pu être ouvert car il est verrouillé.", "无法打开文件。", "a b c"]
MASKED = ["Paris is the <mask> of France.", "Deux <mask> et trois <mask>.", "<mask>"]


def test_info(tiny_q8):
    m = xlmr.Model(tiny_q8, n_threads=1)
    with open(os.path.join(TINY, "config.json")) as f:
        config = json.load(f)
    info = m.info
    for key in ["hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"]:
        assert info[key] == config[key], key
    assert info["has_mlm_head"] is True
    assert info["head"] is None
    assert info["n_threads"] == 1
    assert info["path"] == tiny_q8
    assert m.get_sentence_embedding_dimension() == config["hidden_size"]


def test_pack_cache(tiny_q8, tmp_path):
    # The first load writes the packed-weights cache, the second maps it; same vectors.
    plain = xlmr.Model(tiny_q8)
    if not plain.info["weights"].startswith("packed"):
        pytest.skip("no packed GEMM kernel on this CPU, so nothing to cache")
    first = xlmr.Model(tiny_q8, pack_cache=tmp_path)
    assert first.info["weights"] == "packed for the GEMM kernels"
    assert [p.suffix for p in tmp_path.iterdir()] == [".xlmrpack"]
    second = xlmr.Model(tiny_q8, pack_cache=str(tmp_path))
    assert "packed-weights cache" in second.info["weights"]
    np.testing.assert_array_equal(second.embed(TEXTS), plain.embed(TEXTS))
    np.testing.assert_array_equal(first.embed(TEXTS), plain.embed(TEXTS))


def test_tokenize_matches_transformers(tiny_q8):
    with open(os.path.join(TINY, "reference", "reference.json"), encoding="utf-8") as f:
        ref = json.load(f)
    cases = ref["inputs"] if isinstance(ref, dict) and "inputs" in ref else ref
    m = xlmr.Model(tiny_q8)
    texts = [c["text"] for c in cases]
    assert m.tokenize(texts) == [c["input_ids"] for c in cases]
    assert m.tokenize(texts[0]) == cases[0]["input_ids"]


@pytest.mark.parametrize("pooling,normalize", [("mean", False), ("cls", False), ("mean", True)])
def test_embed_equals_cli(tiny_q8, cli, pooling, normalize):
    m = xlmr.Model(tiny_q8)
    got = m.embed(TEXTS, pooling=pooling, normalize=normalize)
    want = cli("-m", tiny_q8, "--task", "embed", "--pooling", pooling, *(["--normalize"] if normalize else []), *TEXTS)
    assert got.dtype == np.float32 and got.shape == (len(TEXTS), m.info["hidden_size"])
    np.testing.assert_allclose(got, np.array(want, dtype=np.float32), rtol=1e-6, atol=1e-6)
    if normalize:
        np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)


def test_embed_tokens_equals_cli(tiny_q8, cli):
    m = xlmr.Model(tiny_q8)
    got = m.embed(TEXTS, pooling="none")
    want = cli("-m", tiny_q8, "--task", "embed", "--pooling", "none", *TEXTS)
    assert [g.shape for g in got] == [(len(t), m.info["hidden_size"]) for t in m.tokenize(TEXTS)]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, np.array(w, dtype=np.float32), rtol=1e-6, atol=1e-6)
    # The last hidden state is the same thing.
    hs = m.hidden_states(TEXTS, layers=[m.info["num_hidden_layers"]])
    for g, h in zip(got, hs):
        np.testing.assert_array_equal(g, h[0])


def test_embed_shapes_and_batch_size(tiny_q8):
    m = xlmr.Model(tiny_q8)
    one = m.embed(TEXTS[0])
    assert one.shape == (m.info["hidden_size"],)
    np.testing.assert_allclose(m.embed(TEXTS, batch_size=1), m.embed(TEXTS, batch_size=64), rtol=1e-6, atol=1e-6)
    assert m.embed([]).shape == (0, m.info["hidden_size"])


def test_fill_mask_equals_cli(tiny_q8, cli):
    m = xlmr.Model(tiny_q8)
    got = m.fill_mask(MASKED, top_k=3)
    want = cli("-m", tiny_q8, "--task", "fill-mask", "--top-k", "3", *MASKED)
    # The pipeline's shape: one mask -> a list of dicts; several -> a list of lists.
    assert isinstance(got[0][0], dict) and isinstance(got[1][0], list) and len(got[1]) == 2
    for g, w in zip(got, want):
        g = [g] if isinstance(g[0], dict) else g
        assert len(g) == len(w)
        for gm, wm in zip(g, w):
            assert [(p["token"], p["token_str"], p["sequence"]) for p in gm] == [(p["token"], p["token_str"], p["sequence"]) for p in wm]
            np.testing.assert_allclose([p["score"] for p in gm], [p["score"] for p in wm], rtol=1e-5)
    single = m.fill_mask(MASKED[0], top_k=2)
    assert [p["token"] for p in single] == [p["token"] for p in got[0][:2]]


def test_hidden_states_equal_cli(tiny_q8, cli):
    m = xlmr.Model(tiny_q8)
    got = m.hidden_states(TEXTS[:2], layers=[0, 2])
    want = cli("-m", tiny_q8, "--task", "hidden-states", "--layers", "0,2", *TEXTS[:2])
    for g, w in zip(got, want):
        assert g.shape == (2, len(w[0]), m.info["hidden_size"])
        np.testing.assert_allclose(g, np.array(w, dtype=np.float32), rtol=1e-6, atol=1e-6)
    every = m.hidden_states(TEXTS[0])
    assert every.shape[0] == m.info["num_hidden_layers"] + 1


def raises(exc, fn, match):
    with pytest.raises(exc, match=match):
        fn()


def test_bad_input_raises_value_error(tiny_q8):
    m = xlmr.Model(tiny_q8)
    raises(ValueError, lambda: m.embed(["fine", "  "]), "input 2 is empty")
    raises(ValueError, lambda: m.fill_mask(["no mask here"]), "no <mask>")
    raises(ValueError, lambda: m.embed("word " * 600), "more than the model's 512")
    assert m.embed("word " * 600, truncate=True).shape == (m.info["hidden_size"],)
    raises(ValueError, lambda: m.embed("x", pooling="max"), "pooling")
    raises(ValueError, lambda: m.embed("x", batch_size=0), "batch_size")
    raises(ValueError, lambda: m.hidden_states("x", layers=[99]), "layer 99 does not exist")
    raises(ValueError, lambda: m.fill_mask("<mask>", top_k=0), "top_k")
    raises(ValueError, lambda: m.classify("x"), "task classify needs")
    raises(TypeError, lambda: m.embed([1, 2]), "expected str")
    raises(ValueError, lambda: xlmr.Model(tiny_q8, n_threads=0), "n_threads")


def test_bad_files_raise_os_error(tmp_path, tiny_q8):
    raises(FileNotFoundError, lambda: xlmr.Model(tmp_path / "missing.gguf"), "missing.gguf")
    (tmp_path / "text.gguf").write_text("not a model")
    raises(OSError, lambda: xlmr.Model(tmp_path / "text.gguf"), "text.gguf")
    with open(tiny_q8, "rb") as f:
        (tmp_path / "cut.gguf").write_bytes(f.read()[: os.path.getsize(tiny_q8) // 2])
    raises(OSError, lambda: xlmr.Model(tmp_path / "cut.gguf"), "cut.gguf")
    raises(OSError, lambda: xlmr.convert(tmp_path, tmp_path / "out.gguf", progress=False), str(tmp_path))
    raises(ValueError, lambda: xlmr.convert(TINY, tmp_path / "out.gguf", type="q3", progress=False), "unknown type")
    assert not (tmp_path / "out.gguf").exists()


def test_convert_q8_equals_cli_convert(tmp_path, tiny_q8):
    report = xlmr.convert(TINY, tmp_path / "again.gguf", type="q8_0", progress=False)
    assert report["file_bytes"] == os.path.getsize(tmp_path / "again.gguf") > 0
    with open(tiny_q8, "rb") as a, open(tmp_path / "again.gguf", "rb") as b:
        assert a.read() == b.read()


def test_close_and_context_manager(tiny_q8):
    with xlmr.Model(tiny_q8) as m:
        m.embed("x")
    assert m.closed
    raises(ValueError, lambda: m.embed("x"), "closed")
