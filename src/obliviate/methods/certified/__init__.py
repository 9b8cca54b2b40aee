"""Certified unlearning methods of the topic family (Wei et al., 2024): exact and certified deletion from the
anchor-word topic model, deletion through a downstream linear head, and retraining as the reference."""

from obliviate.methods.certified import topic_model  # noqa: F401
