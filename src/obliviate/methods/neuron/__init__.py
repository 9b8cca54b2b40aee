"""Neuron-level unlearning (Sakarvadia et al., 2024): attribute each FFN neuron, ablate the top ones per layer."""

from obliviate.methods.neuron import (  # noqa: F401
    activations,
    hard_concrete,
    integrated_gradients,
    slimming,
    zero_out,
)
