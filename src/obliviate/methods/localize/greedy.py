"""Greedy (Sakarvadia et al., 2024, §weight-level unlearning; adapted from the greedy localization of Maini et al.,
2023, *Can Neural Network Memorization Be Localized?*).

Forget rows (y = +1) and retain rows (y = -1) are shuffled together into batches of 64. Each step takes the next batch,
computes J = -sum_i y_i L_i (L_i the row's mean token NLL; the reference's mean(-B y_i L_i)), and zeroes the MLP
weight or bias whose removal lowers J most to first order: the largest w * dJ/dw, if positive (a step where none is
positive zeroes nothing, as the reference). Steps: k = floor(ratio * N) for the N MLP entries, cycling through
reshuffled passes.

Cost: evaluating each of the N candidates by zeroing it and re-running the batch would take N forwards per step; the
first-order scores of all N come from one backward, so a step costs one forward-backward on one batch. The reference
also backpropagates into every parameter and picks the winner in a per-tensor Python loop; here only the MLP entries
get a gradient and one argmax over all of them picks it (same choice; ``naive=True`` runs the reference's way, for
``benchmarks/bench_greedy.py``). ``epochs`` E spreads the same k over E passes (each step zeroes its equal share of
the best-scoring entries): E passes instead of k steps, a coarser but much cheaper schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData, batch_of
from obliviate.losses.nll import IGNORE_INDEX, sequence_nll
from obliviate.methods.base import METHODS
from obliviate.methods.localize.weight_mask import (
    Target,
    WeightEdit,
    WeightMethod,
    check_ratio,
    model_device,
    prune_count,
    round_share,
)


@dataclass(frozen=True)
class GreedyConfig:
    """``ratio``: fraction of all MLP entries zeroed (one per step). ``batch_size``: mixed rows per step (reference
    64). ``epochs``: None = the reference's one entry per step; E = spread the count over E passes over the mixed
    rows (each step zeroes its share). ``seed``: batch order (None = the run's seed)."""

    ratio: float = 1e-3
    batch_size: int = 64
    epochs: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        if self.batch_size < 1:
            raise ObliviateError(f"method.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs is not None and self.epochs < 1:
            raise ObliviateError(f"method.epochs must be >= 1 or null (one entry per step), got {self.epochs}")


def mixed_rows(forget: TokenData, retain: TokenData) -> tuple[TokenData, Tensor]:
    """Forget then retain rows, right-padded to one width (padding: attention 0, label -100), and y (N,) = +1 / -1."""
    T = max(forget.input_ids.shape[1], retain.input_ids.shape[1])

    def pad(t: Tensor, value: int) -> Tensor:
        return torch.nn.functional.pad(t, (0, T - t.shape[1]), value=value)

    parts = [(s.input_ids, s.attention_mask, s.labels) for s in (forget, retain)]
    rows = TokenData(*(torch.cat([pad(p[i], v) for p in parts]) for i, v in enumerate((0, 0, IGNORE_INDEX))))
    y = torch.cat([torch.ones(len(forget)), -torch.ones(len(retain))])
    return rows, y


def objective(model: nn.Module, batch: LMBatch, y: Tensor) -> Tensor:
    """J = -sum_i y_i L_i over the batch's rows (scalar)."""
    return -(sequence_nll(*batch.scored_logits(model)) * y).sum()


class FlatIndex:
    """The targets' entries numbered 0..N-1 in order; maps a flat number back to (target, entry)."""

    def __init__(self, targets: list[Target]) -> None:
        self.targets = targets
        sizes = torch.tensor([t.param.numel() for t in targets])
        self.ends = sizes.cumsum(0)
        self.starts = self.ends - sizes
        self.numel = int(self.ends[-1])

    def locate(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        ti = torch.searchsorted(self.ends, idx.cpu(), right=True)
        return ti, idx.cpu() - self.starts[ti]

    @torch.no_grad()
    def zero_(self, idx: Tensor) -> None:
        ti, li = self.locate(idx)
        for u in ti.unique().tolist():
            p = self.targets[u].param
            p.view(-1).index_fill_(0, li[ti == u].to(p.device), 0.0)


@dataclass
class GreedyRun:
    """The entries zeroed (flat numbers, in order), logs, and the steps taken and skipped."""

    chosen: list[int]
    logs: list[dict[str, float]] = field(default_factory=list)
    steps: int = 0
    skipped: int = 0


def _scores(targets: list[Target], grads: list[Tensor | None]) -> Tensor:
    """w * dJ/dw of every target entry, flattened in order (N,)."""
    return torch.cat([(t.param.detach() * (0.0 if g is None else g)).flatten().float()
                      for t, g in zip(targets, grads)])


def _best(scores: Tensor, n: int) -> Tensor:
    """The n highest positive scores' indices, best first (ties: lower index first)."""
    n = min(n, int((scores > 0).sum()))
    if n == 0:
        return torch.zeros(0, dtype=torch.long)
    if n == 1:
        return scores.argmax().view(1).cpu()
    idx = torch.topk(scores, n).indices.sort().values
    return idx[torch.argsort(scores[idx], descending=True, stable=True)].cpu()


def _step(model: nn.Module, flat: FlatIndex, batch: LMBatch, y: Tensor, k: int) -> tuple[float, Tensor]:
    """(J, the k entries to zero): one backward into the MLP entries, one ranking over all of them."""
    J = objective(model, batch, y)
    grads = torch.autograd.grad(J, [t.param for t in flat.targets], allow_unused=True)
    return float(J.detach()), _best(_scores(flat.targets, list(grads)), k)


def _step_naive(model: nn.Module, flat: FlatIndex, batch: LMBatch, y: Tensor, k: int) -> tuple[float, Tensor]:
    """The reference's step: backward into every parameter, copy every gradient, then a per-tensor loop (one
    device sync each) in which the first tensor with the largest positive max wins. Same choice as :func:`_step`."""
    J = objective(model, batch, y)
    J.backward()
    grads = {id(p): p.grad.detach().clone() for p in model.parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    tgrads = [grads.get(id(t.param)) for t in flat.targets]
    if k > 1:
        return float(J.detach()), _best(_scores(flat.targets, tgrads), k)
    best, arg = torch.tensor(0.0), None
    for t, g, start in zip(flat.targets, tgrads, flat.starts.tolist()):
        s = (t.param.detach() * (0.0 if g is None else g)).flatten().float()
        mx = s.max().cpu()
        if mx > best:
            best, arg = mx, start + int(s.argmax())
    return float(J.detach()), torch.tensor([] if arg is None else [arg], dtype=torch.long)


def greedy_prune(model: nn.Module, targets: list[Target], rows: TokenData, y: Tensor, cfg: GreedyConfig, seed: int,
                 naive: bool = False) -> GreedyRun:
    """Run the greedy schedule on ``model`` (eval mode, targets requiring grad) and zero the chosen entries in
    place. ``naive``: the reference's per-step work (:func:`_step_naive`), for the benchmark."""
    device = model_device(model)
    flat = FlatIndex(targets)
    total, n, bs = prune_count(cfg.ratio, flat.numel), len(rows), cfg.batch_size
    per_pass = math.ceil(n / bs)
    steps = total if cfg.epochs is None else cfg.epochs * per_pass
    flags = {id(p): p.requires_grad for p in model.parameters()}
    if naive:  # the reference computes every parameter's gradient
        for p in model.parameters():
            p.requires_grad_(p.is_floating_point())
    step = _step_naive if naive else _step
    gen = torch.Generator().manual_seed(seed)  # the batch order: reshuffled every pass, as a shuffling DataLoader
    run, perm, objs = GreedyRun(chosen=[]), torch.arange(n), []
    try:
        for t in range(steps):
            if t % per_pass == 0:
                perm = torch.randperm(n, generator=gen)
            k = 1 if cfg.epochs is None else round_share(total, t + 1, steps) - round_share(total, t, steps)
            if k > 0:
                idx = perm[(t % per_pass) * bs:(t % per_pass + 1) * bs]
                J, pick = step(model, flat, batch_of(rows, idx).to(device), y[idx].to(device), k)
                flat.zero_(pick)
                run.chosen += pick.tolist()
                run.skipped += int(len(pick) == 0)
                run.steps += 1
                objs.append(J)
            if (t + 1) % per_pass == 0 or t == steps - 1:
                run.logs.append({"step": float(t + 1), "objective": sum(objs) / max(len(objs), 1),
                                 "zeroed": float(len(run.chosen))})
                objs = []
    finally:
        for p in model.parameters():
            p.requires_grad_(flags[id(p)])
            p.grad = None
    return run


@METHODS.register("greedy")
class Greedy(WeightMethod):
    config_cls = GreedyConfig
    needs_retain = True
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.003}

    def edit(self, model: nn.Module, data: LMUnlearnData, targets: list[Target], seed: int) -> WeightEdit:
        assert data.retain is not None  # needs_retain is checked by unlearn
        rows, y = mixed_rows(data.forget, data.retain)
        for t in targets:
            t.param.requires_grad_(True)
        run = greedy_prune(model, targets, rows, y, self.config, seed)
        flat = FlatIndex(targets)
        mask = torch.zeros(flat.numel, dtype=torch.bool)
        mask[torch.tensor(run.chosen, dtype=torch.long)] = True
        zeroed = [m.view(t.param.shape) for m, t in zip(mask.split([t.param.numel() for t in targets]), targets)]
        info = {"steps": run.steps, "skipped_steps": run.skipped, "target": prune_count(self.config.ratio, flat.numel)}
        return WeightEdit(zeroed=zeroed, logs=run.logs, info=info)
