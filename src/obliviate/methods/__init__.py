"""Unlearning methods. Importing this package registers every method in ``METHODS``."""

from obliviate.methods import certified as _certified  # noqa: F401
from obliviate.methods import classifier as _classifier  # noqa: F401
from obliviate.methods import lm as _lm  # noqa: F401
from obliviate.methods import localize as _localize  # noqa: F401
from obliviate.methods import neuron as _neuron  # noqa: F401
from obliviate.methods import tinymem as _tinymem  # noqa: F401
from obliviate.methods.base import METHODS, LossMethod, UnlearningMethod, build_method, check_family

__all__ = ["METHODS", "LossMethod", "UnlearningMethod", "build_method", "check_family"]
