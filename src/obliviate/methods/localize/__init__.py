"""Localization-based unlearning (neuron- and weight-level, Sakarvadia et al., 2024)."""

from obliviate.methods.localize import balanced_subnet, subnet  # noqa: F401
