#!/usr/bin/env python3
"""COMET on XL-width layers: build an XCOMET-shaped model around a Hugging Face XL folder
(e.g. the 4-layer random one from tools/make_full_xl.py), time unbabel-comet on it, and
compare xlmr's quantized scores with its f32 ones. Developer tool, not CI.

  /work/venv457/bin/python tools/bench_comet.py make  XL_DIR OUT_DIR      # COMET folder (f16 ckpt)
  /work/venv457/bin/python tools/bench_comet.py data  OUT.jsonl [N] [S]   # N (100) triplets of 1..S (3) sentences
  /work/venv457/bin/python tools/bench_comet.py comet OUT_DIR DATA.jsonl  # seconds of predict()
  python3 tools/bench_comet.py agree F32.json Q.json                      # error, Pearson, Kendall

`make` writes OUT_DIR/hparams.yaml (xcomet_metric, XCOMET-XL's estimator sizes, softmax mix
via `sparsemax_patch`, word layer = the last layer), OUT_DIR/checkpoints/model.ckpt (the
encoder's weights as `encoder.model.*`, random layer mix, estimator and tagger, f16 to halve
the file) and OUT_DIR/facebook/xlm-roberta-xl/ (config.json + tokenizer, where COMET's
loader looks when run from OUT_DIR). `comet` runs `predict(..., gpus=0)` in float32 from
OUT_DIR and prints one JSON line with the wall and CPU seconds spent in predict (model load
excluded; THREADS=n sets torch's threads) and COMET's Prediction.
venv: as tools/make_comet_fixtures.py (unbabel-comet 2.2.7, transformers 4.57).
"""

import json
import os
import random
import shutil
import sys
import time

ENCODER_NAME = "facebook/xlm-roberta-xl"

SENTENCES = {
    "de": ["Die Datei konnte nicht geöffnet werden.", "Bitte starten Sie das Programm neu.", "Der Zug hat heute zwanzig Minuten Verspätung.",
           "Wir haben das Angebot sorgfältig geprüft und möchten es annehmen.", "Das Wetter war am Wochenende überraschend warm.",
           "Können Sie mir sagen, wo der nächste Bahnhof ist?", "Die Sitzung wurde auf nächsten Dienstag verschoben.",
           "Er liest jeden Abend ein Kapitel aus seinem Lieblingsbuch.", "Die neue Version behebt mehrere Sicherheitslücken.",
           "Im Sommer fahren viele Familien an die Ostsee."],
    "en": ["The file could not be opened.", "Please restart the program.", "The train is twenty minutes late today.",
           "We have carefully reviewed the offer and would like to accept it.", "The weather was surprisingly warm at the weekend.",
           "Can you tell me where the nearest station is?", "The meeting was moved to next Tuesday.",
           "He reads a chapter of his favourite book every evening.", "The new version fixes several security holes.",
           "In summer many families go to the Baltic Sea."],
    "en2": ["The file couldn't be opened.", "Restart the program, please.", "Today the train is late by twenty minutes.",
            "We checked the offer carefully and want to accept it.", "At the weekend the weather was surprisingly warm.",
            "Could you tell me where the closest station is?", "The meeting has been postponed until next Tuesday.",
            "Every evening he reads one chapter from his favorite book.", "Several security vulnerabilities are fixed in the new version.",
            "Many families travel to the Baltic Sea in summer."],
}


