"""Executor overhead benchmark: InlineExecutor vs ProcessExecutor, and 2 workers x 1 thread vs 1 worker x 2 threads.

All numbers come from one run, side by side, on the same 16 CPU-bound jobs (fp32 matmuls, ~0.5 s each with 2
threads; ``obliviate.jobs._selftest.matmul_work``):

1. inline, 2 threads -- the baseline (no pickling, no processes);
2. ProcessExecutor(workers=1, threads_per_job=2): a fresh pool (startup included: forkserver, worker import of
   torch) and then the same pool again (startup excluded). Per-job overhead = (process - inline) / jobs;
3. ProcessExecutor(workers=2, threads_per_job=1), fresh and warm: the speed-up over (2) is what running two jobs
   at once on 1 thread each gains over one job at a time on 2 threads.

Run it on an otherwise idle machine (2 cores here: a competing process distorts every ratio).

Usage: python benchmarks/bench_executors.py [--jobs 16] [--seconds 0.5] [--n 512] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import torch

from obliviate.jobs._selftest import matmul_work
from obliviate.jobs.executors import Executor, InlineExecutor, ProcessExecutor, available_cpus


def calibrate(n: int, seconds: float, threads: int) -> int:
    """Matmul repetitions that take ``seconds`` with ``threads`` threads in this process."""
    torch.set_num_threads(threads)
    matmul_work({"n": n, "reps": 5})  # warm-up
    t = matmul_work({"n": n, "reps": 20})["seconds"] / 20
    return max(1, round(seconds / t))


def timed(executor: Executor, specs: list[dict[str, Any]]) -> tuple[float, list[float]]:
    """Wall time of running every spec, and the checksums by index."""
    t0 = time.perf_counter()
    out = dict(executor.map_unordered(matmul_work, specs))
    wall = time.perf_counter() - t0
    return wall, [out[i]["checksum"] for i in range(len(specs))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=0.5, help="target seconds per job with 2 threads")
    ap.add_argument("--n", type=int, default=512, help="matrix size")
    ap.add_argument("--json", help="also write the numbers here")
    args = ap.parse_args()

    cores = available_cpus()
    reps = calibrate(args.n, args.seconds, 2)
    specs2 = [{"n": args.n, "reps": reps, "seed": i, "threads": 2} for i in range(args.jobs)]
    specs1 = [{**s, "threads": 1} for s in specs2]
    print(f"{cores} cores, torch {torch.__version__}; {args.jobs} jobs x {reps} matmuls of {args.n}^2 "
          f"(~{args.seconds:.2f} s each with 2 threads)")

    r: dict[str, float] = {}
    torch.set_num_threads(2)
    r["inline_2t"], ref2 = timed(InlineExecutor(threads_per_job=2), specs2)
    with ProcessExecutor(workers=1, threads_per_job=2) as ex:
        r["process_1w2t_cold"], got_cold = timed(ex, specs2)
        r["process_1w2t_warm"], got_warm = timed(ex, specs2)
    with ProcessExecutor(workers=2, threads_per_job=1) as ex:
        r["process_2w1t_cold"], got_2w_cold = timed(ex, specs1)
        r["process_2w1t_warm"], got_2w = timed(ex, specs1)

    jobs = args.jobs
    r["overhead_per_job_excl_startup_s"] = (r["process_1w2t_warm"] - r["inline_2t"]) / jobs
    r["overhead_per_job_incl_startup_s"] = (r["process_1w2t_cold"] - r["inline_2t"]) / jobs
    r["pool_startup_s"] = r["process_1w2t_cold"] - r["process_1w2t_warm"]
    r["speedup_2w1t_vs_1w2t_warm"] = r["process_1w2t_warm"] / r["process_2w1t_warm"]
    r["speedup_2w1t_vs_1w2t_cold"] = r["process_1w2t_cold"] / r["process_2w1t_cold"]
    r["speedup_2w1t_vs_inline_2t"] = r["inline_2t"] / r["process_2w1t_warm"]

    print(f"\n{'run':<38}{'wall s':>9}{'s/job':>9}")
    for name, label in [("inline_2t", "inline, 2 threads"),
                        ("process_1w2t_cold", "process 1 worker x 2 threads, fresh"),
                        ("process_1w2t_warm", "process 1 worker x 2 threads, warm"),
                        ("process_2w1t_cold", "process 2 workers x 1 thread, fresh"),
                        ("process_2w1t_warm", "process 2 workers x 1 thread, warm")]:
        print(f"{label:<38}{r[name]:>9.2f}{r[name] / jobs:>9.3f}")
    print(f"\nprocess(1 worker) vs inline: {r['overhead_per_job_excl_startup_s'] * 1e3:+.1f} ms/job excluding pool "
          f"startup ({r['process_1w2t_warm'] / r['inline_2t']:.3f}x), "
          f"{r['overhead_per_job_incl_startup_s'] * 1e3:+.1f} ms/job including it "
          f"({r['process_1w2t_cold'] / r['inline_2t']:.3f}x); pool startup ~{r['pool_startup_s']:.2f} s")
    print(f"2 workers x 1 thread vs 1 worker x 2 threads: {r['speedup_2w1t_vs_1w2t_warm']:.2f}x warm, "
          f"{r['speedup_2w1t_vs_1w2t_cold']:.2f}x with startup; vs inline 2 threads "
          f"{r['speedup_2w1t_vs_inline_2t']:.2f}x")
    same = ref2 == got_cold == got_warm
    print(f"checksums: process(2 threads) == inline(2 threads): {same}; "
          f"1-thread runs agree with each other: {got_2w == got_2w_cold}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**r, "jobs": jobs, "reps": reps, "n": args.n, "cores": cores}, f, indent=2)


if __name__ == "__main__":
    main()
