"""Logits only where a target is scored: each row's scored span, left-aligned, so the LM head and the float32 softmax
skip the prompt (and trailing padding) of QA rows.

Every loss over scored targets reads, per row b, the logit positions t with labels[b, t + 1] scored (the causal
shift) -- or, for PDU's reference quirk, labels[b, t] scored. Both lie in [s_b, L_b], where L_b is the row's last
scored label column and s_b the column before its first one. Row b's window is the K columns from s_b (K = the
longest span in the batch); its labels are moved with it, -100 past the row's end. A loss over scored targets has the
same value on (window logits, window labels) as on the full (B, T, V) logits with the full labels: each row's
scored (position, target) pairs are the same pairs, only moved left; the window's first label column is never
scored. The window is gathered from the final hidden states before the LM head (a forward pre-hook on the model's
output embedding, so any logit scaling or soft-capping after the head still applies); a model without
``get_output_embeddings`` computes every logit and the window is gathered from them.

Losses over *all* attended positions (the KL / QKL retain penalties, UNDIAL's default mean) keep ``LMBatch.logits``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.losses.nll import IGNORE_INDEX


def scored_windows(labels: Tensor) -> tuple[Tensor, Tensor]:
    """labels (B, T) -> (index (B, K) of the positions each row's window reads, window labels (B, K)).

    Row b's window starts at s_b = max(first scored column - 1, 0) and the batch's K = max_b (L_b - s_b + 1); a row
    with nothing scored gets a one-column window. Indices past the row's end are clamped to T - 1 (their labels are
    -100, so no loss reads them)."""
    B, T = labels.shape
    scored = labels != IGNORE_INDEX
    cols = torch.arange(T, device=labels.device).expand(B, T)
    has = scored.any(1)
    first = torch.where(scored, cols, T).amin(1)
    last = torch.where(scored, cols, -1).amax(1)
    start = torch.where(has, (first - 1).clamp_min(0), 0)
    span = torch.where(has, last - start + 1, 1)
    K = int(span.max()) if B else 1
    pos = start[:, None] + torch.arange(K, device=labels.device)[None, :]  # (B, K)
    inside = pos < T
    index = pos.clamp_max(T - 1)
    window = torch.where(inside, labels.gather(1, index), IGNORE_INDEX)
    return index, window


def output_head(model: nn.Module) -> nn.Module | None:
    """The module that maps final hidden states to logits (HF ``get_output_embeddings``), looking through peft and
    obliviate's adapter views (their ``.model``); None when there is none."""
    m: Any = model
    for _ in range(6):
        if m is None:
            return None
        get = getattr(m, "get_output_embeddings", None)
        if callable(get):
            head = get()
            if isinstance(head, nn.Module):
                return head
        base = getattr(m, "get_base_model", None)
        m = base() if callable(base) else getattr(m, "model", None)
    return None


@contextmanager
def _gather_before(head: nn.Module, index: Tensor) -> Iterator[list[bool]]:
    """While active, ``head``'s input (B, T, d) is replaced by its rows ``index`` (B, K) -> (B, K, d)."""
    fired = [False]

    def pre(_mod: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        h = args[0]
        fired[0] = True
        return (h.gather(1, index.unsqueeze(-1).expand(-1, -1, h.shape[-1])), *args[1:])

    handle = head.register_forward_pre_hook(pre)
    try:
        yield fired
    finally:
        handle.remove()


def scored_logits(model: nn.Module, inputs: dict[str, Tensor], labels: Tensor) -> tuple[Tensor, Tensor]:
    """(logits (B, K, V), labels (B, K)) of ``model`` on ``inputs`` over each row's scored window (module doc)."""
    index, window = scored_windows(labels)
    if index.shape[1] == labels.shape[1] and bool((index[:, 0] == 0).all()):
        return model(**inputs).logits, labels  # nothing to skip
    head = output_head(model)
    if head is not None:
        with _gather_before(head, index) as fired:
            logits = model(**inputs).logits
        if fired[0] and logits.shape[:2] == index.shape:
            return logits, window
        if fired[0]:
            raise RuntimeError(f"the output head of {type(model).__name__} was called but the logits have shape "
                               f"{tuple(logits.shape)}, not the window's {tuple(index.shape)}")
    else:
        logits = model(**inputs).logits
    return logits.gather(1, index.unsqueeze(-1).expand(-1, -1, logits.shape[-1])), window
