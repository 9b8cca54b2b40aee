"""Fine-tuning on clean and extra data (Sakarvadia et al., 2024, spec 4, the reference's ``both_ft``): continue
training the trained model for 5 epochs on the union of the clean versions of the artifacts and every non-artifact
training row, with the pre-training optimizer."""

from __future__ import annotations

from typing import ClassVar

from obliviate.methods.base import METHODS
from obliviate.methods.tinymem.common import FinetuneMethod


@METHODS.register("finetune_both")
class FinetuneBoth(FinetuneMethod):
    uses_clean = True
    uses_retain = True
    needs_retain = True
    needs_alternate: ClassVar[bool] = True  # the files path (`obliviate unlearn --forget`): each record's alternate
