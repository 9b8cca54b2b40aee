"""The method contract, run over every registered method on a tiny model."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import yaml

from obliviate.config import dump_yaml, from_dict
from obliviate.data.tinymem import PAD
from obliviate.errors import ObliviateError
from obliviate.losses.nll import mean_nll
from obliviate.methods import METHODS, build_method
from obliviate.types import UnlearnData

ALL = METHODS.names()


def _data(micro_data):
    return UnlearnData(forget=micro_data.artifacts[:8], retain=micro_data.clean_train[:64], pad_id=PAD)


@pytest.mark.parametrize("name", ALL)
def test_config_is_frozen_validated_and_round_trips_yaml(name):
    cls = METHODS.get(name)
    cfg = cls.config_cls()
    assert dataclasses.is_dataclass(cfg)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0
    assert from_dict(cls.config_cls, yaml.safe_load(dump_yaml(cfg))) == cfg
    with pytest.raises(ObliviateError):
        from_dict(cls.config_cls, {"epochs": 0})
    with pytest.raises(ObliviateError, match="did you mean"):
        from_dict(cls.config_cls, {"epoch": 3})
    assert cls.paper is not None and cls.paper.title


@pytest.mark.parametrize("name", ALL)
def test_init_only_stores(name):
    cls = METHODS.get(name)
    cfg = cls.config_cls()
    assert cls(cfg).config is cfg


def _nll(model, rows):
    with torch.no_grad():
        return mean_nll(model(input_ids=rows).logits, rows, PAD).item()


@pytest.mark.parametrize("name", ALL)
def test_unlearn_raises_forget_loss_and_changes_only_what_it_should(name, micro_data, trained_tiny):
    data = _data(micro_data)
    model = copy.deepcopy(trained_tiny)
    before = copy.deepcopy(trained_tiny)
    method = build_method(name, {"epochs": 5, "ratio": 0.25} if "subnet" in name else {"epochs": 5, "lr": 3e-3})
    f0, r0 = _nll(model, data.forget), _nll(model, data.retain)
    result = method.unlearn(model, data)
    assert result.model is model and result.logs and result.wall_s > 0
    f1, r1 = _nll(model, data.forget), _nll(model, data.retain)
    if METHODS.get(name).needs_retain:
        # forget/retain methods: the forget loss must rise relative to the retain loss
        assert f1 - r1 > f0 - r0, f"{name}: forget-retain gap did not grow ({f0 - r0:.4f} -> {f1 - r1:.4f})"
    else:
        assert f1 > f0, f"{name}: forget NLL did not go up ({f0:.4f} -> {f1:.4f})"
    sd0, sd1 = before.state_dict(), model.state_dict()
    assert sd0.keys() == sd1.keys(), "the edited model must keep the original architecture (masks baked)"
    changed = {k for k in sd0 if not torch.equal(sd0[k], sd1[k])}
    assert changed
    if "subnet" in name:
        # only MLP weights change, and only by being zeroed
        assert all(".mlp." in k and k.endswith("weight") for k in changed)
        for k in changed:
            diff = sd0[k] != sd1[k]
            assert (sd1[k][diff] == 0).all()
    assert all(p.requires_grad for p in model.parameters())


@pytest.mark.parametrize("name", ALL)
def test_empty_forget_set_is_refused(name, micro_data):
    with pytest.raises(ObliviateError, match="forget set is empty"):
        UnlearnData(forget=micro_data.artifacts[:0], retain=micro_data.clean_train, pad_id=PAD)


@pytest.mark.parametrize("name", ALL)
def test_deterministic(name, micro_data, tiny_model):
    data = _data(micro_data)
    a, b = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    build_method(name, {"epochs": 2}).unlearn(a, data)
    build_method(name, {"epochs": 2}).unlearn(b, data)
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), k
