"""Gradient ascent on the forget set (Jang et al., 2023, "Knowledge Unlearning for Mitigating Privacy Risks in
Language Models"). Defaults follow the open-unlearning GradAscent config (AdamW, lr 1e-5, wd 0.01, 10 epochs)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.gradient import grad_ascent_loss
from obliviate.losses.nll import mean_nll
from obliviate.methods.base import METHODS, LossMethod
from obliviate.train.loop import LoopConfig
from obliviate.types import Paper


@dataclass(frozen=True)
class GradAscentConfig(LoopConfig):
    retain_batch_size: int = 0  # GA never looks at retain data


@METHODS.register("grad_ascent")
class GradAscent(LossMethod):
    config_cls = GradAscentConfig
    paper = Paper("Knowledge Unlearning for Mitigating Privacy Risks in Language Models", "2210.01504", 2023,
                  "Jang et al.")
    needs_retain = False

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Tensor]]:
        nll_f = mean_nll(*batch.forget.scored_logits(model))
        return grad_ascent_loss(nll_f), {"forget_nll": nll_f.detach()}
