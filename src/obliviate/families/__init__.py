"""Method families: what a method receives and edits. One data type per family, validated on construction."""

from __future__ import annotations

from typing import Any

from obliviate.errors import unknown_name_error

# family -> (the data type its methods receive, what its models are)
FAMILIES: dict[str, tuple[str, str]] = {
    "lm": ("obliviate.families.lm:LMUnlearnData", "any Hugging Face causal LM"),
    "classifier": ("obliviate.families.classifier:ClassifierUnlearnData", "any torch.nn.Module returning logits"),
    "topic": ("obliviate.families.topic:TopicUnlearnData", "the NumPy anchor-word topic model"),
}


def data_type(family: str) -> Any:
    """The class of what methods of ``family`` receive."""
    import importlib

    if family not in FAMILIES:
        raise unknown_name_error("family", family, FAMILIES)
    module, name = FAMILIES[family][0].split(":")
    return getattr(importlib.import_module(module), name)
