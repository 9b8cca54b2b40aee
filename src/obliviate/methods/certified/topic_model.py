"""The topic family's methods: they edit a TopicBundle (or a bare AnchorTopicModel) in place.

- ``retrain``: fit a new model on the retained documents (the reference every deletion is measured against);
- ``exact_deletion``: refit from the updated statistics -- equal to retraining, at a cost independent of m;
- ``certified_deletion``: the paper's U_base (Newton step + Gaussian noise, with capacity and refusal);
- ``certified_head``: the paper's U_head -- the topic model is left as it is; the head's released product
  B = n A w is updated through the head and noised.
A head in the bundle is refitted (exactly) after ``retrain``/``exact_deletion``, and on the released topics after
``certified_deletion`` (post-processing of the noisy release).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

# imported here, not on first use, so that a method's measured time is its own work, not scipy.stats' import
import obliviate.certified.deletion
import obliviate.certified.head
import obliviate.models.topic  # noqa: F401
from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.topic import TopicBundle, TopicUnlearnData
from obliviate.methods.base import METHODS, method_seed
from obliviate.papers import PROVABLE_TOPIC_UNLEARNING
from obliviate.types import UnlearnResult


def _bundle(model: Any) -> TopicBundle:
    from obliviate.models.topic import AnchorTopicModel

    if isinstance(model, TopicBundle):
        return model
    if isinstance(model, AnchorTopicModel):
        return TopicBundle(model)
    raise ObliviateError(f"topic-family methods edit an AnchorTopicModel or a TopicBundle, got {type(model).__name__}")


def _jsonable(record: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}


@dataclass(frozen=True)
class NoConfig:
    """This method has no settings."""


@dataclass(frozen=True)
class PrivacyConfig:
    """(epsilon, delta) of the guarantee; ``tolerance``: with probability 0.9 the noise moves the released matrix
    by at most this much (Frobenius; the paper's utility constants 0.9 and 0.01); ``newton_steps`` (1 = the
    paper's); ``fallback``: recompute exactly when the update cannot be certified, instead of refusing; ``seed``
    of the noise (None: the run seed)."""

    epsilon: float = 1.0
    delta: float = 1e-5
    tolerance: float = 0.01
    newton_steps: int = 1
    fallback: bool = True
    seed: int | None = None

    def __post_init__(self) -> None:
        from obliviate.certified.mechanism import check_privacy

        check_privacy(self.epsilon, self.delta)
        if not self.tolerance > 0 or self.newton_steps < 1:
            raise ObliviateError(f"tolerance={self.tolerance} must be > 0 and newton_steps={self.newton_steps} >= 1")


class TopicMethod:
    family: ClassVar[str] = "topic"
    kind: ClassVar[str] = "certified"
    config_cls: ClassVar[type] = NoConfig
    paper = PROVABLE_TOPIC_UNLEARNING
    smoke_config: ClassVar[dict[str, Any]] = {}  # the conformance suite's settings (defaults are already fast)

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def unlearn(self, model: Any, data: TopicUnlearnData, ctx: RunContext | None = None) -> UnlearnResult:
        ctx = ctx or RunContext()
        if not isinstance(data, TopicUnlearnData):
            raise ObliviateError(f"{type(self).__name__} is a topic-family method: it takes TopicUnlearnData, "
                                 f"got {type(data).__name__}")
        bundle = _bundle(model)
        start = time.perf_counter()
        info = _jsonable(self.delete(bundle, data, ctx))
        info.setdefault("seed", method_seed(self.config, ctx) if hasattr(self.config, "seed") else None)
        wall = time.perf_counter() - start
        cert = {k: info[k] for k in ("certificate", "budget", "sigma", "epsilon", "delta") if k in info} or None
        return UnlearnResult(model, logs=[{"deleted": float(len(data.forget)), "seconds": wall}], info=info,
                             wall_s=wall, certificate=cert)

    def delete(self, bundle: TopicBundle, data: TopicUnlearnData, ctx: RunContext) -> dict[str, Any]:
        raise NotImplementedError


def _refit_head(bundle: TopicBundle, data: TopicUnlearnData, components: str) -> None:
    if bundle.head is not None and data.task is not None:
        bundle.head.fit(bundle.model, data.task.counts, data.task_labels, components=components)


@METHODS.register("retrain")
class Retrain(TopicMethod):
    """Fit from scratch on the retained documents (same hyper-parameters)."""

    kind = "post_hoc"

    def delete(self, bundle: TopicBundle, data: TopicUnlearnData, ctx: RunContext) -> dict[str, Any]:
        from sklearn.base import clone

        fresh = clone(bundle.model).fit(data.retain.counts, vocabulary=bundle.model.vocabulary_)
        vars(bundle.model).clear()
        vars(bundle.model).update(vars(fresh))
        _refit_head(bundle, data, "internal")
        return {"n_docs_after": bundle.model.n_docs_}


@METHODS.register("exact_deletion")
class ExactDeletion(TopicMethod):
    """Refit from the statistics with the forget documents' pair counts subtracted."""

    def delete(self, bundle: TopicBundle, data: TopicUnlearnData, ctx: RunContext) -> dict[str, Any]:
        record = bundle.model.unlearn(data.forget.counts, mode="exact")
        _refit_head(bundle, data, "internal")
        return record


@METHODS.register("certified_deletion")
class CertifiedDeletion(TopicMethod):
    """U_base: Newton step on the per-word simplex problems + the Gaussian mechanism."""

    config_cls = PrivacyConfig

    def delete(self, bundle: TopicBundle, data: TopicUnlearnData, ctx: RunContext) -> dict[str, Any]:
        c = self.config
        seed = method_seed(c, ctx)
        record = bundle.model.unlearn(data.forget.counts, mode="certified", epsilon=c.epsilon, delta=c.delta,
                                      tolerance=c.tolerance, newton_steps=c.newton_steps, fallback=c.fallback,
                                      random_state=seed)
        _refit_head(bundle, data, "released")
        return {**record, "seed": seed}


@METHODS.register("certified_head")
class CertifiedHead(TopicMethod):
    """U_head: unlearn pre-training documents through the downstream head; the topic model is not modified."""

    config_cls = PrivacyConfig

    def delete(self, bundle: TopicBundle, data: TopicUnlearnData, ctx: RunContext) -> dict[str, Any]:
        if bundle.head is None or data.task is None:
            raise ObliviateError("certified_head needs a TopicBundle with a fitted head and task documents + labels")
        c = self.config
        seed = method_seed(c, ctx)
        record = bundle.head.unlearn(bundle.model, data.forget.counts, data.task.counts, data.task_labels,
                                     epsilon=c.epsilon, delta=c.delta, tolerance=c.tolerance,
                                     newton_steps=c.newton_steps, fallback=c.fallback, random_state=seed)
        return {**record, "seed": seed}

