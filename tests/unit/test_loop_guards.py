"""The one loop's gradient accumulation, non-finite-loss stop and keep-above-threshold rule (collapse guard)."""

from __future__ import annotations

import copy

import pytest
import torch

from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData
from obliviate.losses.nll import mean_nll
from obliviate.methods import build_method
from obliviate.train.loop import run_epochs


def _regression(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(16, 3, generator=g), torch.randn(16, 1, generator=g)
    model = torch.nn.Linear(3, 1)
    with torch.no_grad():
        model.weight.copy_(torch.tensor([[0.1, -0.2, 0.3]]))
        model.bias.zero_()
    return model, x, y


def _mse(m, batch):
    xb, yb = batch
    return ((m(xb) - yb) ** 2).mean(), {}


def test_grad_accum_equals_the_big_batch():
    # equal-size batches and a per-batch mean loss: k batches of b accumulated == one batch of k*b
    a, x, y = _regression()
    b = copy.deepcopy(a)
    run_epochs(a, list(a.parameters()), torch.optim.SGD(a.parameters(), lr=0.1), _mse,
               lambda e: ((x[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)), 2, grad_accum=2)
    run_epochs(b, list(b.parameters()), torch.optim.SGD(b.parameters(), lr=0.1), _mse,
               lambda e: ((x[i:i + 8], y[i:i + 8]) for i in range(0, 16, 8)), 2)
    assert torch.allclose(a.weight, b.weight, atol=1e-6) and torch.allclose(a.bias, b.bias, atol=1e-6)


def test_a_short_last_group_is_the_mean_of_its_batches():
    # 3 batches with grad_accum=2: the last group holds one batch and steps with that batch's own gradient
    a, x, y = _regression()
    b = copy.deepcopy(a)
    batches = [(x[i:i + 4], y[i:i + 4]) for i in (0, 4, 8)]
    run_epochs(a, list(a.parameters()), torch.optim.SGD(a.parameters(), lr=0.1), _mse, lambda e: iter(batches), 1,
               grad_accum=2)
    run_epochs(b, list(b.parameters()), torch.optim.SGD(b.parameters(), lr=0.1), _mse,
               lambda e: iter([(x[0:8], y[0:8]), batches[2]]), 1)
    assert torch.allclose(a.weight, b.weight, atol=1e-6)


def test_a_non_finite_loss_stops_before_it_reaches_the_weights():
    model, x, y = _regression()
    seen = []

    def loss(m, batch):
        seen.append(1)
        value, _ = _mse(m, batch)
        return (value * float("nan") if len(seen) == 3 else value), {}

    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ObliviateError, match="epoch 1, batch 3"):
        run_epochs(model, list(model.parameters()), opt, loss,
                   lambda e: ((x[i:i + 4], y[i:i + 4]) for i in range(0, 16, 4)), 1, check_finite=True)
    assert torch.isfinite(model.weight).all()


def test_collapse_guard_keeps_the_last_model_above_the_utility_threshold(tiny_unlearn):
    model, data = tiny_unlearn
    with torch.no_grad():
        r0 = mean_nll(model(input_ids=data.retain.input_ids).logits, data.retain.labels).item()
    kept_states = []

    def evaluate(m):
        kept_states.append({k: v.clone() for k, v in m.state_dict().items()})
        with torch.no_grad():
            r = mean_nll(m(input_ids=data.retain.input_ids).logits, data.retain.labels).item()
        return {"minus_retain_nll": -r}

    # gradient ascent with a large step destroys the retain set too: the guard stops it and keeps the last good model
    cfg = {"epochs": 10, "lr": 3e-2, "batch_size": 8, "stop_metric": "minus_retain_nll", "stop_below": -(r0 + 0.5)}
    res = build_method("grad_ascent", cfg).unlearn(model, data, RunContext(seed=0, evaluate=evaluate))
    assert res.stopped_at is not None and res.info["kept_epoch"] == res.stopped_at - 1
    kept = kept_states[res.info["kept_epoch"]]
    assert all(torch.equal(v, kept[k]) for k, v in model.state_dict().items())
    with torch.no_grad():
        r = mean_nll(model(input_ids=data.retain.input_ids).logits, data.retain.labels).item()
    assert r <= r0 + 0.5
    assert [t["epoch"] for t in res.info["stop_trace"]] == list(range(res.stopped_at + 1))


def test_an_evaluator_without_a_stop_rule_records_the_trajectory(tiny_unlearn):
    """RunContext.evaluate with no stop_metric: the metrics before the first epoch and after each are recorded
    (info["trajectory"]), nothing is stopped or rolled back, and the bench merges them into the epoch logs."""
    from obliviate.study import with_trajectory

    model, data = tiny_unlearn

    def evaluate(m):
        with torch.no_grad():
            return {"eval_nll": mean_nll(m(input_ids=data.forget.input_ids).logits, data.forget.labels).item()}

    f0 = evaluate(model)["eval_nll"]
    res = build_method("grad_ascent", {"epochs": 3, "lr": 3e-3, "batch_size": 8}).unlearn(
        model, data, RunContext(seed=0, evaluate=evaluate))
    traj = res.info["trajectory"]
    assert [t["epoch"] for t in traj] == [0.0, 1.0, 2.0, 3.0] and res.stopped_at is None
    assert traj[0]["eval_nll"] == pytest.approx(f0) and traj[-1]["eval_nll"] == pytest.approx(
        evaluate(model)["eval_nll"])  # the last entry is the returned model
    assert traj[-1]["eval_nll"] > traj[0]["eval_nll"]  # ascent raised it
    merged = with_trajectory(res.logs, traj)
    assert [m["epoch"] for m in merged] == [1.0, 2.0, 3.0]
    assert [m["eval_nll"] for m in merged] == [t["eval_nll"] for t in traj[1:]]
    assert merged[0]["loss"] == res.logs[0]["loss"] and merged[0]["forget_nll"] == res.logs[0]["forget_nll"]
    assert with_trajectory(res.logs, [{"epoch": 1.0, "forget_nll": -1.0}])[0]["forget_nll"] != -1.0  # logs win


def test_guard_config_errors(tiny_unlearn):
    model, data = tiny_unlearn
    with pytest.raises(ObliviateError, match="go together"):
        build_method("grad_diff", {"stop_below": 1.0})
    with pytest.raises(ObliviateError, match="grad_accum"):
        build_method("grad_diff", {"grad_accum": 0})
    with pytest.raises(ObliviateError, match="evaluation callback"):
        build_method("grad_diff", {"stop_metric": "x", "stop_below": 1.0}).unlearn(model, data)
    with pytest.raises(ObliviateError, match="not among the evaluated metrics"):
        build_method("grad_diff", {"stop_metric": "x", "stop_below": 1.0, "epochs": 1}).unlearn(
            model, data, RunContext(evaluate=lambda m: {"y": 1.0}))


def test_accumulated_unlearning_takes_fewer_steps(tiny_unlearn):
    model, data = tiny_unlearn
    res = build_method("grad_diff", {"epochs": 2, "batch_size": 4, "grad_accum": 2}).unlearn(model, data)
    assert res.info["steps"] == 2 * -(-((len(data.forget) + 3) // 4) // 2)


def test_dropout_models_are_reproducible_and_the_global_rng_is_left_alone():
    # regression: Hugging Face GPT-2 has dropout 0.1, which draws from torch's global generator in train mode; the
    # loop did not seed it, so the same seed gave different models
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    base = GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=1, n_embd=16, n_head=2, n_positions=16))
    rows = torch.randint(1, 50, (12, 10), generator=torch.Generator().manual_seed(1))
    data = LMUnlearnData.from_rows(rows[:6], rows[6:], pad_id=0)
    cfg = {"epochs": 2, "lr": 1e-2, "batch_size": 3}
    a, b, c = copy.deepcopy(base), copy.deepcopy(base), copy.deepcopy(base)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_method("grad_diff", cfg).unlearn(a, data, RunContext(seed=0))
    assert torch.equal(torch.rand(3), expected)  # the caller's random state is untouched
    build_method("grad_diff", cfg).unlearn(b, data, RunContext(seed=0))
    build_method("grad_diff", cfg).unlearn(c, data, RunContext(seed=1))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa)


