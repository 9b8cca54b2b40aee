"""``obliviate bench``: every configured method over its selection grid and every seed, as jobs on an executor.

Phase 1 trains (or finds in the store) one base model per seed; phase 2 runs every (seed, method, grid point).
Finished jobs are stored under their spec's content hash as they complete, so a rerun after a crash or kill -9 skips
them and ends with the same results as an uninterrupted run. Selection (per seed, by the suite's score) and
aggregation over seeds happen after, from stored records only.
"""

from __future__ import annotations

import datetime as _dt
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError
from obliviate.jobs.aggregate import attach_study, method_entry, summary
from obliviate.jobs.specs import execute_train, execute_unlearn, train_spec, unlearn_spec
from obliviate.runconfig import resolve_device

Say = Callable[[str], None]


def study_header(run: Any, seeds: tuple[int, ...], command: str) -> dict[str, Any]:
    """Provenance and what the report needs to know about the suite's numbers."""
    from obliviate.io import git_dirty, git_sha, hash_json, package_versions

    suite = run.suite_obj
    resolved = run.to_dict()
    return {
        "format": "obliviate-results/2",
        "command": command,
        "suite": run.suite,
        "suite_version": suite.VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": run.seed,
        "seeds": list(seeds),
        "config": resolved,
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "versions": package_versions(),
        "hashes": {"config": hash_json(resolved)},
        "description": suite.describe(run.suite_config, None),
        "columns": [c.to_dict() for c in suite.columns(run.suite_config)],
        "axes": suite.axes(),
        "groups": suite.groups(run.suite_config),
        "score": {"name": "selection score", "rule": suite.score_rule, "higher_is_better": False},
    }


def method_names(run: Any) -> list[str]:
    return list(dict.fromkeys([*run.methods, *run.selection]))


def check_out_dir(out: Path, run: Any, overwrite: bool, resume: bool) -> None:
    """Refuse to mix studies: another suite or VERSION in ``out``, or finished results without --resume/--overwrite."""
    from obliviate.io import read_json

    if overwrite and resume:
        raise ObliviateError("--overwrite (start fresh) and --resume (reuse finished jobs) exclude each other")
    res = out / "results.json"
    if not res.exists() or overwrite:
        return
    old = read_json(res)
    version = (old.get("suite"), old.get("suite_version"))
    if version != (run.suite, run.suite_obj.VERSION):
        raise ObliviateError(f"{str(out)!r} holds results of {version[0]} v{version[1]}, not {run.suite} "
                             f"v{run.suite_obj.VERSION}: choose another --out, or --overwrite to discard them")
    if not resume:
        raise ObliviateError(f"{str(res)!r} already exists; pass --resume to reuse its finished jobs (e.g. to add "
                             "seeds or methods), --overwrite to start fresh, or choose another --out")


def run_bench(run: Any, seeds: tuple[int, ...], out: Path, executor: Any, overwrite: bool = False,
              resume: bool = False, say: Say = lambda s: None) -> dict[str, Any]:
    """Run (or finish) the study and write ``results.json`` + reports into ``out``. Returns the results."""
    from obliviate.io import ensure_writable_dir, write_json
    from obliviate.jobs.store import JobStore, job_key
    from obliviate.report.write import write_bench_report

    out = ensure_writable_dir(out)
    check_out_dir(out, run, overwrite, resume)
    if overwrite:
        shutil.rmtree(out / "jobs", ignore_errors=True)
    store = JobStore(out / "jobs")
    device = str(resolve_device(run.device))
    threads = executor.threads_per_job
    header = study_header(run, seeds, "bench")
    header["executor"] = {"name": executor.name, "workers": executor.workers, "threads_per_job": threads}

    # phase 1: one base model per seed; with fewer seeds than local workers, the idle workers' cores go to training
    train_threads = threads * max(1, executor.workers // len(seeds)) if executor.name == "process" else threads
    header["executor"]["train_threads"] = train_threads
    tspecs = {s: train_spec(run, s, train_threads, device) for s in seeds}
    tkeys = {s: job_key(spec) for s, spec in tspecs.items()}
    quiet = executor.name != "inline"
    _run_jobs(store, executor, execute_train,
              [(tkeys[s], f"seed {s}", {"spec": tspecs[s], "quiet": quiet}) for s in seeds], "train", say,
              train_threads)
    base = {s: store.get(tkeys[s]) for s in seeds}

    # phase 2: every method x grid point x seed
    methods = method_names(run)
    trials: list[tuple[int, str, dict[str, Any], str, dict[str, Any]]] = []
    for s in seeds:
        for m in methods:
            for params in run.points(m):
                spec = unlearn_spec(run, s, m, params, tkeys[s], threads, device)
                trials.append((s, m, params, job_key(spec), spec))
    model_dirs = {s: str(store.job_dir(tkeys[s])) for s in seeds}
    jobs = [(key, f"seed {s} {m} {_point(run, m, params) or ''}".rstrip(),
             {"spec": spec, "quiet": quiet, "model_dir": model_dirs[s], "before": base[s]["before"]})  # type: ignore[index]
            for s, m, params, key, spec in trials]
    _run_jobs(store, executor, execute_unlearn, jobs, "unlearn", say)

    per_seed: dict[str, Any] = {}
    for s in seeds:
        b = base[s]
        assert b is not None  # phase 1 stored it
        entry: dict[str, Any] = {"before": b["before"], "train": {**b["train"], "job": tkeys[s]},
                                 "data_hash": b["data_hash"], "model_hash": b["model_hash"], "methods": {}}
        for m in methods:
            recs = []
            for s2, m2, params, key, _ in trials:
                if (s2, m2) == (s, m):
                    rec = store.get(key)
                    assert rec is not None  # phase 2 stored it
                    recs.append({**rec, "point": _point(run, m, params), "job": key})
            entry["methods"][m] = method_entry(recs)
        per_seed[str(s)] = entry
    results = {**header, "per_seed": per_seed,
               "summary": summary(per_seed, [c["key"] for c in header["columns"]], methods)}
    attach_study(results, run.suite_obj)
    write_json(out / "results.json", results)
    write_bench_report(results, out)
    return results


def _point(run: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """The grid coordinates of ``params`` (what the selection varied), for tables."""
    keys = list(run.selection.get(method, {}))
    return {k: params[k] for k in keys}


def _run_jobs(store: Any, executor: Any, fn: Any, jobs: list[tuple[str, str, dict[str, Any]]], what: str,
              say: Say, threads: int | None = None) -> None:
    """Run the jobs whose key is not in the store yet; store each result as it arrives (so a kill loses only
    the jobs in flight). ``jobs``: (key, label for progress lines, payload with the spec)."""
    todo = [job for job in jobs if store.get(job[0]) is None]
    todo = list({job[0]: job for job in todo}.values())  # a key runs once
    done = len(jobs) - len(todo)
    if done:
        say(f"{what}: {done} of {len(jobs)} job(s) already finished (reused from the store)")
    if not todo:
        return
    say(f"{what}: running {len(todo)} job(s) on {executor.name} ({executor.workers} worker(s), "
        f"{threads or executor.threads_per_job} thread(s) each)")
    for n, (i, out) in enumerate(executor.map_unordered(fn, [p for _, _, p in todo]), 1):
        key, label, payload = todo[i]
        store.put(key, payload["spec"], out["result"], out.get("files") or None)
        cost = out["result"]["cost"]
        wall = cost["wall_s"] if "wall_s" in cost else sum(c.get("wall_s", 0.0) for c in cost.values())
        say(f"  [{n}/{len(todo)}] {what} {label} done ({wall:.1f}s)")
