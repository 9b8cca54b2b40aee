"""The run around a suite: which suite, seeds, device, threads, methods and their selection grids.

A config file (or preset) is one flat YAML mapping: the run keys below plus the suite's own sections (TinyMem:
``data``, ``model``, ``train``, ``eval``), so ``--set train.epochs=3`` and ``--set seed=1`` both work.

Seed hierarchy (one documented place): ``seed`` is the run seed. Every job of a study runs with one seed s (the run
seed, or each of ``seeds`` in a bench); s drives the suite's data (unless its config pins one, e.g. TinyMem
``data.seed``), the model init, batch order, and every method whose config leaves ``seed`` unset.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from obliviate.config import from_dict, to_dict
from obliviate.errors import ObliviateError, unknown_name_error

RUN_KEYS = ("suite", "seed", "seeds", "device", "threads", "methods", "selection")


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; an explicit device must exist on this machine."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ObliviateError(f"unknown device {name!r} (valid: auto, cpu, cuda, cuda:N, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ObliviateError(f"device {name!r} was requested but CUDA is not available here (valid: auto, cpu)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ObliviateError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ObliviateError(f"device {name!r} was requested but MPS is not available here (valid: auto, cpu)")
    return dev


def check_seeds(seeds: Any) -> tuple[int, ...]:
    """A non-empty list of distinct integer seeds."""
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip() != ""]
        except ValueError:
            raise ObliviateError(f"seeds must be integers separated by commas, got {seeds!r}") from None
    seeds = tuple(seeds)
    if not seeds:
        raise ObliviateError("the seed list is empty: give at least one seed, e.g. --seeds 0,1,2")
    if any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in seeds):
        raise ObliviateError(f"seeds must be non-negative integers, got {list(seeds)}")
    dup = sorted({s for s in seeds if seeds.count(s) > 1})
    if dup:
        raise ObliviateError(f"seed(s) {dup} appear more than once in {list(seeds)}: each seed is one run")
    return seeds


def grid_points(grid: Mapping[str, list[Any]]) -> list[dict[str, Any]]:
    """Every combination of a selection grid, in the order the grid lists them (first key slowest)."""
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


@dataclass(frozen=True)
class RunConfig:
    suite: str = "tinymem"
    seed: int = 0
    seeds: tuple[int, ...] = ()  # bench seeds (empty = just ``seed``)
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", "mps"
    threads: int = 0  # torch intra-op threads for in-process runs (0 = torch's default)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, dict[str, list[Any]]] = field(default_factory=dict)
    suite_config: Any = None  # the suite's config dataclass

    def __post_init__(self) -> None:
        from obliviate.methods import METHODS, check_family

        suite = self.suite_obj
        resolve_device(self.device)
        if self.seed < 0 or self.threads < 0:
            raise ObliviateError(f"seed and threads must be >= 0, got seed={self.seed}, threads={self.threads}")
        if self.seeds:
            check_seeds(self.seeds)
        for name in [*self.methods, *self.selection]:
            check_family(name, suite.family)
        for name, params in self.methods.items():
            from_dict(METHODS.get(name).config_cls, params, path=f"methods.{name}")
        for name, grid in self.selection.items():
            cls = METHODS.get(name)
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ObliviateError(f"selection.{name}.{key} must be a non-empty list, got {values!r}")
                for v in values:
                    from_dict(cls.config_cls, {**self.methods.get(name, {}), key: v}, path=f"selection.{name}")

    @property
    def suite_obj(self) -> Any:
        from obliviate.suites import SUITES

        return SUITES.get(self.suite)

    @property
    def study_seeds(self) -> tuple[int, ...]:
        return self.seeds or (self.seed,)

    def points(self, method: str) -> list[dict[str, Any]]:
        """The method's configurations to try: its fixed params merged with each selection grid point."""
        base = dict(self.methods.get(method, {}))
        return [{**base, **p} for p in grid_points(self.selection.get(method, {}))] or [base]

    def to_dict(self) -> dict[str, Any]:
        """The flat YAML form (run keys + the suite's sections)."""
        out = {k: to_dict(getattr(self, k)) for k in RUN_KEYS}
        out.update(to_dict(self.suite_config))
        return out


def run_config_from_dict(raw: Mapping[str, Any]) -> RunConfig:
    """Split a flat mapping into run keys and the suite's sections, and validate both."""
    from obliviate.suites import SUITES

    suite_name = raw.get("suite", "tinymem")
    if not isinstance(suite_name, str):
        raise ObliviateError(f"suite must be a name, got {suite_name!r}")
    suite = SUITES.get(suite_name)
    import dataclasses

    suite_keys = [f.name for f in dataclasses.fields(suite.config_cls)]
    for key in raw:
        if key not in RUN_KEYS and key not in suite_keys:
            raise unknown_name_error(f"config key for suite {suite_name!r}", str(key), [*RUN_KEYS, *suite_keys])
    run = from_dict(RunConfig, {k: v for k, v in raw.items() if k in RUN_KEYS and k != "suite_config"})
    suite_cfg = from_dict(suite.config_cls, {k: v for k, v in raw.items() if k in suite_keys})
    return dataclasses.replace(run, suite_config=suite_cfg)
