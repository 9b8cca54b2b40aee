"""The mean-teacher update (spec 2.3) by hand, its reduction to "forget loss + KL to the frozen original" when
delta = damp = 0, and the paper's early stop (keep the last model still above the threshold)."""

from __future__ import annotations

import copy

import pytest
import torch

from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.losses.nll import mean_nll
from obliviate.methods import build_method
from obliviate.optim.mean_teacher import MeanTeacherSGD


def _one_param(value: list[float], grad: list[float]) -> torch.nn.Parameter:
    p = torch.nn.Parameter(torch.tensor(value))
    p.grad = torch.tensor(grad)
    return p


def test_one_step_by_hand():
    # theta = (1, 1), theta_T = (0, 0), g = (3, 4): ||g|| = 5, clip 1 -> c = 0.2
    # d = c g + damp c (theta - theta_T) = (0.6, 0.8) + 2 * 0.2 * (1, 1) = (1.0, 1.2); first step: buf = d
    # theta <- theta - lr d = (1, 1) - 0.1 (1.0, 1.2) = (0.9, 0.88)
    # theta_T <- (1 - delta c) theta_T + delta c theta = 0.5 * 0.2 * (0.9, 0.88) = (0.09, 0.088)
    p = _one_param([1.0, 1.0], [3.0, 4.0])
    t = torch.zeros(2)
    opt = MeanTeacherSGD([p], [t], lr=0.1, momentum=0.9, clip=1.0, damp=2.0, delta=0.5)
    opt.step()
    assert opt.last_clip == pytest.approx(0.2)
    assert torch.allclose(p.data, torch.tensor([0.9, 0.88]))
    assert torch.allclose(t, torch.tensor([0.09, 0.088]))
    # second step, same gradient: norm 5 again -> c = 0.2; d = (0.6, 0.8) + 0.4 * ((0.9, 0.88) - (0.09, 0.088))
    # = (0.924, 1.1168); buf = 0.9 * (1.0, 1.2) + d = (1.824, 2.1968); theta = (0.9, 0.88) - 0.1 buf
    opt.step()
    assert torch.allclose(p.data, torch.tensor([0.9 - 0.1824, 0.88 - 0.21968]), atol=1e-6)


def test_no_clip_no_pull_no_ema_is_plain_momentum_sgd():
    p1 = _one_param([1.0, -2.0], [0.5, 0.25])
    p2 = _one_param([1.0, -2.0], [0.5, 0.25])
    t = torch.tensor([7.0, 7.0])
    mt = MeanTeacherSGD([p1], [t], lr=0.1, momentum=0.9, clip=None, damp=0.0, delta=0.0)
    sgd = torch.optim.SGD([p2], lr=0.1, momentum=0.9)
    for _ in range(3):
        mt.step()
        sgd.step()
    assert torch.allclose(p1.data, p2.data) and torch.equal(t, torch.tensor([7.0, 7.0]))


def test_teacher_must_match_the_student():
    with pytest.raises(ValueError, match="one to one"):
        MeanTeacherSGD([torch.nn.Parameter(torch.zeros(2))], [torch.zeros(3)])


