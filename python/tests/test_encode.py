"""`Model.encode` against sentence-transformers' `SentenceTransformer.encode` on the same
tiny model (tests/fixtures/python/encode.json, made by tools/make_python_fixtures.py), at F32."""

import json
import os

import numpy as np
import pytest

import xlmr
from conftest import ROOT

with open(os.path.join(ROOT, "tests", "fixtures", "python", "encode.json"), encoding="utf-8") as f:
    REF = json.load(f)


@pytest.mark.parametrize("case", REF["cases"], ids=[c["name"] for c in REF["cases"]])
def test_encode_matches_sentence_transformers(tiny_f32, case):
    m = xlmr.Model(tiny_f32)
    got = m.encode(REF["sentences"], **case["kwargs"])
    want = np.array(case["embeddings"], dtype=np.float32)
    assert got.dtype == np.float32 and got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def test_encode_shapes(tiny_f32):
    m = xlmr.Model(tiny_f32)
    sentences = REF["sentences"]
    one = m.encode(sentences[0])
    assert list(one.shape) == REF["single_shape"]
    assert m.max_seq_length == REF["max_seq_length"]
    as_list = m.encode(sentences, convert_to_numpy=False)
    assert isinstance(as_list, list) and len(as_list) == len(sentences) and as_list[0].shape == one.shape
    tokens = m.encode(sentences[:2], output_value="token_embeddings")
    assert [t.shape[0] for t in tokens] == [len(ids) for ids in m.tokenize(sentences[:2])]
    assert m.encode([]).shape == (0, m.get_sentence_embedding_dimension())
    # Arguments that only matter on GPUs are accepted.
    np.testing.assert_array_equal(m.encode(sentences[:2], device="cpu", show_progress_bar=False), m.encode(sentences[:2]))


def test_encode_bad_arguments(tiny_f32):
    m = xlmr.Model(tiny_f32)
    with pytest.raises(ValueError, match="precision"):
        m.encode("x", precision="int8")
    with pytest.raises(TypeError, match="unexpected keyword"):
        m.encode("x", nonsense=1)
    with pytest.raises(ValueError, match="input 2 is empty"):
        m.encode(["x", ""], batch_size=1)
