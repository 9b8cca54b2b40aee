"""Weight-level TinyMem methods (durable, durable_aggregate, obs, greedy): hand-derived selections, the OBS algebra,
counts, the reference recipe, greedy's fast path against the reference's loop, errors, and a behaviour check
against zeroing random MLP weights."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from obliviate.context import RunContext
from obliviate.data.tinymem import PAD
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.methods import build_method
from obliviate.methods.localize import durable as durable_mod
from obliviate.methods.localize.durable import Durable, DurableConfig
from obliviate.methods.localize.durable_aggregate import DurableAggregate, DurableAggregateConfig
from obliviate.methods.localize.greedy import GreedyConfig, greedy_prune, mixed_rows
from obliviate.methods.localize.obs import (
    OBS,
    BlockLayout,
    OBSConfig,
    block_fisher_inverse,
    obs_compensation,
    obs_saliency,
)
from obliviate.methods.localize.weight_mask import forget_nll, mlp_targets, prune_count


@pytest.fixture(autouse=True)
def _one_thread(_threads):
    # tiny models: two intra-op threads only add OpenMP barriers (20-40x slower here when another job shares the CPU)
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(2)


@pytest.fixture
def forget_only(micro_data):
    return LMUnlearnData.from_rows(micro_data.artifacts, None, PAD)


@pytest.fixture
def both(micro_data):
    return LMUnlearnData.from_rows(micro_data.artifacts, micro_data.clean_train[:64], PAD)


def _hand_gradients(model, big: str | None = None):
    """A known gradient per MLP target: |g| a random permutation of 1..n (random signs); with ``big``, that tensor's
    entries are shifted above every other tensor's."""
    gen = torch.Generator().manual_seed(0)
    grads = []
    for t in mlp_targets(model):
        n = t.param.numel()
        mag = (torch.randperm(n, generator=gen) + 1).float()
        if big is not None:
            mag = mag + 1e6 if t.name == big else mag * 1e-6
        sign = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
        grads.append((mag * sign).view_as(t.param))
    return grads


def test_durable_zeroes_exactly_the_top_abs_gradient_entries_of_each_tensor(tiny_model, forget_only, monkeypatch):
    grads = _hand_gradients(tiny_model)
    monkeypatch.setattr(durable_mod, "forget_gradient", lambda *a, **k: ([g.clone() for g in grads], 0.0))
    before = copy.deepcopy(tiny_model)
    result = Durable(DurableConfig(ratio=0.1)).unlearn(tiny_model, forget_only)
    for t, g, old in zip(mlp_targets(tiny_model), grads, mlp_targets(before)):
        k = math.floor(0.1 * g.numel())
        expected = g.abs() > g.numel() - k  # |g| is a permutation of 1..n: the top k are n-k+1..n
        assert torch.equal(result.masks[t.name], expected), t.name
        assert (t.param[expected] == 0).all() and torch.equal(t.param[~expected], old.param[~expected])
        assert result.info["zeroed_per_tensor"][t.name] == k
    sd0, sd1 = before.state_dict(), tiny_model.state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0 if ".mlp." not in k)


def test_durable_aggregate_ranks_globally_not_per_tensor(tiny_model, forget_only, monkeypatch):
    big = "transformer.h.0.mlp.c_proj.weight"
    grads = _hand_gradients(tiny_model, big=big)
    monkeypatch.setattr(durable_mod, "forget_gradient", lambda *a, **k: ([g.clone() for g in grads], 0.0))
    agg = DurableAggregate(DurableAggregateConfig(ratio=0.1)).unlearn(copy.deepcopy(tiny_model), forget_only)
    per = Durable(DurableConfig(ratio=0.1)).unlearn(copy.deepcopy(tiny_model), forget_only)
    N = sum(g.numel() for g in grads)
    k = math.floor(0.1 * N)
    assert agg.info["zeroed"] == k and agg.info["zeroed_per_tensor"][big] == k  # all in the big tensor
    g_big = grads[[t.name for t in mlp_targets(tiny_model)].index(big)]
    assert torch.equal(agg.masks[big], g_big.abs() > g_big.abs().max() - k)
    assert all(v > 0 for n, v in per.info["zeroed_per_tensor"].items() if n.endswith("weight"))


