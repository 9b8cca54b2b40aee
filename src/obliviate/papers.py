"""Papers cited by more than one module (one definition each)."""

from obliviate.types import Paper

TINYMEM = Paper("Mitigating Memorization in Language Models", "2410.02159", 2024, "Sakarvadia et al.")
PROVABLE_TOPIC_UNLEARNING = Paper("Provable unlearning in topic modeling and downstream tasks", "2411.12600", 2024,
                                  "Wei, Malladi, Arora, Sanyal")
