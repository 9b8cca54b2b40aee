"""WGA, weighted gradient ascent (Wang et al., 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective and
Go Beyond", arXiv 2502.19301), in open-unlearning's form: gamma * WGA(forget) + alpha * NLL(retain), where WGA is
gradient ascent with each forget token's CE weighted by its detached probability p^beta (``losses/token_weighted.py``).
Defaults: open-unlearning's WGA.yaml (beta 1, gamma 1, alpha 1), 5 epochs at lr 1e-5 (spec ``ceu-and-tofu.md`` §2),
AdamW weight decay 0.01."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.token_weighted import WGA_BETA, wga_loss
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.lm.weighted import WeightedConfig, forget_nll_stat, weighted_loss
from obliviate.types import Paper


@dataclass(frozen=True)
class WGAConfig(WeightedConfig):
    beta: float = WGA_BETA  # weight exponent: p^beta (0 = plain gradient ascent)
    epochs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta < 0:
            raise ObliviateError(f"method.beta must be >= 0, got {self.beta}")


@METHODS.register("wga")
class WGA(LossMethod):
    config_cls = WGAConfig
    paper = Paper("Rethinking LLM Unlearning Objectives: A Gradient Perspective and Go Beyond", "2502.19301", 2025,
                  "Wang et al.")
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        c = self.config
        logits, labels = batch.forget.scored_logits(model)
        forget = wga_loss(logits, labels, c.beta)
        return weighted_loss(model, batch, forget, "wga", c, forget_nll_stat(logits, labels))
