"""Fine-tuning on clean data (Sakarvadia et al., 2024, spec 4, the reference's ``clean_ft``): continue training the
trained model for 5 epochs on the clean versions of the artifact sequences (the noise rows' clean originals, the
triggered rows without their backdoor), with the pre-training optimizer."""

from __future__ import annotations

from typing import ClassVar

from obliviate.methods.base import METHODS
from obliviate.methods.tinymem.common import FinetuneMethod


@METHODS.register("finetune_clean")
class FinetuneClean(FinetuneMethod):
    uses_clean = True
    needs_alternate: ClassVar[bool] = True  # the files path (`obliviate unlearn --forget`): each record's alternate
