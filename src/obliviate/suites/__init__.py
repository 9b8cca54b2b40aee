"""Unlearning benchmarks. Importing this package registers every suite in ``SUITES``."""

from obliviate.suites import mia, muse, tinymem, tinymem_lang, tofu, topics, vision  # noqa: F401
from obliviate.suites.base import SUITES

__all__ = ["SUITES"]
