"""TinyMem's train-time regularizers and fine-tuning methods (Sakarvadia et al., 2024), run through the one
pre-training loop (see :mod:`obliviate.methods.tinymem.common` for their data contract)."""

from obliviate.methods.tinymem import (  # noqa: F401
    example_tied_dropout,
    finetune_both,
    finetune_clean,
    finetune_extra,
    loss_truncation,
    spectral_norm,
)
