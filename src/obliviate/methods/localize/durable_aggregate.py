"""Durable-Aggregate (Sakarvadia et al., 2024, §weight-level unlearning): Durable with one global ranking -- the
k = floor(ratio * N) entries with the largest forget-set |grad| among all N MLP weights and biases together, so a
layer that carries more of the memorized sequences loses more of its weights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from obliviate.methods.base import METHODS
from obliviate.methods.localize.durable import Durable, DurableConfig


@dataclass(frozen=True)
class DurableAggregateConfig(DurableConfig):
    """As Durable's; ``ratio`` is the fraction of all MLP entries together."""


@METHODS.register("durable_aggregate")
class DurableAggregate(Durable):
    config_cls = DurableAggregateConfig
    aggregate: ClassVar[bool] = True
