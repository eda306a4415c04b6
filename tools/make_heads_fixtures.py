#!/usr/bin/env python3
"""Build the task-head test fixtures: small random heads of every transformers XL task
architecture on top of ONE shared encoder (models/tiny-xlmr-xl, reused with its tokenizer),
plus a tiny XXL-shaped model (head dim 128), and the outputs of transformers' own pipelines.

Run by developers (not CI) from the repository root, in two steps:

  /work/venv/bin/python    tools/make_heads_fixtures.py          # transformers 5.x: all but QA's reference
  /work/venv457/bin/python tools/make_heads_fixtures.py --qa     # transformers 4.57: QA reference

Step 2 needs transformers 4.57 because transformers 5 removed the question-answering pipeline
(/work/venv457 = a venv with transformers==4.57.*; torch may come from /work/venv through a
.pth file). Everything is seeded: a rerun with the same package versions rewrites the same files.

Layout: tests/fixtures/heads/<name>/ holds config.json, head.safetensors (the head tensors
only), model.safetensors.index.json (encoder tensors -> encoder.safetensors, head tensors ->
head.safetensors) and reference.json. A checkpoint folder is assembled from that folder plus
models/tiny-xlmr-xl (its model.safetensors as encoder.safetensors, and its tokenizer files):
see `assemble()` here and `head_model()` in tests/common/mod.rs. The encoder is shared, so each
head costs only its own weights (well under 1 MB). `xxl/` is a whole model (f16 weights).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import AutoTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENCODER_DIR = os.path.join(ROOT, "models", "tiny-xlmr-xl")
OUT = os.path.join(ROOT, "tests", "fixtures", "heads")
SEED = 20261127
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "sentencepiece.bpe.model"]

NER_LABELS = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC"]

# name -> (architecture, extra config, head tensors {name: shape}, std per tensor)
HEADS = {
    "seq-cls": ("XLMRobertaXLForSequenceClassification",
                {"id2label": {0: "negative", 1: "neutral", 2: "positive", 3: "gemischt", 4: "другое"},
                 "problem_type": "single_label_classification"}),
    "seq-cls-multi": ("XLMRobertaXLForSequenceClassification",
                      {"id2label": {0: "toxic", 1: "obscene", 2: "threat"}, "problem_type": "multi_label_classification"}),
    "seq-cls-regression": ("XLMRobertaXLForSequenceClassification",
                           {"id2label": {0: "similarity"}, "problem_type": "regression"}),
    # One label, no problem_type: the pipeline applies a sigmoid (rerankers look like this).
    "seq-cls-one": ("XLMRobertaXLForSequenceClassification", {"id2label": {0: "relevance"}}),
    "token-cls": ("XLMRobertaXLForTokenClassification", {"id2label": dict(enumerate(NER_LABELS))}),
    "qa": ("XLMRobertaXLForQuestionAnswering", {}),
    "multiple-choice": ("XLMRobertaXLForMultipleChoice", {}),
}

LONG_TEXT = " ".join(
    ["Die Datei konnte nicht geöffnet werden, weil der Speicherplatz nicht ausreicht.",
     "No se pudo guardar el documento porque la carpeta es de solo lectura.",
     "Impossibile avviare il servizio: controllare la configurazione e riprovare."] * 12
)

CLS_TEXTS = [
    "The file could not be opened.",
    "Le fichier n'a pas pu être ouvert car il est verrouillé.",
    "Не удалось открыть файл: нет прав доступа.",
    "无法打开文件，请稍后再试。",
    "لا يمكن فتح الملف الآن",
]
CLS_PAIRS = [
    ("How are you?", "Je vais bien, merci."),
    ("Where is the file?", "Der Ordner ist schreibgeschützt."),
    ("保存しましたか？", "저장되었습니다."),
]

NER_TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris on Tuesday.",
    "Microsoft Corporation opened an office in Donaudampfschifffahrtsgesellschaft.",
    "北京大学的张伟教授访问了东京。",
    "زار محمد بن سلمان مدينة القاهرة يوم الأحد",
    "Привет, меня зовут Иван Петров, я живу в Москве.",
    "emoji \U0001F600 and  double  spaces\tand tabs",
]

QA_CASES = [
    {"question": "Where did the meeting take place?",
     "context": "The meeting took place in Geneva on a rainy Tuesday. Representatives of twelve countries attended, "
                "and the talks lasted until late in the evening."},
    {"question": "Qui a écrit le rapport ?",
     "context": "Le rapport a été écrit par Marie Dupont, ingénieure à Lyon, après trois mois d'enquête sur le terrain."},
    {"question": "谁赢得了比赛？", "context": "昨天下午，北京队在决赛中以三比一战胜了上海队，赢得了冠军。"},
    {"question": "What is the capital?", "context": LONG_TEXT + " The capital of the imaginary country is Zorbania. " + LONG_TEXT},
]

MC_CASES = [
    {"prompt": "The cat sat on the", "choices": ["mat.", "moon.", "keyboard."]},
    {"prompt": "Paris est la capitale de", "choices": ["la France.", "l'Allemagne."]},
    {"prompt": "Какой сегодня день?", "choices": ["Понедельник.", "Вторник.", "Среда.", "Четверг."]},
]


def head_tensors(arch, hidden, num_labels):
    """{name: shape} of the head of `arch`, as transformers names them."""
    if arch == "XLMRobertaXLForSequenceClassification":
        return {"classifier.dense.weight": (hidden, hidden), "classifier.dense.bias": (hidden,),
                "classifier.out_proj.weight": (num_labels, hidden), "classifier.out_proj.bias": (num_labels,)}
    if arch == "XLMRobertaXLForTokenClassification":
        return {"classifier.weight": (num_labels, hidden), "classifier.bias": (num_labels,)}
    if arch == "XLMRobertaXLForQuestionAnswering":
        return {"qa_outputs.weight": (2, hidden), "qa_outputs.bias": (2,)}
    if arch == "XLMRobertaXLForMultipleChoice":
        return {"roberta.pooler.dense.weight": (hidden, hidden), "roberta.pooler.dense.bias": (hidden,),
                "classifier.weight": (1, hidden), "classifier.bias": (1,)}
    raise ValueError(arch)


def random_head(arch, hidden, num_labels, seed):
    """Head weights wide enough that the outputs are far from uniform (the default init,
    std 0.02, would give near-equal scores that say nothing about correctness)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in head_tensors(arch, hidden, num_labels).items():
        std = 0.15 if "dense" in name else (0.3 if name.endswith("weight") else 0.5)
        out[name] = (torch.randn(shape, generator=g) * std).contiguous()
    return out


