"""The method contract, run over every registered method on its family's tiny fixture."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import yaml

from obliviate.config import dump_yaml, from_dict
from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families import FAMILIES
from obliviate.families.classifier import ClassifierUnlearnData, LabeledData
from obliviate.losses.nll import mean_nll
from obliviate.methods import METHODS, build_method
from obliviate.methods.localize.subnet import SupermaskMethod

from .fixtures import FIXTURES

ALL = METHODS.names()


@pytest.fixture
def fixture(micro_data, trained_tiny):
    def get(name):
        return FIXTURES[METHODS.get(name).family](micro_data, trained_tiny)

    return get


def _build(name, **extra):
    cls = METHODS.get(name)
    return build_method(name, {**cls.smoke_config, **extra})


@pytest.mark.parametrize("name", ALL)
def test_declares_family_kind_paper_and_has_a_fixture(name):
    cls = METHODS.get(name)
    assert cls.family in FAMILIES and cls.family in FIXTURES, f"{name}: family {cls.family!r} has no fixture"
    assert cls.kind in {"post_hoc", "finetune", "train_time", "certified"}
    assert cls.paper is not None and cls.paper.title


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


@pytest.mark.parametrize("name", ALL)
def test_init_only_stores_the_config(name):
    cls = METHODS.get(name)
    cfg = cls.config_cls()
    assert vars(cls(cfg)) == {"config": cfg}


def _nll(model, split):
    with torch.no_grad():
        return mean_nll(model(input_ids=split.input_ids).logits, split.labels).item()


@pytest.mark.parametrize("name", ALL)
def test_unlearn_does_what_the_method_promises(name, fixture):
    make, data = fixture(name)
    model, before = make(), make()
    f0, r0 = _nll(model, data.forget), _nll(model, data.retain)
    result = _build(name).unlearn(model, data, RunContext(seed=0))
    assert result.model is model and result.logs and result.wall_s > 0 and result.info["seed"] == 0
    f1, r1 = _nll(model, data.forget), _nll(model, data.retain)
    if METHODS.get(name).needs_retain:
        assert f1 - r1 > f0 - r0, f"{name}: forget-retain gap did not grow ({f0 - r0:.4f} -> {f1 - r1:.4f})"
    else:
        assert f1 > f0, f"{name}: forget NLL did not go up ({f0:.4f} -> {f1:.4f})"
    sd0, sd1 = before.state_dict(), model.state_dict()
    assert sd0.keys() == sd1.keys(), "the edited model must keep the original architecture (masks baked)"
    changed = {k for k in sd0 if not torch.equal(sd0[k], sd1[k])}
    assert changed
    if issubclass(METHODS.get(name), SupermaskMethod):
        ratio = METHODS.get(name).smoke_config["ratio"]
        # only MLP weights change, only by being zeroed, and about `ratio` of each masked matrix is pruned
        assert all(".mlp." in k and k.endswith("weight") for k in changed)
        for k in changed:
            diff = sd0[k] != sd1[k]
            assert (sd1[k][diff] == 0).all()
            assert abs((sd1[k] == 0).float().mean().item() - ratio) < 0.02, k
        assert abs(result.info["pruned_fraction"] - ratio) < 0.01


@pytest.mark.parametrize("name", ALL)
def test_callers_freeze_state_is_kept(name, fixture):
    # regression: bake_supermasks turned requires_grad on for every parameter
    make, data = fixture(name)
    model = make()
    frozen = [n for n, _ in model.named_parameters()][:2]
    for n, p in model.named_parameters():
        p.requires_grad_(n not in frozen)
    _build(name).unlearn(model, data, RunContext(seed=0))
    assert {n for n, p in model.named_parameters() if not p.requires_grad} == set(frozen)


@pytest.mark.parametrize("name", ALL)
def test_wrong_data_is_a_clear_error(name, fixture):
    make, data = fixture(name)
    images = LabeledData(torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ObliviateError, match="family"):
        _build(name).unlearn(make(), ClassifierUnlearnData(forget=images))
    with pytest.raises(ObliviateError, match="forget set is empty"):
        type(data)(forget=data.forget.select(torch.arange(0)))


@pytest.mark.parametrize("name", ALL)
def test_same_seed_same_bits_other_seed_other_bits(name, fixture):
    # regression: the run seed never reached the methods (seed 0 and 3 gave identical models)
    make, data = fixture(name)
    a, b, c = make(), make(), make()
    _build(name, epochs=2).unlearn(a, data, RunContext(seed=0))
    _build(name, epochs=2).unlearn(b, data, RunContext(seed=0))
    _build(name, epochs=2).unlearn(c, data, RunContext(seed=3))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa), f"{name}: the run seed changes nothing"
    # a seed in the method's own config wins over the run's
    d = make()
    _build(name, epochs=2, seed=0).unlearn(d, data, RunContext(seed=3))
    assert all(torch.equal(sa[k], d.state_dict()[k]) for k in sa)


def test_library_calls_leave_the_global_rng_alone(fixture):
    make, data = fixture("balanced_subnet")
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    _build("balanced_subnet", epochs=1).unlearn(make(), data, RunContext(seed=0))
    from obliviate.models.gpt2 import TinyMemModelConfig, build_model

    build_model(TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2), seed=5)
    assert torch.equal(torch.rand(3), expected)
