"""The metric registry. A metric is a function plus its direction and whether it needs a model.

Scorers (``needs_model=True``) run a model; comparisons (``needs_model=False``) are pure functions of earlier
results (e.g. forget quality, PrivLeak, RF-JSD) so they can be recomputed offline from a results JSON.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from obliviate.registry import Registry
from obliviate.types import Paper


@dataclass(frozen=True)
class MetricSpec:
    name: str
    fn: Callable[..., Any]
    higher_is_better: bool
    needs_model: bool
    description: str
    paper: Paper | None = None


METRICS: Registry[MetricSpec] = Registry("metric")


def register_metric(
    name: str, *, higher_is_better: bool, needs_model: bool = True, description: str = "", paper: Paper | None = None
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register ``fn`` under ``name`` in METRICS; returns ``fn`` unchanged."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        METRICS.register(name)(MetricSpec(name, fn, higher_is_better, needs_model, description, paper))
        return fn

    return decorator
