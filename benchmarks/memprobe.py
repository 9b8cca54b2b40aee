"""Peak memory of a code region, measured so that two variants in two processes compare fairly (shared by
``bench_lora.py`` and ``bench_lm_loop.py``).

Why not just "peak RSS - RSS at the start" (what ``obliviate.profiling.track`` records): glibc's malloc keeps freed
memory in its heaps and arenas instead of returning it to the kernel, so memory the process allocated and freed
*before* the region (loading a model, building a Trainer) is reused *inside* it without raising RSS. A variant that
did more set-up first then looks as if its run added less. And a 20 ms sampler can miss a short peak.

What :class:`MemoryProbe` does instead, each number reported separately:

* before the region: ``gc.collect()`` and ``malloc_trim(0)`` (glibc returns the free pages of every arena to the
  kernel), so the baseline RSS is what is really live;
* the kernel's own RSS high-water mark, reset at the start of the region (``echo 5 > /proc/self/clear_refs``) and read
  at its end (``VmHWM``): the exact peak, no sampling (Linux >= 4.0; falls back to a sampler otherwise);
* a sampler thread (every 5 ms) of ``RssAnon``: the anonymous memory (heap, tensors), without file-backed pages such
  as a memory-mapped safetensors file or shared libraries;
* on CUDA, ``torch.cuda.max_memory_allocated`` minus what was allocated at the start (exact, torch's allocator).

:func:`torch_cpu_peak` is torch's own accounting on CPU: the region runs under ``torch.profiler`` with
``profile_memory=True`` and the allocation / free events of the CPU allocator are replayed in time order; their
running sum's maximum is the peak number of tensor bytes the region added (independent of malloc's behaviour and
of anything allocated before). Profiling slows the region, so run it separately from the timed run.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading
from typing import Any

import torch

MB = 2**20


def _status() -> dict[str, int]:
    """The kB fields of /proc/self/status we need, in bytes ({} off Linux)."""
    out: dict[str, int] = {}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile"):
                    out[key] = int(rest.split()[0]) * 1024
    except OSError:
        pass
    return out


def malloc_trim() -> bool:
    """Return glibc malloc's free memory to the kernel (all arenas); False where there is no glibc."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
        return True
    except (OSError, AttributeError):
        return False


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark (VmHWM, and ru_maxrss with it) to the current RSS."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryProbe:
    """``with MemoryProbe(device) as probe: ...`` then ``probe.result()``: baseline, peak and added memory (MB)."""

    def __init__(self, device: Any = "cpu", interval_s: float = 0.005, trim: bool = True) -> None:
        self.cuda = torch.device(device).type == "cuda"
        self.interval_s = interval_s
        self.trim = trim  # False: the naive baseline (malloc's free memory left in place), for comparison
        self._stop = threading.Event()
        self.peak_anon = self.peak_rss_sampled = 0
        self.exact = False
        self.trimmed = False

    def __enter__(self) -> MemoryProbe:  # noqa: PYI034 -- typing.Self needs Python 3.11
        gc.collect()
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.cuda_base = torch.cuda.memory_allocated()
        self.pre_trim_rss = _status().get("VmRSS", 0)
        self.trimmed = malloc_trim() if self.trim else False
        st = _status()
        self.base_rss, self.base_anon = st.get("VmRSS", 0), st.get("RssAnon", 0)
        self.peak_anon, self.peak_rss_sampled = self.base_anon, self.base_rss
        self.exact = reset_peak_rss()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval_s):
            st = _status()
            self.peak_anon = max(self.peak_anon, st.get("RssAnon", 0))
            self.peak_rss_sampled = max(self.peak_rss_sampled, st.get("VmRSS", 0))

    def __exit__(self, *exc: object) -> None:
        if self.cuda:
            torch.cuda.synchronize()
            self.cuda_peak = torch.cuda.max_memory_allocated()
            self.cuda_reserved = torch.cuda.max_memory_reserved()
        self._stop.set()
        self._thread.join()
        st = _status()
        self.peak_anon = max(self.peak_anon, st.get("RssAnon", 0))
        self.peak_rss = st["VmHWM"] if self.exact and "VmHWM" in st else max(self.peak_rss_sampled, st.get("VmRSS", 0))

    def result(self) -> dict[str, Any]:
        r: dict[str, Any] = {
            "base_rss_mb": self.base_rss / MB,
            "peak_rss_mb": self.peak_rss / MB,  # VmHWM: exact when peak_exact
            "added_rss_mb": (self.peak_rss - self.base_rss) / MB,
            "peak_exact": self.exact,
            "base_anon_mb": self.base_anon / MB,
            "added_anon_mb": (self.peak_anon - self.base_anon) / MB,  # sampled every interval_s
            "malloc_trimmed": self.trimmed,
            "trim_freed_mb": (self.pre_trim_rss - self.base_rss) / MB,  # free malloc memory the trim returned
        }
        if self.cuda:
            r.update({"cuda_base_mb": self.cuda_base / MB, "cuda_peak_mb": self.cuda_peak / MB,
                      "cuda_added_mb": (self.cuda_peak - self.cuda_base) / MB,
                      "cuda_reserved_peak_mb": self.cuda_reserved / MB})
        return r


def torch_cpu_peak(fn: Any) -> tuple[Any, dict[str, float]]:
    """Run ``fn()`` under ``torch.profiler`` with ``profile_memory``: (its result, {"torch_peak_added_mb": peak of
    the running sum of CPU tensor allocations minus frees during ``fn``, "torch_end_added_mb": the sum at its end}).
    Tensors allocated before ``fn`` count only when freed inside it (as negative bytes)."""
    from torch.profiler import ProfilerActivity, profile

    gc.collect()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = [e for e in prof.profiler.kineto_results.events()
              if e.name() == "[memory]" and e.device_type() == torch.autograd.DeviceType.CPU]
    events.sort(key=lambda e: e.start_ns())
    cur = peak = 0
    for e in events:
        cur += e.nbytes()
        peak = max(peak, cur)
    return out, {"torch_peak_added_mb": peak / MB, "torch_end_added_mb": cur / MB, "memory_events": len(events)}
