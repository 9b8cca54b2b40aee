"""Seeding helpers. Every run takes a seed; generators are passed explicitly, never taken from global state."""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels (bit-for-bit reruns on CPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch generator seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