def test_delta_damp_zero_is_forget_loss_plus_kl_to_the_frozen_original(tiny_unlearn):
    # the paper: with delta = damp = 0 the same code is the baseline "NLUL + KL to the frozen original"
    model, data = tiny_unlearn
    common = {"epochs": 2, "lr": 0.05, "batch_size": 8, "alpha": 1.0, "beta": 1.0, "momentum": 0.9}
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    build_method("mean_teacher", {**common, "delta": 0.0, "damp": 0.0, "clip": None}).unlearn(a, data)
    build_method("nlul", {**common, "optimizer": "sgd", "weight_decay": 0.0}).unlearn(b, data)
    for (k, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.allclose(x, y, atol=1e-6), k
    assert any(not torch.equal(x, y) for x, y in zip(model.state_dict().values(), a.state_dict().values()))


def test_the_teacher_moves_and_pulls(tiny_unlearn):
    model, data = tiny_unlearn
    cfg = {"epochs": 2, "lr": 0.05, "batch_size": 8, "alpha": 1.0}
    free, pulled = copy.deepcopy(model), copy.deepcopy(model)
    build_method("mean_teacher", {**cfg, "damp": 0.0, "delta": 0.0}).unlearn(free, data)
    build_method("mean_teacher", {**cfg, "damp": 50.0, "delta": 0.0}).unlearn(pulled, data)

    def dist(m):
        return sum(float((x - y).detach().pow(2).sum()) for x, y in zip(m.parameters(), model.parameters())) ** 0.5

    assert dist(pulled) < dist(free)  # the proximal pull keeps the student near the (frozen) teacher


def test_early_stop_keeps_the_last_model_above_the_threshold(tiny_unlearn):
    model, data = tiny_unlearn
    states = []

    def evaluate(m):
        states.append({k: v.clone() for k, v in m.state_dict().items()})
        f = mean_nll(m(input_ids=data.forget.input_ids).logits, data.forget.labels).item()
        return {"minus_forget_nll": -f}

    with torch.no_grad():
        f0 = mean_nll(model(input_ids=data.forget.input_ids).logits, data.forget.labels).item()
    # stop once the forget NLL has risen by more than a little: the metric falls below -(f0 + 0.01)
    cfg = {"epochs": 8, "lr": 0.05, "batch_size": 8, "alpha": 1.0, "stop_metric": "minus_forget_nll",
           "stop_below": -(f0 + 0.01)}
    res = build_method("mean_teacher", cfg).unlearn(model, data, RunContext(seed=0, evaluate=evaluate))
    assert res.stopped_at is not None and res.stopped_at == res.info["kept_epoch"] + 1
    kept = states[res.info["kept_epoch"]]
    assert all(torch.equal(v, kept[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        f = mean_nll(model(input_ids=data.forget.input_ids).logits, data.forget.labels).item()
    assert f <= f0 + 0.01 + 1e-6


def test_bad_config_and_missing_evaluator(tiny_unlearn):
    model, data = tiny_unlearn
    with pytest.raises(ObliviateError, match="go together"):
        build_method("mean_teacher", {"stop_metric": "x"})
    with pytest.raises(ObliviateError, match="delta"):
        build_method("mean_teacher", {"delta": 2.0})
    with pytest.raises(ObliviateError, match="evaluation callback"):
        build_method("mean_teacher", {"stop_metric": "x", "stop_below": 1.0}).unlearn(model, data)


def test_defaults_are_the_papers_news_run():
    c = build_method("mean_teacher").config
    assert (c.lr, c.momentum, c.clip, c.damp, c.delta, c.alpha, c.beta, c.tol, c.penalty) == (
        5e-4, 0.95, 1.0, 5.0, 0.005, 0.05, 1.0, 0.02, "kl")


def test_under_lora_the_teacher_is_a_second_adapter_and_equals_a_deep_copied_teacher(monkeypatch):
    """No second copy of the model under LoRA: the teacher is an adapter on the same base weights. The run is the
    same as with a deep-copied teacher, and only the student's adapter is left (and saved) afterwards."""
    pytest.importorskip("peft")
    import copy

    import obliviate.methods.lm.mean_teacher as mt
    from obliviate.context import RunContext
    from obliviate.lora import LoraConfig, attach_lora
    from tests.conftest import build_tiny_gpt2
    from tests.unit.test_checkpoint_resume import _dropout_lm

    _, data = _dropout_lm()
    base = build_tiny_gpt2(64, 0, seed=1)
    base.config.resid_pdrop = base.config.embd_pdrop = base.config.attn_pdrop = 0.0
    params = {"lr": 0.05, "epochs": 2, "batch_size": 4, "retain_batch_size": 4, "delta": 0.2, "damp": 1.0}

    def run(as_adapter: bool):
        model = attach_lora(copy.deepcopy(base), LoraConfig(r=4, alpha=8), seed=0)
        with torch.no_grad():  # a non-zero adapter, so the teacher's start is not the base model
            for n, p in model.named_parameters():
                if "lora_B" in n:
                    p.add_(0.05)
        method = build_method("mean_teacher", params)
        seen = {}
        setup = method.setup

        def spy(m, d, s):
            out = setup(m, d, s)
            seen["teacher_is_model"] = getattr(method._teacher, "model", None) is m
            return out

        method.setup = spy
        if not as_adapter:
            monkeypatch.setattr(mt, "is_lora", lambda m: False)
        res = method.unlearn(model, data, RunContext(seed=0))
        monkeypatch.undo()
        return model, res, seen

    m1, r1, s1 = run(True)
    m2, r2, s2 = run(False)
    assert s1["teacher_is_model"] and not s2["teacher_is_model"]
    assert "mean_teacher" not in m1.peft_config
    st1, st2 = m1.state_dict(), m2.state_dict()
    assert st1.keys() == st2.keys()
    for k in st1:
        torch.testing.assert_close(st1[k], st2[k], rtol=1e-6, atol=1e-7, msg=k)
    assert [e["loss"] for e in r1.logs] == pytest.approx([e["loss"] for e in r2.logs], rel=1e-6)
