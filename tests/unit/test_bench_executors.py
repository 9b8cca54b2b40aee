"""Bench executors: inline, process pool and Ray give the same results under one contract."""

from __future__ import annotations

import re

import pytest

from obliviate.errors import ObliviateError
from obliviate.jobs import _selftest as jobs
from obliviate.jobs.executors import (
    Executor,
    InlineExecutor,
    JobFailed,
    ProcessExecutor,
    RayExecutor,
    make_executor,
)

ITEMS = list(range(6))
EXPECTED = {i: {"x": i, "y": i * i + 1} for i in ITEMS}


def _collect(executor: Executor, fn=jobs.square_plus, items=ITEMS) -> dict:
    out = {}
    for i, value in executor.map_unordered(fn, items):
        assert i not in out, f"index {i} yielded twice"
        out[i] = value
    return out


@pytest.fixture(scope="module")
def process_pool():
    """One 2-worker pool for the module: workers start (and import torch) once."""
    with ProcessExecutor(workers=2, threads_per_job=1) as ex:
        yield ex


def test_inline_results_and_error():
    with InlineExecutor() as ex:
        assert isinstance(ex, Executor) and ex.workers == 1
        assert _collect(ex) == EXPECTED
        with pytest.raises(JobFailed, match="job 3 failed: ValueError: bad item 3") as info:
            _collect(ex, jobs.fail_on_three)
        assert info.value.index == 3 and isinstance(info.value.__cause__, ValueError)


def test_process_results_every_index_once_and_reuse(process_pool):
    assert isinstance(process_pool, Executor)
    assert _collect(process_pool) == EXPECTED
    assert _collect(process_pool, items=list(range(20))) == {i: jobs.square_plus(i) for i in range(20)}  # reused
    assert _collect(process_pool, items=[]) == {}


def test_process_error_propagates_and_pool_survives(process_pool):
    with pytest.raises(JobFailed, match="job 3 failed: ValueError: bad item 3") as info:
        _collect(process_pool, jobs.fail_on_three)
    assert isinstance(info.value.__cause__, ValueError)
    assert _collect(process_pool) == EXPECTED


def test_process_workers_use_threads_per_job(process_pool):
    seen = [v for _, v in process_pool.map_unordered(jobs.worker_threads, range(4))]
    assert {(v["torch"], v["omp"]) for v in seen} == {(1, "1")}
    with ProcessExecutor(workers=1, threads_per_job=2) as ex:
        (_, v), = ex.map_unordered(jobs.worker_threads, [0])
        assert (v["torch"], v["omp"]) == (2, "2")


def test_thread_defaults_do_not_oversubscribe(monkeypatch):
    from obliviate.jobs import executors

    monkeypatch.setattr(executors, "available_cpus", lambda: 8)
    assert [ProcessExecutor(w).threads_per_job for w in (1, 2, 3, 8, 16)] == [8, 4, 2, 1, 1]
    assert ProcessExecutor(3, threads_per_job=5).threads_per_job == 5
    assert InlineExecutor().threads_per_job == 8
    for bad in (0, -2, 1.5):
        with pytest.raises(ObliviateError, match=re.escape(f"got {bad!r}")):
            ProcessExecutor(2, threads_per_job=bad)


def test_make_executor_and_errors():
    ex = make_executor("inline")
    assert isinstance(ex, InlineExecutor)
    pe = make_executor("process", workers=2, threads_per_job=1)
    assert (pe.name, pe.workers, pe.threads_per_job) == ("process", 2, 1)
    pe.close()  # never started: nothing to shut down
    with pytest.raises(ObliviateError, match=r"unknown executor 'proces'; did you mean 'process'"):
        make_executor("proces")
    with pytest.raises(ObliviateError, match="workers must be an integer >= 1, got 0"):
        make_executor("process", workers=0)
    with pytest.raises(ObliviateError, match="threads_per_job must be an integer >= 1, got -1"):
        make_executor("process", threads_per_job=-1)
    with pytest.raises(ObliviateError, match="only applies to the ray executor"):
        make_executor("process", address="ray://head:10001")
    with pytest.raises(ObliviateError, match="workers=2"):
        make_executor("inline", workers=2)


def test_ray_matches_inline():
    try:
        import ray
    except ImportError as exc:
        pytest.skip(f"ray cannot be imported here: {exc}")
    try:
        ex = RayExecutor(workers=2, threads_per_job=1, num_cpus=2)
    except Exception as exc:  # noqa: BLE001 -- any start-up failure (sandbox, ports, shm) means: cannot test here
        pytest.skip(f"ray cannot start here: {exc}")
    with ex:
        assert (ex.name, ex.workers, ex.threads_per_job) == ("ray", 2, 1)
        assert _collect(ex) == _collect(InlineExecutor()) == EXPECTED
        with pytest.raises(JobFailed, match="job 3 failed: ValueError") as info:
            _collect(ex, jobs.fail_on_three)
        assert isinstance(info.value.__cause__, ValueError)
        (_, seen), = ex.map_unordered(jobs.worker_threads, [0])
        assert seen["torch"] == 1
    assert not ray.is_initialized()  # it started the local instance, so close() shut it down


def test_window_cancels_what_has_not_started():
    """At most ``window`` jobs in flight; a failure (or the caller stopping) cancels them, later ones never start."""
    from obliviate.jobs.executors import _windowed

    submitted, cancelled = [], []

    def submit(item):
        submitted.append(item)
        return item

    def result(item):
        if item == 3:
            raise KeyError(item)
        return item * 10

    def run(items, window):
        return _windowed(submit, lambda hs: hs[:1], result, cancelled.extend, items, window)

    with pytest.raises(JobFailed, match="job 3 failed: KeyError") as info:
        list(run(range(10), 2))
    assert submitted == [0, 1, 2, 3, 4] and cancelled == [4] and info.value.index == 3
    submitted.clear(), cancelled.clear()
    gen = run(range(10), 3)
    assert next(gen) == (0, 0)
    gen.close()
    assert submitted == [0, 1, 2] and cancelled == [1, 2]
