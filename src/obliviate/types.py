"""Plain dataclasses passed between data, methods, metrics and reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from obliviate.errors import ObliviateError


@dataclass(frozen=True)
class Paper:
    """Where a method or metric comes from."""

    title: str
    arxiv: str | None = None
    year: int | None = None
    authors: str | None = None


@dataclass
class UnlearnData:
    """What an unlearning method gets: token rows to forget and to retain (int64, [N, T], ``pad_id``-padded).

    ``forget`` must be non-empty. ``retain`` may be empty for methods that only need the forget set.
    """

    forget: torch.Tensor
    retain: torch.Tensor
    pad_id: int
    prompt_len: torch.Tensor | None = None  # [N_forget] where a prompt/continuation split is meaningful

    def __post_init__(self) -> None:
        if self.forget.ndim != 2 or self.forget.shape[0] == 0:
            raise ObliviateError(
                f"the forget set is empty (shape {tuple(self.forget.shape)}): nothing to unlearn"
                " (was nothing memorized? check the memorization metric before unlearning)"
            )
        if self.retain.ndim != 2:
            raise ObliviateError(f"retain set must be a 2-D token tensor, got shape {tuple(self.retain.shape)}")


@dataclass
class ForgetRetainBatch:
    """One step's data: forget rows and (possibly empty) retain rows, trimmed to their longest real length."""

    forget: torch.Tensor  # (B_f, T)
    retain: torch.Tensor  # (B_r, T')
    pad_id: int


@dataclass
class UnlearnResult:
    """What a method returns: the edited model (edited in place is fine), logs and cost."""

    model: nn.Module
    logs: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)  # e.g. sparsity of a mask, steps taken
    wall_s: float = 0.0
    peak_rss_mb: float | None = None


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