def test_durable_aggregate_reference_mode_ranks_every_parameter_but_zeroes_only_mlp(tiny_model, forget_only):
    before = copy.deepcopy(tiny_model)
    cfg = DurableAggregateConfig(ratio=0.05, reference_compatible=True)
    result = DurableAggregate(cfg).unlearn(tiny_model, forget_only)
    total = sum(p.numel() for p in tiny_model.parameters())
    assert result.info["ranked_params"] == total and result.info["selected"] == prune_count(0.05, total)
    assert 0 < result.info["zeroed"] < result.info["selected"]  # some of the top entries are outside the MLPs
    sd0, sd1 = before.state_dict(), tiny_model.state_dict()
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0 if ".mlp." not in k)


@pytest.mark.parametrize("chunk", [1, 4])
def test_block_fisher_inverse_is_the_inverse_of_the_damped_empirical_fisher(chunk):
    gen = torch.Generator().manual_seed(0)
    m, d, B, lam = 7, 23, 10, 1e-2
    G = torch.randn(m, d, generator=gen, dtype=torch.float64)
    F_inv = block_fisher_inverse(G, B, lam, chunk=chunk)
    Gp = F.pad(G, (0, 30 - d)).view(m, 3, B)
    for b in range(3):
        fisher = lam * torch.eye(B, dtype=torch.float64) + Gp[:, b].T @ Gp[:, b] / m
        assert torch.allclose(F_inv[b], torch.linalg.inv(fisher), rtol=1e-9, atol=1e-9)


def test_saliency_is_w_squared_over_twice_the_inverse_diagonal():
    F_inv = torch.diag(torch.tensor([2.0, 4.0, 0.5]))[None]
    w = torch.tensor([[1.0, -2.0, 3.0]])
    assert torch.allclose(obs_saliency(w, F_inv), torch.tensor([[1 / 4, 4 / 8, 9 / 1]]))


