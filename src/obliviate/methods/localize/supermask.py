"""Supermasks over frozen weights (edge-popup, Ramanujan et al., 2020), used by Subnet and BalancedSubnet.

Each targeted weight W gets a learned score tensor S of the same shape. The forward pass uses W * M(S) where
M zeroes the ``ratio`` fraction of entries with the smallest |S| in that matrix (per layer, as the reference) and
keeps the rest. M is a step function, so its gradient is passed straight through: dL/dS = dL/dM * sign(S).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize
from transformers.pytorch_utils import Conv1D

from obliviate.errors import ObliviateError


def topk_mask(scores: Tensor, ratio: float) -> Tensor:
    """0/1 mask with the ``round(ratio * numel)`` smallest-|score| entries set to 0 (ties broken by index order)."""
    n = scores.numel()
    k = round(ratio * n)
    mask = torch.ones(n, dtype=scores.dtype, device=scores.device)
    if k > 0:
        idx = torch.argsort(scores.detach().abs().flatten(), stable=True)[:k]
        mask[idx] = 0
    return mask.view_as(scores)


class _StraightThroughMask(torch.autograd.Function):
    """forward: the top-k mask of |scores|; backward: identity to |scores| (autograd adds the sign)."""

    @staticmethod
    def forward(ctx, abs_scores: Tensor, ratio: float) -> Tensor:  # type: ignore[override]
        return topk_mask(abs_scores, ratio)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad, None


def straight_through_mask(scores: Tensor, ratio: float) -> Tensor:
    return _StraightThroughMask.apply(scores.abs(), ratio)


class Supermask(nn.Module):
    """A parametrization weight -> weight * M(scores). Scores init kaiming-uniform (a=sqrt(5)), as edge-popup."""

    def __init__(self, weight: Tensor, ratio: float) -> None:
        super().__init__()
        self.ratio = ratio
        self.scores = nn.Parameter(torch.empty_like(weight))
        nn.init.kaiming_uniform_(self.scores, a=math.sqrt(5))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * straight_through_mask(self.scores, self.ratio)

    def mask(self) -> Tensor:
        return topk_mask(self.scores, self.ratio)


def mlp_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear/Conv1D inside a module named ``*mlp*`` (GPT-2 c_fc/c_proj, Llama gate/up/down, NeoX dense)."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, (nn.Linear, Conv1D)) and ".mlp." in f".{name}."]
    if not found:
        raise ObliviateError("no MLP Linear/Conv1D layers found (expected module names containing 'mlp')")
    return found


def attach_supermasks(model: nn.Module, ratio: float, generator_seed: int) -> list[Supermask]:
    """Freeze every parameter and put a Supermask on each MLP weight. Returns the masks (their scores train)."""
    if not 0 <= ratio < 1:
        raise ObliviateError(f"mask ratio must be in [0, 1), got {ratio}")
    for p in model.parameters():
        p.requires_grad_(False)
    state = torch.random.get_rng_state()
    torch.manual_seed(generator_seed)
    masks = []
    try:
        for _, module in mlp_linears(model):
            sm = Supermask(module.weight.detach(), ratio).to(module.weight.device)
            parametrize.register_parametrization(module, "weight", sm, unsafe=True)
            masks.append(sm)
    finally:
        torch.random.set_rng_state(state)
    return masks


def bake_supermasks(model: nn.Module) -> dict[str, float]:
    """Replace each parametrized weight by W * M (pruned entries become exactly 0) and drop the scores.
    Returns the fraction of zeroed entries per masked weight."""
    pruned: dict[str, float] = {}
    for name, module in mlp_linears(model):
        if parametrize.is_parametrized(module, "weight"):
            sm = module.parametrizations.weight[0]
            pruned[name] = 1.0 - float(sm.mask().mean())
            with torch.no_grad():
                baked = module.parametrizations.weight.original * sm.mask()
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=False)
            with torch.no_grad():
                module.weight.copy_(baked)
    for p in model.parameters():
        p.requires_grad_(True)
    return pruned
