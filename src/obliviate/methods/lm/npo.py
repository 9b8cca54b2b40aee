"""NPO (Zhang, Lin, Bai, Mei, 2024, "Negative Preference Optimization", arXiv 2404.05868) and SimNPO (Fan et al.,
2024, "Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning", arXiv 2410.07163), in
open-unlearning's form: gamma * forget loss + alpha * NLL(retain). NPO compares per-sequence summed NLLs with a
frozen copy of the original model; SimNPO uses none (length-normalised NLL, margin delta). Defaults: open-unlearning's
NPO.yaml (beta 0.1, gamma 1, alpha 1) and SimNPO.yaml (beta 4.5, delta 0, gamma 0.125, alpha 1), its reproduction
setting for the optimiser (AdamW lr 1e-5, weight decay 0.01, 10 epochs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.preference import NPO_BETA, SIMNPO_BETA, SIMNPO_DELTA, npo_loss, sequence_nll_sum, simnpo_loss
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.lm.reference import ComparesWithOriginal
from obliviate.methods.lm.weighted import WeightedConfig, weighted_loss
from obliviate.types import Paper


@dataclass(frozen=True)
class NPOConfig(WeightedConfig):
    beta: float = NPO_BETA

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ObliviateError(f"method.beta must be > 0, got {self.beta}")


@dataclass(frozen=True)
class SimNPOConfig(NPOConfig):
    beta: float = SIMNPO_BETA
    delta: float = SIMNPO_DELTA
    gamma: float = 0.125


@METHODS.register("npo")
class NPO(ComparesWithOriginal, LossMethod):
    config_cls = NPOConfig
    paper = Paper("Negative Preference Optimization: From Catastrophic Collapse to Effective Unlearning",
                  "2404.05868", 2024, "Zhang, Lin, Bai, Mei")
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        c = self.config
        nll, _ = sequence_nll_sum(*batch.forget.scored_logits(model))
        with torch.no_grad():
            ref_nll, _ = sequence_nll_sum(*batch.forget.scored_logits(self._ref))
        forget = npo_loss(nll, ref_nll, c.beta)
        return weighted_loss(model, batch, forget, "npo", c, {"forget_seq_nll": nll.mean().detach()}, self._ref)


@METHODS.register("simnpo")
class SimNPO(LossMethod):
    config_cls = SimNPOConfig
    paper = Paper("Simplicity Prevails: Rethinking Negative Preference Optimization for LLM Unlearning", "2410.07163",
                  2024, "Fan et al.")
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        c = self.config
        nll, n = sequence_nll_sum(*batch.forget.scored_logits(model))
        forget = simnpo_loss(nll, n, c.beta, c.delta)
        return weighted_loss(model, batch, forget, "simnpo", c)
