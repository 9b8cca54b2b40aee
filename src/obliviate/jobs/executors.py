"""Swappable executors: run a picklable ``fn`` over items inline, in a process pool, or on Ray.

All three share one contract (``Executor``): ``map_unordered`` yields ``(index, fn(items[index]))`` as jobs finish,
with at most ``workers`` jobs in flight, so a failing job cancels exactly the jobs that have not started. Each job
gets ``threads_per_job`` torch/OpenMP threads, and ``workers * threads_per_job`` defaults to the cores available,
so parallel jobs do not oversubscribe the CPU (each OpenMP barrier would otherwise wait on a descheduled thread).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Hashable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from obliviate.errors import ObliviateError, unknown_name_error

if TYPE_CHECKING:
    from typing_extensions import Self  # typing.Self needs Python 3.11

T = TypeVar("T")
R = TypeVar("R")
EXECUTORS = ("inline", "process", "ray")
RAY_MISSING = "the ray executor needs Ray: pip install 'obliviate[ray]' (or pip install ray)"


class JobFailed(RuntimeError):
    """A job raised: ``index`` is its position in ``items``; the job's own exception is the ``__cause__``."""

    def __init__(self, index: int, exc: BaseException) -> None:
        super().__init__(f"job {index} failed: {type(exc).__name__}: {exc}")
        self.index = index


@runtime_checkable
class Executor(Protocol):
    name: str
    workers: int
    threads_per_job: int

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(self, *exc: object) -> None: ...


