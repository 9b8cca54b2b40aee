"""PDU (primal-dual unlearning) and the DPO-style methods (IdkDPO, AltPO): the spec's hand-checkable numbers
(``shared/specs/ou-extra-methods.md`` §1.8 T1-T4, §2.7 A1-A2), the methods' state and data checks, and what each
does on the tiny TinyMem model."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from obliviate.context import RunContext
from obliviate.data.alternates import with_answers
from obliviate.data.tinymem import PAD
from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch, LMBatch, LMUnlearnData, TokenData
from obliviate.losses.nll import IGNORE_INDEX, mean_nll
from obliviate.losses.pdu import dual_update, logit_margin, pdu_forget_loss, pdu_loss
from obliviate.losses.preference import dpo_loss, sequence_nll_sum
from obliviate.methods import build_method

L2 = math.log(2)


def _nll(model, split) -> float:
    with torch.no_grad():
        return mean_nll(model(input_ids=split.input_ids).logits, split.labels).item()


def _reversed_alternates(data: LMUnlearnData) -> LMUnlearnData:
    answers = [ids[lab != IGNORE_INDEX].flip(0).tolist() for ids, lab in zip(data.forget.input_ids, data.forget.labels)]
    return LMUnlearnData(data.forget, data.retain, {"alternate": with_answers(data.forget, answers, PAD)})


# ------------------------------------------------------------------------------------------------ PDU, pure maths
T1_LOGITS = torch.tensor([[[4.0, 0, 0, 0], [2, 0, -2, 0], [1, 1, 1, 1]]])  # (B=1, T=3, V=4)
T1_LABELS = torch.tensor([[-100, 5, 7]])


def test_t1_margin_loss_ou_mask_and_shifted():
    assert logit_margin(T1_LOGITS)[0].tolist() == [3.0, 2.0, 0.0]  # m^2 = 9, 4, 0
    # open-unlearning scores rows t = 1, 2 (labels != -100, no shift): (4 + 0) / 2
    assert pdu_forget_loss(T1_LOGITS, T1_LABELS).item() == pytest.approx(2.0)
    # the shifted mask scores rows t = 0, 1 (they predict the scored labels): (9 + 4) / 2
    assert pdu_forget_loss(T1_LOGITS, T1_LABELS, faithful_mask=False).item() == pytest.approx(6.5)


def test_t2_gradient_and_shift_invariance():
    z = T1_LOGITS.clone().requires_grad_()
    pdu_forget_loss(z, T1_LABELS).backward()
    # dL/dz at t=1 = 2 m (e_argmax - 1/V) / |M| = 2 * 2 * ([1, 0, 0, 0] - 1/4) / 2
    assert torch.allclose(z.grad[0, 1], torch.tensor([1.5, -0.5, -0.5, -0.5]))
    assert torch.equal(z.grad[0, 0], torch.zeros(4)) and torch.equal(z.grad[0, 2], torch.zeros(4))
    z7 = (T1_LOGITS + 7).requires_grad_()
    loss7 = pdu_forget_loss(z7, T1_LABELS)
    loss7.backward()
    assert loss7.item() == pytest.approx(2.0) and torch.allclose(z7.grad, z.grad)


def test_margin_loss_is_zero_only_at_uniform_and_zero_for_no_scored_rows():
    flat = torch.full((2, 3, 5), 0.3)
    assert pdu_forget_loss(flat, torch.tensor([[-100, 1, 2], [-100, -100, 4]])).item() == 0.0
    z = torch.randn(2, 3, 5, requires_grad=True)
    none = pdu_forget_loss(z, torch.full((2, 3), -100))
    none.backward()  # a graph exists, the gradient is zero
    assert none.item() == 0.0 and torch.equal(z.grad, torch.zeros_like(z))
    # bf16 logits: the margin is computed in float32
    assert logit_margin(T1_LOGITS.bfloat16()).dtype == torch.float32


def test_t3_total_loss():
    assert pdu_loss(torch.tensor(2.0), torch.tensor(0.5), 100.0, 0.3, 1.0).item() == pytest.approx(22.0)
    # eps shifts the value, never the gradient in theta
    r = torch.tensor(0.5, requires_grad=True)
    pdu_loss(torch.tensor(2.0), r, 100.0, 0.3).backward()
    assert r.grad.item() == pytest.approx(100.0)


def test_t4_dual_update():
    assert dual_update(100.0, 0.5, 0.3, 5.0) == pytest.approx(101.0)  # above eps: lambda rises
    assert dual_update(100.0, 0.1, 0.3, 5.0) == pytest.approx(99.0)  # below eps: it falls
    assert dual_update(0.5, 0.1, 0.3, 5.0) == 0.0  # projected: max(0, -0.5)


# ------------------------------------------------------------------------------------------------ DPO, pure maths
def test_a1_sequence_level_values():
    # r_w = 3 - 2 = 1, r_l = 1 - 1.5 = -0.5, u = 0.1 * 1.5 = 0.15: L = -20 log sigmoid(0.15)
    w, rw = torch.tensor([2.0], requires_grad=True), torch.tensor([3.0])
    lo, rl = torch.tensor([1.5], requires_grad=True), torch.tensor([1.0])
    loss = dpo_loss(w, rw, lo, rl, beta=0.1)
    assert loss.item() == pytest.approx(12.419141, abs=1e-5)
    loss.backward()
    # dL/d(r_w - r_l) = -2 sigmoid(-0.15) = -0.925140; r_w = S_ref - S_theta, so dL/dS_theta(w) = +0.925140
    assert w.grad.item() == pytest.approx(0.925140, abs=1e-6) and lo.grad.item() == pytest.approx(-0.925140, abs=1e-6)
    x = torch.tensor([4.0])
    assert dpo_loss(x, x, x, x, beta=0.1).item() == pytest.approx(13.862944, abs=1e-5)  # (2/beta) ln 2 at theta = ref
    assert dpo_loss(x, x, x, x, beta=0.5).item() == pytest.approx(2.772589, abs=1e-6)
    both = dpo_loss(torch.tensor([2.0, 4.0]), torch.tensor([3.0, 4.0]), torch.tensor([1.5, 4.0]),
                    torch.tensor([1.0, 4.0]), beta=0.1)
    assert both.item() == pytest.approx(13.141042, abs=1e-5)  # the batch mean


class Bigram(nn.Module):
    """Logits from the current token only: a (V, V) table. Returns what an HF causal LM returns (``.logits``)."""

    def __init__(self, table: torch.Tensor) -> None:
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **_) -> SimpleNamespace:
        return SimpleNamespace(logits=self.table[input_ids])


def test_a2_from_logits_through_the_method():
    # V = 2, prompt token 0; winner (1, 1), loser (0, 0). theta: every row [0, 0]. Reference: after token 0 the row
    # is [ln 3, 0], after token 1 it is [0, 0] -- the spec's rows: winner [ln3, 0], [0, 0]; loser [ln3, 0], [ln3, 0]
    theta = Bigram(torch.zeros(2, 2))
    ref = Bigram(torch.tensor([[math.log(3), 0.0], [0.0, 0.0]])).requires_grad_(False)
    win = TokenData(torch.tensor([[0, 1, 1]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[-100, 1, 1]]))
    lose = LMBatch(torch.tensor([[0, 0, 0]]), torch.ones(1, 3, dtype=torch.long), torch.tensor([[-100, 0, 0]]),
                   torch.tensor([0]))
    s_win, _ = sequence_nll_sum(ref.table[win.input_ids], win.labels)
    s_lose, _ = sequence_nll_sum(ref.table[lose.input_ids], lose.labels)
    assert s_win.item() == pytest.approx(math.log(8)) and s_lose.item() == pytest.approx(2 * math.log(4 / 3))
    method = build_method("altpo")
    method._ref, method._alt = ref, win  # what setup would hold
    loss, stats = method.loss(theta, ForgetRetainBatch(lose))
    assert loss.item() == pytest.approx(12.415369, abs=1e-5)  # 20 ln(1 + 4.5^-0.1)
    assert stats["reward_margin"].item() == pytest.approx(math.log(4.5), abs=1e-6)  # r_w - r_l = ln 2 - ln(4/9)
    assert stats["win_seq_nll"].item() == pytest.approx(2 * L2) and stats["lose_seq_nll"].item() == pytest.approx(2 * L2)
    # + alpha * NLL(retain): the spec's total with L_retain = 0.5 is 12.915369; here theta's retain NLL is ln 2
    assert 12.415369 + 1.0 * 0.5 == pytest.approx(12.915369)
    retain = LMBatch(torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.long), torch.tensor([[0, 1]]),
                     torch.tensor([0]))
    total, stats = method.loss(theta, ForgetRetainBatch(lose, retain))
    assert total.item() == pytest.approx(12.415369 + L2, abs=1e-5) and stats["retain_nll"].item() == pytest.approx(L2)


# ------------------------------------------------------------------------------------------------ configs
def test_defaults_and_their_sources():
    p = build_method("pdu").config
    # open-unlearning community/methods/PDU/run.sh (TOFU), its TOFU optimiser setting
    assert (p.alpha, p.dual_step_size, p.dual_warmup_epochs, p.dual_update_upon, p.gamma, p.primal_dual) == (
        100.0, 5.0, 5, "step", 1.0, True)
    assert (p.retain_loss_eps, p.retain_loss_tolerance, p.faithful_mask, p.lr, p.epochs) == (None, 0.1, True, 1e-5, 10)
    for name, epochs in (("idk_dpo", 10), ("altpo", 2)):  # DPO.yaml; AltPO/run.sh: 2 epochs on the 5x forget set
        c = build_method(name).config
        assert (c.beta, c.gamma, c.alpha, c.lr, c.weight_decay, c.epochs) == (0.1, 1.0, 1.0, 1e-5, 0.01, epochs)


@pytest.mark.parametrize("name, bad, match", [
    ("pdu", {"alpha": -1.0}, "alpha"),
    ("pdu", {"retain_loss_eps": -0.1}, "retain_loss_eps"),
    ("pdu", {"dual_update_upon": "batch"}, "dual_update_upon"),
    ("pdu", {"dual_warmup_epochs": -1}, "dual_warmup_epochs"),
    ("pdu", {"retain_batch_size": 0}, "retain_batch_size"),
    ("pdu", {"eps_rows": 0}, "eps_rows"),
    ("idk_dpo", {"beta": 0.0}, "beta"),
    ("altpo", {"gamma": -1.0}, "gamma"),
])
def test_bad_config_is_a_clear_error(name, bad, match):
    with pytest.raises(ObliviateError, match=match):
        build_method(name, bad)


# ------------------------------------------------------------------------------------------------ PDU on the tiny model
FAST = {"lr": 3e-3, "batch_size": 8, "retain_batch_size": 16}


def test_pdu_lambda_frozen_during_warmup_then_moves(tiny_unlearn):
    model, data = tiny_unlearn
    r = build_method("pdu", {**FAST, "epochs": 2, "dual_warmup_epochs": 2}).unlearn(copy.deepcopy(model), data)
    assert r.info["dual_updates"] == 0 and r.info["dual_lambda_by_epoch"] == [100.0, 100.0]
    assert [e["dual_lambda"] for e in r.logs] == [100.0, 100.0]
    r = build_method("pdu", {**FAST, "epochs": 3, "dual_warmup_epochs": 1}).unlearn(model, data)
    steps = -(-len(data.forget) // 8)
    assert r.info["dual_updates"] == 2 * steps  # every micro-batch of epochs 2 and 3
    assert r.info["dual_lambda_by_epoch"][0] == 100.0 and r.info["dual_lambda_by_epoch"][-1] != 100.0


def test_pdu_lambda_rises_above_eps_and_falls_clipped_at_zero_below(tiny_unlearn):
    model, data = tiny_unlearn
    up = build_method("pdu", {**FAST, "epochs": 3, "dual_warmup_epochs": 0, "retain_loss_eps": 0.0})
    r = up.unlearn(copy.deepcopy(model), data)
    lams = r.info["dual_lambda_by_epoch"]
    assert lams == sorted(lams) and lams[0] > 100.0  # the retain NLL is always above 0
    down = build_method("pdu", {**FAST, "epochs": 3, "dual_warmup_epochs": 0, "retain_loss_eps": 100.0,
                                "alpha": 1.0})
    r = down.unlearn(model, data)
    assert r.info["dual_lambda_by_epoch"] == [0.0, 0.0, 0.0] and r.info["dual_lambda"] == 0.0  # never negative


def test_pdu_epoch_mode_updates_once_per_epoch_after_warmup(tiny_unlearn):
    model, data = tiny_unlearn
    r = build_method("pdu", {**FAST, "epochs": 4, "dual_warmup_epochs": 1, "dual_update_upon": "epoch",
                             "retain_loss_eps": 0.0}).unlearn(model, data)
    # updates at the end of every epoch from W = 1 on (open-unlearning: the first at the end of epoch W), the last
    # epoch's too (the loop tells the method each epoch end), though that one changes nothing that trains
    assert r.info["dual_updates"] == 4
    lams = r.info["dual_lambda_by_epoch"]
    assert lams[0] == 100.0 and lams == sorted(lams) and len(set(lams)) == 4
    assert [e["dual_lambda"] for e in r.logs] == pytest.approx(lams)  # constant within each epoch
    assert not model.training  # the eval-mode measurement restored the mode (the loop ends in eval)


def test_pdu_keeps_retain_within_eps_while_forgetting(tiny_unlearn):
    """The paper's promise: the forget set moves toward uniform (its NLL rises) while the retain NLL stays near eps;
    the same weights without the dual update (a fixed scalarisation) let the retain NLL drift past eps."""
    model, data = tiny_unlearn
    f0, r0 = _nll(model, data.forget), _nll(model, data.retain)
    cfg = {**FAST, "epochs": 8, "dual_warmup_epochs": 0, "alpha": 1.0, "retain_loss_tolerance": 0.02}
    pd = copy.deepcopy(model)
    res = build_method("pdu", cfg).unlearn(pd, data, RunContext(seed=0))
    eps = res.info["retain_loss_eps"]
    assert eps == pytest.approx(1.02 * res.info["start_retain_nll"]) and res.info["start_retain_nll"] == pytest.approx(
        r0, rel=0.05)
    assert _nll(pd, data.forget) > f0 + 0.1
    assert _nll(pd, data.retain) <= eps + 0.02
    lams = res.info["dual_lambda_by_epoch"]
    assert max(lams) > 1.0 and lams[-1] < max(lams)  # rose while L_r > eps, fell once below
    fixed = copy.deepcopy(model)
    build_method("pdu", {**cfg, "primal_dual": False}).unlearn(fixed, data, RunContext(seed=0))
    assert _nll(fixed, data.retain) > eps + 0.05


def test_pdu_state_dict_round_trip_and_resume(tiny_unlearn):
    model, data = tiny_unlearn
    cfg = {**FAST, "epochs": 2, "dual_warmup_epochs": 1}
    first = build_method("pdu", cfg)
    assert first.state_dict()["dual_lambda"] == 100.0 and first.state_dict()["eps"] is None  # before a run
    first.unlearn(model, data)
    state = first.state_dict()
    assert state["epochs_done"] == 2 and state["updates"] > 0 and state["eps"] > 0
    second = build_method("pdu", {**cfg, "epochs": 1})
    second.load_state_dict(copy.deepcopy(state))
    r = second.unlearn(model, data)
    # the same eps (not measured again on the changed model), lambda continues, epochs count on
    assert r.info["retain_loss_eps"] == state["eps"] and r.info["start_retain_nll"] == state["start_retain_nll"]
    assert r.logs[0]["dual_lambda"] == pytest.approx(state["dual_lambda"], rel=0.2)
    assert second.state_dict()["epochs_done"] == 3 and len(second.state_dict()["lambda_by_epoch"]) == 3
    with pytest.raises(ObliviateError, match="not a PDU state"):
        second.load_state_dict({"lambda": 1.0})


def test_pdu_on_epoch_end_hook_replaces_counting(tiny_unlearn):
    model, data = tiny_unlearn
    m = build_method("pdu", {**FAST, "dual_warmup_epochs": 1, "dual_update_upon": "epoch", "retain_loss_eps": 0.0})
    m.setup(model, data, 0)
    m.on_epoch_end(1, model)
    assert m.state_dict()["epochs_done"] == 1 and m.state_dict()["updates"] == 1
    m.on_epoch_end(1, model)  # told twice: once counts
    assert m.state_dict()["updates"] == 1
    m.teardown(model, None)


# ------------------------------------------------------------------------------------------------ DPO on the tiny model
@pytest.mark.parametrize("name", ["altpo", "idk_dpo"])
def test_dpo_prefers_the_alternate_and_forgets(name, tiny_unlearn):
    model, data = tiny_unlearn
    data = _reversed_alternates(data)
    alt = data.extra["alternate"]
    before = copy.deepcopy(model)
    f0, r0 = _nll(model, data.forget), _nll(model, data.retain)
    res = build_method(name, {**FAST, "epochs": 5, "lr": 1e-3}).unlearn(model, data, RunContext(seed=0))

    def seq(m, split):
        with torch.no_grad():
            return sequence_nll_sum(m(input_ids=split.input_ids).logits, split.labels)[0]

    # the implicit reward margin: log pi/pi_ref of the winner minus that of the loser, > 0 for every pair
    margin = (seq(before, alt) - seq(model, alt)) - (seq(before, data.forget) - seq(model, data.forget))
    assert (margin > 0).all()
    assert res.logs[-1]["reward_margin"] > res.logs[0]["reward_margin"] > 0
    assert _nll(model, data.forget) > f0 + 0.1  # the loser is forgotten
    assert _nll(model, data.retain) < r0 + 0.1  # the retain NLL stays bounded
    assert "_alt" not in vars(build_method(name))


def test_dpo_needs_aligned_alternates(tiny_unlearn):
    model, data = tiny_unlearn
    with pytest.raises(ObliviateError, match="obliviate alternates"):
        build_method("altpo").unlearn(model, data)
    with pytest.raises(ObliviateError, match="I don't know"):
        build_method("idk_dpo").unlearn(model, data)
    paired = _reversed_alternates(data)
    short = LMUnlearnData(data.forget, data.retain, {"alternate": paired.extra["alternate"].select(torch.arange(3))})
    with pytest.raises(ObliviateError, match="has 3 rows but the forget set has 20"):
        build_method("altpo").unlearn(model, short)
    alt = paired.extra["alternate"]
    labels = alt.labels.clone()
    labels[2] = IGNORE_INDEX
    blank = LMUnlearnData(data.forget, data.retain, {"alternate": TokenData(alt.input_ids, alt.attention_mask, labels)})
    with pytest.raises(ObliviateError, match="row 2 has no scored token"):
        build_method("altpo").unlearn(model, blank)