def _spd(B: int, seed: int) -> torch.Tensor:
    A = torch.randn(B, B, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return A @ A.T + 0.5 * torch.eye(B, dtype=torch.float64)


def test_obs_compensation_realises_the_obs_loss_change_on_a_quadratic():
    # L(w) = 1/2 (w - w*)^T H (w - w*) at w = w*: removing q with the OBS update costs exactly w_q^2 / (2 [H^-1]_qq)
    B, q = 6, 2
    H = _spd(B, 1)
    Hi = torch.linalg.inv(H)
    w = torch.randn(B, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    prune = torch.zeros(1, B, dtype=torch.bool)
    prune[0, q] = True
    delta = obs_compensation(Hi[None], w[None], prune)[0]
    assert abs(float(w[q] + delta[q])) < 1e-12
    assert torch.allclose(delta, -(w[q] / Hi[q, q]) * Hi[:, q])  # the textbook single-weight update
    cost = 0.5 * delta @ H @ delta
    assert torch.isclose(cost, obs_saliency(w[None], Hi[None])[0, q])
    plain = torch.zeros(B, dtype=torch.float64)
    plain[q] = -w[q]
    assert cost < 0.5 * plain @ H @ plain  # compensating beats plain zeroing
    # two entries at once: cost 1/2 w_Q^T [H^-1_QQ]^-1 w_Q, both exactly zero
    Q = [1, 4]
    prune = torch.zeros(1, B, dtype=torch.bool)
    prune[0, Q] = True
    delta = obs_compensation(Hi[None], w[None], prune)[0]
    assert torch.allclose((w + delta)[Q], torch.zeros(2, dtype=torch.float64), atol=1e-12)
    expected = 0.5 * w[Q] @ torch.linalg.inv(Hi[Q][:, Q]) @ w[Q]
    assert torch.isclose(0.5 * delta @ H @ delta, expected)


def test_obs_reference_compatible_is_the_reference_recipe(trained_tiny, forget_only):
    """details §6: sum of batch-mean HF-loss gradients (batch 64, every position scored), one Sherman-Morrison update
    per 50-entry block with m = 1 from I / 1e-7, saliency w^2 / (2 diag), top floor(ratio n) of each MLP tensor
    zeroed, nothing else changed."""
    ratio, lam, B = 0.02, 1e-7, 50
    ref = copy.deepcopy(trained_tiny)
    for rows in forget_only.forget.input_ids.split(64):
        ref(input_ids=rows, labels=rows).loss.backward()
    model = copy.deepcopy(trained_tiny)
    result = OBS(OBSConfig(ratio=ratio, reference_compatible=True)).unlearn(model, forget_only)
    for name, p in ref.named_parameters():
        if ".mlp." not in name:
            continue
        g, w, n = p.grad.flatten().double(), p.detach().flatten().double(), p.numel()
        gb = F.pad(g, (0, math.ceil(n / B) * B - n)).view(-1, B)
        # closed form of one rank-1 update of I / lam: diag = 1/lam - (g_i / lam)^2 / (1 + |g_block|^2 / lam)
        diag = (1 / lam - (gb / lam) ** 2 / (1 + (gb**2).sum(1, keepdim=True) / lam)).flatten()[:n]
        s = w**2 / (2 * diag)
        expected = torch.zeros(n, dtype=torch.bool)
        expected[torch.topk(s, int(n * ratio)).indices] = True
        assert torch.equal(result.masks[name].flatten(), expected), name
        new = dict(model.named_parameters())[name].detach().flatten()
        assert (new[expected] == 0).all() and torch.equal(new[~expected], p.detach().flatten()[~expected])


@pytest.mark.parametrize("name", ["durable", "durable_aggregate", "obs"])
def test_zeroed_counts_are_floor_ratio_times_numel(name, tiny_model, forget_only):
    result = build_method(name, {"ratio": 0.03}).unlearn(tiny_model, forget_only)
    sizes = {t.name: t.param.numel() for t in mlp_targets(tiny_model)}
    if name == "durable_aggregate":
        assert result.info["zeroed"] == prune_count(0.03, sum(sizes.values()))
    else:
        assert result.info["zeroed_per_tensor"] == {n: prune_count(0.03, s) for n, s in sizes.items()}
    assert prune_count(0.29, 100) == 29 and prune_count(1e-5, 65536) == 0  # floor, guarded against 28.999...


def test_obs_rounds_and_compensation_keep_zeroed_weights_at_zero(tiny_model, forget_only):
    result = OBS(OBSConfig(ratio=0.05, epochs=2, num_grads=8)).unlearn(tiny_model, forget_only)
    assert result.info["num_grads"] == 8 and [e["zeroed"] for e in result.logs[:2]] == [207.0, 415.0]
    for t in mlp_targets(tiny_model):
        assert (t.param[result.masks[t.name]] == 0).all()
    layout = BlockLayout([3, 5], 4)
    blocks = layout.blocks([torch.ones(3), 2 * torch.ones(5)], torch.float64)
    assert blocks.tolist() == [[1, 1, 1, 0], [2, 2, 2, 2], [2, 0, 0, 0]]  # no block straddles two tensors
    assert [x.tolist() for x in layout.split(blocks)] == [[1, 1, 1], [2, 2, 2, 2, 2]]


@pytest.mark.parametrize("epochs", [None, 2])
def test_greedy_fast_path_selects_what_the_reference_loop_selects(epochs, trained_tiny, both):
    rows, y = mixed_rows(both.forget, both.retain)
    cfg = GreedyConfig(ratio=0.004, epochs=epochs)
    chosen = []
    for naive in (False, True):
        model = copy.deepcopy(trained_tiny).eval()
        targets = mlp_targets(model)
        for t in targets:
            t.param.requires_grad_(True)
        run = greedy_prune(model, targets, rows, y, cfg, seed=0, naive=naive)
        chosen.append(run.chosen)
        assert all(p.grad is None for p in model.parameters())
    assert len(chosen[0]) == prune_count(0.004, sum(t.param.numel() for t in targets))
    assert chosen[0] == chosen[1] and len(set(chosen[0])) == len(chosen[0])


def test_mixed_rows_pad_to_one_width_and_label_forget_plus_one():
    f = TokenData.from_sequences([[1, 2, 3]], pad_id=0)
    r = TokenData.from_sequences([[4, 5, 6, 7, 8], [4, 5]], pad_id=0)
    rows, y = mixed_rows(f, r)
    assert rows.input_ids.shape == (3, 5) and y.tolist() == [1.0, -1.0, -1.0]
    assert rows.labels[0].tolist() == [1, 2, 3, -100, -100] and rows.attention_mask[0].tolist() == [1, 1, 1, 0, 0]


@pytest.mark.parametrize("name", ["durable", "durable_aggregate", "obs", "greedy"])
def test_bad_ratio_names_the_value_and_the_range(name):
    for bad in (0.0, 1.0, -0.1, 1.5):
        with pytest.raises(ObliviateError, match=rf"ratio must be in \(0, 1\).*got {bad}"):
            build_method(name, {"ratio": bad})


def test_other_bad_configs_and_inputs(tiny_model, forget_only):
    for cls, field in [(DurableConfig, "epochs"), (DurableConfig, "batch_size"), (OBSConfig, "num_grads"),
                       (OBSConfig, "block_size"), (GreedyConfig, "epochs"), (GreedyConfig, "batch_size")]:
        with pytest.raises(ObliviateError, match=field):
            cls(**{field: 0})
    with pytest.raises(ObliviateError, match="damp"):
        OBSConfig(damp=0.0)
    with pytest.raises(ObliviateError, match="retain"):
        build_method("greedy").unlearn(tiny_model, forget_only)

    class NoMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(4, 4)

    with pytest.raises(ObliviateError, match=r"no MLP.*'mlp'.*proj"):
        build_method("durable").unlearn(NoMLP(), forget_only)


def test_mode_flags_and_grads_are_restored(tiny_model, both):
    tiny_model.train()
    frozen = "transformer.h.0.mlp.c_fc.bias"
    tiny_model.get_parameter(frozen).requires_grad_(False)
    for name in ("durable", "obs", "greedy"):
        params = {"ratio": 0.01, "epochs": 1} if name == "greedy" else {"ratio": 0.01}
        build_method(name, params).unlearn(tiny_model, both, RunContext(seed=0))
        assert tiny_model.training
        assert [n for n, p in tiny_model.named_parameters() if not p.requires_grad] == [frozen]
        assert all(p.grad is None for p in tiny_model.parameters())


def _random_zeroing(model, n: int, seed: int) -> None:
    targets = mlp_targets(model)
    flat = torch.zeros(sum(t.param.numel() for t in targets), dtype=torch.bool)
    flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(seed))[:n]] = True
    with torch.no_grad():
        for t, m in zip(targets, flat.split([t.param.numel() for t in targets])):
            t.param.masked_fill_(m.view_as(t.param), 0.0)


@pytest.mark.parametrize("name,params", [("durable", {"ratio": 0.05}), ("durable_aggregate", {"ratio": 0.05}),
                                         ("obs", {"ratio": 0.05}), ("obs", {"ratio": 0.05, "reference_compatible": True}),
                                         ("greedy", {"ratio": 0.01})])
def test_beats_zeroing_as_many_random_mlp_weights(name, params, trained_tiny, both):
    model = copy.deepcopy(trained_tiny)
    f0 = forget_nll(model, both.forget)
    result = build_method(name, params).unlearn(model, both, RunContext(seed=0))
    n = result.info["zeroed"]
    assert n > 0
    gain = forget_nll(model, both.forget) - f0
    for seed in range(3):
        rand = copy.deepcopy(trained_tiny)
        _random_zeroing(rand, n, seed)
        assert gain > forget_nll(rand, both.forget) - f0, f"{name}: no better than {n} random MLP weights"
