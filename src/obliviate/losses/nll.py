"""Token-level negative log-likelihood for causal LMs (pure tensor functions on HF-style ``labels``).

``labels`` (B, T) hold the token to predict at each position, -100 where it is not scored; position t of the
logits predicts labels[t+1] (the usual causal shift, as ``transformers`` does inside its models).
"""

from __future__ import annotations

import torch
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


def _next_labels(labels: Tensor) -> Tensor:
    """(B, T): labels[:, t + 1] at t, -100 at the last position (it predicts nothing)."""
    return torch.cat([labels[:, 1:], labels.new_full((labels.shape[0], 1), IGNORE_INDEX)], 1)


def shifted_nll(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(-log p(labels[t + 1]) at each position t, 0 where not scored; mask True where scored), both (B, T-1), the NLL
    in float32. Equal to ``token_nll(logits[:, :-1], targets)`` at the scored positions, but computed on the full
    (B, T, V) logits with the last position ignored: no copy of the logits and no slice in the autograd graph (whose
    backward would allocate and fill a (B, T, V) zero gradient) -- a real cost with large vocabularies."""
    B, T, V = logits.shape
    nxt = _next_labels(labels)
    nll = F.cross_entropy(logits.reshape(B * T, V).float(), nxt.reshape(B * T), ignore_index=IGNORE_INDEX,
                          reduction="none").view(B, T)
    return nll[:, :-1], nxt[:, :-1] != IGNORE_INDEX


def scored_rows(logits: Tensor, mask: Tensor) -> Tensor:
    """The logit rows (N, V) at the positions where the shifted ``mask`` (B, T-1) is True, in row-major order (as
    ``logits[:, :-1][mask]``), indexed on the flattened full logits: one gather in the graph, no slice."""
    B, T, V = logits.shape
    full = torch.cat([mask, mask.new_zeros((B, 1))], 1)
    return logits.reshape(B * T, V)[full.reshape(B * T)]


def sequence_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Per-sequence mean NLL over scored targets. logits: (B, T, V), labels: (B, T) -> (B,); 0 for a row with none."""
    nll, mask = shifted_nll(logits, labels)  # (B, T-1)
    m = mask.to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp_min(1.0)


def mean_nll(logits: Tensor, labels: Tensor) -> Tensor:
    """Mean NLL over all scored targets of the batch (the usual LM loss). -> scalar."""
    nll, mask = shifted_nll(logits, labels)
    m = mask.to(nll.dtype)
    return (nll * m).sum() / m.sum().clamp_min(1.0)
