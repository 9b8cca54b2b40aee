"""The classifier family: labelled examples (any tensor inputs, integer class labels) for any ``nn.Module`` that
maps a batch of inputs to logits. Methods of this family (LoTUS and its baselines) receive
:class:`ClassifierUnlearnData`."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from obliviate.errors import ObliviateError
from obliviate.families.splits import check_splits


@dataclass
class LabeledData:
    """x: (N, ...) inputs (e.g. images (N, C, H, W)); y: (N,) integer class labels."""

    x: Tensor
    y: Tensor

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or self.x.ndim < 1:
            raise ObliviateError(f"LabeledData.x must be a tensor with a batch axis, got {type(self.x).__name__}")
        if not isinstance(self.y, Tensor) or self.y.ndim != 1 or self.y.dtype.is_floating_point:
            raise ObliviateError("LabeledData.y must be a 1-D integer tensor of class labels, got "
                                 f"{getattr(self.y, 'shape', type(self.y).__name__)}")
        if self.x.shape[0] != self.y.shape[0]:
            raise ObliviateError(f"LabeledData has {self.x.shape[0]} inputs but {self.y.shape[0]} labels")
        if self.y.numel() and int(self.y.min()) < 0:
            raise ObliviateError(f"LabeledData.y holds a negative class label ({int(self.y.min())})")

    def __len__(self) -> int:
        return int(self.y.shape[0])


@dataclass
class ClassifierUnlearnData:
    """A non-empty forget split, the retain split, and named extra splits (e.g. LoTUS's unseen validation set)."""

    forget: LabeledData
    retain: LabeledData | None = None
    extra: dict[str, LabeledData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_splits({"forget": self.forget, "retain": self.retain, **self.extra}, LabeledData, "examples")
