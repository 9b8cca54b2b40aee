"""The suite contract: an unlearning benchmark the pipeline, CLI, bench runner and reports drive without knowing
what it measures. A suite is an object registered in ``SUITES`` with a ``VERSION`` (bumped whenever its results
could change), a frozen config dataclass for its own sections, a default preset, and the functions below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

from obliviate.registry import Registry
from obliviate.types import Paper


@dataclass(frozen=True)
class Column:
    """A scalar the suite reports: key into ``Evaluation.scalars``, label, direction, digits to print."""

    key: str
    label: str
    higher_is_better: bool
    digits: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Evaluation:
    """``metrics``: the full JSON-ready metric record (per-item scores kept); ``scalars``: flat numbers for
    tables, selection, aggregation over seeds and plots."""

    metrics: dict[str, Any]
    scalars: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "scalars": self.scalars}


@runtime_checkable
class Suite(Protocol):
    name: ClassVar[str]
    VERSION: ClassVar[str]
    family: ClassVar[str]  # the method family it takes ("lm", "classifier", "topic")
    paper: ClassVar[Paper | None]
    config_cls: ClassVar[type]  # frozen dataclass: the suite's own config sections
    default_preset: ClassVar[str]
    score_rule: ClassVar[str]  # how ``score`` selects hyper-parameters (lower is better), in words

    def build_data(self, cfg: Any, seed: int) -> Any: ...
    def data_hash(self, data: Any) -> str: ...
    def describe(self, cfg: Any, data: Any | None) -> list[str]: ...
    def columns(self, cfg: Any) -> list[Column]: ...
    def axes(self) -> dict[str, str]: ...  # {"forget": column key, "utility": column key} for the trade-off plot
    def groups(self, cfg: Any) -> dict[str, Any] | None: ...  # {"title", "keys", "labels"} or None
    def new_model(self, cfg: Any, seed: int, device: Any) -> Any: ...
    def train(self, model: Any, data: Any, cfg: Any, seed: int, out_dir: Path | None, fresh: bool,
              progress: bool) -> dict[str, Any]: ...
    def save_model(self, model: Any, path: Path, meta: dict[str, Any]) -> None: ...
    def load_model(self, path: Path, device: Any) -> Any: ...
    def model_hash(self, model: Any) -> str: ...
    def evaluate(self, model: Any, data: Any, cfg: Any) -> Evaluation: ...
    def unlearn_data(self, data: Any, before: dict[str, Any], cfg: Any) -> Any: ...
    def score(self, before: dict[str, float], after: dict[str, float]) -> float: ...


SUITES: Registry[Suite] = Registry("suite")
