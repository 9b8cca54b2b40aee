"""Tiny pure job functions used by the executor tests (tests/unit/test_bench_executors.py) and
benchmarks/bench_executors.py.

They live in the package, not under tests/, because executor workers import a job function by its module name:
forkserver children inherit the driver's sys.path, but Ray workers do not, so a tests-only module is not importable
there. Nothing here is imported by obliviate itself.
"""

from __future__ import annotations

import os
import time
from typing import Any


def square_plus(x: int) -> dict[str, int]:
    """A pure job: the same input gives the same output on every executor."""
    return {"x": x, "y": x * x + 1}


def fail_on_three(x: int) -> int:
    """Raises for item 3 (error propagation); other items pass through."""
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def worker_threads(_: Any) -> dict[str, Any]:
    """What the process running the job sees: torch's thread count, the OpenMP env and its pid."""
    import torch

    return {"torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid()}


def matmul_work(spec: dict[str, int]) -> dict[str, float]:
    """``spec["reps"]`` fp32 products of ``spec["n"]``-square matrices (a CPU-bound job for the benchmark), with
    ``spec["threads"]`` torch threads when given (as real bench jobs set their own)."""
    import torch

    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    g = torch.Generator().manual_seed(int(spec.get("seed", 0)))
    a = torch.randn(spec["n"], spec["n"], generator=g)
    t0 = time.perf_counter()
    acc = 0.0
    for _ in range(spec["reps"]):
        acc += float((a @ a).sum())
    return {"checksum": acc, "seconds": time.perf_counter() - t0, "threads": torch.get_num_threads()}
