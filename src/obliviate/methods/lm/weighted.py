"""The shape most open-unlearning methods share: gamma * (forget term) + alpha * NLL(retain). One config base with the
two weights (validated once) and one function that adds the retain term; each method writes only its forget term."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.nll import mean_nll
from obliviate.train.loop import LoopConfig


@dataclass(frozen=True)
class WeightedConfig(LoopConfig):
    gamma: float = 1.0  # weight of the forget term
    alpha: float = 1.0  # weight of the retain NLL (0: forget only, no retain rows needed)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0 or self.alpha < 0:
            raise ObliviateError(f"method.gamma and method.alpha must be >= 0; got {self.gamma}, {self.alpha}")
        if self.alpha > 0 and self.retain_batch_size == 0:
            raise ObliviateError("method.retain_batch_size must be > 0 when method.alpha > 0 (the retain NLL term)")


def weighted_loss(model: nn.Module, batch: ForgetRetainBatch, forget: Tensor, name: str, cfg: WeightedConfig,
                  stats: dict[str, Any] | None = None) -> tuple[Tensor, dict[str, Any]]:
    """gamma * ``forget`` + alpha * NLL(retain rows); stats: ``name`` = the forget term, ``retain_nll`` when used."""
    out: dict[str, Any] = {name: forget.detach(), **(stats or {})}
    loss = cfg.gamma * forget
    if cfg.alpha > 0 and batch.retain is not None:
        nll_r = mean_nll(*batch.retain.scored_logits(model))
        loss = loss + cfg.alpha * nll_r
        out["retain_nll"] = nll_r.detach()
    return loss, out


def forget_nll_stat(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        return {"forget_nll": mean_nll(logits, labels)}
