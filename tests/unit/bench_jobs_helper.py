"""Pure, importable job functions for the bench executor tests (workers import this module by name)."""

from __future__ import annotations

import os


def square_plus(x: int) -> dict:
    """A pure job: the same input gives the same output on every executor."""
    return {"x": x, "y": x * x + 1}


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"bad item {x}")
    return x


def worker_threads(_: object) -> dict:
    """What the worker process sees: torch's thread count and the OpenMP env."""
    import torch

    return {"torch": torch.get_num_threads(), "omp": os.environ.get("OMP_NUM_THREADS"), "pid": os.getpid()}
