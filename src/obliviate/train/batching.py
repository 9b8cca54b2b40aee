"""Batching helpers shared by the training and unlearning loops."""

from __future__ import annotations

import torch
from torch import Tensor


def trim_padding(rows: Tensor, pad_id: int, keep_pad: int = 1) -> Tensor:
    """Drop trailing columns that are PAD in every row, keeping ``keep_pad`` of them so EOS->PAD is still a target.

    Causal attention means trailing columns never change earlier positions, so this only skips PAD->PAD targets.
    rows: (B, T) -> (B, T') with T' <= T.
    """
    nonpad = (rows != pad_id).any(0).nonzero()
    if nonpad.numel() == 0:
        return rows[:, : min(rows.shape[1], 1 + keep_pad)]
    end = min(rows.shape[1], int(nonpad[-1]) + 1 + keep_pad)
    return rows[:, :end]


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of one epoch; a pure function of (seed, epoch) so resumed runs replay the same batches."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)
