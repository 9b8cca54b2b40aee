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
            "cuda_peak_mb": None if self.cuda_peak_mb is None else round(self.cuda_peak_mb, 1),
        }


@contextmanager
def track(name: str, interval_s: float = 0.02) -> Iterator[PhaseCost]:
    """Measure wall time and peak RSS (sampled every ``interval_s`` by a daemon thread) of the ``with`` body."""
    cost = PhaseCost(name=name, start_rss_mb=current_rss_mb())
    cost.peak_rss_mb = cost.start_rss_mb
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(interval_s):
            cost.peak_rss_mb = max(cost.peak_rss_mb, current_rss_mb())

    thread = threading.Thread(target=sample, daemon=True)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    thread.start()
    t0 = time.perf_counter()
    try:
        yield cost
    finally:
        cost.wall_s = time.perf_counter() - t0
        stop.set()
        thread.join()
        cost.peak_rss_mb = max(cost.peak_rss_mb, current_rss_mb())
        if torch.cuda.is_available():
            cost.cuda_peak_mb = torch.cuda.max_memory_allocated() / 2**20
