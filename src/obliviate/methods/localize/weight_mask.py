"""What the weight-level TinyMem methods share (Sakarvadia et al., 2024, §weight-level unlearning): the MLP
parameters they may zero, the forget-set gradient, top-k selection per tensor or over all of them, and the
``unlearn`` wrapper (checks, eval mode, frozen flags, timing, result).

Targets are the weights *and biases* of every Linear/Conv1D inside a module named ``mlp`` (GPT-2 ``c_fc``/``c_proj``,
Llama ``gate/up/down_proj``, NeoX ``dense_*``): the reference masks every parameter whose name contains "mlp", which
is exactly those. Counts are k = floor(ratio * n), as the reference's ``int(n * ratio)`` (k = 0 leaves a tensor
alone; the 1e-9 keeps e.g. 0.29 * 100 from flooring to 28).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData, batch_of
from obliviate.losses.nll import mean_nll, shifted_nll
from obliviate.methods.base import method_seed
from obliviate.methods.localize.supermask import freeze, mlp_linears, restore_grad
from obliviate.papers import TINYMEM
from obliviate.profiling import track
from obliviate.train.distributed import broadcast_parameters, current_world
from obliviate.types import Paper, UnlearnResult

RATIO_GRID = "paper grid: 1e-5, 1e-4, 1e-3, 1e-2, 0.05"


@dataclass
class Target:
    """One parameter the method may zero: ``name`` (``<module>.weight`` / ``.bias``), its module and itself."""

    name: str
    module: nn.Module
    param: nn.Parameter

    @property
    def is_bias(self) -> bool:
        return self.name.endswith(".bias")


def mlp_targets(model: nn.Module) -> list[Target]:
    """Weights and biases of every MLP Linear/Conv1D, in model order (PEFT adapters excluded)."""
    out = []
    for name, module in mlp_linears(model):
        out.append(Target(f"{name}.weight", module, module.weight))
        if getattr(module, "bias", None) is not None:
            out.append(Target(f"{name}.bias", module, module.bias))
    return out


def prune_count(ratio: float, n: int) -> int:
    """k = floor(ratio * n) (the reference's ``int(n * ratio)``)."""
    return math.floor(ratio * n + 1e-9)


def check_ratio(ratio: float) -> None:
    if not 0 < ratio < 1:
        raise ObliviateError(f"method.ratio must be in (0, 1) (the fraction of MLP weights zeroed), got {ratio}; "
                             f"{RATIO_GRID}")


def model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def forget_batches(split: TokenData, batch_size: int, device: torch.device,
                   all_positions: bool = False) -> Iterator[LMBatch]:
    """The split in order, ``batch_size`` rows at a time (the reference's unshuffled loader). ``all_positions``:
    the reference's ``model(batch, labels=batch)`` -- every position attended and scored, padding included."""
    for idx in torch.arange(len(split)).split(batch_size):
        b = batch_of(split, idx, trim=not all_positions)
        if all_positions:
            b = LMBatch(b.input_ids, torch.ones_like(b.input_ids), b.input_ids.clone(), idx)
        yield b.to(device)


def batch_loss(model: nn.Module, batch: LMBatch) -> Tensor:
    """Mean NLL over the batch's scored targets (the HF ``labels=`` loss)."""
    return mean_nll(*batch.scored_logits(model))


def forget_gradient(model: nn.Module, split: TokenData, params: list[Tensor], batch_size: int,
                    all_positions: bool = False) -> tuple[list[Tensor], float]:
    """Sum over the split's batches of the gradient of each batch's mean loss, as the reference (it never zeroes
    the gradient between batches): returns (one float32 gradient per parameter, the summed loss). ``params``
    must require grad; their ``.grad`` is left None."""
    for p in params:
        p.grad = None
    total = 0.0
    for batch in forget_batches(split, batch_size, model_device(model), all_positions):
        loss = batch_loss(model, batch)
        loss.backward()
        total += float(loss.detach())
    grads = [torch.zeros_like(p, dtype=torch.float32) if p.grad is None else p.grad.detach().float().clone()
             for p in params]
    for p in params:
        p.grad = None
    return grads, total


@torch.no_grad()
def forget_nll(model: nn.Module, split: TokenData, batch_size: int = 64) -> float:
    """Mean NLL over every scored target of the split."""
    total, count = 0.0, 0
    for batch in forget_batches(split, batch_size, model_device(model)):
        nll, mask = shifted_nll(*batch.scored_logits(model))
        total, count = total + float((nll * mask).sum()), count + int(mask.sum())
    return total / max(count, 1)


def top_mask(scores: Tensor, k: int, exclude: Tensor | None = None) -> Tensor:
    """Bool mask (shape of ``scores``) of the k highest scores; ``exclude`` (bool, same shape) entries never chosen.
    Ties: lower index first; NaN ranks lowest."""
    flat = scores.detach().flatten()
    flat = (flat if flat.dtype in (torch.float32, torch.float64) else flat.float()).nan_to_num(nan=-math.inf)
    if exclude is not None:
        flat = flat.masked_fill(exclude.flatten(), -math.inf)
        k = min(k, int((~exclude).sum()))
    mask = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    if k > 0:
        mask[torch.argsort(flat, descending=True, stable=True)[:k]] = True
    return mask.view_as(scores)


def top_mask_global(scores: list[Tensor], k: int, exclude: list[Tensor] | None = None) -> list[Tensor]:
    """:func:`top_mask` over all tensors concatenated (one global ranking), split back per tensor."""
    flat = torch.cat([s.detach().flatten() for s in scores])
    ex = None if exclude is None else torch.cat([e.flatten() for e in exclude])
    mask = top_mask(flat, k, ex)
    return [m.view_as(s) for m, s in zip(mask.split([s.numel() for s in scores]), scores)]


def round_share(total: int, r: int, rounds: int) -> int:
    """How many of ``total`` are chosen by the end of round r (1-based) of ``rounds``: equal shares, exact total."""
    return total * r // rounds


@torch.no_grad()
def zero_(targets: list[Target], masks: list[Tensor]) -> None:
    for t, m in zip(targets, masks):
        t.param.masked_fill_(m.to(t.param.device), 0.0)


@dataclass
class WeightEdit:
    """What a method's ``edit`` returns: the zeroed entries per target (bool, target shape), per-round logs and
    extra info."""

    zeroed: list[Tensor]
    logs: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class WeightMethod:
    """Zero chosen MLP weights of a trained LM in place. Not a loop method: ``unlearn`` runs ``edit`` with the model
    in eval mode (deterministic: no dropout in the saliency) and every parameter frozen except those ``edit``
    turns on, then restores the caller's train/eval mode and ``requires_grad`` flags and leaves no ``.grad``."""

    family: ClassVar[str] = "lm"
    kind: ClassVar[str] = "post_hoc"
    config_cls: ClassVar[type]
    paper: ClassVar[Paper | None] = TINYMEM
    needs_retain: ClassVar[bool] = False
    lora_compatible: ClassVar[bool] = False  # the edit is to the base weights, not through an adapter
    fsdp_compatible: ClassVar[bool] = False  # selections need whole tensors
    smoke_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def edit(self, model: nn.Module, data: LMUnlearnData, targets: list[Target], seed: int) -> WeightEdit:
        raise NotImplementedError

    def unlearn(self, model: nn.Module, data: LMUnlearnData, ctx: RunContext | None = None) -> UnlearnResult:
        ctx = ctx or RunContext()
        name = type(self).__name__
        if not isinstance(data, LMUnlearnData):
            raise ObliviateError(f"{name} is an lm-family method: it takes LMUnlearnData, got {type(data).__name__}")
        if self.needs_retain and not data.has_retain:
            raise ObliviateError(f"{name} needs a non-empty retain set (its batches mix forget and retain rows)")
        world = current_world()
        if world.sharded:
            raise ObliviateError(f"{name} ranks whole MLP tensors: run it data parallel or on one process, not "
                                 "sharded (FSDP)")
        if ctx.device is not None:
            model.to(ctx.device)
        seed = method_seed(self.config, ctx)
        targets = mlp_targets(model)
        was_training, flags = model.training, freeze(model)
        model.eval()
        try:
            with track(name) as cost:
                before = forget_nll(model, data.forget)
                edit = self.edit(model, data, targets, seed)
                after = forget_nll(model, data.forget)
        finally:
            for p in model.parameters():
                p.grad = None
            restore_grad(model, flags)
            model.train(was_training)
        broadcast_parameters(model, world)  # data parallel: every rank keeps rank 0's edit
        counts = {t.name: int(z.sum()) for t, z in zip(targets, edit.zeroed)}
        logs = edit.logs + [{"forget_nll_before": before, "forget_nll_after": after,
                             "zeroed": float(sum(counts.values()))}]
        info = {"zeroed": sum(counts.values()), "zeroed_per_tensor": counts,
                "target_params": sum(t.param.numel() for t in targets), "forget_nll_before": before,
                "forget_nll_after": after, **edit.info}
        if any(f == "seed" for f in getattr(self.config, "__dataclass_fields__", {})):
            info["seed"] = seed
        masks = {t.name: z.cpu() for t, z in zip(targets, edit.zeroed)}
        return UnlearnResult(model=model, logs=logs, info=info, wall_s=max(cost.wall_s, 1e-9),
                             peak_rss_mb=cost.peak_rss_mb, masks=masks)
