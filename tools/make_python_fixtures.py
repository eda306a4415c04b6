#!/usr/bin/env python3
"""Build the reference outputs of the Python package's `Model.encode` test
(python/tests/test_encode.py): sentence-transformers' `SentenceTransformer.encode` on the
tiny model in models/tiny-xlmr-xl, which sentence-transformers loads as a plain transformers
model with mean pooling (what `xlmr.Model.encode` implements).

Run by developers (not CI, which has no torch) from the repository root, in the venv with
torch + transformers + sentence-transformers:

  /work/venv/bin/python tools/make_python_fixtures.py

Writes tests/fixtures/python/encode.json: the sentences, the arguments of each case and the
vectors (a few KB). Deterministic: no randomness is involved.
"""

import json
import os

import sentence_transformers
import torch
import transformers
from sentence_transformers import SentenceTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests/fixtures/python/encode.json")

SENTENCES = [
    "The file could not be opened.",
    "Le fichier n'a pas pu être ouvert car il est verrouillé.",
    "无法打开文件，请稍后再试。",
    "Ok",
    # Longer than the model's 512 tokens: sentence-transformers cuts it to max_seq_length.
    " ".join(f"word{i} and more" for i in range(400)),
]

# (name, arguments); every case encodes SENTENCES.
CASES = [
    ("default", {}),
    ("normalized", {"normalize_embeddings": True, "batch_size": 2}),
    ("prompt", {"prompt": "query: "}),
]


def main():
    model = SentenceTransformer(os.path.join(ROOT, "models/tiny-xlmr-xl"), device="cpu")
    pooling = model[1].pooling_mode
    assert pooling == "mean", f"expected mean pooling, sentence-transformers chose {pooling}"
    cases = []
    for name, kwargs in CASES:
        with torch.no_grad():
            vectors = model.encode(SENTENCES, convert_to_numpy=True, **kwargs)
        cases.append({"name": name, "kwargs": kwargs, "embeddings": [[round(float(x), 7) for x in v] for v in vectors]})
    single = model.encode(SENTENCES[0])
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(
            {
                "sentence_transformers_version": sentence_transformers.__version__,
                "transformers_version": transformers.__version__,
                "torch_version": torch.__version__,
                "max_seq_length": model.max_seq_length,
                "sentences": SENTENCES,
                "single_shape": list(single.shape),
                "cases": cases,
            },
            f,
            ensure_ascii=False,
        )
    print(f"wrote {OUT} (max_seq_length {model.max_seq_length})")


if __name__ == "__main__":
    main()
