"""Fine-tuning on extra data (Sakarvadia et al., 2024, spec 4, the reference's ``extra_ft``): continue training the
trained model for 5 epochs on every non-artifact training row (TinyMem: the clean main-distribution rows and the
auxiliary distributions; the suite's retain set), with the pre-training optimizer."""

from __future__ import annotations

from obliviate.methods.base import METHODS
from obliviate.methods.tinymem.common import FinetuneMethod


@METHODS.register("finetune_extra")
class FinetuneExtra(FinetuneMethod):
    uses_retain = True
    needs_retain = True
