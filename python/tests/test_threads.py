"""Calls release the GIL, and a model closed or dropped by one thread while another computes
with it does not crash: the computing call holds its own reference to the native model."""

import gc
import threading
import time

import numpy as np
import pytest

import xlmr

# Enough work that one call takes a while on the tiny model (long inputs, many of them).
WORK = [f"sentence number {i} " + "with quite a few words in it " * 25 for i in range(96)]


def test_gil_is_released_during_compute(tiny_q8):
    """While one thread embeds, the main thread keeps running Python code. With the GIL
    held for the whole call the main thread would get at most a few switch intervals."""
    m = xlmr.Model(tiny_q8, n_threads=1)
    started = time.perf_counter()
    m.embed(WORK)
    alone = time.perf_counter() - started
    assert alone > 0.05, f"the workload is too small to show anything ({alone:.3f} s)"

    done = threading.Event()
    worker = threading.Thread(target=lambda: (m.embed(WORK), done.set()))
    ticks = 0
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0.001)
    worker.join()
    # ~1 tick per ms of the call when the GIL is free; a held GIL allows a handful at most.
    assert ticks > 20, f"main thread ran only {ticks} times during a {alone:.2f} s call: the GIL was held"


def test_threads_share_one_model(tiny_q8):
    m = xlmr.Model(tiny_q8, n_threads=2)
    want = m.embed(WORK[:16])
    results = [None] * 4
    errors = []

    def work(k):
        try:
            results[k] = m.embed(WORK[:16], batch_size=4 if k % 2 else 8)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for r in results:
        np.testing.assert_allclose(r, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("how", ["close", "del"])
def test_model_freed_while_another_thread_uses_it(tiny_q8, how):
    box = {"model": xlmr.Model(tiny_q8, n_threads=1)}
    want = box["model"].embed(WORK[:32])
    native = box["model"]._native
    got = {}
    entered = threading.Event()

    def work():
        model = box["model"]
        entered.set()
        got["vectors"] = model.embed(WORK[:32])

    t = threading.Thread(target=work)
    t.start()
    entered.wait()
    time.sleep(0.01)  # let the call get into the native code
    if how == "close":
        box["model"].close()
    else:
        del box["model"]
        gc.collect()
    t.join()
    np.testing.assert_allclose(got["vectors"], want, rtol=1e-6, atol=1e-6)
    if how == "close":
        with pytest.raises(ValueError, match="closed"):
            native.embed(["x"], "mean", False, False, 8)
