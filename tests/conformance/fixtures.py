"""One tiny fixture per method family: (model factory, data) that every method of the family must handle.
A new family adds its fixture here; a new method needs no test edit."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from obliviate.data.tinymem import PAD
from obliviate.families.lm import LMUnlearnData


def lm_fixture(micro_data: Any, trained_tiny: Any) -> tuple[Callable[[], Any], LMUnlearnData]:
    """A 1-layer TinyMem GPT-2 trained 3 epochs; forget = the 20 artifacts, retain = 64 clean rows."""
    data = LMUnlearnData.from_rows(micro_data.artifacts, micro_data.clean_train[:64], PAD)
    return (lambda: copy.deepcopy(trained_tiny)), data


FIXTURES = {"lm": lm_fixture}
