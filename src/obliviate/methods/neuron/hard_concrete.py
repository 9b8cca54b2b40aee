"""Hard Concrete (Sakarvadia et al., 2024, §neuron-level; Chang et al., 2024; L0 gates of Louizos et al., 2018): one
stochastic gate per FFN neuron with a learned score s_j. Training samples

    u ~ U(0, 1),  g = sigmoid((log u - log(1 - u) + s_j) / beta) * (r - l) + l,  clamped to [0, 1]

and minimises LM loss(forget) + lambda * mean_j sigmoid(s_j - beta * log(-l / r)) (the expected L0 norm) with Adam.
Attribution = sigmoid(s_j) (the reference's eval gate); the highest are ablated.

Defaults [spec details §8, code]: stretch (l, r) = (-0.1, 1.1), beta 2/3, scores ~ N(0, 0.01) (std; the reference's
logit(0.5) constant init is overwritten right after), Adam lr 0.1, lambda 1000, stop once the penalty < 0.1 checked
every 10 epochs; batch 64; ``epochs`` 10 (a decision: the middle of the paper's grid {1, 10, 30}). One gate sample
per neuron per step, shared by the batch's rows; init and samples come from a generator seeded with the method
seed. Deviations as Slimming (gradients zeroed every step; LM loss over scored targets).
"""

from __future__ import annotations

import math
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
class HardConcreteConfig(NeuronConfig):
    """``weight``: lambda of the L0 penalty; ``limits``: the stretch (l, r); ``seed``: null = the run's."""

    epochs: int = 10
    lr: float = 0.1
    weight: float = 1000.0
    beta: float = 2 / 3
    limits: tuple[float, float] = (-0.1, 1.1)
    init_std: float = 0.01
    stop_loss: float = 0.1
    check_every: int = 10
    seed: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.lr <= 0 or self.weight < 0 or self.beta <= 0 or self.init_std < 0:
            raise ObliviateError(f"method.lr and method.beta must be > 0, method.weight and method.init_std >= 0; got "
                                 f"lr={self.lr}, beta={self.beta}, weight={self.weight}, init_std={self.init_std}")
        lo, hi = self.limits
        if not (lo < 0 and hi > 1):
            raise ObliviateError(f"method.limits must be (l, r) with l < 0 and r > 1, got {self.limits}")
        if self.check_every < 1:
            raise ObliviateError(f"method.check_every must be >= 1, got {self.check_every}")


def hard_concrete_gate(scores: Tensor, u: Tensor, beta: float, limits: tuple[float, float]) -> Tensor:
    """A training sample of the stretched, clamped hard-concrete gate for noise ``u`` in (0, 1)."""
    lo, hi = limits
    s = torch.sigmoid((u.log() - (1 - u).log() + scores) / beta)
    return (s * (hi - lo) + lo).clamp(0.0, 1.0)


def expected_l0(scores: Tensor, beta: float, limits: tuple[float, float]) -> Tensor:
    """P(gate != 0) per neuron: sigmoid(s - beta * log(-l / r))."""
    lo, hi = limits
    return torch.sigmoid(scores - beta * math.log(-lo / hi))


@METHODS.register("hard_concrete")
class HardConcrete(NeuronMethod):
    config_cls = HardConcreteConfig
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.25, "epochs": 5}

    def attribute(self, model: nn.Module, data: LMUnlearnData, sites: list[NeuronSite], seed: int) -> Attribution:
        cfg = self.config
        device = model_device(model)
        gen = torch.Generator().manual_seed(seed)  # CPU draws, moved: the same bits on every device
        scores = [(torch.randn(s.inner, generator=gen) * cfg.init_std).to(device).requires_grad_(True) for s in sites]

        def gate(i: int) -> Tensor:
            u = torch.rand(sites[i].inner, generator=gen).clamp(1e-6, 1 - 1e-6).to(device)
            return hard_concrete_gate(scores[i], u, cfg.beta, cfg.limits)

        def penalty() -> Tensor:
            return torch.cat([expected_l0(s, cfg.beta, cfg.limits) for s in scores]).mean()

        logs, stopped = train_gates(model, data.forget, sites, scores, gate, penalty, cfg, cfg.check_every)
        att = [torch.sigmoid(s.detach()).cpu() for s in scores]
        return Attribution(att, logs=logs, info={"epochs_run": len(logs)}, stopped_at=stopped)
