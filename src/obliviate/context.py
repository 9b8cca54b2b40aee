"""What a method gets besides the model and data: where to run, which seed, how to talk, how to evaluate."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def print_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def quiet_libraries() -> None:
    """Silence transformers' warnings and progress bars (process-wide: the CLI and bench worker processes only)."""
    import os

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


@dataclass(frozen=True)
class RunContext:
    """``seed`` is the run's seed: a method whose config leaves ``seed`` unset (None) uses it, so a multi-seed
    study really varies the method's randomness. ``evaluate`` (optional) scores a model mid-run, for methods with
    stop rules. ``log`` takes progress lines (the library never prints on its own). ``checkpoint_dir``: loop-driven
    methods checkpoint there every ``checkpoint_every`` epochs; with ``resume`` they continue from the checkpoint
    found there (see :mod:`obliviate.train.checkpoint`)."""

    seed: int = 0
    device: Any = None  # torch.device or None (= where the model already is)
    progress: bool = False
    log: Callable[[str], None] = print_stderr
    evaluate: Callable[[Any], dict[str, float]] | None = None
    checkpoint_dir: Any = None  # str | Path | None
    checkpoint_every: int = 1
    resume: bool = False
