"""Wall time and peak memory of a phase: every result records what it cost."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def current_rss_mb() -> float:
    """Resident set size of this process in MiB (Linux /proc; falls back to ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class PhaseCost:
    name: str
    wall_s: float = 0.0
    peak_rss_mb: float = 0.0
    start_rss_mb: float = 0.0
    cuda_peak_mb: float | None = None

    def to_dict(self) -> dict[str, float | str | None]:
        return {
            "wall_s": round(self.wall_s, 3),
            "peak_rss_mb": round(self.peak_rss_mb, 1),
            "start_rss_mb": round(self.start_rss_mb, 1),
            "added_mb": round(self.peak_rss_mb - self.start_rss_mb, 1),
            "cuda_peak_mb": None if self.cuda_peak_mb is None else round(self.cuda_peak_mb, 1),
        }


_depth = threading.local()


def _cuda_in_use() -> bool:
    """True once this process has a CUDA context: asking never creates one (a CPU run stays off the GPU)."""
    return torch.cuda.is_available() and torch.cuda.is_initialized()


@contextmanager
def track(name: str, interval_s: float = 0.02) -> Iterator[PhaseCost]:
    """Measure wall time and peak RSS (sampled every ``interval_s`` by a daemon thread) of the ``with`` body.

    ``peak_rss_mb`` is the whole process's peak (what the machine must hold), ``added_mb`` = peak - start what the
    phase itself added. The CUDA peak is exact for the outermost ``track`` only: CUDA keeps one peak counter, so an
    inner phase reports None rather than a number that belongs to its parent."""
    cost = PhaseCost(name=name, start_rss_mb=current_rss_mb())
    outer = getattr(_depth, "n", 0) == 0
    _depth.n = getattr(_depth, "n", 0) + 1
    cost.peak_rss_mb = cost.start_rss_mb
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            cost.peak_rss_mb = max(cost.peak_rss_mb, current_rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    if outer and _cuda_in_use():
        torch.cuda.reset_peak_memory_stats()
    thread.start()
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        cost.wall_s = time.perf_counter() - t0
        stop.set()
        thread.join()
        _depth.n -= 1
        cost.peak_rss_mb = max(cost.peak_rss_mb, current_rss_mb())
        if outer and _cuda_in_use():
            cost.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20