def make(xl_dir, out_dir):
    import torch
    import yaml
    from safetensors.torch import load_file

    hidden = json.load(open(os.path.join(xl_dir, "config.json")))["hidden_size"]
    layers = json.load(open(os.path.join(xl_dir, "config.json")))["num_hidden_layers"]
    enc = os.path.join(out_dir, ENCODER_NAME)
    os.makedirs(enc, exist_ok=True)
    os.makedirs(os.path.join(out_dir, "checkpoints"), exist_ok=True)
    # tokenizer_config.json is left out: transformers 5 writes fields that 4.57 cannot read.
    for f in ["config.json", "tokenizer.json", "special_tokens_map.json", "sentencepiece.bpe.model"]:
        if os.path.exists(os.path.join(xl_dir, f)):
            shutil.copyfile(os.path.join(xl_dir, f), os.path.join(enc, f))
    g = torch.Generator().manual_seed(7)
    sd = {}
    for k, v in load_file(os.path.join(xl_dir, "model.safetensors")).items():
        if k.startswith("roberta."):
            sd["encoder.model." + k[len("roberta."):]] = v.half()
    for i in range(layers + 1):
        sd[f"layerwise_attention.scalar_parameters.{i}"] = torch.randn(1, generator=g)
    sd["layerwise_attention.gamma"] = torch.ones(1)
    sizes = [hidden, 2560, 1280, 1]
    for j in range(3):
        sd[f"estimator.ff.{3 * j}.weight"] = (torch.randn(sizes[j + 1], sizes[j], generator=g) / sizes[j] ** 0.5).half()
        sd[f"estimator.ff.{3 * j}.bias"] = (0.05 * torch.randn(sizes[j + 1], generator=g)).half()
    sd["hidden2tag.weight"] = (torch.randn(4, hidden, generator=g) / hidden ** 0.5).half()
    sd["hidden2tag.bias"] = torch.tensor([2.0, 0.0, 0.0, 0.0]).half()
    hp = {"class_identifier": "xcomet_metric", "activations": "Tanh", "batch_size": 8, "dropout": 0.1, "encoder_learning_rate": 1.0e-06,
          "encoder_model": "XLM-RoBERTa-XL", "error_labels": ["minor", "major", "critical"], "final_activation": None,
          "hidden_sizes": [2560, 1280], "input_segments": ["mt", "src", "ref"], "keep_embeddings_frozen": True, "layer": "mix",
          "layer_norm": False, "layer_transformation": "sparsemax_patch", "layerwise_decay": 0.983, "learning_rate": 3.66e-06,
          "load_pretrained_weights": False, "local_files_only": False, "loss": "mse", "loss_lambda": 0.055, "nr_frozen_epochs": 0.3,
          "optimizer": "AdamW", "pool": "avg", "pretrained_model": ENCODER_NAME, "sent_layer": "mix", "train_data": [], "validation_data": [],
          "warmup_steps": 0, "word_layer": layers, "word_level_training": True, "cross_entropy_weights": [0.08, 0.486, 0.505, 0.533]}
    torch.save({"epoch": 0, "global_step": 0, "pytorch-lightning_version": "2.6.6", "state_dict": sd, "hyper_parameters": hp},
               os.path.join(out_dir, "checkpoints", "model.ckpt"))
    with open(os.path.join(out_dir, "hparams.yaml"), "w") as f:
        yaml.dump(hp, f)


def data(out, n=100, max_sentences=3):
    rng = random.Random(11)
    with open(out, "w") as f:
        for i in range(n):
            k = rng.randrange(10)
            src = " ".join(SENTENCES["de"][(k + j) % 10] for j in range(1 + i % max_sentences))
            mt = " ".join(SENTENCES["en" if rng.random() < 0.6 else "en2"][(k + j) % 10] for j in range(1 + i % max_sentences))
            ref = " ".join(SENTENCES["en2"][(k + j) % 10] for j in range(1 + i % max_sentences))
            f.write(json.dumps({"src": src, "mt": mt, "ref": ref}, ensure_ascii=False) + "\n")


def comet(model_dir, data_path):
    import torch
    from comet import load_from_checkpoint

    os.chdir(model_dir)
    samples = [json.loads(l) for l in open(data_path)]
    model = load_from_checkpoint(os.path.join(model_dir, "checkpoints", "model.ckpt")).float().eval()
    if os.environ.get("THREADS"):
        torch.set_num_threads(int(os.environ["THREADS"]))
    start, cpu = time.perf_counter(), time.process_time()
    pred = model.predict(samples, batch_size=8, gpus=0, progress_bar=False)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "cpu_seconds": cpu_seconds, "segments": len(samples), "threads": torch.get_num_threads(),
                      "scores": pred.scores, "metadata": {k: v for k, v in pred.metadata.items()} if "metadata" in pred else None}))


def agree(f32_path, q_path):
    from scipy.stats import kendalltau, pearsonr

    a, b = json.load(open(f32_path))["scores"], json.load(open(q_path))["scores"]
    err = [abs(x - y) for x, y in zip(a, b)]
    print(json.dumps({"max_abs_err": max(err), "mean_abs_err": sum(err) / len(err), "pearson": pearsonr(a, b)[0],
                      "kendall": kendalltau(a, b)[0], "f32_std": (sum((x - sum(a) / len(a)) ** 2 for x in a) / len(a)) ** 0.5}))


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    {"make": make, "data": data, "comet": comet, "agree": agree}[cmd](*[int(a) if a.isdigit() else a for a in args])
