"""Certified unlearning: the Gaussian mechanism, the certified Newton deletion of the anchor-word topic model and
the linear head on its topics (Wei et al., 2024). Pure NumPy/SciPy: importing it does not import torch."""
