#!/usr/bin/env python3
"""Builds the fixtures for tests/tokenizer_spm.rs.

1. Trains a small SentencePiece unigram model on the translated messages of the system's
   gettext catalogs (/usr/share/locale/*/LC_MESSAGES/*.mo), with the special ids of the real
   XLM-R model (unk 0, bos 1, eos 2, no pad). Skipped when the model already exists, so that
   re-running only refreshes the expected ids; pass --retrain to train again.
2. Builds transformers' XLMRobertaTokenizer from a folder holding only that model (the path a
   checkpoint without tokenizer.json takes) and writes, for every test string and text pair,
   the ids it produces with special tokens, plus the tokenizer.json transformers saves.

Usage: python3 tools/make_spm_cases.py [--retrain]
Outputs go to tests/fixtures/tokenizer_spm/: sentencepiece.bpe.model, cases.json,
transformers_tokenizer.json.
"""

import gettext
import glob
import json
import os
import shutil
import sys
import tempfile

import sentencepiece as spm
import tokenizers
import transformers
from transformers import XLMRobertaTokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "tokenizer_spm")
MODEL_PATH = os.path.join(OUT_DIR, "sentencepiece.bpe.model")

# Per-locale and total caps keep the corpus balanced across languages and training quick.
CHARS_PER_LOCALE = 40_000
VOCAB_SIZE = 2000


def gettext_corpus():
    """Translated messages, one per line, a bounded share from every locale."""
    lines = []
    for locale_dir in sorted(glob.glob("/usr/share/locale/*/LC_MESSAGES")):
        taken = 0
        for mo_path in sorted(glob.glob(os.path.join(locale_dir, "*.mo"))):
            try:
                with open(mo_path, "rb") as f:
                    catalog = gettext.GNUTranslations(f)._catalog
            except Exception:
                continue  # a catalog Python cannot read is simply not used
            for key, text in sorted(catalog.items(), key=lambda kv: str(kv[0])):
                if key == "" or not isinstance(text, str):
                    continue  # the header entry holds metadata, not text
                for line in text.splitlines():
                    line = line.strip()
                    if line:
                        lines.append(line)
                        taken += len(line)
                if taken >= CHARS_PER_LOCALE:
                    break
            if taken >= CHARS_PER_LOCALE:
                break
    return lines


def train_model():
    lines = gettext_corpus()
    print(f"corpus: {len(lines)} lines, {sum(map(len, lines))} chars")
    with tempfile.TemporaryDirectory() as tmp:
        corpus_path = os.path.join(tmp, "corpus.txt")
        with open(corpus_path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines))
        prefix = os.path.join(tmp, "spm")
        spm.SentencePieceTrainer.train(
            input=corpus_path,
            model_prefix=prefix,
            model_type="unigram",
            vocab_size=VOCAB_SIZE,
            character_coverage=0.98,
            unk_id=0,
            bos_id=1,
            eos_id=2,
            pad_id=-1,
            num_threads=2,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            minloglevel=2,
        )
        shutil.copyfile(prefix + ".model", MODEL_PATH)
    print(f"wrote {MODEL_PATH} ({os.path.getsize(MODEL_PATH)} bytes)")


LONG_WORD = "".join("abcdefghijklmnopqrstuvwxyz"[i * 7 % 26] for i in range(300))

SINGLES = [
    "",
    " ",
    "   ",
    "Hello world!",
    "Hello, world! How are you today?",
    "  leading spaces",
    "trailing spaces   ",
    "  both sides  ",
    "repeated     spaces   inside",
    "tab\tseparated\tvalues",
    "line one\nline two\r\nline three",
    "\n\nnewlines only\n\n",
    "control\x00chars\x01and\x07bell\x1b[0m",
    "soft\u00adhyphen and zero\u200bwidth\u200cnon\u200djoiner",
    "no\u00a0break\u2003em\u3000ideographic spaces",
    "Le cœur a ses raisons que la raison ne connaît point.",
    "Größenmaßstäbe für Übergänge",
    "¿Dónde está la biblioteca? ¡Aquí!",
    "Ciao, come stai? Perché no?",
    "Zażółć gęślą jaźń",
    "Příliš žluťoučký kůň úpěl ďábelské ódy",
    "Съешь же ещё этих мягких французских булок",
    "Κάθε άνθρωπος έχει δικαίωμα",
    "Բարև աշխարհ",
    "გამარჯობა მსოფლიო",
    "שלום עולם, מה שלומך?",
    "مرحبا بالعالم، كيف حالك؟",
    "سلام دنیا",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "হ্যালো বিশ্ব",
    "வணக்கம் உலகம்",
    "สวัสดีชาวโลก",
    "ສະບາຍດີ",
    "ជំរាបសួរ",
    "こんにちは世界、お元気ですか？",
    "ｶﾀｶﾅ ｈａｌｆ ａｎｄ ｆｕｌｌ ｗｉｄｔｈ ＡＢＣ１２３",
    "你好，世界！我们今天去哪里？",
    "안녕하세요 세계",
    "ሰላም ለዓለም",
    "Xin chào thế giới",
    "Tiếng Việt có dấu: ắ ằ ẳ ẵ ặ",
    "e\u0301te\u0301 combining acute (decomposed)",
    "été combining acute (precomposed)",
    "Z\u0351\u036b\u0343a\u0363\u0364l\u0350g\u036co",
    "ligatures ﬁ ﬂ ﬀ and ℌ ℍ ① ⅷ ㎏ ™",
    "emoji 😀👍🏽 and flags 🇫🇷🇯🇵",
    "family 👨\u200d👩\u200d👧\u200d👦 zwj sequence",
    "math ∑∫√∞ ≠ ≤ ≥ and arrows → ⇒",
    "numbers 1234567890 3.14159 1,000,000 ٣٤٥ ४५६",
    "URL https://example.com/path?q=1&r=2#frag and mail a.b@c.de",
    "code: fn main() { println!(\"hi\"); } // done",
    "ALL CAPS AND MiXeD CaSe",
    "punctuation!!! ??? ... --- ___ *** ###",
    "quotes “double” ‘single’ «guillemets» „low“",
    LONG_WORD,
    "x" * 40 + " " + "y" * 40,
    "<mask>",
    "The capital of France is <mask>.",
    "The capital of France is<mask>.",
    "Paris <mask> <mask> capital",
    "<mask><mask>",
    "  <mask>  ",
    "<s> literal special tokens </s> in text <pad> <unk>",
    "mixed 中文 and English and русский",
]

