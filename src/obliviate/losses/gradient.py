"""Gradient ascent and gradient difference losses (pure functions of NLLs).

GA: minimise -NLL(forget) (Jang et al., 2023; Thudi et al., 2022). GradDiff: minimise
-gamma * NLL(forget) + alpha * NLL(retain) (Liu et al., 2022; TOFU baseline, Maini et al., 2024).
"""

from __future__ import annotations

from torch import Tensor


def grad_ascent_loss(forget_nll: Tensor) -> Tensor:
    """-NLL on the forget set: descending it ascends the forget likelihood's negative. forget_nll: scalar."""
    return -forget_nll


def grad_diff_loss(forget_nll: Tensor, retain_nll: Tensor, gamma: float = 1.0, alpha: float = 1.0) -> Tensor:
    """-gamma * NLL_forget + alpha * NLL_retain (both scalars)."""
    return -gamma * forget_nll + alpha * retain_nll


def balanced_subnet_loss(forget_seq_nll: Tensor, retain_seq_nll: Tensor, loss_weighting: float) -> Tensor:
    """BalancedSubnet (Sakarvadia et al., 2024; tinymem-details §7):
    L = -(1 - w) * mean_forget CE + w * mean_retain CE, with per-sequence mean CEs (B_f,), (B_r,)."""
    return -(1.0 - loss_weighting) * forget_seq_nll.mean() + loss_weighting * retain_seq_nll.mean()
