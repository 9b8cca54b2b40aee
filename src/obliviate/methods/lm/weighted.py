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

RETAIN_LOSSES = ("nll", "kl")


@dataclass(frozen=True)
class WeightedConfig(LoopConfig):
    gamma: float = 1.0  # weight of the forget term
    alpha: float = 1.0  # weight of the retain term (0: forget only, no retain rows needed)
    retain_loss: str = "nll"  # open-unlearning's retain_loss_type: "nll", or "kl" = KL(original || model) on retain

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.retain_loss not in RETAIN_LOSSES:
            raise ObliviateError(f"method.retain_loss={self.retain_loss!r} (valid: {', '.join(RETAIN_LOSSES)})")
        if self.gamma < 0 or self.alpha < 0:
            raise ObliviateError(f"method.gamma and method.alpha must be >= 0; got {self.gamma}, {self.alpha}")
        if self.alpha > 0 and self.retain_batch_size == 0:
            raise ObliviateError("method.retain_batch_size must be > 0 when method.alpha > 0 (the retain NLL term)")


def weighted_loss(model: nn.Module, batch: ForgetRetainBatch, forget: Tensor, name: str, cfg: WeightedConfig,
                  stats: dict[str, Any] | None = None,
                  reference: nn.Module | None = None) -> tuple[Tensor, dict[str, Any]]:
    """gamma * ``forget`` + alpha * (retain term); stats: ``name`` = the forget term, ``retain_nll`` or
    ``retain_kl`` when used. The retain term is the NLL of the retain rows, or with ``retain_loss: kl`` the KL
    divergence KL(reference || model) over every attended retain position and the full vocabulary (open-unlearning's
    ``compute_kl_divergence``, the mean-teacher paper's "+KL"; ``reference`` = the original model)."""
    out: dict[str, Any] = {name: forget.detach(), **(stats or {})}
    loss = cfg.gamma * forget
    if cfg.alpha > 0 and batch.retain is not None:
        if cfg.retain_loss == "kl":
            if reference is None:
                raise ObliviateError(f"method.retain_loss=kl needs the original model as a reference; {name} has none "
                                     "(available for npo, undial, idk_dpo, altpo)")
            from obliviate.losses.nlul import kl_penalty

            logits = batch.retain.logits(model)
            with torch.no_grad():
                ref_logits = batch.retain.logits(reference)
            term = kl_penalty(logits, ref_logits, batch.retain.attention_mask.bool())
            out["retain_kl"] = term.detach()
        else:
            term = mean_nll(*batch.retain.scored_logits(model))
            out["retain_nll"] = term.detach()
        loss = loss + cfg.alpha * term
    return loss, out


def forget_nll_stat(logits: Tensor, labels: Tensor) -> dict[str, Tensor]:
    with torch.no_grad():
        return {"forget_nll": mean_nll(logits, labels)}
