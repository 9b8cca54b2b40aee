"""Papers cited by more than one module (one definition each)."""

from obliviate.types import Paper

TINYMEM = Paper("Mitigating Memorization in Language Models", "2410.02159", 2024, "Sakarvadia et al.")