def available_cpus() -> int:
    """Cores this process may run on (the affinity mask, which containers and taskset narrow; else cpu_count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def set_threads(threads: int) -> None:
    """Give this process ``threads`` OpenMP/MKL/torch threads (worker initializer; torch imported only here)."""
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def _positive(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ObliviateError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def _job_error(index: int, exc: BaseException) -> Exception:
    """An ObliviateError from a job stays one (the CLI prints it as one line); anything else becomes JobFailed."""
    if isinstance(exc, ObliviateError):
        return ObliviateError(f"job {index}: {exc}")
    return JobFailed(index, exc)


def _windowed(submit: Callable[[Any], Hashable], wait_some: Callable[[list[Any]], list[Any]],
              result: Callable[[Any], Any], cancel: Callable[[list[Any]], None], items: Sequence[Any],
              window: int) -> Iterator[tuple[int, Any]]:
    """Keep ``window`` jobs in flight; yield (index, result) as they finish. On a job's error or the caller's early
    exit, the jobs in flight are cancelled (Ray interrupts them; a process pool lets them finish, results unread) and
    the rest are never submitted."""
    pending: dict[Any, int] = {}
    nxt = 0
    try:
        while nxt < len(items) or pending:
            while nxt < len(items) and len(pending) < window:
                pending[submit(items[nxt])] = nxt
                nxt += 1
            for handle in wait_some(list(pending)):
                index = pending.pop(handle)
                try:
                    value = result(handle)
                except Exception as exc:  # whatever the job raised, reported with its index
                    raise _job_error(index, exc) from exc
                yield index, value
    finally:
        if pending:
            cancel(list(pending))


class _Base:
    name = "base"
    workers = 1
    threads_per_job = 1

    def close(self) -> None:
        """Release workers (nothing to release by default)."""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(workers={self.workers}, threads_per_job={self.threads_per_job})"


class InlineExecutor(_Base):
    """A plain loop in the calling process: no pickling, no startup; for debugging and single small runs.

    ``threads_per_job`` is what jobs are told to use (it is not applied here: the caller's torch setting stands)."""

    name = "inline"

    def __init__(self, threads_per_job: int | None = None) -> None:
        self.workers = 1
        self.threads_per_job = _positive("threads_per_job", available_cpus() if threads_per_job is None else threads_per_job)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        for i, item in enumerate(items):
            try:
                value = fn(item)
            except Exception as exc:  # same error contract as the parallel executors
                raise _job_error(i, exc) from exc
            yield i, value


class ProcessExecutor(_Base):
    """A local ``ProcessPoolExecutor`` (forkserver: torch's OpenMP pool does not survive ``fork``).

    The pool starts on first use and is reused across calls; each worker imports torch once, in its initializer."""

    name = "process"

    def __init__(self, workers: int, threads_per_job: int | None = None) -> None:
        self.workers = _positive("workers", workers)
        default = max(1, available_cpus() // workers)
        self.threads_per_job = _positive("threads_per_job", default if threads_per_job is None else threads_per_job)
        self._pool: ProcessPoolExecutor | None = None

    def _get_pool(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(max_workers=self.workers, mp_context=multiprocessing.get_context("forkserver"),
                                             initializer=set_threads, initargs=(self.threads_per_job,))
        return self._pool

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        pool = self._get_pool()

        def wait_some(futs: list[Future]) -> list[Future]:
            return list(wait(futs, return_when=FIRST_COMPLETED).done)

        def result(fut: Future) -> Any:
            try:
                return fut.result()
            except BrokenProcessPool:
                self._drop_pool()  # a worker died (OOM, kill): the next call starts a fresh pool
                raise

        def cancel(futs: list[Future]) -> None:
            for f in futs:
                f.cancel()

        return _windowed(lambda item: pool.submit(fn, item), wait_some, result, cancel, items, self.workers)

    def _drop_pool(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self) -> None:
        """Shut the pool down, cancelling queued jobs and waiting for running ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


def _ray_job(fn: Callable[[Any], Any], item: Any, threads: int) -> Any:
    """The Ray task body: pin the thread count like the process initializer, then run the job."""
    set_threads(threads)
    return fn(item)


class RayExecutor(_Base):
    """Ray tasks of ``num_cpus=threads_per_job``: a local instance (``address=None``) or an existing cluster.

    ``workers`` (jobs in flight) defaults to the cluster's CPUs // threads_per_job. ``num_cpus`` sizes a local
    instance (default: the cores available here); it is ignored when joining a cluster or reusing a running Ray."""

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None, threads_per_job: int | None = None,
                 *, num_cpus: int | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise ObliviateError(RAY_MISSING) from None
        if workers is not None:
            _positive("workers", workers)
        if threads_per_job is not None:
            _positive("threads_per_job", threads_per_job)
        self._owns = address is None and not ray.is_initialized()
        if address is None:  # Ray itself sets OMP_NUM_THREADS=num_cpus in each task's worker
            ray.init(num_cpus=_positive("num_cpus", num_cpus or available_cpus()), include_dashboard=False,
                     log_to_driver=False, ignore_reinit_error=True)
        else:
            ray.init(address=address)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.threads_per_job = threads_per_job or (max(1, cpus // workers) if workers else 1)
        self.workers = workers or max(1, cpus // self.threads_per_job)
        self._task = ray.remote(num_cpus=self.threads_per_job)(_ray_job)

    def map_unordered(self, fn: Callable[[T], R], items: Sequence[T]) -> Iterator[tuple[int, R]]:
        import ray

        fn_ref = ray.put(fn)  # shipped once, not once per task

        def wait_some(refs: list[Any]) -> list[Any]:
            return ray.wait(refs, num_returns=1)[0]

        def result(ref: Any) -> Any:
            try:
                return ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, BaseException):
                    raise cause from exc
                raise

        def cancel(refs: list[Any]) -> None:
            for ref in refs:
                ray.cancel(ref)

        def submit(item: Any) -> Any:
            return self._task.remote(fn_ref, item, self.threads_per_job)

        return _windowed(submit, wait_some, result, cancel, items, self.workers)

    def close(self) -> None:
        """Shut Ray down only if this executor started it (a joined cluster or the caller's instance stays up)."""
        if self._owns:
            import ray

            ray.shutdown()
            self._owns = False


def make_executor(name: str, workers: int = 1, address: str | None = None,
                  threads_per_job: int | None = None) -> Executor:
    """The executor called ``name`` ("inline", "process" or "ray"); values are checked before anything starts."""
    if name not in EXECUTORS:
        raise unknown_name_error("executor", name, EXECUTORS)
    _positive("workers", workers)
    if threads_per_job is not None:
        _positive("threads_per_job", threads_per_job)
    if address is not None and name != "ray":
        raise ObliviateError(f"an address ({address!r}) only applies to the ray executor, not {name!r}")
    if name == "inline":
        if workers != 1:
            raise ObliviateError(f"the inline executor runs one job at a time, got workers={workers} (use 'process')")
        return InlineExecutor(threads_per_job)
    if name == "process":
        return ProcessExecutor(workers, threads_per_job)
    return RayExecutor(address, workers, threads_per_job)