def test_bf16_autocast_trains_close_to_fp32_and_fp16_needs_cuda(tiny_unlearn):
    model, data = tiny_unlearn
    a, b = copy.deepcopy(model), copy.deepcopy(model)
    cfg = {"epochs": 2, "lr": 3e-3, "batch_size": 8}
    r32 = build_method("grad_diff", cfg).unlearn(a, data)
    r16 = build_method("grad_diff", {**cfg, "precision": "bf16"}).unlearn(b, data)
    # the forward pass ran in bfloat16: the first loss agrees to bf16 precision, not to the bit
    l32, l16 = r32.logs[0]["loss"], r16.logs[0]["loss"]
    assert l16 != l32 and abs(l16 - l32) < 0.05 * abs(l32)
    assert all(p.dtype == torch.float32 for p in b.parameters())  # weights stay float32
    assert any(not torch.equal(x, y) for x, y in zip(model.state_dict().values(), b.state_dict().values()))
    if not torch.cuda.is_available():
        with pytest.raises(ObliviateError, match="CUDA"):
            build_method("grad_diff", {**cfg, "precision": "fp16"}).unlearn(copy.deepcopy(model), data)
    with pytest.raises(ObliviateError, match="precision"):
        build_method("grad_diff", {"precision": "fp8"})


@pytest.mark.parametrize("trajectory", [True, False])
def test_a_suites_eval_trajectory_switch_decides_whether_epochs_are_evaluated(tiny_unlearn, trajectory):
    """``eval.trajectory: false`` (tofu, muse) skips the per-epoch evaluation of a bench trial; true records it."""
    from types import SimpleNamespace

    from obliviate.study import run_trial
    from obliviate.suites.base import Evaluation

    model, data = tiny_unlearn
    calls = []

    class Suite:
        def unlearn_data(self, d, before, cfg):
            return data

        def epoch_metrics(self, m, d, cfg):
            calls.append(1)
            return {"x": float(len(calls))}

        def evaluate(self, m, d, cfg):
            return Evaluation({}, {"x": 0.0})

        def score(self, before, after):
            return 0.0

        def model_hash(self, m):
            return "h"

    cfg = SimpleNamespace(eval=SimpleNamespace(trajectory=trajectory))
    _, rec = run_trial(Suite(), cfg, None, model, {"metrics": {}, "scalars": {}}, "grad_ascent",
                       {"epochs": 2, "lr": 1e-3, "batch_size": 8}, seed=0, device=None)
    assert len(calls) == (3 if trajectory else 0)
    assert ("x" in rec["logs"][0]) == trajectory
