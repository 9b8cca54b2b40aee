"""CE-U: cross-entropy unlearning loss (Yang, 2025, "CE-U: Cross Entropy Unlearning"; arXiv 2503.01224).

Spec: ``shared/specs/ceu-and-tofu.md`` §1, implemented as in open-unlearning ``src/trainer/unlearn/ceu.py``.

For each scored answer position with logits z in R^V and gold next token y, with q = softmax(z):

    target  p~ = softmax(stopgrad(z) with z_y := -inf)      (p~_y = 0, p~_i = q_i / (1 - q_y) for i != y)
    loss    H(p~, q) = -sum_i p~_i log q_i  =  KL(p~ || q) + H(p~)  =  -log(1 - q_y) + H(p~)

H(p~) is a constant (p~ is detached), so the gradient is that of -log(1 - q_y): dL/dz = q - p~, i.e.
dL/dz_y = q_y and dL/dz_i = -q_i q_y / (1 - q_y) for i != y. Each component lies in [-1, 1]: unlike gradient
ascent (dGA/dz_y = 1 - q_y, loss unbounded below, d/dq_y = 1/q_y blowing up as q_y -> 0) the push on z_y is as
large as the model's confidence and goes to 0 as q_y -> 0 (the loss is bounded below).

Conventions (as ``losses/nll.py``): logits (B, T, V), labels (B, T) with -100 = not scored, position t predicts
labels[t+1]. Before the shift the first ``n_skip`` scored labels of every row are set to -100 (open-unlearning's
``ignore_first_n_answer_tokens``, default 1 in ``configs/trainer/CEU.yaml``). The loss is a flat mean over all
remaining scored tokens of the batch (not a per-sequence mean). Softmaxes are computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from obliviate.losses.nll import IGNORE_INDEX, scored_rows, shift_labels

CEU_N_SKIP = 1  # open-unlearning configs/trainer/CEU.yaml: ignore_first_n_answer_tokens


def skip_first_n_labels(labels: Tensor, n_skip: int = CEU_N_SKIP) -> Tensor:
    """Return a copy of labels (B, T) whose first ``n_skip`` scored (!= -100) entries per row are set to -100.

    Applied *before* the causal shift, as open-unlearning's CE-U trainer does. n_skip=0 returns an unchanged copy.
    """
    if n_skip < 0:
        raise ValueError(f"n_skip must be >= 0, got {n_skip}")
    valid = labels != IGNORE_INDEX
    first = valid & (valid.long().cumsum(dim=-1) <= n_skip)
    return labels.masked_fill(first, IGNORE_INDEX)


def ceu_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Per-token CE-U loss H(p~, softmax(z)) for logits (N, V) and gold targets (N,) -> (N,) float32.

    p~ = softmax of the detached logits with the gold logit set to -inf; gradient flows only through log_softmax(z).
    """
    z = logits.float()
    masked = z.detach().clone()
    masked.scatter_(-1, targets.unsqueeze(-1), float("-inf"))
    p_tilde = torch.softmax(masked, dim=-1)  # p~_y = 0 exactly
    logq = torch.log_softmax(z, dim=-1)
    # p~_y = 0 multiplies a finite log q_y, so no 0 * inf; use where() anyway to keep -inf logits (q_i = 0) safe
    prod = torch.where(p_tilde > 0, p_tilde * logq, torch.zeros_like(logq))
    return -prod.sum(-1)


def ceu_loss(logits: Tensor, labels: Tensor, n_skip: int = CEU_N_SKIP) -> Tensor:
    """CE-U loss (Yang 2025) averaged over all scored tokens of the batch -> scalar.

    logits (B, T, V), labels (B, T) with -100 ignored. The first ``n_skip`` scored labels per row are dropped before the
    causal shift (default 1, open-unlearning CEU.yaml). Returns 0 (with a graph) when no token is scored.
    Forget-only: the method has no retain term and no reference model (open-unlearning ceu.py).
    """
    labels = skip_first_n_labels(labels, n_skip)
    targets, mask = shift_labels(labels)
    z = scored_rows(logits, mask)  # (N, V)
    y = targets[mask]  # (N,)
    if z.shape[0] == 0:
        return logits.float().sum() * 0.0
    return ceu_token_loss(z, y).mean()


def ceu_closed_form_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """KL(p~ || q) = -log(1 - q_y) per token, logits (N, V), targets (N,) -> (N,) float32 [derived, spec §1.1].

    Same gradient as :func:`ceu_token_loss` (they differ by the constant H(p~)). Computed as -log(-expm1(log q_y))
    to avoid the cancellation in 1 - q_y when q_y ~ 1 (spec §1.3).
    """
    logq_y = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return -torch.log(-torch.expm1(logq_y).clamp_max(-torch.finfo(torch.float32).tiny))
