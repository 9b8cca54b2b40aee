"""Token-level negative log-likelihood for causal LMs (pure tensor functions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def shift_targets(input_ids: Tensor, pad_id: int | None) -> tuple[Tensor, Tensor]:
    """Next-token targets and their mask: targets[b, t] = input_ids[b, t+1]; mask is False on PAD targets.

    input_ids: (B, T) -> targets, mask: (B, T-1). ``pad_id=None`` keeps every position (reference pre-training loss).
    """
    targets = input_ids[:, 1:]
    mask = torch.ones_like(targets, dtype=torch.bool) if pad_id is None else targets != pad_id
    return targets, mask


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """-log p(target) per position. logits: (B, T, V) predicting targets: (B, T) -> (B, T), float32."""
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T), reduction="none").view(B, T)


def sequence_nll(logits: Tensor, input_ids: Tensor, pad_id: int | None) -> Tensor:
    """Per-sequence mean token NLL of a causal LM. logits: (B, T, V) on input_ids: (B, T) -> (B,).

    Position t of ``logits`` predicts token t+1. Sequences with no scored token get 0.
    """
    targets, mask = shift_targets(input_ids, pad_id)
    nll = token_nll(logits[:, :-1], targets)  # (B, T-1)
    m = mask.to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp_min(1.0)


def mean_nll(logits: Tensor, input_ids: Tensor, pad_id: int | None) -> Tensor:
    """Mean token NLL over all scored tokens of the batch (the usual LM loss). -> scalar."""
    targets, mask = shift_targets(input_ids, pad_id)
    nll = token_nll(logits[:, :-1], targets)
    m = mask.to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp_min(1.0)
