"""UNDIAL (Dong et al., 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language
Models", arXiv 2402.10052), in open-unlearning's form: gamma * UNDIAL(forget) + alpha * NLL(retain), where UNDIAL
distils the model to a frozen copy of the original whose gold-token logit is lowered by beta
(``losses/token_weighted.py``). Defaults: open-unlearning's UNDIAL.yaml (beta 10, gamma 1, alpha 0 -> forget only, so
no retain rows are drawn), 10 epochs at lr 1e-4 (spec ``ceu-and-tofu.md`` §2), AdamW weight decay 0.01. The loss
averages over all positions as open-unlearning does; ``mask_unscored: true`` averages over the scored ones only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.token_weighted import UNDIAL_BETA, undial_loss
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.lm.reference import ComparesWithOriginal
from obliviate.methods.lm.weighted import WeightedConfig, forget_nll_stat, weighted_loss
from obliviate.types import Paper


@dataclass(frozen=True)
class UNDIALConfig(WeightedConfig):
    beta: float = UNDIAL_BETA  # how far the reference's gold logit is lowered
    alpha: float = 0.0  # weight of the retain NLL (0: forget only)
    mask_unscored: bool = False  # False = open-unlearning (mean over all positions, prompt and padding included)
    lr: float = 1e-4
    epochs: int = 10
    retain_batch_size: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.beta <= 0:
            raise ObliviateError(f"method.beta must be > 0, got {self.beta}")


@METHODS.register("undial")
class UNDIAL(ComparesWithOriginal, LossMethod):
    config_cls = UNDIALConfig
    paper = Paper("UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large Language Models",
                  "2402.10052", 2024, "Dong et al.")
    needs_retain = False  # by default (alpha = 0); an instance with alpha > 0 draws and needs retain rows

    def __init__(self, config: UNDIALConfig | None = None) -> None:
        super().__init__(config)
        if self.config.alpha > 0:
            self.needs_retain = True  # type: ignore[misc]  # per instance: retain rows only when they are used

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        c = self.config
        f = batch.forget  # open-unlearning's mean runs over every position: the full logits unless mask_unscored
        logits, labels = f.scored_logits(model) if c.mask_unscored else (f.logits(model), f.labels)
        with torch.no_grad():
            ref_logits = f.scored_logits(self._ref)[0] if c.mask_unscored else f.logits(self._ref)
        forget = undial_loss(logits, ref_logits, labels, c.beta, c.mask_unscored)
        return weighted_loss(model, batch, forget, "undial", c, forget_nll_stat(logits, labels), self._ref)
