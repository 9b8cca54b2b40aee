"""Batch order shared by the training and unlearning loops."""

from __future__ import annotations

import torch
from torch import Tensor


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of one epoch; a pure function of (seed, epoch) so resumed runs replay the same batches."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)
