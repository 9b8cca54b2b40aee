"""Seeding and determinism. Library functions take seeds explicitly (local generators, forked RNG state) and never
change process-wide settings; only the CLI entry point asks torch for deterministic kernels."""

from __future__ import annotations

import os

import numpy as np
import torch


def deterministic_kernels() -> None:
    """Ask torch for deterministic kernels (a warning names any op that has none). Process-wide: CLI only."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True, warn_only=True)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A fresh torch generator seeded with ``seed``."""
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def numpy_rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)