QA_NULL_LIFT = 9.0


def centre_head(arch, tensors, seed):
    """Random heads on this encoder give the same label for every input (the final hidden
    states share a large common component). Shift the output bias by minus the mean logit over
    the fixture texts, and scale the output rows to a logit spread of ~2.5, so that labels vary
    between inputs and tokens while scores stay far from uniform."""
    encoder = transformers.XLMRobertaXLModel.from_pretrained(ENCODER_DIR, add_pooling_layer=False).eval()
    tok = AutoTokenizer.from_pretrained(ENCODER_DIR)
    texts = CLS_TEXTS + NER_TEXTS + [c["question"] + " " + c["context"][:300] for c in QA_CASES]
    rows = []
    with torch.no_grad():
        for t in texts:
            h = encoder(**tok(t, return_tensors="pt")).last_hidden_state[0]
            rows.append(h[:1] if arch == "XLMRobertaXLForSequenceClassification" else h)
    h = torch.cat(rows)
    if arch == "XLMRobertaXLForSequenceClassification":
        h = torch.tanh(h @ tensors["classifier.dense.weight"].T + tensors["classifier.dense.bias"])
        w, b = "classifier.out_proj.weight", "classifier.out_proj.bias"
    elif arch == "XLMRobertaXLForTokenClassification":
        w, b = "classifier.weight", "classifier.bias"
    elif arch == "XLMRobertaXLForQuestionAnswering":
        w, b = "qa_outputs.weight", "qa_outputs.bias"
    else:
        return tensors  # multiple choice: a softmax over choices ignores any common shift
    logits = h @ tensors[w].T
    tensors[w] = (tensors[w] * (2.5 / logits.std(0, keepdim=True).T)).contiguous()
    logits = h @ tensors[w].T
    if arch == "XLMRobertaXLForQuestionAnswering":
        # Lift the start and end logits of <s> (the pipeline's "no answer" token) by ~QA_NULL_LIFT,
        # so that with handle_impossible_answer some questions come out unanswerable.
        cls = torch.cat([r[:1] for r in rows])
        d = cls.mean(0) - h.mean(0)
        tensors[w] = (tensors[w] + QA_NULL_LIFT * d / d.dot(d)).contiguous()
        logits = h @ tensors[w].T
    g = torch.Generator().manual_seed(seed)
    tensors[b] = (-logits.mean(0) + 0.3 * torch.randn(logits.shape[1], generator=g)).contiguous()
    return tensors