# Python treats an empty second text as no pair at all, so every pair here has a non-empty second.
PAIRS = [
    ["Hello world!", "Bonjour le monde !"],
    ["", "second only"],
    ["What is the capital of France?", "The capital of France is <mask>."],
    ["  spaced  question ", "\tanswer\n"],
    ["日本語の質問", "中文回答"],
    ["emoji 😀", "👍🏽 ok"],
]


def spm_model_summary():
    """What a correct protobuf reader must find in the model, read by the reference protobuf code."""
    from transformers.convert_slow_tokenizer import import_protobuf

    proto = import_protobuf().ModelProto()
    with open(MODEL_PATH, "rb") as f:
        proto.ParseFromString(f.read())
    type_names = {1: "Normal", 2: "Unknown", 3: "Control", 4: "UserDefined", 5: "Unused", 6: "Byte"}
    picked = [0, 1, 2, 3, 4, 100, len(proto.pieces) - 1]
    return {
        "piece_count": len(proto.pieces),
        "pieces": [
            {"index": i, "piece": proto.pieces[i].piece, "score": proto.pieces[i].score,
             "type": type_names[proto.pieces[i].type]}
            for i in picked
        ],
        "unk_id": proto.trainer_spec.unk_id,
        "bos_id": proto.trainer_spec.bos_id,
        "eos_id": proto.trainer_spec.eos_id,
        "pad_id": proto.trainer_spec.pad_id,
        "byte_fallback": proto.trainer_spec.byte_fallback,
        "normalizer_name": proto.normalizer_spec.name,
        "precompiled_charsmap_len": len(proto.normalizer_spec.precompiled_charsmap),
        "add_dummy_prefix": proto.normalizer_spec.add_dummy_prefix,
        "remove_extra_whitespaces": proto.normalizer_spec.remove_extra_whitespaces,
        "escape_whitespaces": proto.normalizer_spec.escape_whitespaces,
    }


def one_case_per_line(cases):
    """JSON with each case (and each summary entry) on its own line, for readable diffs."""
    def dump(value):
        return json.dumps(value, ensure_ascii=False)

    parts = []
    for key, value in cases.items():
        if isinstance(value, list):
            body = ",\n".join("  " + dump(item) for item in value)
            parts.append(f" {dump(key)}: [\n{body}\n ]")
        elif isinstance(value, dict):
            body = ",\n".join(f"  {dump(k)}: {dump(v)}" for k, v in value.items())
            parts.append(f" {dump(key)}: {{\n{body}\n }}")
        else:
            parts.append(f" {dump(key)}: {dump(value)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def make_cases():
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(MODEL_PATH, os.path.join(tmp, "sentencepiece.bpe.model"))
        tok = XLMRobertaTokenizer.from_pretrained(tmp)
        tok.save_pretrained(os.path.join(tmp, "saved"))
        with open(os.path.join(tmp, "saved", "tokenizer.json"), encoding="utf-8") as f:
            saved_json = json.load(f)

    summary = spm_model_summary()
    singles = [{"text": t, "ids": tok(t)["input_ids"]} for t in SINGLES]
    pairs = [{"text": a, "text_pair": b, "ids": tok(a, b)["input_ids"]} for a, b in PAIRS]
    cases = {
        "generated_by": f"tools/make_spm_cases.py with transformers {transformers.__version__}, "
        f"tokenizers {tokenizers.__version__}",
        "spm_model": summary,
        "singles": singles,
        "pairs": pairs,
    }
    with open(os.path.join(OUT_DIR, "cases.json"), "w", encoding="utf-8") as f:
        f.write(one_case_per_line(cases))
    with open(os.path.join(OUT_DIR, "transformers_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(saved_json, f, ensure_ascii=False, separators=(",", ":"))
    print(f"wrote {len(singles)} singles and {len(pairs)} pairs to {OUT_DIR}/cases.json")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    if "--retrain" in sys.argv or not os.path.exists(MODEL_PATH):
        train_model()
    make_cases()


if __name__ == "__main__":
    main()
