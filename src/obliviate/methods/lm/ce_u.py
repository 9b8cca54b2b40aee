"""CE-U (Yang, 2025, "CE-U: Cross Entropy Unlearning", arXiv 2503.01224): cross-entropy against the model's own
distribution with the gold token masked (``losses/ce_u.py``), on the forget set only -- no retain term and no
reference model, as open-unlearning's CEU trainer. Defaults: open-unlearning's CE-U runner (AdamW lr 1e-5, weight
decay 0.01, 10 epochs; ``ignore_first_n_answer_tokens`` = 1 -> ``n_skip``)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.ce_u import CEU_N_SKIP, ceu_loss
from obliviate.losses.nll import mean_nll
from obliviate.methods.base import METHODS, LossMethod
from obliviate.train.loop import LoopConfig
from obliviate.types import Paper


@dataclass(frozen=True)
class CEUConfig(LoopConfig):
    n_skip: int = CEU_N_SKIP  # leading answer tokens of each row not unlearned
    retain_batch_size: int = 0  # forget only (the method has no retain term)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.n_skip < 0:
            raise ObliviateError(f"method.n_skip must be >= 0, got {self.n_skip}")


@METHODS.register("ce_u")
class CEU(LossMethod):
    config_cls = CEUConfig
    paper = Paper("CE-U: Cross Entropy Unlearning", "2503.01224", 2025, "Yang")

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Tensor]]:
        logits, labels = batch.forget.scored_logits(model)
        loss = ceu_loss(logits, labels, self.config.n_skip)
        return loss, {"forget_nll": mean_nll(logits, labels).detach()}
