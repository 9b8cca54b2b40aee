"""Subnet (Sakarvadia et al., 2024, §weight-level unlearning; edge-popup supermasks, Ramanujan et al., 2020).

Freeze the model, learn a score per MLP weight, prune the ``ratio`` fraction with the smallest |score| in every
matrix, and train the scores with SGD to *raise* the forget-set loss. The final mask is baked into the weights.
Defaults: SGD lr 0.1, momentum 0.9, wd 5e-4 (reference); ratio 0.05 and 10 epochs (inside the paper's sweep grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.losses.nll import sequence_nll
from obliviate.methods.base import METHODS, LoopConfig
from obliviate.methods.localize.supermask import attach_supermasks, bake_supermasks
from obliviate.types import ForgetRetainBatch, Paper, UnlearnData, UnlearnResult

TINYMEM = Paper("Mitigating Memorization in Language Models", "2410.02159", 2024, "Sakarvadia et al.")


@dataclass(frozen=True)
class SubnetConfig(LoopConfig):
    ratio: float = 0.05  # fraction of each MLP weight matrix pruned
    retain_batch_size: int = 0
    optimizer: Literal["adamw", "sgd"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.ratio < 1:
            raise ObliviateError(f"method.ratio must be in (0, 1), got {self.ratio} (paper grid: 1e-5 ... 0.9)")


class _SupermaskMethod:
    """Shared unlearn(): attach masks, run the shared loop on the scores only, bake the mask."""

    config_cls: type[SubnetConfig] = SubnetConfig
    paper = TINYMEM
    needs_retain = False

    def __init__(self, config: SubnetConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def unlearn(self, model: nn.Module, data: UnlearnData) -> UnlearnResult:
        from obliviate.train.loop import run_loop

        if self.needs_retain and data.retain.shape[0] == 0:
            raise ObliviateError(f"{type(self).__name__} needs a non-empty retain set")
        masks = attach_supermasks(model, self.config.ratio, generator_seed=self.config.seed)
        try:
            result = run_loop(model, [m.scores for m in masks], self.loss, data, self.config,
                              use_retain=self.needs_retain)
        finally:
            pruned = bake_supermasks(model)
        result.info["pruned_fraction"] = sum(pruned.values()) / max(len(pruned), 1)
        result.info["masked_matrices"] = len(pruned)
        return result


@METHODS.register("subnet")
class Subnet(_SupermaskMethod):
    config_cls = SubnetConfig

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, float]]:
        ce_f = sequence_nll(model(input_ids=batch.forget).logits, batch.forget, batch.pad_id).mean()
        return -ce_f, {"forget_nll": ce_f.item()}
