"""obliviate: find, remove and prove the removal of memorized training data."""

__version__ = "0.1.0"
