#!/usr/bin/env python3
"""Build the COMET test fixtures: tiny random COMET models of each class xlmr scores
(`xcomet_metric`, `unified_metric`, `regression_metric`) on a tiny XLM-RoBERTa-XL encoder,
saved the way PyTorch Lightning saves them (`hparams.yaml` + `checkpoints/model.ckpt`), and
the outputs of unbabel-comet's own `load_from_checkpoint(...).predict(..., gpus=0)` in float32.

Run by developers (not CI) from the repository root:

  /work/venv457/bin/python tools/make_comet_fixtures.py

/work/venv457 is a venv with transformers==4.57.* (unbabel-comet needs transformers < 5) and
unbabel-comet 2.2.7 installed with `pip install --no-deps unbabel-comet` plus its
dependencies (pytorch-lightning, jsonargparse, entmax, pandas, scipy, sacrebleu,
torchmetrics) so that torch stays the one of /work/venv (shared through a .pth file).

The encoder's tokenizer is models/tiny-xlmr-xl/sentencepiece.bpe.model (already committed):
COMET loads it through `XLMRobertaTokenizerFast.from_pretrained`, which with transformers 4.57
converts the sentencepiece model (no tokenizer.json). The checkpoints hold f16 tensors (loaded
exactly into COMET's f32 modules) to keep the files small.

Layout: tests/fixtures/comet/encoder/config.json (the encoder's config; a test assembles the
encoder folder from it and the sentencepiece model) and tests/fixtures/comet/<name>/ with
hparams.yaml, checkpoints/model.ckpt and reference.json (inputs and COMET's Prediction).
Everything is seeded: a rerun with the same package versions rewrites the same files.
"""

import json
import os
import shutil
import sys
import tempfile

import torch
import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPM = os.path.join(ROOT, "models", "tiny-xlmr-xl", "sentencepiece.bpe.model")
OUT = os.path.join(ROOT, "tests", "fixtures", "comet")
SEED = 20261127
ENCODER_NAME = "facebook/xlm-roberta-xl"  # as in the released hparams.yaml; resolved locally

ENCODER_CONFIG = {
    "architectures": ["XLMRobertaXLModel"],
    "model_type": "xlm-roberta-xl",
    "hidden_size": 32,
    "num_attention_heads": 2,
    "num_hidden_layers": 3,
    "intermediate_size": 64,
    "vocab_size": 4002,
    "max_position_embeddings": 514,
    "type_vocab_size": 1,
    "layer_norm_eps": 1e-05,
    "pad_token_id": 1,
    "bos_token_id": 0,
    "eos_token_id": 2,
    "hidden_act": "gelu",
}

LONG = " ".join(["Die Datei konnte nicht geöffnet werden, weil der Speicherplatz nicht ausreicht."] * 40)

# src, mt, ref: ordinary sentences, punctuation and repeated spaces, one empty translation,
# a source long enough to be cut by the tokenizer (510) and the 512-token concatenation.
TRIPLETS = [
    ("Das Haus ist klein.", "The house is small.", "The house is tiny."),
    ("Le chat dort sur le canapé.", "The cat sleeps on the sofa.", "The cat is sleeping on the couch."),
    ("Ich habe den Zug verpasst, weil es regnete.", "I missed  the train because it was raining!", "I missed the train because of the rain."),
    ("¿Dónde está la estación?", "", "Where is the station?"),
    ("Не удалось открыть файл: нет прав доступа.", "The file could not be opened: no access rights.", "Could not open the file: permission denied."),
    ("无法打开文件，请稍后再试。", "Cannot open file, please try again later.", "Unable to open the file; try again later."),
    (LONG, "The file could not be opened because there is not enough disk space.", "The file could not be opened, the disk is full."),
    ("Guten Morgen", "Good morning , how are you ?", "Good morning"),
]

COMMON_HPARAMS = {
    "nr_frozen_epochs": 0.3,
    "keep_embeddings_frozen": True,
    "optimizer": "AdamW",
    "warmup_steps": 0,
    "encoder_learning_rate": 1.0e-06,
    "learning_rate": 3.66e-06,
    "layerwise_decay": 0.983,
    "encoder_model": "XLM-RoBERTa-XL",
    "pretrained_model": ENCODER_NAME,
    "dropout": 0.1,
    "batch_size": 4,
    "train_data": ["data/train.csv"],
    "validation_data": ["data/dev.csv"],
    "local_files_only": False,
}

# name -> (class_identifier, hparams, layer mix scalars (None: random), yaml overrides)
MODELS = {
    # XCOMET as released: hparams.yaml says sparsemax_patch (COMET >= 2.2.4 then uses softmax),
    # the checkpoint's own hyper_parameters say sparsemax.
    "xcomet": ("xcomet_metric", {
        "sent_layer": "mix", "layer_transformation": "sparsemax", "layer_norm": False, "word_layer": 3,
        "loss": "mse", "hidden_sizes": [48, 24], "activations": "Tanh", "final_activation": None,
        "word_level_training": True, "error_labels": ["minor", "major", "critical"], "loss_lambda": 0.055,
        "cross_entropy_weights": [0.08, 0.486, 0.505, 0.533],
    }, None, {"layer_transformation": "sparsemax_patch"}),
    # CometKiwi-like: [mt, src], layer-normed softmax mix, sigmoid on top.
    "kiwi": ("unified_metric", {
        "sent_layer": "mix", "layer_transformation": "softmax", "layer_norm": True, "word_layer": 2,
        "loss": "mse", "hidden_sizes": [40], "activations": "Tanh", "final_activation": "Sigmoid",
        "input_segments": ["mt", "src"], "word_level_training": False, "loss_lambda": 0.65,
        "error_labels": ["minor", "major"], "cross_entropy_weights": None,
    }, None, {}),
    # COMET-DA-like regression on the XL encoder: avg pooling over a sparsemax mix whose
    # last entry is 0, so the converter keeps only the layers below it.
    "da": ("regression_metric", {
        "pool": "avg", "layer": "mix", "layer_transformation": "sparsemax", "layer_norm": False,
        "loss": "mse", "hidden_sizes": [48, 16], "activations": "Tanh", "final_activation": None,
    }, [0.9, 0.4, 0.7, -1.5], {}),
}


