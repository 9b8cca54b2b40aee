"""Localization-based unlearning (neuron- and weight-level, Sakarvadia et al., 2024)."""

from obliviate.methods.localize import (  # noqa: F401
    balanced_subnet,
    durable,
    durable_aggregate,
    greedy,
    obs,
    subnet,
)
