"""The mean-teacher update of Klochkov (2025, "A mean teacher algorithm for unlearning of language models", arXiv
2504.13388) as the reference code (yklochkov-bytedance/mt-unlearn) deploys it -- spec ../shared/specs/
tinymem-and-mean-teacher.md section 2.3. Per optimizer step, with g the gradient of the loss (alpha * forget loss +
beta * D(student || teacher) on retain rows) already in ``p.grad``:

    c   = min(1, clip / ||g||)                  (over all trained parameters; clip = None: c = 1)
    g  <- c g + damp * c * (theta - theta_T)    (proximal pull of the student towards the teacher)
    theta <- SGD-momentum step(g)               (buf = momentum * buf + g, theta -= lr * buf; torch's SGD rule)
    theta_T <- (1 - delta c) theta_T + delta c theta   (the teacher is an EMA of the student)

With delta = damp = 0 the teacher never moves and the update is clipped SGD on "forget loss + D to the frozen
original" -- the paper's baseline (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn


class MeanTeacherSGD(torch.optim.Optimizer):
    """SGD with momentum on the student ``params`` that pulls them towards ``teacher_params`` (same order and shapes)
    and moves the teacher towards them by an EMA. ``last_clip`` holds the last step's c (for logs)."""

    def __init__(self, params: Iterable[nn.Parameter], teacher_params: Iterable[Tensor], lr: float = 5e-4,
                 momentum: float = 0.95, clip: float | None = 1.0, damp: float = 5.0, delta: float = 0.005) -> None:
        params = list(params)
        teacher = list(teacher_params)
        if len(params) != len(teacher) or any(p.shape != t.shape for p, t in zip(params, teacher)):
            raise ValueError("the teacher's parameters must match the student's trained parameters one to one")
        super().__init__(params, {"lr": lr, "momentum": momentum, "clip": clip, "damp": damp, "delta": delta})
        self.teacher = teacher
        self.last_clip = 1.0

    @torch.no_grad()
    def step(self, closure: object = None) -> None:  # type: ignore[override]
        group = self.param_groups[0]
        params: list[Tensor] = group["params"]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        c = 1.0
        if group["clip"] is not None:
            norm = math.sqrt(sum(float(_full(g.double().pow(2).sum())) for g in grads))
            c = min(1.0, group["clip"] / norm) if norm > 0 else 1.0
        self.last_clip = c
        for p, g, t in zip(params, grads, self.teacher):
            d = g.mul(c)
            if group["damp"]:
                d.add_(p - t, alpha=group["damp"] * c)
            state = self.state[p]
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.clone()
            else:
                buf.mul_(group["momentum"]).add_(d)
            p.add_(buf, alpha=-group["lr"])
            if group["delta"]:
                t.mul_(1.0 - group["delta"] * c).add_(p, alpha=group["delta"] * c)

    def state_dict(self) -> dict:  # type: ignore[override]
        """torch's optimizer state plus the teacher's weights (they move with every step: a checkpoint needs them)."""
        sd = super().state_dict()
        sd["teacher"] = [t.detach().clone() for t in self.teacher]
        return sd

    def load_state_dict(self, state_dict: dict) -> None:  # type: ignore[override]
        sd = dict(state_dict)
        teacher = sd.pop("teacher", None)
        super().load_state_dict(sd)
        if teacher is not None:
            if len(teacher) != len(self.teacher):
                raise ValueError(f"the saved teacher has {len(teacher)} tensors, this one {len(self.teacher)}")
            with torch.no_grad():
                for t, saved in zip(self.teacher, teacher):
                    t.copy_(saved)


def _full(x: Tensor) -> Tensor:
    """A sum over a sharded (FSDP DTensor) gradient is a partial sum per rank: add the ranks' parts."""
    return x.full_tensor() if hasattr(x, "full_tensor") else x
