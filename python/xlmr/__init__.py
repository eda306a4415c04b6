"""xlmr: quantized CPU inference for XLM-RoBERTa(-XL) encoders from GGUF files.

    import xlmr
    model = xlmr.Model("model-q8_0.gguf")
    vectors = model.encode(["Hello world", "Bonjour le monde"])   # numpy [2, hidden]
    model.fill_mask("Paris is the <mask> of France.")

Every method calls the native library (the same task API as the `xlmr` CLI, the C API and
`xlmr serve`) with the GIL released, so threads calling one model run in parallel. Errors are
`ValueError` for bad input and `OSError` for files, with the library's message.
"""

import json
import os

import numpy as np

from . import _xlmr

__version__ = _xlmr.__version__
__all__ = ["Model", "Prediction", "convert", "__version__"]

# Inputs per forward pass unless a call says otherwise (the CLI's default).
DEFAULT_BATCH_SIZE = 8


def _as_list(texts, what="texts"):
    """`(list, was_single)`: a lone string is one input; anything else must be strings."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError(f"{what} must be str or a list of str, not bytes (decode it first)")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{what}[{i}] is {type(t).__name__}, expected str")
    return texts, False


def _vectors(blob, dim):
    return np.frombuffer(blob, dtype="<f4").reshape(-1, dim)


class Model:
    """A GGUF file written by `xlmr convert`, memory-mapped. The encoder's matrices are
    repacked at load into a private copy in the GEMM kernels' layout (fastest); processes
    that load the same file share only its other pages, unless they use a packed-weights
    cache (`pack_cache`), which they all map: one shared packed copy (README "Performance").

    `n_threads`: compute threads of this model (default: every core).
    `pack_cache`: directory of the packed-weights cache (default: `$XLMR_PACK_CACHE` if set,
    else none): the first load writes the packed matrices to a file there, later loads of the
    same model map it instead of packing (milliseconds instead of seconds on XL).
    `info["weights"]` says how the weights are held.
    """

    def __init__(self, path, n_threads=None, pack_cache=None):
        self._native = _xlmr.Model(os.fspath(path), n_threads, None if pack_cache is None else os.fspath(pack_cache))
        self._info = json.loads(self._native.info_json())

    # -- lifetime -------------------------------------------------------------------------

    def close(self):
        """Releases the model; calls already running finish, later calls raise ValueError."""
        self._native.close()

    @property
    def closed(self):
        return self._native.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        i = self._info
        state = "closed" if self.closed else f"{i['n_threads']} threads"
        return f"xlmr.Model({i['path']!r}, hidden={i['hidden_size']}, layers={i['num_hidden_layers']}, {state})"

    # -- facts ----------------------------------------------------------------------------

    @property
    def info(self):
        """Hyperparameters (Hugging Face config names), the task head (kind, task, labels,
        problem_type; None without one), file path and size, threads."""
        return json.loads(json.dumps(self._info))

    def get_sentence_embedding_dimension(self):
        """The vector size, as sentence-transformers names it."""
        return self._info["hidden_size"]

    @property
    def max_seq_length(self):
        """Tokens per input, special tokens included (longer inputs are cut by `encode`)."""
        return self._info["max_tokens"]

    def tokenize(self, texts, truncate=False):
        """Token ids (`<s>` ... `</s>`) of each text; one list for a lone string."""
        texts, single = _as_list(texts)
        ids = self._native.tokenize(texts, truncate)
        return ids[0] if single else ids

    # -- encoder outputs ------------------------------------------------------------------

    def embed(self, texts, pooling="mean", normalize=False, truncate=False, batch_size=DEFAULT_BATCH_SIZE):
        """float32 `[n, hidden]` vectors (`pooling` "mean" over the tokens, special tokens
        included, or "cls" = the `<s>` token); for `pooling="none"` a list of `[tokens, hidden]`
        arrays. A lone string gives `[hidden]` (or `[tokens, hidden]`). Inputs longer than
        the model's maximum raise ValueError unless `truncate`."""
        texts, single = _as_list(texts)
        dim = self._info["hidden_size"]
        blobs = self._native.embed(texts, pooling, normalize, truncate, batch_size)
        if pooling == "none":
            out = [_vectors(b, dim) for b in blobs]
            return out[0] if single else out
        out = np.concatenate([_vectors(b, dim) for b in blobs]) if blobs else np.zeros((0, dim), np.float32)
        return out[0] if single else out

    def encode(
        self,
        sentences,
        prompt=None,
        batch_size=32,
        show_progress_bar=None,
        output_value="sentence_embedding",
        precision="float32",
        convert_to_numpy=True,
        convert_to_tensor=False,
        normalize_embeddings=False,
        **kwargs,
    ):
        """sentence-transformers' `SentenceTransformer.encode` for a model with mean pooling:
        inputs longer than the model's maximum are cut (as sentence-transformers does); a lone
        string gives one vector; `output_value="token_embeddings"` gives each input's token
        vectors; `convert_to_numpy=False` a list of 1-D arrays; `convert_to_tensor=True` a
        torch tensor (needs torch). `device` and other sentence-transformers-only arguments
        are accepted and ignored (xlmr runs on the CPU)."""
        unknown = set(kwargs) - {"device", "prompt_name", "chunk_size", "pool", "tokenization_kwargs"}
        if unknown:
            raise TypeError(f"encode() got unexpected keyword arguments {sorted(unknown)}")
        if kwargs.get("prompt_name") is not None:
            raise ValueError("prompt_name needs a sentence-transformers prompts config; pass prompt=... instead")
        if precision != "float32":
            raise ValueError(f"precision {precision!r}: xlmr.encode returns float32 only")
        if output_value not in ("sentence_embedding", "token_embeddings"):
            raise ValueError(f"output_value {output_value!r}: use 'sentence_embedding' or 'token_embeddings'")
        texts, single = _as_list(sentences, "sentences")
        if prompt:
            texts = [prompt + t for t in texts]
        pooling = "mean" if output_value == "sentence_embedding" else "none"
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._native.tokenize(texts, True)  # a bad input fails first, named by its index
        # Longest first in batches of `batch_size`, as sentence-transformers runs them, so the
        # progress bar moves per batch and each batch pads little.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        chunks = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
        bar = _progress(len(chunks), show_progress_bar)
        rows = [None] * len(texts)
        for chunk in chunks:
            got = self.embed([texts[i] for i in chunk], pooling, normalize_embeddings, True, batch_size)
            for i, v in zip(chunk, got):
                rows[i] = v
            bar.update(1)
        bar.close()
        if output_value == "token_embeddings":
            return rows[0] if single else rows
        if convert_to_tensor:
            import torch  # only this option needs torch

            stacked = np.stack(rows) if rows else np.zeros((0, self._info["hidden_size"]), np.float32)
            return torch.from_numpy(stacked[0] if single else stacked)
        if convert_to_numpy:
            stacked = np.stack(rows) if rows else np.zeros((0, self._info["hidden_size"]), np.float32)
            return stacked[0] if single else stacked
        return rows[0] if single else rows

    def hidden_states(self, texts, layers=None, truncate=False, batch_size=DEFAULT_BATCH_SIZE):
        """Per input, float32 `[len(layers), tokens, hidden]`: transformers'
        `output_hidden_states` (0 = embeddings, `num_hidden_layers` = after the final
        LayerNorm); every one when `layers` is None. A lone string gives its array."""
        texts, single = _as_list(texts)
        if layers is not None:
            layers = [int(x) for x in ([layers] if isinstance(layers, int) else layers)]
            if any(x < 0 for x in layers):
                raise ValueError(f"layers {layers}: indices count from 0 (= embeddings)")
        n = len(layers) if layers is not None else self._info["num_hidden_layers"] + 1
        dim = self._info["hidden_size"]
        blobs = self._native.hidden_states(texts, layers, truncate, batch_size)
        out = [np.frombuffer(b, dtype="<f4").reshape(n, -1, dim) for b in blobs]
        return out[0] if single else out

    def fill_mask(self, texts, top_k=5, truncate=False, batch_size=DEFAULT_BATCH_SIZE):
        """transformers' fill-mask pipeline: per input, a list of `top_k` dicts
        (score, token, token_str, sequence), or a list of such lists when it has several
        `<mask>`s. A lone string gives its own result, a list one result per input."""
        texts, single = _as_list(texts)
        res = json.loads(self._native.fill_mask(texts, top_k, truncate, batch_size))
        res = [masks[0] if len(masks) == 1 else masks for masks in res]
        return res[0] if single else res

    # -- fine-tuned heads (the CLI's `--task` outputs, one element per input) ------------

    def classify(self, texts, text_pair=None, top_k=None, function_to_apply=None, truncate=False, batch_size=DEFAULT_BATCH_SIZE):
        """The text-classification pipeline (`...ForSequenceClassification` files): per input
        its best `{label, score}`, or with `top_k` (a number or "all") a list of them, best
        first. Inputs are strings, `(text, text_pair)` tuples or `{"text", "text_pair"}`
        dicts; `text_pair` pairs every text with one second text. `function_to_apply`:
        "softmax", "sigmoid" or "none" (default: from the model's problem_type)."""
        if isinstance(texts, (str, tuple, dict)):
            items, single = [texts], True
        else:
            items, single = list(texts), False
        pairs = [_text_pair(x, text_pair, i) for i, x in enumerate(items)]
        k = "1" if top_k is None else str(top_k)
        res = json.loads(self._native.classify(pairs, k, function_to_apply, truncate, batch_size))
        if top_k is None:
            res = [labels[0] for labels in res]
        return res[0] if single else res

    def token_classify(self, texts, aggregation_strategy="simple", ignore_labels=None, truncate=False, batch_size=DEFAULT_BATCH_SIZE):
        """The token-classification (NER) pipeline (`...ForTokenClassification` files): per
        input a list of entity dicts. `aggregation_strategy`: "none", "simple", "first",
        "average" or "max"; `ignore_labels` default ["O"]."""
        texts, single = _as_list(texts)
        if ignore_labels is not None:
            ignore_labels = [ignore_labels] if isinstance(ignore_labels, str) else list(ignore_labels)
        res = json.loads(self._native.token_classify(texts, aggregation_strategy, ignore_labels, truncate, batch_size))
        return res[0] if single else res

    def answer(
        self,
        question,
        context,
        top_k=None,
        max_seq_len=384,
        doc_stride=None,
        max_answer_len=15,
        handle_impossible_answer=False,
        batch_size=DEFAULT_BATCH_SIZE,
    ):
        """The question-answering pipeline (`...ForQuestionAnswering` files): per
        (question, context) its best `{score, start, end, answer}`, or with `top_k` a list
        of them. `question` and `context` are strings or lists of the same length."""
        qs, single_q = _as_list(question, "question")
        cs, single_c = _as_list(context, "context")
        if single_q and not single_c:
            qs = qs * len(cs)
        elif single_c and not single_q:
            cs = cs * len(qs)
        if len(qs) != len(cs):
            raise ValueError(f"{len(qs)} questions but {len(cs)} contexts; give one of each per input")
        k = 1 if top_k is None else top_k
        if k < 1:
            raise ValueError("top_k must be at least 1")
        res = json.loads(self._native.answer(list(zip(qs, cs)), k, max_seq_len, doc_stride, max_answer_len, handle_impossible_answer, batch_size))
        if top_k is None:
            res = [answers[0] for answers in res]
        return res[0] if single_q and single_c else res

    def multiple_choice(self, prompt, choices, truncate=False, batch_size=DEFAULT_BATCH_SIZE):
        """`...ForMultipleChoice` files: per prompt `{scores, best, logits}` (softmax over its
        choices). `prompt` a string with `choices` a list of strings, or lists of both."""
        if isinstance(prompt, str):
            items, single = [(prompt, _as_list(choices, "choices")[0])], True
        else:
            prompts = list(prompt)
            choices = list(choices)
            if len(prompts) != len(choices):
                raise ValueError(f"{len(prompts)} prompts but {len(choices)} lists of choices")
            items, single = [(p, _as_list(c, "choices")[0]) for p, c in zip(prompts, choices)], False
        res = json.loads(self._native.multiple_choice(items, truncate, batch_size))
        return res[0] if single else res

    def score(self, samples, batch_size=DEFAULT_BATCH_SIZE):
        """COMET metrics (a GGUF converted from a COMET model folder), as unbabel-comet's
        `model.predict(samples)`: `samples` is a list of `{"src", "mt"}` dicts, with `"ref"`
        in every one or in none (reference-free). Returns a `Prediction`: `scores`,
        `system_score` and, for XCOMET, `metadata` (`src_scores`, `ref_scores`,
        `unified_scores`, `mqm_scores`, `error_spans`), as keys or attributes."""
        triplets = []
        for i, s in enumerate(samples):
            if not isinstance(s, dict) or "src" not in s or "mt" not in s:
                raise ValueError(f"sample {i + 1} is not a dict with \"src\" and \"mt\"")
            triplets.append((s["src"], s["mt"], s.get("ref")))
        return Prediction(json.loads(self._native.score(triplets, batch_size)))