def encoder_config():
    with open(os.path.join(ENCODER_DIR, "config.json")) as f:
        return json.load(f)


def write_head(name, arch, extra, tensors):
    folder = os.path.join(OUT, name)
    os.makedirs(folder, exist_ok=True)
    config = encoder_config()
    config["architectures"] = [arch]
    config.pop("transformers_version", None)
    if "id2label" in extra:
        config["id2label"] = {str(k): v for k, v in extra["id2label"].items()}
        config["label2id"] = {v: int(k) for k, v in extra["id2label"].items()}
    if extra.get("problem_type"):
        config["problem_type"] = extra["problem_type"]
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, ensure_ascii=False)
        f.write("\n")
    save_file(tensors, os.path.join(folder, "head.safetensors"))
    encoder_names = sorted(load_file(os.path.join(ENCODER_DIR, "model.safetensors")).keys())
    weight_map = {n: "encoder.safetensors" for n in encoder_names if n.startswith("roberta.")}
    weight_map.update({n: "head.safetensors" for n in sorted(tensors)})
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f, indent=1)
        f.write("\n")


def assemble(name, tmp):
    """A loadable checkpoint folder: the fixture's files + the shared encoder and tokenizer."""
    folder = os.path.join(tmp, name)
    os.makedirs(folder)
    for f in os.listdir(os.path.join(OUT, name)):
        if f != "reference.json":
            shutil.copyfile(os.path.join(OUT, name, f), os.path.join(folder, f))
    if not os.path.exists(os.path.join(folder, "model.safetensors")):
        shutil.copyfile(os.path.join(ENCODER_DIR, "model.safetensors"), os.path.join(folder, "encoder.safetensors"))
    for f in TOKENIZER_FILES:
        shutil.copyfile(os.path.join(ENCODER_DIR, f), os.path.join(folder, f))
    if transformers.__version__.startswith("4."):
        # transformers 5 writes extra_special_tokens as a list, which 4.x cannot read; the
        # tokens it names (<s>, </s>) are special tokens anyway.
        path = os.path.join(folder, "tokenizer_config.json")
        config = json.load(open(path))
        config.pop("extra_special_tokens", None)
        json.dump(config, open(path, "w"))
    return folder


def load(name, tmp):
    folder = assemble(name, tmp)
    arch = json.load(open(os.path.join(folder, "config.json")))["architectures"][0]
    # float(): an f16 checkpoint (xxl) would otherwise load and run in f16.
    model = getattr(transformers, arch).from_pretrained(folder).float().eval()
    return model, AutoTokenizer.from_pretrained(folder)


