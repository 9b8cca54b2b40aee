"""Subnet (Sakarvadia et al., 2024, §weight-level unlearning; edge-popup supermasks, Ramanujan et al., 2020).

Freeze the model, learn a score per MLP weight, prune the ``ratio`` fraction with the smallest |score| in every
matrix, and train the scores with SGD to *raise* the forget-set loss. The final mask is baked into the weights.
Defaults: SGD lr 0.1, momentum 0.9, wd 5e-4 (reference); ratio 0.05 and 10 epochs (inside the paper's sweep grid).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch, LMBatch, LMUnlearnData
from obliviate.losses.nll import sequence_nll
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.localize.supermask import attach_supermasks, bake_supermasks, freeze, restore_grad
from obliviate.papers import TINYMEM
from obliviate.train.loop import LoopConfig
from obliviate.types import UnlearnResult


@dataclass(frozen=True)
class SubnetConfig(LoopConfig):
    ratio: float = 0.05  # fraction of each MLP weight matrix pruned
    retain_batch_size: int = 0
    optimizer: Literal["adamw", "sgd"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    # the reference's objective: per-sequence CE over every position incl. PAD targets (HF loss, labels = input ids,
    # no attention mask) and int(ratio * n) pruned entries; ours: CE over the scored tokens, round(ratio * n)
    reference_compatible: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.ratio < 1:
            raise ObliviateError(f"method.ratio must be in (0, 1), got {self.ratio} (paper grid: 1e-5 ... 0.9)")


class SupermaskMethod(LossMethod):
    """setup: freeze the model and attach supermasks (only their scores train); teardown: bake the mask into the
    weights and give the caller back its own ``requires_grad`` flags."""

    config_cls = SubnetConfig
    paper = TINYMEM
    smoke_config: ClassVar[dict[str, Any]] = {"epochs": 5, "ratio": 0.25, "batch_size": 8}
    # the masks are baked into the base MLP weights, not into a LoRA adapter (which they leave untouched): refused
    # with LoRA by obliviate.lm_unlearn (methods without this flag train whatever requires grad: the adapter)
    lora_compatible: ClassVar[bool] = False
    fsdp_compatible: ClassVar[bool] = False  # the masks are tensors kept by reference (FSDP replaces them)

    def setup(self, model: nn.Module, data: LMUnlearnData, seed: int) -> list[nn.Parameter]:
        self._flags = freeze(model)
        # reference_compatible: the rows' full width and PAD id, to undo the loop's trimming of all-PAD columns
        ids, att = data.forget.input_ids, data.forget.attention_mask
        self._width = ids.shape[1]
        self._pad = int(ids[att == 0][0]) if bool((att == 0).any()) else None
        masks = attach_supermasks(model, self.config.ratio, generator_seed=seed, floor=self.config.reference_compatible)
        return [m.scores for m in masks]

    def sequence_ce(self, model: nn.Module, split: LMBatch) -> Tensor:
        """(B,) per-sequence CE: over the scored tokens, or (reference_compatible) over every next-token position
        of the raw rows, PAD targets included."""
        if self.config.reference_compatible:
            ids = split.input_ids
            if self._pad is not None and ids.shape[1] < self._width:
                ids = torch.nn.functional.pad(ids, (0, self._width - ids.shape[1]), value=self._pad)
            return sequence_nll(model(input_ids=ids).logits, ids)
        return sequence_nll(*split.scored_logits(model))

    def teardown(self, model: nn.Module, result: UnlearnResult | None) -> None:
        pruned = bake_supermasks(model)
        restore_grad(model, self._flags)
        if result is not None:
            result.info["pruned_fraction"] = sum(pruned.values()) / max(len(pruned), 1)
            result.info["masked_matrices"] = len(pruned)


@METHODS.register("subnet")
class Subnet(SupermaskMethod):
    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Tensor]]:
        ce_f = self.sequence_ce(model, batch.forget).mean()
        return -ce_f, {"forget_nll": ce_f.detach()}
