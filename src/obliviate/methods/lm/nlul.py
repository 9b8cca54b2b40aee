"""NLUL with a KL or QKL retain penalty to the frozen original model (Klochkov, 2025, "A mean teacher algorithm for
unlearning of language models", arXiv 2504.13388): alpha * NLUL(forget) + beta * D(original || model) on retain
(regularisation) rows, D = KL or its quadratic (Fisher) form QKL. This is the paper's baseline "NLUL-KL" -- the mean
teacher's update with delta = damp = 0 (its teacher is the frozen original). Defaults: the paper's News baselines
(AdamW lr 1e-6, betas (0.9, 0.95), alpha 0.05, beta 1.0, tol 0.02, threshold 0)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.nll import mean_nll
from obliviate.losses.nlul import NLUL_THRESHOLD, NLUL_TOL, kl_penalty, nlul_loss, qkl_penalty
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.lm.reference import ComparesWithOriginal
from obliviate.train.loop import LoopConfig
from obliviate.types import Paper


@dataclass(frozen=True)
class NLULConfig(LoopConfig):
    lr: float = 1e-6
    betas: tuple[float, float] = (0.9, 0.95)
    alpha: float = 0.05  # weight of the forget (NLUL) term
    beta: float = 1.0  # weight of the retain penalty
    penalty: Literal["kl", "qkl"] = "kl"
    tol: float = NLUL_TOL
    threshold: float = NLUL_THRESHOLD

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.alpha <= 0 or self.beta < 0:
            raise ObliviateError(f"method.alpha must be > 0 and method.beta >= 0, got {self.alpha}, {self.beta}")
        if not 0 < self.tol < 1 or not 0 <= self.threshold < 1:
            raise ObliviateError(f"method.tol={self.tol} must be in (0, 1) and threshold={self.threshold} in [0, 1)")
        if self.penalty not in ("kl", "qkl"):
            raise ObliviateError(f"method.penalty={self.penalty!r} is not one of: kl, qkl")
        if self.beta > 0 and self.retain_batch_size == 0:
            raise ObliviateError("method.retain_batch_size must be > 0 when method.beta > 0 (the retain penalty)")


@METHODS.register("nlul")
class NLUL(ComparesWithOriginal, LossMethod):
    config_cls = NLULConfig
    paper = Paper("A mean teacher algorithm for unlearning of language models", "2504.13388", 2025, "Klochkov")
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        return nlul_with_penalty(model, self._ref, batch, self.config)


def nlul_with_penalty(model: nn.Module, reference: nn.Module, batch: ForgetRetainBatch,
                      c: Any) -> tuple[Tensor, dict[str, Any]]:
    """alpha * NLUL(forget) + beta * D(reference || model) on the retain rows over every real (non-padding) position,
    full vocabulary; D = KL or QKL (``c.penalty``). Shared by ``nlul`` (reference = the frozen original) and
    ``mean_teacher`` (reference = the EMA teacher)."""
    logits, labels = batch.forget.scored_logits(model)
    forget = nlul_loss(logits, labels, c.tol, c.threshold)
    stats: dict[str, Any] = {"nlul": forget.detach(), "forget_nll": mean_nll(logits, labels).detach()}
    loss = c.alpha * forget
    if c.beta > 0 and batch.retain is not None:
        r_logits = batch.retain.logits(model)
        with torch.no_grad():
            ref_logits = batch.retain.logits(reference)
        pen = (kl_penalty if c.penalty == "kl" else qkl_penalty)(r_logits, ref_logits,
                                                                 batch.retain.attention_mask.bool())
        loss = loss + c.beta * pen
        stats[c.penalty] = pen.detach()
    return loss, stats
