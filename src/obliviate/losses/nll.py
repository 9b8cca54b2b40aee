"""Token-level negative log-likelihood for causal LMs (pure tensor functions on HF-style ``labels``).

``labels`` (B, T) hold the token to predict at each position, -100 where it is not scored; position t of the
logits predicts labels[t+1] (the usual causal shift, as ``transformers`` does inside its models).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

IGNORE_INDEX = -100


def shift_labels(labels: Tensor) -> tuple[Tensor, Tensor]:
    """labels (B, T) -> (targets, mask), both (B, T-1): targets[b, t] = labels[b, t+1] (-100 replaced by 0 so it can
    index), mask True where scored."""
    targets = labels[:, 1:]
    mask = targets != IGNORE_INDEX
    return targets.masked_fill(~mask, 0), mask


def token_nll(logits: Tensor, targets: Tensor) -> Tensor:
    """-log p(target) per position. logits: (B, T, V) predicting targets: (B, T) -> (B, T), float32."""
    B, T, V = logits.shape
    return F.cross_entropy(logits.reshape(B * T, V).float(), targets.reshape(B * T), reduction="none").view(B, T)


def sequence_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sequence mean NLL over scored targets. logits: (B, T, V), labels: (B, T) -> (B,); 0 for a row with none."""
    targets, mask = shift_labels(labels)
    nll = token_nll(logits[:, :-1], targets)  # (B, T-1)
    m = mask.to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp_min(1.0)


def mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean NLL over all scored targets of the batch (the usual LM loss). -> scalar."""
    targets, mask = shift_labels(labels)
    nll = token_nll(logits[:, :-1], targets)
    m = mask.to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp_min(1.0)
