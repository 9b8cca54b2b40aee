"""SatImp (Yang et al., 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", arXiv 2505.11953),
in open-unlearning's form: gamma * SatImp(forget) + alpha * NLL(retain), where SatImp is gradient ascent with each
forget token's CE weighted by the detached p^beta1 * (1 - p)^beta2 (``losses/token_weighted.py``). Defaults:
open-unlearning's SatImp.yaml (beta1 5, beta2 1, gamma 0.1, alpha 1), 5 epochs (spec ``ceu-and-tofu.md`` §2); the
spec gives no learning rate, so open-unlearning's common 1e-5 (AdamW, weight decay 0.01)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.token_weighted import SATIMP_BETA1, SATIMP_BETA2, satimp_loss
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.lm.weighted import WeightedConfig, forget_nll_stat, weighted_loss
from obliviate.types import Paper


@dataclass(frozen=True)
class SatImpConfig(WeightedConfig):
    beta1: float = SATIMP_BETA1  # saturation exponent: p^beta1
    beta2: float = SATIMP_BETA2  # importance exponent: (1 - p)^beta2
    gamma: float = 0.1  # weight of the forget term
    epochs: int = 5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta1 < 0 or self.beta2 < 0:
            raise ObliviateError(f"method.beta1 and beta2 must be >= 0; got {self.beta1}, {self.beta2}")


@METHODS.register("satimp")
class SatImp(LossMethod):
    config_cls = SatImpConfig
    paper = Paper("Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning", "2505.11953", 2025,
                  "Yang et al.")
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        c = self.config
        logits, labels = batch.forget.scored_logits(model)
        forget = satimp_loss(logits, labels, c.beta1, c.beta2)
        return weighted_loss(model, batch, forget, "satimp", c, forget_nll_stat(logits, labels))
