"""Slimming (Sakarvadia et al., 2024, §neuron-level; Chang et al., 2024): learn one coefficient c_j per FFN neuron
(init 1, clipped to [0, 1] in the forward pass, multiplying the neuron) that keeps the memorized continuations
predicted while an L1 term pushes coefficients to 0:

    minimise  LM loss(forget) + lambda * sum_j |c_j| / N        (N = every neuron of every layer)

with Adam. Neurons that keep a high coefficient are the ones the forget set needs: attribution = clamp(c, 0, 1),
and the highest are ablated.

Defaults [spec details §8, code]: lr 0.1, lambda 1000, stop once the L1 term < 0.1, checked every 100 epochs (the
reference's rule: it never fires at the paper's <= 30 epochs); batch 64 forget rows; ``epochs`` 10 -- a decision,
the middle of the paper's grid {1, 10, 30}. Deviations: gradients are zeroed every step (the reference zeroes once
per epoch, so with more than 64 forget rows its steps add up every earlier batch's gradient); the LM loss is over
the scored targets (the reference's ``labels=input_ids`` scores every token, PAD included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData
from obliviate.methods.base import METHODS
from obliviate.methods.neuron.base import (
    Attribution,
    NeuronConfig,
    NeuronMethod,
    NeuronSite,
    model_device,
    train_gates,
)


@dataclass(frozen=True)
class SlimmingConfig(NeuronConfig):
    """``weight``: lambda of the L1 term; ``stop_loss`` / ``check_every``: the reference's stop rule."""

    epochs: int = 10
    lr: float = 0.1
    weight: float = 1000.0
    stop_loss: float = 0.1
    check_every: int = 100

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr <= 0 or self.weight < 0:
            raise ObliviateError(f"method.lr must be > 0 and method.weight >= 0, got {self.lr}, {self.weight}")
        if self.check_every < 1:
            raise ObliviateError(f"method.check_every must be >= 1, got {self.check_every}")


@METHODS.register("slimming")
class Slimming(NeuronMethod):
    config_cls = SlimmingConfig
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.25, "epochs": 5}

    def attribute(self, model: nn.Module, data: LMUnlearnData, sites: list[NeuronSite], seed: int) -> Attribution:
        device = model_device(model)
        coefs = [torch.ones(s.inner, device=device, requires_grad=True) for s in sites]
        n = sum(s.inner for s in sites)

        def l1() -> Tensor:
            return sum(c.abs().sum() for c in coefs) / n

        logs, stopped = train_gates(model, data.forget, sites, coefs, lambda i: coefs[i].clamp(0.0, 1.0), l1,
                                    self.config, self.config.check_every)
        scores = [c.detach().clamp(0.0, 1.0).cpu() for c in coefs]
        return Attribution(scores, logs=logs, info={"epochs_run": len(logs)}, stopped_at=stopped)
