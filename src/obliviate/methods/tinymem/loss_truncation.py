"""Loss truncation (Kang & Hashimoto, 2020) as a TinyMem train-time mitigation (Sakarvadia et al., 2024, spec 5):
retrain the model from scratch, dropping from each batch's loss the ``dropc`` fraction of sequences with the
highest loss (rare, hard-to-fit sequences such as noise artifacts are the ones dropped). The math lives in
:mod:`obliviate.train.regularizers`; deviation: a per-batch quantile instead of LossDropper's rolling history."""

from __future__ import annotations

from dataclasses import dataclass

from obliviate.methods.base import METHODS
from obliviate.methods.tinymem.common import TrainTimeMethod, check_common
from obliviate.train.regularizers import RegularizerConfig, check_values


@dataclass(frozen=True)
class LossTruncationConfig:
    """``dropc``: the paper's grid is {0.01, 0.05, 0.1} (spec 5), default the middle. ``epochs`` / ``lr`` /
    ``batch_size``: null = the pre-training recipe's. ``seed``: null = the run's (initial weights, batch order)."""

    dropc: float = 0.05
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        check_values("method", dropc=self.dropc)
        check_common(self.epochs, self.lr, self.batch_size)


@METHODS.register("loss_truncation")
class LossTruncation(TrainTimeMethod):
    config_cls = LossTruncationConfig

    def regularizer(self) -> RegularizerConfig:
        return RegularizerConfig(name="loss_truncation", dropc=self.config.dropc)
