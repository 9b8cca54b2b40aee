"""Unlearning checkpoints: a run killed mid-way and resumed ends with the same bits as an uninterrupted one; a
checkpoint of another run is refused, never silently mixed in."""

from __future__ import annotations

import copy

import pytest
import torch

from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.methods import build_method
from obliviate.train.checkpoint import FILENAME


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _dropout_lm():
    """A tiny HF GPT-2 with its default dropout (0.1): training draws from the global RNG."""
    from tests.conftest import build_tiny_gpt2

    model = build_tiny_gpt2(64, 0, seed=3)
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(1, 64, (24, 12), generator=g)
    data = LMUnlearnData(TokenData(rows[:10], torch.ones_like(rows[:10]), rows[:10].clone()),
                         TokenData(rows[10:], torch.ones_like(rows[10:]), rows[10:].clone()))
    return model, data


class Interrupt(Exception):
    pass


def _kill_at(method, epoch: int) -> None:
    """Make ``method`` raise at the first batch of ``epoch`` (1-based), as a killed process would stop."""
    calls = {"n": 0}
    loss = method.loss

    def killing(model, batch):
        calls["n"] += 1
        if calls["n"] > (epoch - 1) * method._batches_per_epoch:
            raise Interrupt
        return loss(model, batch)

    method.loss = killing


@pytest.mark.parametrize("name,params", [
    ("grad_diff", {"lr": 1e-3, "batch_size": 4, "retain_batch_size": 4}),
    ("npo", {"lr": 1e-3, "batch_size": 4, "retain_batch_size": 4, "grad_accum": 2}),
    ("mean_teacher", {"lr": 1e-2, "batch_size": 4, "retain_batch_size": 4}),
])
def test_killed_and_resumed_equals_uninterrupted(tmp_path, name, params):
    model0, data = _dropout_lm()
    full = copy.deepcopy(model0)
    res_full = build_method(name, {**params, "epochs": 4}).unlearn(full, data, RunContext(seed=5))

    ck = tmp_path / "ck"
    killed = copy.deepcopy(model0)
    m = build_method(name, {**params, "epochs": 4})
    m._batches_per_epoch = -(-len(data.forget) // params["batch_size"])
    _kill_at(m, 3)
    with pytest.raises(Interrupt):
        m.unlearn(killed, data, RunContext(seed=5, checkpoint_dir=ck))
    assert (ck / FILENAME).exists()
    saved = torch.load(ck / FILENAME, weights_only=True)
    assert saved["epoch"] == 2

    resumed = copy.deepcopy(model0)  # a new process starts again from the original weights
    res = build_method(name, {**params, "epochs": 4}).unlearn(resumed, data,
                                                              RunContext(seed=5, checkpoint_dir=ck, resume=True))
    assert res.info["resumed_from_epoch"] == 2
    assert _same(resumed, full), "resumed run differs from the uninterrupted one"
    assert [e["loss"] for e in res.logs] == [e["loss"] for e in res_full.logs]
    assert not _same(resumed, model0)


def test_resume_can_extend_epochs_and_refuses_fewer(tmp_path):
    model0, data = _dropout_lm()
    params = {"lr": 1e-3, "batch_size": 4, "retain_batch_size": 4}
    full = copy.deepcopy(model0)
    build_method("grad_diff", {**params, "epochs": 3}).unlearn(full, data, RunContext(seed=1))
    ck = tmp_path / "ck"
    part = copy.deepcopy(model0)
    build_method("grad_diff", {**params, "epochs": 1}).unlearn(part, data, RunContext(seed=1, checkpoint_dir=ck))
    longer = copy.deepcopy(model0)
    build_method("grad_diff", {**params, "epochs": 3}).unlearn(longer, data,
                                                               RunContext(seed=1, checkpoint_dir=ck, resume=True))
    assert _same(longer, full)
    with pytest.raises(ObliviateError, match="past method.epochs=2"):
        build_method("grad_diff", {**params, "epochs": 2}).unlearn(copy.deepcopy(model0), data,
                                                                   RunContext(seed=1, checkpoint_dir=ck, resume=True))


def test_checkpoint_of_another_run_is_refused(tmp_path):
    model0, data = _dropout_lm()
    params = {"lr": 1e-3, "batch_size": 4, "retain_batch_size": 4, "epochs": 1}
    ck = tmp_path / "ck"
    build_method("grad_diff", params).unlearn(copy.deepcopy(model0), data, RunContext(seed=1, checkpoint_dir=ck))
    before = (ck / FILENAME).read_bytes()
    with pytest.raises(ObliviateError, match="pass --resume"):  # a second run must not overwrite it silently
        build_method("grad_diff", params).unlearn(copy.deepcopy(model0), data, RunContext(seed=1, checkpoint_dir=ck))
    with pytest.raises(ObliviateError, match=r"lr 0\.001 -> 0\.002"):
        build_method("grad_diff", {**params, "lr": 2e-3}).unlearn(
            copy.deepcopy(model0), data, RunContext(seed=1, checkpoint_dir=ck, resume=True))
    with pytest.raises(ObliviateError, match="seed 1 -> 2"):
        build_method("grad_diff", params).unlearn(copy.deepcopy(model0), data,
                                                  RunContext(seed=2, checkpoint_dir=ck, resume=True))
    with pytest.raises(ObliviateError, match="different run"):  # another starting model
        other = copy.deepcopy(model0)
        with torch.no_grad():
            next(other.parameters()).add_(1.0)
        build_method("grad_diff", params).unlearn(other, data, RunContext(seed=1, checkpoint_dir=ck, resume=True))
    assert (ck / FILENAME).read_bytes() == before  # nothing refused touched it
    (ck / FILENAME).write_bytes(b"not a checkpoint")
    with pytest.raises(ObliviateError, match="not a readable obliviate checkpoint"):
        build_method("grad_diff", params).unlearn(copy.deepcopy(model0), data,
                                                  RunContext(seed=1, checkpoint_dir=ck, resume=True))


def test_resume_without_checkpoint_starts_fresh_and_needs_a_directory(tmp_path):
    model0, data = _dropout_lm()
    params = {"lr": 1e-3, "batch_size": 4, "retain_batch_size": 4, "epochs": 1}
    res = build_method("grad_diff", params).unlearn(copy.deepcopy(model0), data,
                                                    RunContext(seed=1, checkpoint_dir=tmp_path / "new", resume=True))
    assert res.info["resumed_from_epoch"] == 0
    with pytest.raises(ObliviateError, match="checkpoint directory"):
        build_method("grad_diff", params).unlearn(copy.deepcopy(model0), data, RunContext(seed=1, resume=True))


def test_nan_error_points_at_the_last_good_checkpoint(tmp_path):
    model0, data = _dropout_lm()
    m = build_method("grad_diff", {"lr": 1e-3, "batch_size": 4, "retain_batch_size": 4, "epochs": 3})
    loss = m.loss
    calls = {"n": 0}

    def poisoned(model, batch):
        calls["n"] += 1
        value, stats = loss(model, batch)
        return (value * float("nan"), stats) if calls["n"] == 5 else (value, stats)  # epoch 2, batch 2

    m.loss = poisoned
    ck = tmp_path / "ck"
    with pytest.raises(ObliviateError, match=r"epoch 2, batch 2.*last checkpoint is .*unlearn_checkpoint\.pt"):
        m.unlearn(copy.deepcopy(model0), data, RunContext(seed=1, checkpoint_dir=ck))
    assert torch.load(ck / FILENAME, weights_only=True)["epoch"] == 1
