"""The rule every family's unlearning data follows: each split has the family's split type (``retain`` may be
absent where the family allows it) and the forget split is non-empty. One implementation, three families."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from obliviate.errors import ObliviateError


def check_splits(splits: Mapping[str, Any], split_cls: type, unit: str, optional: tuple[str, ...] = ("retain",),
                 describe: Callable[[Any], str] | None = None) -> None:
    """Raise ObliviateError naming the first bad split. ``splits`` maps split name -> value (forget first);
    ``describe(value)`` returns what was given plus a hint on how to build the right type (optional)."""
    for name, split in splits.items():
        if split is None and name in optional:
            continue
        if not isinstance(split, split_cls):
            got = describe(split) if describe is not None else type(split).__name__
            raise ObliviateError(f"the {name} split must be {split_cls.__name__}, got {got}")
    if len(splits["forget"]) == 0:
        raise ObliviateError(f"the forget set is empty (0 {unit}): nothing to unlearn"
                             " (was nothing memorized? check the metric that picks the forget set)")