def floats(x):
    """Pipeline outputs with numpy/torch numbers made plain JSON numbers."""
    if isinstance(x, dict):
        return {k: floats(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [floats(v) for v in x]
    if hasattr(x, "item"):
        return x.item()
    return x


def save_reference(name, cases):
    with open(os.path.join(OUT, name, "reference.json"), "w") as f:
        json.dump({"transformers_version": transformers.__version__, "torch_version": torch.__version__, "cases": cases},
                  f, indent=1, ensure_ascii=False)
        f.write("\n")


# ---------------------------------------------------------------------------
# Reference outputs, one function per task
# ---------------------------------------------------------------------------

def classification_reference(name, tmp):
    model, tok = load(name, tmp)
    clf = transformers.pipeline("text-classification", model=model, tokenizer=tok, device="cpu")
    cases = []

    def case(inputs, **kwargs):
        result = clf(inputs, **kwargs)
        cases.append({"inputs": inputs, "kwargs": kwargs, "output": floats(result)})

    case(CLS_TEXTS)  # default: top-1 per input, the pipeline's legacy dict
    case(CLS_TEXTS[:2], top_k=None)  # every label, sorted
    case([{"text": a, "text_pair": b} for a, b in CLS_PAIRS], top_k=2)
    for fn in ["softmax", "sigmoid", "none"]:
        case(CLS_TEXTS[2:4], top_k=None, function_to_apply=fn)
    case([LONG_TEXT * 3], truncation=True, top_k=None)  # ~1,000 tokens: cut to 512
    case([{"text": LONG_TEXT * 2, "text_pair": "Kurzer zweiter Satz."}], truncation=True, top_k=None)
    save_reference(name, cases)


def token_classification_reference(tmp):
    model, tok = load("token-cls", tmp)
    ner = transformers.pipeline("token-classification", model=model, tokenizer=tok, device="cpu")
    cases = []
    for strategy in ["none", "simple", "first", "average", "max"]:
        cases.append({"inputs": NER_TEXTS, "kwargs": {"aggregation_strategy": strategy},
                      "output": floats(ner(NER_TEXTS, aggregation_strategy=strategy))})
    cases.append({"inputs": NER_TEXTS[:2], "kwargs": {"aggregation_strategy": "simple", "ignore_labels": []},
                  "output": floats(ner(NER_TEXTS[:2], aggregation_strategy="simple", ignore_labels=[]))})
    # The pipeline always truncates to the model's 512 tokens.
    long = "Angela Merkel besuchte Paris. " * 120
    cases.append({"inputs": [long], "kwargs": {"aggregation_strategy": "simple"},
                  "output": floats(ner([long], aggregation_strategy="simple"))})
    save_reference("token-cls", cases)


def multiple_choice_reference(tmp):
    model, tok = load("multiple-choice", tmp)
    cases = []
    for c in MC_CASES:
        enc = tok([c["prompt"]] * len(c["choices"]), c["choices"], padding=True, return_tensors="pt")
        with torch.no_grad():
            logits = model(**{k: v[None] for k, v in enc.items()}).logits[0]
        cases.append({"prompt": c["prompt"], "choices": c["choices"], "logits": logits.tolist(),
                      "scores": torch.softmax(logits, -1).tolist()})
    save_reference("multiple-choice", cases)


def qa_reference(tmp):
    """transformers 4.57's QuestionAnsweringPipeline (step 2)."""
    model, tok = load("qa", tmp)
    qa = transformers.pipeline("question-answering", model=model, tokenizer=tok, device="cpu")
    cases = []

    def case(items, **kwargs):
        out = qa([dict(i) for i in items], **kwargs) if len(items) > 1 else qa(dict(items[0]), **kwargs)
        if len(items) == 1:
            out = [out]
        windows = []
        for item in items:
            enc = tok(item["question"], item["context"], truncation="only_second",
                      max_length=kwargs.get("max_seq_len", 384), stride=kwargs.get("doc_stride", 128),
                      return_overflowing_tokens=True)
            windows.append(len(enc["input_ids"]))
        cases.append({"inputs": items, "kwargs": kwargs, "windows": windows, "output": floats(out)})

    case(QA_CASES)
    case(QA_CASES[:2], top_k=3)
    case(QA_CASES[3:], max_seq_len=64, doc_stride=16, top_k=2)  # many windows
    case(QA_CASES, handle_impossible_answer=True)
    case(QA_CASES[:1], max_answer_len=3, top_k=2)
    assert any(n > 2 for c in cases for n in c["windows"]), "a context must span several windows"
    assert any(o["answer"] == "" for c in cases if c["kwargs"].get("handle_impossible_answer") for o in c["output"]), \
        "one question must come out unanswerable"
    save_reference("qa", cases)


# ---------------------------------------------------------------------------
# XXL shape: head dim 128
# ---------------------------------------------------------------------------

def make_xxl(tmp):
    """hidden 128 = 1 head of 128 (XXL's head dim), 2 layers, stored in f16 to stay small (the
    4096-row word embedding is most of the file)."""
    enc = encoder_config()
    config = transformers.XLMRobertaXLConfig(
        vocab_size=enc["vocab_size"], hidden_size=128, num_hidden_layers=2, num_attention_heads=1,
        intermediate_size=256, max_position_embeddings=514, type_vocab_size=1, layer_norm_eps=1e-5,
        pad_token_id=1, bos_token_id=0, eos_token_id=2,
        architectures=["XLMRobertaXLForSequenceClassification"],
        id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1},
    )
    torch.manual_seed(SEED + 128)
    model = transformers.XLMRobertaXLForSequenceClassification(config)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "LayerNorm" in n or "layer_norm" in n:
                p.copy_(1.0 + 0.3 * torch.randn_like(p)) if n.endswith("weight") else p.normal_(0, 0.2)
            elif "embeddings" in n:
                p.normal_(0, 0.5)
            elif n.endswith("weight"):
                p.normal_(0, 0.1)
            else:
                p.normal_(0, 0.05)
            p.copy_(p.half().float())  # what the f16 file holds
    folder = os.path.join(OUT, "xxl")
    os.makedirs(folder, exist_ok=True)
    model.config.save_pretrained(folder)
    state = {k: v.half().contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}
    save_file(state, os.path.join(folder, "model.safetensors"))
    model, tok = load("xxl", tmp)
    clf = transformers.pipeline("text-classification", model=model, tokenizer=tok, device="cpu")
    cases = [{"inputs": CLS_TEXTS, "kwargs": {"top_k": None}, "output": floats(clf(CLS_TEXTS, top_k=None))}]
    with torch.no_grad():
        ids = tok(CLS_TEXTS[1], return_tensors="pt")
        last = model.roberta(**ids).last_hidden_state[0]
    cases.append({"text": CLS_TEXTS[1], "last_hidden_state_row0": last[0].tolist(), "last_hidden_state_row_last": last[-1].tolist()})
    save_reference("xxl", cases)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--qa", action="store_true", help="write the QA reference (run with transformers 4.57)")
    args = ap.parse_args()
    major = int(transformers.__version__.split(".")[0])
    with tempfile.TemporaryDirectory() as tmp:
        if args.qa:
            if major != 4:
                sys.exit("--qa needs transformers 4.57 (transformers 5 removed the question-answering pipeline)")
            qa_reference(tmp)
            return
        if major < 5:
            sys.exit("run this step with transformers 5 (/work/venv)")
        hidden = encoder_config()["hidden_size"]
        for i, (name, (arch, extra)) in enumerate(HEADS.items()):
            num_labels = len(extra.get("id2label", {0: 0, 1: 1}))
            write_head(name, arch, extra, centre_head(arch, random_head(arch, hidden, num_labels, SEED + i), SEED + i))
        for name in ["seq-cls", "seq-cls-multi", "seq-cls-regression", "seq-cls-one"]:
            classification_reference(name, tmp)
        token_classification_reference(tmp)
        multiple_choice_reference(tmp)
        make_xxl(tmp)
    print("wrote", OUT, "; now run the QA step with transformers 4.57 (see the top of this file)")


if __name__ == "__main__":
    main()
