"""examples/ray_embed.py on a local Ray (2 CPUs, loopback only): a few hundred generated texts
embedded by 2 actors, every vector equal to `xlmr.Model.embed` on the same text."""

import faulthandler
import importlib.util
import json
import os
import random
import sys

import numpy as np
import pytest

import xlmr
from conftest import ROOT

ray = pytest.importorskip("ray", reason="Ray is not installed here (pip install 'ray[data]' pyarrow); the Ray test is SKIPPED")
pytest.importorskip("ray.data", reason="Ray Data is not installed here (pip install 'ray[data]'); the Ray test is SKIPPED")
pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is not installed here; the Ray test is SKIPPED")


def load_example():
    spec = importlib.util.spec_from_file_location("ray_embed", os.path.join(ROOT, "examples", "ray_embed.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["ray_embed"] = module
    spec.loader.exec_module(module)
    # The actors cannot import examples/: send the example's code with the tasks.
    ray.cloudpickle.register_pickle_by_value(module)
    return module


def generated_texts(n):
    rng = random.Random(13)
    words = ["file", "Datei", "fichier", "文件", "файл", "open", "öffnen", "ouvrir", "打开", "открыть", "the", "cannot", "because", "locked"]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(1, 40))) + f" #{i}" for i in range(n)]


@pytest.fixture(scope="module")
def local_ray():
    # A stalled Ray job must fail CI, not hang it: dump the stacks and exit after 5 minutes.
    faulthandler.dump_traceback_later(300, exit=True)
    # Ray starts workers at niceness 15; on a busy CI machine that starves the actors.
    os.environ.setdefault("RAY_worker_niceness", "0")
    ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()
    faulthandler.cancel_dump_traceback_later()


def test_ray_embed_equals_model_embed(local_ray, tiny_q8, tmp_path):
    example = load_example()
    texts = generated_texts(300)
    source = tmp_path / "texts.jsonl"
    source.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in enumerate(texts)), encoding="utf-8")

    # Half a CPU per actor: Ray's read and write tasks get the rest of the 2.
    # With the packed-weights cache: the two actors start together, both may pack and write
    # it (each renames a whole file into place), and both must compute the same vectors.
    cache = tmp_path / "pack-cache"
    ds = example.embed_dataset(
        example.read_texts(str(source)), tiny_q8, workers=2, threads_per_worker=1, cpus_per_worker=0.5, rows_per_batch=32, pack_cache=str(cache)
    )
    ds.write_parquet(str(tmp_path / "out"))

    table = pq.read_table(str(tmp_path / "out"))
    assert table.num_rows == len(texts)
    ids = table.column("id").to_pylist()
    assert sorted(ids) == list(range(len(texts)))
    assert table.column("text").to_pylist() == [texts[i] for i in ids]
    got = np.array(table.column("embedding").to_pylist(), dtype=np.float32)
    want = xlmr.Model(tiny_q8).embed([texts[i] for i in ids], truncate=True)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert [p.suffix for p in cache.iterdir()] == [".xlmrpack"], "one cache file, no temporary left"
