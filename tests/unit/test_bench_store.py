"""The bench job store: canonical keys, verified atomic jobs, crash leftovers, first writer wins, umask."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from obliviate.errors import ObliviateError
from obliviate.jobs.store import MANIFEST, JobStore, job_key

SPEC = {"suite": "tinymem", "seed": 0, "params": {"lr": 0.001, "steps": [1, 2]}, "device": "cpu"}


def test_key_is_stable_and_order_independent():
    reordered = {"device": "cpu", "params": {"steps": [1, 2], "lr": 0.001}, "seed": 0, "suite": "tinymem"}
    assert job_key(SPEC) == job_key(reordered) == job_key(json.loads(json.dumps(SPEC)))
    assert len(job_key(SPEC)) == 64 and job_key(SPEC) == job_key(dict(SPEC))
    # pinned: the canonical form must not drift between versions, or every stored job would be recomputed
    assert job_key({"a": 1, "b": [1.5, "x", None, True]}) == (
        "19382923a583ec2cc1069a29913e5695ea02f5991790b1b9feec0158962c8a5d")


@pytest.mark.parametrize("change", [
    {"seed": 1}, {"suite": "other"}, {"params": {"lr": 0.002, "steps": [1, 2]}},
    {"params": {"lr": 0.001, "steps": [2, 1]}}, {"params": {"lr": 0.001, "steps": [1, 2], "x": None}},
    {"device": "cuda"},
])
def test_key_changes_with_any_value(change):
    assert job_key({**SPEC, **change}) != job_key(SPEC)


@pytest.mark.parametrize("bad, where", [
    ({"a": float("nan")}, "spec['a']"), ({"a": {"b": [1, float("inf")]}}, "spec['a']['b'][1]"),
    ({"a": {1: 2}}, "spec['a']"), ({"a": {1, 2}}, "spec['a']"), ({"p": Path("x")}, "spec['p']"),
])
def test_key_rejects_non_json(bad, where):
    with pytest.raises(ObliviateError, match=re.escape(where)):
        job_key(bad)


def test_round_trip_with_extra_file(tmp_path):
    store = JobStore(tmp_path / "jobs")
    key = job_key(SPEC)
    assert store.get(key) is None and store.keys() == []
    result = {"loss": 0.5, "nan": float("nan"), "nested": {"a": [1, 2]}}
    assert store.put(key, SPEC, result, {"model.safetensors": b"\x00weights" * 100}) is True
    got = store.get(key)
    assert got["loss"] == 0.5 and got["nested"] == {"a": [1, 2]} and math.isnan(got["nan"])
    assert store.file_path(key, "model.safetensors").read_bytes() == b"\x00weights" * 100
    assert store.keys() == [key]
    assert store.job_dir(key) == tmp_path / "jobs" / key[:2] / key
    assert json.loads((store.job_dir(key) / "spec.json").read_text()) == SPEC
    with pytest.raises(ObliviateError, match="no file 'nope'"):
        store.file_path(key, "nope")
    again = JobStore(tmp_path / "jobs").get(key)  # reopened: the same result, NaN included
    assert math.isnan(again.pop("nan")) and again == {k: v for k, v in got.items() if k != "nan"}


def test_put_checks_key_and_names(tmp_path):
    store = JobStore(tmp_path)
    with pytest.raises(ObliviateError, match="is not job_key"):
        store.put(job_key({"other": 1}), SPEC, {})
    for name in ("../x", ".hidden", "DONE", "result.json"):
        with pytest.raises(ObliviateError, match=re.escape(repr(name))):
            store.put(job_key(SPEC), SPEC, {}, {name: b""})
    assert store.keys() == [] and not list(tmp_path.glob(".tmp-*"))


def _stored(tmp_path: Path) -> tuple[JobStore, str, Path]:
    store = JobStore(tmp_path)
    key = job_key(SPEC)
    store.put(key, SPEC, {"v": 1}, {"model.bin": b"w" * 1000})
    return store, key, store.job_dir(key)


@pytest.mark.parametrize("damage", ["no_manifest", "truncated_result", "edited_extra", "garbage_manifest",
                                    "manifest_other_key", "missing_extra"])
def test_broken_job_is_not_done_and_removed(tmp_path, damage):
    store, key, d = _stored(tmp_path)
    if damage == "no_manifest":
        (d / MANIFEST).unlink()
    elif damage == "truncated_result":
        (d / "result.json").write_bytes((d / "result.json").read_bytes()[:3])
    elif damage == "edited_extra":
        (d / "model.bin").write_bytes(b"x" + b"w" * 999)
    elif damage == "garbage_manifest":
        (d / MANIFEST).write_bytes(b"\x00{not json")
    elif damage == "manifest_other_key":
        m = json.loads((d / MANIFEST).read_text())
        (d / MANIFEST).write_text(json.dumps({**m, "key": "0" * 64}))
    else:
        (d / "model.bin").unlink()
    assert store.get(key) is None
    assert not d.exists() and not list(tmp_path.glob(".tmp-*"))
    assert store.put(key, SPEC, {"v": 2}) is True and store.get(key) == {"v": 2}  # the key is free again


def test_partial_dir_without_manifest(tmp_path):
    store = JobStore(tmp_path)
    key = job_key(SPEC)
    store.job_dir(key).mkdir(parents=True)
    (store.job_dir(key) / "result.json").write_text('{"v": 1}')
    assert store.keys() == [] and not store.job_dir(key).exists()
    with pytest.raises(ObliviateError, match="not in the store"):
        store.file_path(key, "result.json")


def test_leftover_temp_dirs_removed_on_open(tmp_path):
    JobStore(tmp_path)
    left = tmp_path / f".tmp-{'a' * 64}-deadbeef"
    left.mkdir()
    (left / "result.json").write_text("{")
    JobStore(tmp_path)
    assert not left.exists()


def test_live_writers_temp_dir_survives_cleanup(tmp_path):
    import fcntl

    store = JobStore(tmp_path)
    live = tmp_path / ".tmp-live"
    live.mkdir()
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)  # what put() holds while it writes
    try:
        assert store.cleanup_temp() == 0 and live.exists()
    finally:
        os.close(fd)
    assert store.cleanup_temp() == 1 and not live.exists()


def test_first_writer_wins(tmp_path):
    store = JobStore(tmp_path)
    key = job_key(SPEC)
    assert store.put(key, SPEC, {"writer": 1}, {"f": b"one"}) is True
    assert JobStore(tmp_path).put(key, SPEC, {"writer": 2}, {"f": b"two"}) is False
    assert store.get(key) == {"writer": 1} and store.file_path(key, "f").read_bytes() == b"one"
    assert not list(tmp_path.glob(".tmp-*"))


def test_rename_race_keeps_a_complete_job_and_replaces_a_broken_one(tmp_path):
    """The step after both writers built their temp dir: whoever renames second finds the job dir taken."""
    from obliviate.jobs.store import _fill

    store = JobStore(tmp_path)
    key = job_key(SPEC)

    def late_writer(value: int) -> bool:
        tmp, lock = store._new_temp(key)
        try:
            _fill(tmp, key, {"result.json": json.dumps({"writer": value}).encode()})
            return store._publish(tmp, key)
        finally:
            os.close(lock)
            shutil.rmtree(tmp, ignore_errors=True)  # as put() does: the loser's temp dir goes

    assert store.put(key, SPEC, {"writer": 1}) is True
    assert late_writer(2) is False and store.get(key) == {"writer": 1}
    (store.job_dir(key) / MANIFEST).unlink()  # the existing dir is broken: the late writer replaces it
    assert late_writer(3) is True and store.get(key) == {"writer": 3}
    assert not list(tmp_path.glob(".tmp-*"))


def test_modes_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        store = JobStore(tmp_path / "jobs")
        key = job_key(SPEC)
        store.put(key, SPEC, {"v": 1}, {"model.bin": b"w"})
    finally:
        os.umask(old)
    d = store.job_dir(key)
    for f in d.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o644, f
    for p in (d, d.parent):
        assert stat.S_IMODE(p.stat().st_mode) == 0o755, p


_WRITER = textwrap.dedent("""
    import sys
    from obliviate.jobs.store import JobStore, job_key
    store = JobStore(sys.argv[1])
    for i in range(10_000):
        spec = {"i": i}
        blob = bytes([i % 251]) * (4 << 20)
        store.put(job_key(spec), spec, {"i": i, "n": len(blob)}, {"blob.bin": blob})
        print(i, flush=True)
""")


def _stop_inside_put(proc: subprocess.Popen, root: Path) -> list[Path]:
    """SIGSTOP the writer at a moment its temp dir exists (so the kill lands mid-put); the temp dirs then."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if list(root.glob(".tmp-*")):
            proc.send_signal(signal.SIGSTOP)
            tmps = list(root.glob(".tmp-*"))
            if tmps:
                return tmps
            proc.send_signal(signal.SIGCONT)
    raise AssertionError("never caught the writer inside put()")


def test_kill9_mid_put_leaves_only_intact_jobs(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        for _ in range(3):  # let it finish a few jobs first
            assert proc.stdout.readline(), "writer died early"
        leftovers = _stop_inside_put(proc, tmp_path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert all(p.exists() for p in leftovers)  # the kill left a half-written job behind
    store = JobStore(tmp_path)
    assert not list(tmp_path.glob(".tmp-*"))
    keys = store.keys()
    assert len(keys) >= 3
    for key in keys:
        res = store.get(key)
        blob = store.file_path(key, "blob.bin").read_bytes()
        assert key == job_key({"i": res["i"]}) and blob == bytes([res["i"] % 251]) * res["n"]
