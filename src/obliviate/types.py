"""Plain dataclasses passed between data, methods, metrics and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Paper:
    """Where a method or metric comes from."""

    title: str
    arxiv: str | None = None
    year: int | None = None
    authors: str | None = None


@dataclass
class UnlearnResult:
    """What a method returns: the edited model (edited in place is fine; a NumPy model for the topic family),
    per-epoch logs, cost, and what some methods produce besides: masks or attributions (name -> tensor, saved as
    safetensors), a deletion certificate (certified methods) and where a stop rule ended the run."""

    model: Any
    logs: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. sparsity of a mask, steps taken, the seed used
    wall_s: float = 0.0
    peak_rss_mb: float | None = None
    masks: dict[str, Any] = field(default_factory=dict)
    certificate: dict[str, float] | None = None
    stopped_at: int | None = None


@dataclass
class MetricResult:
    """A metric value plus the per-item scores it came from (kept so comparisons can be recomputed offline)."""

    name: str
    value: float
    higher_is_better: bool
    per_item: list[float | None] | None = None  # None marks an item the metric does not score
    breakdown: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "higher_is_better": self.higher_is_better,
            "breakdown": self.breakdown,
            "per_item": self.per_item,
        }
