"""BalancedSubnet (Sakarvadia et al., 2024; reference name ``random_greedy``): Subnet's supermask trained on
L = -(1 - w) * mean CE(forget) + w * mean CE(retain), so the pruned weights carry the memorized sequences but
not the retained skill. w = ``loss_weighting`` = 0.7, the value of the paper's TinyMem and Pythia best runs.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch
from obliviate.losses.gradient import balanced_subnet_loss
from obliviate.methods.base import METHODS
from obliviate.methods.localize.subnet import SubnetConfig, SupermaskMethod


@dataclass(frozen=True)
class BalancedSubnetConfig(SubnetConfig):
    loss_weighting: float = 0.7  # w: weight of the retain term; the forget term gets 1 - w
    retain_batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.loss_weighting <= 1:
            raise ObliviateError(f"method.loss_weighting must be in [0, 1], got {self.loss_weighting}")
        if self.retain_batch_size == 0:
            raise ObliviateError("method.retain_batch_size must be > 0 for balanced_subnet")


@METHODS.register("balanced_subnet")
class BalancedSubnet(SupermaskMethod):
    config_cls = BalancedSubnetConfig
    needs_retain = True

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Tensor]]:
        assert batch.retain is not None  # needs_retain: the loop always draws retain rows
        ce_f = self.sequence_ce(model, batch.forget)
        ce_r = self.sequence_ce(model, batch.retain)
        loss = balanced_subnet_loss(ce_f, ce_r, self.config.loss_weighting)
        return loss, {"forget_nll": ce_f.mean().detach(), "retain_nll": ce_r.mean().detach()}
