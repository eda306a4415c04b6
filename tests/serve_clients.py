"""Used by tests/serve.rs: real clients against a running `xlmr serve`.

    python3 tests/serve_clients.py http://127.0.0.1:PORT TEXT...

Prints one JSON object: the vectors the `openai` package gets (its default, which asks for
base64 and decodes it; float; base64 asked for explicitly, which it returns undecoded) and
those of huggingface_hub's InferenceClient.feature_extraction, one list per text.
"""
import base64
import json
import sys

import numpy as np
import openai
from huggingface_hub import InferenceClient

base, texts = sys.argv[1], sys.argv[2:]
client = openai.OpenAI(base_url=base + "/v1", api_key="unused")
out = {}
for fmt in ("default", "float", "base64"):
    extra = {} if fmt == "default" else {"encoding_format": fmt}
    r = client.embeddings.create(model="tiny", input=texts, **extra)
    vectors = []
    for d in sorted(r.data, key=lambda d: d.index):
        e = d.embedding
        if isinstance(e, str):
            e = np.frombuffer(base64.b64decode(e), dtype="<f4")
        vectors.append([float(x) for x in e])
    out["openai_" + fmt] = vectors
hf = InferenceClient(base_url=base)
out["hf_feature_extraction"] = [hf.feature_extraction(t)[0].tolist() for t in texts]
print(json.dumps(out))