def write_encoder(folder):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(ENCODER_CONFIG, f, indent=2)
    shutil.copyfile(SPM, os.path.join(folder, "sentencepiece.bpe.model"))


def spread(model, seed):
    """Random weights with enough spread that layers and heads differ visibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "scalar_parameters" in name or name.endswith("gamma"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.8 + (1.0 if name.endswith("gamma") else 0.0))
            elif p.dim() == 1 and ("LayerNorm" in name or "layer_norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif "embeddings" in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(torch.randn(p.shape, generator=g) / p.shape[1] ** 0.5)
        # f16-representable, so the f16 checkpoint holds exactly the weights COMET runs.
        for p in model.parameters():
            p.copy_(p.half().float())


def build(name, workdir):
    from comet.models import str2model
    import pytorch_lightning as ptl

    class_id, hparams, mix, yaml_overrides = MODELS[name]
    torch.manual_seed(SEED)
    model = str2model[class_id](**COMMON_HPARAMS, **hparams, load_pretrained_weights=False)
    spread(model, SEED + sum(map(ord, name)))
    if mix is not None:
        with torch.no_grad():
            for p, v in zip(model.layerwise_attention.scalar_parameters, mix):
                p.fill_(v)
    if name == "xcomet":
        # Bias the tagger so that every severity and "O" occur in the spans.
        with torch.no_grad():
            model.hidden2tag.weight.mul_(6.0)
    model.eval()

    folder = os.path.join(workdir, name)
    os.makedirs(os.path.join(folder, "checkpoints"), exist_ok=True)
    # What Lightning's ModelCheckpoint writes, through Lightning itself.
    trainer = ptl.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.strategy.connect(model)
    ckpt = os.path.join(folder, "checkpoints", "model.ckpt")
    trainer.save_checkpoint(ckpt, weights_only=True)
    # f16 tensors: half the size, loaded exactly (the values are f16-representable).
    data = torch.load(ckpt, map_location="cpu", weights_only=False)
    data["state_dict"] = {k: v.half() if v.is_floating_point() else v for k, v in data["state_dict"].items()}
    torch.save(data, ckpt)
    hp = dict(model.hparams)
    hp.update(yaml_overrides)
    with open(os.path.join(folder, "hparams.yaml"), "w") as f:
        yaml.dump(hp, f)
    return folder


def predict(folder, name):
    from comet import load_from_checkpoint

    model = load_from_checkpoint(os.path.join(folder, "checkpoints", "model.ckpt"))
    model = model.float().eval()
    runs = {}
    samples = [{"src": s, "mt": m, "ref": r} for s, m, r in TRIPLETS]
    runs["with_ref"] = samples
    if name != "da":
        runs["no_ref"] = [{"src": s, "mt": m} for s, m, _ in TRIPLETS]
    out = {}
    for run, data in runs.items():
        for bs in (3,):
            pred = model.predict(data, batch_size=bs, gpus=0, progress_bar=False)
            out[run] = {"scores": pred.scores, "system_score": pred.system_score}
            if "metadata" in pred:
                out[run]["metadata"] = {k: v for k, v in pred.metadata.items()}
    return out


def tolist(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, dict):
        return {k: tolist(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [tolist(v) for v in x]
    return x


def main():
    import comet
    import transformers

    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "encoder-config.json"), "w") as f:
        json.dump(ENCODER_CONFIG, f, indent=2)
    with tempfile.TemporaryDirectory() as tmp:
        # COMET resolves `pretrained_model` with from_pretrained: a local folder of that
        # name (relative to the working directory) wins over the hub.
        os.chdir(tmp)
        write_encoder(os.path.join(tmp, ENCODER_NAME))
        for name in MODELS:
            folder = build(name, tmp)
            result = predict(folder, name)
            dest = os.path.join(OUT, name)
            shutil.rmtree(dest, ignore_errors=True)
            os.makedirs(os.path.join(dest, "checkpoints"))
            shutil.copyfile(os.path.join(folder, "hparams.yaml"), os.path.join(dest, "hparams.yaml"))
            shutil.copyfile(os.path.join(folder, "checkpoints", "model.ckpt"), os.path.join(dest, "checkpoints", "model.ckpt"))
            reference = {
                "generator": "tools/make_comet_fixtures.py",
                "versions": {"unbabel-comet": getattr(comet, "__version__", "2.2.7"), "transformers": transformers.__version__, "torch": torch.__version__},
                "triplets": [{"src": s, "mt": m, "ref": r} for s, m, r in TRIPLETS],
                "predictions": tolist(result),
            }
            with open(os.path.join(dest, "reference.json"), "w") as f:
                json.dump(reference, f, indent=1, ensure_ascii=False)
            print(name, json.dumps(tolist(result))[:600], file=sys.stderr)


if __name__ == "__main__":
    main()
