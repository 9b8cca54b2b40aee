"""Teacher-forced next-token accuracy and perplexity (TinyMem metrics, spec 1.4)."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.losses.nll import token_nll
from obliviate.metrics.base import register_metric
from obliviate.papers import TINYMEM
from obliviate.types import MetricResult


def safe_exp(x: float) -> float:
    """exp(x), or inf where it overflows (a model after gradient ascent easily has mean NLL > 709)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def shift_targets(input_ids: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Next-token targets of rows with a dedicated pad token, and the mask of real (non-PAD) targets (B, T-1)."""
    targets = input_ids[:, 1:]
    return targets, targets != pad_id


def accuracy_counts(logits: Tensor, input_ids: Tensor, pad_id: int) -> tuple[int, int, int, int]:
    """(hits over all positions, all positions, hits on non-PAD targets, non-PAD targets). logits: (B, T, V)."""
    targets, mask = shift_targets(input_ids, pad_id)
    hit = logits[:, :-1].argmax(-1) == targets  # (B, T-1)
    return int(hit.sum()), hit.numel(), int((hit & mask).sum()), int(mask.sum())


@register_metric("accuracy", higher_is_better=True, paper=TINYMEM,
                 description="teacher-forced next-token accuracy over all positions incl. PAD (reference), per test set")
@torch.no_grad()
def accuracy(model: nn.Module, rows: Tensor, pad_id: int, batch_size: int = 256) -> MetricResult:
    """Teacher-forced argmax accuracy on (N, T) rows, in %. ``value`` counts every position including PAD targets,
    as the reference code does; ``breakdown['non_pad']`` counts only real-token targets (a stricter number)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    h = n = hp = np_ = 0
    for s in range(0, rows.shape[0], batch_size):
        batch = rows[s : s + batch_size].to(device)
        a, b, c, d = accuracy_counts(model(input_ids=batch).logits, batch, pad_id)
        h, n, hp, np_ = h + a, n + b, hp + c, np_ + d
    model.train(was)
    return MetricResult("accuracy", 100.0 * h / max(n, 1), True,
                        breakdown={"non_pad": 100.0 * hp / max(np_, 1)})


@register_metric("perplexity", higher_is_better=False, paper=TINYMEM,
                 description="exp(mean token NLL over the set's real tokens); reference_compatible: mean over "
                             "batches of exp(batch NLL with PAD targets)")
@torch.no_grad()
def perplexity(model: nn.Module, rows: Tensor, pad_id: int, batch_size: int = 64,
               reference_compatible: bool = False) -> MetricResult:
    """Perplexity of (N, T) PAD-padded rows; both definitions are computed, ``value`` is the chosen one.

    Ours (``breakdown['masked']``): exp of the mean NLL over every real (non-PAD) target of the set -- independent
    of the batch size. The reference's (``breakdown['reference']``): the mean over batches of exp(the batch's mean
    NLL over every position, PAD targets included -- HF's loss with labels = input ids), which depends on the batch
    size and rewards predicting PAD after the end. ``per_item``: each row's mean NLL over its real targets."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    ref_batches: list[float] = []
    per_item: list[float] = []
    total, count = 0.0, 0
    for s in range(0, rows.shape[0], batch_size):
        batch = rows[s : s + batch_size].to(device)
        logits = model(input_ids=batch).logits
        targets, mask = shift_targets(batch, pad_id)
        nll_all = token_nll(logits[:, :-1], targets)
        nll = nll_all * mask
        per_item.extend((nll.sum(1) / mask.sum(1).clamp_min(1)).tolist())
        total += float(nll.double().sum())
        count += int(mask.sum())
        ref_batches.append(safe_exp(float(nll_all.mean())))
    model.train(was)
    masked = safe_exp(total / max(count, 1))
    reference = sum(ref_batches) / max(len(ref_batches), 1)
    return MetricResult("perplexity", reference if reference_compatible else masked, False, per_item=per_item,
                        breakdown={"masked": masked, "reference": reference})


@torch.no_grad()
def dataset_nll(model: nn.Module, data: Any, batch_size: int = 16, world: Any = None) -> float:
    """Mean NLL over every scored token of a TokenData split (the quantity the unlearning losses push up or down).

    With several processes (``world``, default: the initialised process group) the batches are split across the
    ranks (batch k on rank k mod N) and the sums gathered, so every rank returns the same number; when the model is
    sharded (FSDP) every rank runs the same number of forwards, a rank short of batches repeating its first with
    weight 0."""
    from obliviate.families.lm import batch_of
    from obliviate.losses.nll import shift_labels, token_nll
    from obliviate.train.distributed import all_reduce_sum, current_world

    world = world or current_world()
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    starts = list(range(0, len(data), batch_size))
    mine = starts[world.rank :: world.size]
    weights = [1.0] * len(mine)
    if world.sharded:
        slots = -(-len(starts) // world.size)
        weights += [0.0] * (slots - len(mine))
        mine += [starts[0]] * (slots - len(mine))
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    try:
        for s, w in zip(mine, weights):
            b = batch_of(data, torch.arange(s, min(s + batch_size, len(data)))).to(device)
            logits, labels = b.scored_logits(model)
            targets, mask = shift_labels(labels)
            nll = token_nll(logits[:, :-1], targets)
            total += w * (nll * mask).sum().double()
            count += w * mask.sum().double()
    finally:
        model.train(was_training)
    sums = all_reduce_sum(torch.stack([total, count]), world)
    return float(sums[0]) / max(float(sums[1]), 1.0)
