"""Loss-based LM unlearning methods."""

from obliviate.methods.lm import grad_ascent, grad_diff  # noqa: F401
