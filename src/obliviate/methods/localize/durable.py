"""Durable (Sakarvadia et al., 2024, §weight-level unlearning; after the durable-backdoor masks of Neurotoxin,
Zhang et al., 2022): the MLP weights with the largest forget-set gradient carry the memorized sequences, so zero them.

Sum the gradient of the LM loss over the forget set (batches of 64, the sum of batch means, as the reference, which
never zeroes the gradient between batches), then in every MLP weight and bias tensor zero the k = floor(ratio * n)
entries with the largest |grad| (per tensor). ``epochs`` > 1 spreads the same count over that many rounds, each
recomputing the gradient of the already-edited model (iterative pruning; 1 = the reference's one shot).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData
from obliviate.methods.base import METHODS
from obliviate.methods.localize.weight_mask import (
    Target,
    WeightEdit,
    WeightMethod,
    check_ratio,
    forget_gradient,
    prune_count,
    round_share,
    top_mask,
    top_mask_global,
    zero_,
)


@dataclass(frozen=True)
class DurableConfig:
    """``ratio``: fraction zeroed (of each MLP tensor; of all MLP entries for durable_aggregate). ``batch_size``:
    forget rows per gradient batch (reference 64). ``epochs``: pruning rounds (1 = reference).
    ``reference_compatible``: the reference's loss over every position including padding (``labels=input_ids``)
    and, for durable_aggregate, its ranking over *all* parameters (attention, embeddings) of which only the MLP
    entries are zeroed."""

    ratio: float = 0.05
    batch_size: int = 64
    epochs: int = 1
    reference_compatible: bool = False

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if self.batch_size < 1:
            raise ObliviateError(f"method.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ObliviateError(f"method.epochs (pruning rounds) must be >= 1, got {self.epochs}")


@METHODS.register("durable")
class Durable(WeightMethod):
    config_cls = DurableConfig
    aggregate: ClassVar[bool] = False  # True: one ranking over all MLP entries (durable_aggregate)
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.05}

    def edit(self, model: nn.Module, data: LMUnlearnData, targets: list[Target], seed: int) -> WeightEdit:
        cfg = self.config
        params: list[Tensor] = [t.param for t in targets]
        if cfg.reference_compatible and self.aggregate:  # the reference ranks every parameter, zeroes MLP ones
            ids = {id(p) for p in params}
            params += [p for p in model.parameters() if id(p) not in ids and p.is_floating_point()]
        for p in params:
            p.requires_grad_(True)
        chosen = [torch.zeros(p.shape, dtype=torch.bool, device=p.device) for p in params]
        total = prune_count(cfg.ratio, sum(p.numel() for p in params))
        logs = []
        for r in range(1, cfg.epochs + 1):
            grads, loss = forget_gradient(model, data.forget, params, cfg.batch_size, cfg.reference_compatible)
            scores = [g.abs() for g in grads]
            if self.aggregate:
                k = round_share(total, r, cfg.epochs) - sum(int(c.sum()) for c in chosen)
                new = top_mask_global(scores, k, chosen)
            else:
                new = [top_mask(s, round_share(prune_count(cfg.ratio, s.numel()), r, cfg.epochs) - int(c.sum()), c)
                       for s, c in zip(scores, chosen)]
            chosen = [c | n for c, n in zip(chosen, new)]
            zero_(targets, chosen[:len(targets)])
            logs.append({"round": float(r), "forget_loss_sum": loss,
                         "zeroed": float(sum(int(c.sum()) for c in chosen[:len(targets)]))})
        info = {"rounds": cfg.epochs, "ranked_params": sum(p.numel() for p in params), "selected": total}
        return WeightEdit(zeroed=chosen[:len(targets)], logs=logs, info=info)
