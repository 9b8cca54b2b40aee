"""User-facing errors. The CLI turns any ``ObliviateError`` into a one-line message and exit code 2."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class ObliviateError(ValueError):
    """Bad input from the user (unknown name, invalid config value, missing file, ...)."""


def closest(name: str, valid: Iterable[str], n: int = 3) -> list[str]:
    """The ``n`` valid names closest to ``name`` (did-you-mean suggestions)."""
    return difflib.get_close_matches(name, list(valid), n=n, cutoff=0.4)


def unknown_name_error(kind: str, name: str, valid: Iterable[str]) -> ObliviateError:
    """An error naming ``name``, the closest valid names and all valid names."""
    valid = sorted(valid)
    near = closest(name, valid)
    hint = f"; did you mean {', '.join(repr(v) for v in near)}?" if near else ""
    return ObliviateError(f"unknown {kind} {name!r}{hint} (valid: {', '.join(valid) or 'none'})")
