"""The topic-model family: documents as word counts (a documents x vocabulary matrix) for the NumPy anchor-word
topic model with certified deletion. Methods of this family receive :class:`TopicUnlearnData`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obliviate.errors import ObliviateError
from obliviate.families.splits import check_splits


@dataclass
class CountData:
    """counts: (D, V) non-negative integer word counts, one row per document."""

    counts: np.ndarray

    def __post_init__(self) -> None:
        c = self.counts
        if not isinstance(c, np.ndarray) or c.ndim != 2:
            raise ObliviateError(f"CountData.counts must be a 2-D (documents x words) array, got "
                                 f"{getattr(c, 'shape', type(c).__name__)}")
        if not np.issubdtype(c.dtype, np.integer):
            raise ObliviateError(f"CountData.counts must hold integer word counts, got dtype {c.dtype}")
        if c.size and int(c.min()) < 0:
            raise ObliviateError("CountData.counts holds a negative count")

    def __len__(self) -> int:
        return int(self.counts.shape[0])


@dataclass
class TopicUnlearnData:
    """The documents to delete (``forget``) and those that stay (``retain``), over the same vocabulary."""

    forget: CountData
    retain: CountData

    def __post_init__(self) -> None:
        check_splits({"forget": self.forget, "retain": self.retain}, CountData, "documents", optional=())
        if self.forget.counts.shape[1] != self.retain.counts.shape[1]:
            raise ObliviateError(f"forget and retain vocabularies differ ({self.forget.counts.shape[1]} vs "
                                 f"{self.retain.counts.shape[1]} words)")
