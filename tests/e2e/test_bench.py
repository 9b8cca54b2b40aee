"""`obliviate bench` end to end on tinymem-micro: 2 seeds x 2 grid points, through the process pool and Ray (same
results), kill -9 and rerun (same results), corrupt job files (rerun, never read), the Python API, bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.cli import main
from obliviate.jobs.aggregate import comparable

STUDY = ["tinymem", "--preset", "tinymem-micro", "--seeds", "0,1", "--method", "balanced_subnet",
         "--set", "train.epochs=6", "--set", "methods.balanced_subnet.epochs=3",
         "--set", "selection.balanced_subnet.ratio=[0.25,0.5]", "--quiet"]


def _bench(out: Path, *extra: str) -> int:
    return main(["bench", *STUDY, "--out", str(out), *extra])


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


@pytest.fixture(scope="module")
def pool_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("pool")
    assert _bench(out, "--executor", "process", "--workers", "2") == 0
    return out


def test_bench_writes_results_reports_and_selects_per_seed(pool_run):
    res = _results(pool_run)
    assert res["seeds"] == [0, 1] and res["executor"]["threads_per_job"] == 1
    for s in ("0", "1"):
        m = res["per_seed"][s]["methods"]["balanced_subnet"]
        assert [t["point"] for t in m["trials"]] == [{"ratio": 0.25}, {"ratio": 0.5}]
        best = min(m["trials"], key=lambda t: t["score"])
        assert m["selected"] == best["point"] and sum(t["selected"] for t in m["trials"]) == 1
        assert m["params"]["seed"] == int(s)
    # the seeds really differ: own data (artifacts) and own models
    assert res["per_seed"]["0"]["data_hash"] != res["per_seed"]["1"]["data_hash"]
    summ = res["summary"]["methods"]["balanced_subnet"]["percent_memorized"]
    vals = [res["per_seed"][s]["methods"]["balanced_subnet"]["scalars"]["percent_memorized"] for s in ("0", "1")]
    assert summ["values"] == vals and summ["mean"] == pytest.approx(sum(vals) / 2)
    for f in ("report.md", "report.html", "figures/tradeoff.png", "figures/groups.png", "figures/curves.png",
              "figures/cost.png"):
        assert (pool_run / f).is_file(), f


def test_ray_executor_gives_the_same_results(pool_run, tmp_path):
    try:
        import ray  # noqa: F401
    except ImportError as exc:  # pragma: no cover - ray ships with the dev extras
        pytest.skip(f"ray cannot be imported here: {exc}")
    rc = _bench(tmp_path, "--executor", "ray", "--workers", "2")
    if rc != 0:  # pragma: no cover
        pytest.skip("ray could not start a local instance here (see the error above)")
    assert comparable(_results(tmp_path)) == comparable(_results(pool_run))
    assert _results(tmp_path)["executor"]["name"] == "ray"


def test_kill_9_then_rerun_ends_with_the_same_results(pool_run, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-c", "import sys; from obliviate.cli import main; sys.exit(main(sys.argv[1:]))",
           "bench", *STUDY, "--out", str(out), "--executor", "process", "--workers", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline and proc.poll() is None:
            done = list((out / "jobs").glob("*/*/DONE")) if (out / "jobs").is_dir() else []
            if len(done) >= 3:  # both base models and at least one unlearning job finished
                break
            time.sleep(0.2)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and its workers, mid-run
        proc.wait()
    assert not (out / "results.json").exists(), "the run must be killed before it finished"
    assert _bench(out, "--executor", "process", "--workers", "2") == 0
    assert comparable(_results(out)) == comparable(_results(pool_run))


def test_corrupt_job_files_are_rerun_not_read(pool_run, tmp_path, capsys):
    import shutil

    out = tmp_path / "copy"
    shutil.copytree(pool_run, out)
    # two unlearn jobs (job directories are named by content hashes, so pick them by kind, not by position)
    results = [r for r in sorted((out / "jobs").glob("*/*/result.json"))
               if json.loads((r.parent / "spec.json").read_text())["kind"] == "unlearn"]
    results[0].write_text(results[0].read_text()[:-20])  # truncated
    (results[1].parent / "DONE").unlink()  # partial: no manifest
    assert _bench(out, "--executor", "process", "--workers", "2", "--resume") == 0
    assert comparable(_results(out)) == comparable(_results(pool_run))
    assert "4 of 4 job(s)" not in capsys.readouterr().err


def test_python_api_is_as_short_as_the_cli(pool_run, tmp_path):
    import shutil

    import obliviate

    shutil.copytree(pool_run / "jobs", tmp_path / "jobs")  # the same study: every job is found in the store
    res = obliviate.bench("tinymem", preset="tinymem-micro", seeds=[0, 1], methods=["balanced_subnet"],
                          overrides=["train.epochs=6", "methods.balanced_subnet.epochs=3",
                                     "selection.balanced_subnet.ratio=[0.25,0.5]"],
                          out=tmp_path, executor="process", workers=2)
    assert comparable(res) == comparable(_results(pool_run))
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == res["summary"]


@pytest.mark.parametrize("extra,needle", [
    (["--seeds", ""], "seed list is empty"),
    (["--seeds", "0,1,0"], "appear more than once"),
    (["--seeds", "a,b"], "integers separated by commas"),
    (["--executor", "slurm"], "unknown executor 'slurm'"),
    (["--workers", "0"], "workers"),
])
def test_bad_bench_input_is_one_line_exit_2(extra, needle, tmp_path, capsys):
    argv = ["bench", "tinymem", "--preset", "tinymem-micro", "--out", str(tmp_path / "o"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "results.json").exists()


def test_unknown_suite(tmp_path, capsys):
    assert main(["bench", "tinymen", "--out", str(tmp_path)]) == 2
    assert "unknown suite 'tinymen'; did you mean 'tinymem'" in capsys.readouterr().err


def test_results_of_another_suite_version_are_never_touched(tmp_path, capsys):
    old = {"format": "obliviate-results/2", "suite": "tinymem", "suite_version": "0.9", "per_seed": {}}
    (tmp_path / "results.json").write_text(json.dumps(old))
    before = (tmp_path / "results.json").read_bytes()
    assert main(["bench", "tinymem", "--preset", "tinymem-micro", "--out", str(tmp_path)]) == 2
    assert "holds results of tinymem v0.9" in capsys.readouterr().err
    assert (tmp_path / "results.json").read_bytes() == before and not (tmp_path / "jobs").exists()


def test_finished_results_need_resume_or_overwrite(pool_run, capsys):
    before = (pool_run / "results.json").read_bytes()
    assert _bench(pool_run) == 2
    assert "--resume" in capsys.readouterr().err
    assert (pool_run / "results.json").read_bytes() == before


def test_ray_not_installed_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    assert main(["bench", "tinymem", "--preset", "tinymem-micro", "--executor", "ray", "--out", str(tmp_path)]) == 2
    assert "pip install 'obliviate[ray]'" in capsys.readouterr().err


def test_a_method_of_another_family_is_refused(monkeypatch, tmp_path, capsys):
    from obliviate.methods import METHODS
    from obliviate.methods.lm.grad_ascent import GradAscent

    class ImageMethod(GradAscent):
        family = "classifier"

    monkeypatch.setitem(METHODS._items, "image_method", ImageMethod)
    assert main(["bench", "tinymem", "--preset", "tinymem-micro", "--set", "methods.image_method={}",
                 "--out", str(tmp_path)]) == 2
    assert "'image_method' is for the classifier family; this suite takes lm methods" in capsys.readouterr().err
