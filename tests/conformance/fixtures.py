"""One tiny fixture per method family: how to make the model, the data every method of the family must handle,
and what "unlearning worked" means for the family. A new family adds its fixture here; a new method needs no test
edit."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from obliviate.data.tinymem import PAD
from obliviate.families.lm import LMUnlearnData


@dataclass
class FamilyFixture:
    make: Callable[[], Any]  # a fresh copy of the trained model
    data: Any  # the family's unlearning data
    empty_forget: Callable[[], Any]  # builds the family's data with an empty forget set (must raise)
    state: Callable[[Any], dict[str, Any]]  # name -> array/tensor, for bit comparisons
    short: dict[str, Any]  # config overrides for a short run (determinism tests)


def _nll(model: Any, split: Any) -> float:
    from obliviate.losses.nll import mean_nll

    with torch.no_grad():
        return mean_nll(model(input_ids=split.input_ids).logits, split.labels).item()


def with_alternates(data: LMUnlearnData, pad_id: int) -> LMUnlearnData:
    """``data`` plus ``extra["alternate"]`` (what DPO-style methods prefer): each forget row's prompt with its answer
    tokens reversed (rolled by one where reversing changes nothing), paired row for row."""
    from obliviate.data.alternates import with_answers
    from obliviate.losses.nll import IGNORE_INDEX

    answers = []
    for ids, labels in zip(data.forget.input_ids, data.forget.labels):
        a = ids[labels != IGNORE_INDEX]
        r = a.flip(0)
        answers.append((a.roll(1) if torch.equal(r, a) else r).tolist())
    return LMUnlearnData(data.forget, data.retain, {**data.extra, "alternate": with_answers(data.forget, answers,
                                                                                             pad_id)})


def lm_fixture(micro_data: Any, trained_tiny: Any) -> FamilyFixture:
    """A 1-layer TinyMem GPT-2 trained 3 epochs; forget = the 20 artifacts, retain = 64 clean rows; alternates (for
    the DPO-style methods; the others ignore them) = the artifacts reversed."""
    data = with_alternates(LMUnlearnData.from_rows(micro_data.artifacts, micro_data.clean_train[:64], PAD), PAD)
    return FamilyFixture(make=lambda: copy.deepcopy(trained_tiny), data=data,
                         empty_forget=lambda: LMUnlearnData(forget=data.forget.select(torch.arange(0))),
                         state=lambda m: dict(m.state_dict()), short={"epochs": 2})


def lm_promise(name: str, cls: Any, model: Any, before: Any, data: Any, result: Any) -> None:
    """Forget NLL up (or the forget-retain gap up for retain-using methods); the architecture is kept."""
    f0, r0 = _nll(before, data.forget), _nll(before, data.retain)
    f1, r1 = _nll(model, data.forget), _nll(model, data.retain)
    if cls.needs_retain:
        assert f1 - r1 > f0 - r0, f"{name}: forget-retain gap did not grow ({f0 - r0:.4f} -> {f1 - r1:.4f})"
    else:
        assert f1 > f0, f"{name}: forget NLL did not go up ({f0:.4f} -> {f1:.4f})"
    sd0, sd1 = before.state_dict(), model.state_dict()
    assert sd0.keys() == sd1.keys(), "the edited model must keep the original architecture (masks baked)"
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0)


_TOPIC_CACHE: dict[str, Any] = {}


def topic_fixture(*_: Any) -> FamilyFixture:
    """A planted corpus (2000 documents x 60 words, 4 topics); a fitted topic model with a downstream head;
    forget = 5 documents."""
    from obliviate.certified.head import TopicHead
    from obliviate.data.documents import planted_corpus
    from obliviate.families.topic import CountData, TopicBundle, TopicUnlearnData
    from obliviate.models.topic import AnchorTopicModel

    if "bundle" not in _TOPIC_CACHE:
        pc = planted_corpus(2600, 60, 4, doc_length=20, beta=1.0, seed=0)
        X, y = pc.counts, pc.labels
        model = AnchorTopicModel(4).fit(X[:2000])
        head = TopicHead().fit(model, X[2000:], y[2000:])
        _TOPIC_CACHE["bundle"] = TopicBundle(model, head)
        _TOPIC_CACHE["data"] = TopicUnlearnData(CountData(X[:5]), CountData(X[5:2000]), CountData(X[2000:]),
                                                y[2000:])
    bundle, data = _TOPIC_CACHE["bundle"], _TOPIC_CACHE["data"]

    def state(b: Any) -> dict[str, Any]:
        return {"components": b.model.components_, "internal": b.model._solution.A, "head": b.head.product_,
                "intercept": np.array([b.head.intercept_])}

    return FamilyFixture(make=lambda: copy.deepcopy(bundle), data=data,
                         empty_forget=lambda: TopicUnlearnData(CountData(data.forget.counts[:0]), data.retain),
                         state=state, short={})


def topic_promise(name: str, cls: Any, bundle: Any, before: Any, data: Any, result: Any) -> None:
    """The edited model no longer depends on the forget documents: its pre-noise topics equal a model retrained on
    the retained ones (the head-only method leaves the topic model as it was and moves the head's release to the
    retrained head's, up to the noise)."""
    from obliviate.certified.head import TopicHead
    from obliviate.models.topic import AnchorTopicModel

    ref = AnchorTopicModel(4).fit(data.retain.counts)
    if name == "certified_head":
        assert np.array_equal(bundle.model.components_, before.model.components_), "U_head must not touch A"
        ref_head = TopicHead().fit(ref, data.task.counts, data.task_labels)
        moved = np.linalg.norm(bundle.head.theta_ - ref_head.theta_)
        stayed = np.linalg.norm(before.head.theta_ - ref_head.theta_)
        assert moved < 1e-3 * stayed, f"{name}: head moved {stayed:.3g} -> {moved:.3g} from the retrained head"
        assert result.certificate is not None and result.certificate["certificate"] <= result.certificate["budget"]
        return
    assert bundle.model.n_docs_ == len(data.retain)
    assert np.allclose(bundle.model._solution.A, ref._solution.A, atol=1e-9), f"{name}: not the retrained topics"
    assert not np.allclose(before.model._solution.A, ref._solution.A, atol=1e-9)
    if cls.kind == "certified" and name != "exact_deletion":
        assert result.certificate is not None and result.certificate["certificate"] <= result.certificate["budget"]


_CLS_CACHE: dict[str, Any] = {}


def classifier_fixture(*_: Any) -> FamilyFixture:
    """scikit-learn digits (1078 training images, 8x8), an MLP 64-64-10 trained to fit them; forget = 10% of each
    class (seeded), retain = the rest, val = half of the held-out images."""
    from obliviate.data.vision import forget_indices, make_splits
    from obliviate.families.classifier import ClassifierUnlearnData, LabeledData
    from obliviate.models.cnn import MLP
    from obliviate.train.classifier import ClassifierTrainConfig, seeded_init, train_classifier

    if "model" not in _CLS_CACHE:
        s = make_splits("digits", None, None, seed=0)
        f = torch.from_numpy(forget_indices(s.train_y.numpy(), 0.1, seed=0))
        keep = torch.ones(len(s.train_y), dtype=torch.bool)
        keep[f] = False
        model = seeded_init(MLP(64, 10, (64,)), 0)
        with torch.random.fork_rng(devices=[]):
            train_classifier(model, LabeledData(s.train_x, s.train_y),
                             ClassifierTrainConfig(epochs=30, lr=0.05, batch_size=64), seed=0)
        _CLS_CACHE["model"] = model.eval()
        _CLS_CACHE["data"] = ClassifierUnlearnData(LabeledData(s.train_x[f], s.train_y[f]),
                                                   LabeledData(s.train_x[keep], s.train_y[keep]),
                                                   {"val": LabeledData(s.val_x, s.val_y)}, num_classes=10)
    model, data = _CLS_CACHE["model"], _CLS_CACHE["data"]
    return FamilyFixture(make=lambda: copy.deepcopy(model), data=data,
                         empty_forget=lambda: ClassifierUnlearnData(LabeledData(data.forget.x[:0], data.forget.y[:0]),
                                                                    data.retain),
                         state=lambda m: dict(m.state_dict()), short={"epochs": 2})


def _ce(model: Any, split: Any) -> float:
    import torch.nn.functional as F

    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(split.x), split.y))


def classifier_promise(name: str, cls: Any, model: Any, before: Any, data: Any, result: Any) -> None:
    """The forget set is forgotten relative to the retain set (its loss rises more than the retain loss: the
    forget-retain loss gap grows), the model stays useful (retain accuracy within 15 points), in eval mode, with the
    same architecture."""
    from obliviate.train.classifier import accuracy

    gap0 = _ce(before, data.forget) - _ce(before, data.retain)
    gap1 = _ce(model, data.forget) - _ce(model, data.retain)
    assert gap1 > gap0, f"{name}: the forget-retain loss gap did not grow ({gap0:.4f} -> {gap1:.4f})"
    r0, r1 = accuracy(before, data.retain), accuracy(model, data.retain)
    assert r1 >= r0 - 0.15, f"{name}: retain accuracy fell from {r0:.3f} to {r1:.3f}"
    assert not model.training
    sd0, sd1 = before.state_dict(), model.state_dict()
    assert sd0.keys() == sd1.keys() and any(not torch.equal(sd0[k], sd1[k]) for k in sd0)


FIXTURES = {"lm": lm_fixture, "topic": topic_fixture, "classifier": classifier_fixture}
PROMISES = {"lm": lm_promise, "topic": topic_promise, "classifier": classifier_promise}
