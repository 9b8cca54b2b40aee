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


def pruned_count(n: int, ratio: float, floor: bool = False) -> int:
    """Entries pruned of ``n``: ``round(ratio * n)``, or the reference's ``int(ratio * n)`` with ``floor``."""
    return int(ratio * n) if floor else round(ratio * n)


def topk_mask(scores: Tensor, ratio: float, floor: bool = False) -> Tensor:
    """0/1 mask with the ``pruned_count`` smallest-|score| entries set to 0 (ties broken by index order)."""
    n = scores.numel()
    k = pruned_count(n, ratio, floor)
    mask = torch.ones(n, dtype=scores.dtype, device=scores.device)
    if k > 0:
        idx = torch.argsort(scores.detach().abs().flatten(), stable=True)[:k]
        mask[idx] = 0
    return mask.view_as(scores)


class _StraightThroughMask(torch.autograd.Function):
    """forward: the top-k mask of |scores|; backward: identity to |scores| (autograd adds the sign)."""

    @staticmethod
    def forward(ctx, abs_scores: Tensor, ratio: float, floor: bool) -> Tensor:  # type: ignore[override]
        return topk_mask(abs_scores, ratio, floor)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # type: ignore[override]
        return grad, None, None


def straight_through_mask(scores: Tensor, ratio: float, floor: bool = False) -> Tensor:
    return _StraightThroughMask.apply(scores.abs(), ratio, floor)


class Supermask(nn.Module):
    """A parametrization weight -> weight * M(scores). Scores init kaiming-uniform (a=sqrt(5)), as edge-popup."""

    def __init__(self, weight: Tensor, ratio: float, floor: bool = False) -> None:
        super().__init__()
        self.ratio, self.floor = ratio, floor
        self.scores = nn.Parameter(torch.empty_like(weight))
        nn.init.kaiming_uniform_(self.scores, a=math.sqrt(5))

    def forward(self, weight: Tensor) -> Tensor:
        return weight * straight_through_mask(self.scores, self.ratio, self.floor)

    def mask(self) -> Tensor:
        return topk_mask(self.scores, self.ratio, self.floor)


def _is_adapter(name: str) -> bool:
    """PEFT adapter sub-modules (``lora_A.default`` ...): not model weights, never masked."""
    return any(part.startswith(("lora_", "modules_to_save")) for part in name.split("."))


def mlp_linears(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Every Linear/Conv1D inside a module named ``*mlp*`` (GPT-2 c_fc/c_proj, Llama gate/up/down, NeoX dense).

    Under PEFT/LoRA the wrapped ``base_layer`` is included and the adapter matrices are not."""
    found = [(name, m) for name, m in model.named_modules()
             if isinstance(m, (nn.Linear, Conv1D)) and ".mlp." in f".{name}." and not _is_adapter(name)]
    if not found:
        have = [name for name, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D))]
        shown = ", ".join(have[:8]) + (f" ... ({len(have)} in all)" if len(have) > 8 else "")
        raise ObliviateError(f"no MLP Linear/Conv1D layers found in {type(model).__name__} (expected module names "
                             "containing 'mlp': nn.Linear / Conv1D modules inside a module named 'mlp', e.g. "
                             "transformer.h.0.mlp.c_fc, model.layers.0.mlp.down_proj); its Linear/Conv1D modules: "
                             f"{shown or 'none'}")
    return found


def freeze(model: nn.Module) -> dict[str, bool]:
    """Turn ``requires_grad`` off everywhere; returns each parameter's previous flag for :func:`restore_grad`."""
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    for p in model.parameters():
        p.requires_grad_(False)
    return flags


def restore_grad(model: nn.Module, flags: dict[str, bool]) -> None:
    """Put back the ``requires_grad`` flags saved by :func:`freeze` (the caller's freeze state is theirs)."""
    for name, p in model.named_parameters():
        if name in flags:
            p.requires_grad_(flags[name])


def attach_supermasks(model: nn.Module, ratio: float, generator_seed: int, floor: bool = False) -> list[Supermask]:
    """Put a Supermask on each MLP weight of a frozen model. Returns the masks (their scores train).

    Score init draws from a forked RNG seeded with ``generator_seed``: the caller's global RNG state is untouched.
    """
    if not 0 <= ratio < 1:
        raise ObliviateError(f"mask ratio must be in [0, 1), got {ratio}")
    targets = mlp_linears(model)
    masks = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        for _, module in targets:
            sm = Supermask(module.weight.detach(), ratio, floor).to(module.weight.device)
            parametrize.register_parametrization(module, "weight", sm, unsafe=True)
            masks.append(sm)
    return masks


def bake_supermasks(model: nn.Module) -> dict[str, float]:
    """Replace each parametrized weight by W * M (pruned entries become exactly 0) and drop the scores.
    Returns the fraction of zeroed entries per masked weight. ``requires_grad`` flags are left to the caller."""
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
    return pruned
