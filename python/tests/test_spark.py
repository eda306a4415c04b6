"""examples/spark_embed.py on a local Spark (local[2]): every vector equal to
`xlmr.Model.embed` on the same text. Needs pyspark and a Java runtime; skipped otherwise
(tools/test-python.sh installs pyspark only with XLMR_TEST_SPARK=1: it is a 300 MB download)."""

import importlib.util
import json
import os
import shutil
import sys

import numpy as np
import pytest

import xlmr
from conftest import ROOT

if shutil.which("java") is None:
    pytest.skip("no Java runtime here (apt-get install default-jre-headless); the Spark test is SKIPPED", allow_module_level=True)
pytest.importorskip("pyspark", reason="pyspark is not installed here (pip install pyspark); the Spark test is SKIPPED")


def load_example():
    spec = importlib.util.spec_from_file_location("spark_embed", os.path.join(ROOT, "examples", "spark_embed.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_spark_embed_equals_model_embed(tiny_q8, tmp_path, monkeypatch):
    from pyspark.sql import SparkSession

    # Spark's Python workers: this interpreter (with xlmr, pandas, pyarrow), not `python3`.
    monkeypatch.setenv("PYSPARK_PYTHON", sys.executable)

    texts = [f"Spark row {i}: " + "le fichier est verrouillé " * (i % 7 + 1) for i in range(60)]
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)), encoding="utf-8")
    spark = (
        SparkSession.builder.master("local[2]")
        .appName("xlmr-test")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    try:
        embed = load_example().make_embed_udf(tiny_q8, n_threads=1, batch_size=16)
        rows = spark.read.json(str(source)).withColumn("embedding", embed("text")).select("id", "embedding").collect()
    finally:
        spark.stop()
    rows = sorted(rows, key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(len(texts)))
    got = np.array([r["embedding"] for r in rows], dtype=np.float32)
    np.testing.assert_allclose(got, xlmr.Model(tiny_q8).embed(texts, truncate=True), rtol=1e-6, atol=1e-6)
