"""The fine-tuned heads against transformers' pipelines (tests/fixtures/heads/*/reference.json,
made by tools/make_heads_fixtures.py), at F32: labels, words and spans equal, scores within
1e-5 (relative above 1), as tests/heads.rs checks the library."""

import pytest

import xlmr
from conftest import head_reference


def close(got, want):
    return abs(got - want) <= 1e-5 * max(abs(want), 1.0)


def cases(name):
    return [c for c in head_reference(name)["cases"] if c.get("output") is not None]


def as_lists(output):
    """The legacy shape (one dict per input) as one-element lists."""
    return [o if isinstance(o, list) else [o] for o in output]


@pytest.mark.parametrize("name", ["seq-cls", "seq-cls-multi", "seq-cls-one", "seq-cls-regression"])
def test_classify(head_gguf, name):
    m = xlmr.Model(head_gguf(name))
    assert m.info["head"]["kind"] and m.info["head"]["labels"]
    for case in cases(name):
        kw = case["kwargs"]
        top_k = ("all" if kw["top_k"] is None else kw["top_k"]) if "top_k" in kw else None
        inputs = [i if isinstance(i, str) else (i["text"], i["text_pair"]) for i in case["inputs"]]
        got = m.classify(inputs, top_k=top_k, function_to_apply=kw.get("function_to_apply"), truncate=kw.get("truncation", False))
        if top_k is None:
            assert all(isinstance(g, dict) for g in got)
        for g, w in zip(as_lists(got), as_lists(case["output"])):
            assert [x["label"] for x in g] == [x["label"] for x in w], (kw, g, w)
            assert all(close(a["score"], b["score"]) for a, b in zip(g, w)), (kw, g, w)


def test_classify_single_and_pair(head_gguf):
    m = xlmr.Model(head_gguf("seq-cls"))
    single = m.classify("The file could not be opened.")
    assert set(single) == {"label", "score"}
    assert m.classify({"text": "a", "text_pair": "b"}) == m.classify(("a", "b")) == m.classify("a", text_pair="b")
    with pytest.raises(ValueError, match="top_k"):
        m.classify("x", top_k=0)
    with pytest.raises(ValueError, match="function"):
        m.classify("x", function_to_apply="relu")


def test_token_classify(head_gguf):
    m = xlmr.Model(head_gguf("token-cls"))
    for case in cases("token-cls"):
        kw = case["kwargs"]
        # The pipeline always cuts inputs to the model's maximum (one case is longer).
        got = m.token_classify(case["inputs"], aggregation_strategy=kw["aggregation_strategy"], ignore_labels=kw.get("ignore_labels"), truncate=True)
        for g, w in zip(got, case["output"]):
            keys = ["entity", "entity_group", "index", "word", "start", "end"]
            assert [[e.get(k) for k in keys] for e in g] == [[e.get(k) for k in keys] for e in w], kw
            assert all(close(a["score"], b["score"]) for a, b in zip(g, w)), kw
    with pytest.raises(ValueError, match="aggregation"):
        m.token_classify("x", aggregation_strategy="median")


def test_answer(head_gguf):
    m = xlmr.Model(head_gguf("qa"))
    for case in cases("qa"):
        kw = dict(case["kwargs"])
        got = m.answer([i["question"] for i in case["inputs"]], [i["context"] for i in case["inputs"]], **kw)
        for g, w in zip(as_lists(got), as_lists(case["output"])):
            assert [(a["answer"], a["start"], a["end"]) for a in g] == [(a["answer"], a["start"], a["end"]) for a in w], kw
            assert all(close(a["score"], b["score"]) for a, b in zip(g, w)), kw
    first = case["inputs"][0]
    assert set(m.answer(first["question"], first["context"])) == {"score", "start", "end", "answer"}
    with pytest.raises(ValueError, match="2 questions but 3 contexts"):
        m.answer(["a", "b"], ["c", "d", "e"])


def test_multiple_choice(head_gguf):
    m = xlmr.Model(head_gguf("multiple-choice"))
    ref = head_reference("multiple-choice")["cases"]
    got = m.multiple_choice([c["prompt"] for c in ref], [c["choices"] for c in ref])
    for g, w in zip(got, ref):
        assert all(close(a, b) for a, b in zip(g["scores"], w["scores"]))
        assert all(close(a, b) for a, b in zip(g["logits"], w["logits"]))
        assert g["best"] == max(range(len(w["scores"])), key=lambda i: w["scores"][i])
    one = m.multiple_choice(ref[0]["prompt"], ref[0]["choices"])
    assert one["best"] == got[0]["best"]
