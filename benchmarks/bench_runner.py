"""Bench-runner overhead on real jobs: 16 TinyMem unlearning jobs (tinymem-micro base model, BalancedSubnet over a
16-point grid) run three ways in one run, side by side:

1. a plain loop: ``obliviate.jobs.specs.execute_unlearn`` called in this process (2 threads) -- no runner at all;
2. ``obliviate bench``'s process pool with 1 worker x 2 threads (the same jobs, the same thread count), fresh
   (pool startup included) -- the overhead of pickling specs/results, the worker and the store;
3. the pool with 2 workers x 1 thread each: the speed-up of running two jobs at once on 2 cores.

Target: (2) within 10% of (1). Every job's result is checked equal between (1) and (2) (same spec -> same bits).
Run it on an otherwise idle machine.

Usage: python benchmarks/bench_runner.py [--jobs 16] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from obliviate.jobs.executors import ProcessExecutor
from obliviate.jobs.specs import execute_train, execute_unlearn, train_spec, unlearn_spec
from obliviate.jobs.store import JobStore, job_key
from obliviate.presets import load_run_config


def payloads(run: Any, store: JobStore, threads: int, n_jobs: int) -> list[dict[str, Any]]:
    """The base model (trained once per thread count, stored) and ``n_jobs`` unlearning payloads on it."""
    spec = train_spec(run, 0, threads, "cpu")
    key = job_key(spec)
    if store.get(key) is None:
        out = execute_train({"spec": spec})
        store.put(key, spec, out["result"], out["files"])
    before = store.get(key)["before"]  # type: ignore[index]
    ratios = [0.05 * (i + 1) for i in range(n_jobs)]
    return [{"spec": unlearn_spec(run, 0, "balanced_subnet", {"ratio": r, "epochs": 10}, key, threads, "cpu"),
             "quiet": True, "model_dir": str(store.job_dir(key)), "before": before} for r in ratios]


def scores(results: dict[int, Any]) -> list[Any]:
    return [results[i]["result"]["model_hash"] for i in sorted(results)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()
    run = load_run_config("tinymem-micro")
    with tempfile.TemporaryDirectory() as tmp:
        store = JobStore(Path(tmp) / "jobs")
        p2, p1 = payloads(run, store, 2, args.jobs), payloads(run, store, 1, args.jobs)
        torch.set_num_threads(2)
        execute_unlearn(p2[0])  # warm-up: first-call costs in this process
        t0 = time.perf_counter()
        loop = {i: execute_unlearn(p) for i, p in enumerate(p2)}
        t_loop = time.perf_counter() - t0
        with ProcessExecutor(workers=1, threads_per_job=2) as ex:
            t0 = time.perf_counter()
            pool1 = dict(ex.map_unordered(execute_unlearn, p2))
            t_pool1 = time.perf_counter() - t0
            t0 = time.perf_counter()
            dict(ex.map_unordered(execute_unlearn, p2))  # the same pool again: startup excluded
            t_warm = time.perf_counter() - t0
        with ProcessExecutor(workers=2, threads_per_job=1) as ex:
            t0 = time.perf_counter()
            dict(ex.map_unordered(execute_unlearn, p1))
            t_pool2 = time.perf_counter() - t0
    same = scores(loop) == scores(pool1)
    out = {"jobs": args.jobs, "plain_loop_s": t_loop, "pool_1x2_s": t_pool1, "pool_1x2_warm_s": t_warm,
           "pool_2x1_s": t_pool2, "overhead_pool_1_worker": t_pool1 / t_loop - 1,
           "overhead_pool_1_worker_warm": t_warm / t_loop - 1, "speedup_2_workers": t_pool1 / t_pool2,
           "identical_results": same}
    print(f"{args.jobs} micro unlearning jobs (balanced_subnet, 10 epochs, eval before/after each)")
    print(f"  plain loop, 2 threads           {t_loop:7.2f} s  ({t_loop / args.jobs:.3f} s/job)")
    print(f"  process pool, 1 worker x 2 thr  {t_pool1:7.2f} s  overhead {100 * (t_pool1 / t_loop - 1):+.1f}% "
          f"(pool startup included); results identical: {same}")
    print(f"  the same pool again (warm)      {t_warm:7.2f} s  overhead {100 * (t_warm / t_loop - 1):+.1f}% "
          "(startup excluded)")
    print(f"  process pool, 2 workers x 1 thr {t_pool2:7.2f} s  speed-up {t_pool1 / t_pool2:.2f}x over 1 worker")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
