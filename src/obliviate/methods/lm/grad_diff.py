"""Gradient difference: ascent on the forget set, descent on the retain set (Liu et al., 2022, "Continual
Learning and Private Unlearning"; the TOFU baseline). Defaults follow open-unlearning's GradDiff config
(gamma = alpha = 1, AdamW lr 1e-5, wd 0.01, 10 epochs)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.gradient import grad_diff_loss
from obliviate.losses.nll import mean_nll
from obliviate.methods.base import METHODS, LossMethod
from obliviate.train.loop import LoopConfig
from obliviate.types import Paper


@dataclass(frozen=True)
class GradDiffConfig(LoopConfig):
    gamma: float = 1.0  # weight of the forget (ascent) term
    alpha: float = 1.0  # weight of the retain (descent) term

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.gamma < 0 or self.alpha < 0:
            raise ObliviateError(f"method.gamma and method.alpha must be >= 0, got {self.gamma}, {self.alpha}")
        if self.retain_batch_size == 0:
            raise ObliviateError("method.retain_batch_size must be > 0 for grad_diff (it descends on retain data)")


@METHODS.register("grad_diff")
class GradDiff(LossMethod):
    config_cls = GradDiffConfig
    paper = Paper("Continual Learning and Private Unlearning", "2203.12817", 2022, "Liu et al.")
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Tensor]]:
        cfg = self.config
        nll_f = mean_nll(*batch.forget.scored_logits(model))
        nll_r = mean_nll(*batch.retain.scored_logits(model))
        loss = grad_diff_loss(nll_f, nll_r, gamma=cfg.gamma, alpha=cfg.alpha)
        return loss, {"forget_nll": nll_f.detach(), "retain_nll": nll_r.detach()}
