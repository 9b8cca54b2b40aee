"""Metrics. Importing this package registers every metric in ``METRICS``."""

from obliviate.metrics import lm_quality, memorization, mia, privleak, selection, tofu, tofu_eval  # noqa: F401
from obliviate.metrics.base import METRICS, MetricSpec, register_metric

__all__ = ["METRICS", "MetricSpec", "register_metric"]