class Prediction(dict):
    """COMET's `Prediction`: a dict whose keys are also attributes."""

    def __getattr__(self, name):
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(name) from None
        return Prediction(value) if isinstance(value, dict) else value


def _text_pair(item, text_pair, i):
    if isinstance(item, str):
        return (item, text_pair)
    if isinstance(item, tuple) and len(item) == 2:
        return (item[0], item[1])
    if isinstance(item, dict) and "text" in item:
        return (item["text"], item.get("text_pair"))
    raise TypeError(f"input {i + 1}: expected a str, a (text, text_pair) tuple or a {{'text', 'text_pair'}} dict")


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress(total, show):
    """A tqdm bar when asked for and tqdm is installed, as sentence-transformers shows."""
    if not show:
        return _NoBar()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _NoBar()
    return tqdm(total=total, desc="Batches")


def convert(src_dir, dst, type="q8_0", progress=True, encoder=None):
    """Converts a Hugging Face XLM-RoBERTa(-XL) folder (config.json, safetensors or
    pytorch_model.bin, tokenizer) to a GGUF file, as `xlmr convert`. `type`: "f32", "f16",
    "q8_0", "q4_0" or "q4_k". A COMET model folder (hparams.yaml + checkpoints/model.ckpt)
    takes its encoder's config.json and tokenizer from `encoder` when given (else beside
    the model, or the Hugging Face cache). Written to a temporary file and renamed when
    complete; Ctrl-C stops it without leaving a file. Returns `{"path", "tensors",
    "file_bytes"}`."""
    enc = None if encoder is None else os.fspath(encoder)
    tensors, file_bytes = _xlmr.convert(os.fspath(src_dir), os.fspath(dst), type, progress, enc)
    return {"path": os.fspath(dst), "tensors": tensors, "file_bytes": file_bytes}
