"""The topic-model family: documents as word counts (a documents x vocabulary matrix, dense or scipy-sparse) for the
NumPy anchor-word topic model with certified deletion. Methods of this family receive :class:`TopicUnlearnData` and
edit a :class:`TopicBundle` (the topic model plus, optionally, a downstream linear head)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from obliviate.errors import ObliviateError
from obliviate.families.splits import check_splits


@dataclass
class CountData:
    """counts: (D, V) non-negative integer word counts, one row per document (stored as int64 CSR)."""

    counts: Any

    def __post_init__(self) -> None:
        from obliviate.models.topic_stats import as_counts

        c = self.counts
        if not (hasattr(c, "shape") and len(c.shape) == 2):
            raise ObliviateError(f"CountData.counts must be a 2-D (documents x words) array, got "
                                 f"{getattr(c, 'shape', type(c).__name__)}")
        dtype = getattr(c, "dtype", None)
        if dtype is not None and not np.issubdtype(dtype, np.integer):
            raise ObliviateError(f"CountData.counts must hold integer word counts, got dtype {dtype}")
        self.counts = as_counts(c, name="CountData.counts")

    def __len__(self) -> int:
        return int(self.counts.shape[0])

    @property
    def n_words(self) -> int:
        return int(self.counts.shape[1])


@dataclass
class TopicUnlearnData:
    """The documents to delete (``forget``) and those that stay (``retain``), over the same vocabulary; optionally
    a downstream task (``task`` documents with 0/1 or real ``task_labels``) that a linear head is fitted on."""

    forget: CountData
    retain: CountData
    task: CountData | None = None
    task_labels: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_splits({"forget": self.forget, "retain": self.retain, "task": self.task}, CountData, "documents",
                     optional=("task",))
        if self.forget.n_words != self.retain.n_words:
            raise ObliviateError(f"forget and retain vocabularies differ ({self.forget.n_words} vs "
                                 f"{self.retain.n_words} words)")
        if self.task is not None:
            if self.task.n_words != self.forget.n_words:
                raise ObliviateError(f"task documents have {self.task.n_words} words, forget has "
                                     f"{self.forget.n_words}")
            if self.task_labels is None or len(self.task_labels) != len(self.task):
                raise ObliviateError(f"task needs one label per document ({len(self.task)}), got "
                                     f"{None if self.task_labels is None else len(self.task_labels)}")


@dataclass
class TopicBundle:
    """What topic-family methods edit: the fitted AnchorTopicModel and an optional TopicHead fitted on it."""

    model: Any
    head: Any | None = None
