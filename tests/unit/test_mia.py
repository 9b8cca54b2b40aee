"""Membership-inference attacks, their AUC under MUSE's and open-unlearning's conventions, and PrivLeak.
Expected values are derived by hand in the comments."""

from __future__ import annotations

import json
import math
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import TokenData
from obliviate.losses.nll import IGNORE_INDEX, mean_nll
from obliviate.metrics.mia import (
    MIAResult,
    attack_scores,
    grad_norm_scores,
    item_stats,
    labelled_texts,
    mean_grad_norm,
    membership_auc,
    membership_inference,
    min_k_pp_z,
    min_k_score,
    token_logprobs,
    zlib_score,
)
from obliviate.metrics.privleak import (
    MUSE_RETRAIN_AUC_BOOKS,
    MUSE_RETRAIN_AUC_NEWS,
    muse_privleak,
    ou_privleak,
    ou_rel_diff,
    privleak,
)

LN2 = math.log(2.0)


# ---------------------------------------------------------------- Min-K% and Min-K%++ (pure)

def test_min_k_five_tokens_both_conventions():
    lp = [-0.1, -2.0, -0.5, -3.0, -1.0]
    # int(5 * 0.4) = 2 lowest: -3.0 and -2.0 -> -mean = 2.5, with or without the floor
    assert min_k_score(lp, 0.4, floor=False) == pytest.approx(2.5)
    assert min_k_score(lp, 0.4, floor=True) == pytest.approx(2.5)
    # int(5 * 0.5) = int(2.5) = 2 as well; k = 1 is the mean of all: 6.6 / 5
    assert min_k_score(lp, 0.5) == pytest.approx(2.5)
    assert min_k_score(lp, 1.0) == pytest.approx(1.32)


def test_min_k_short_text_muse_nan_ou_floor():
    lp = [-1.0, -3.0]
    assert math.isnan(min_k_score(lp, 0.4, floor=False))  # int(0.8) = 0: MUSE has no floor
    assert min_k_score(lp, 0.4, floor=True) == pytest.approx(3.0)  # OU: max(1, 0) = 1 lowest -> 3.0
    assert min_k_score([], 0.4, floor=True) == 0.0  # OU: empty scores 0
    assert math.isnan(min_k_score([], 0.4, floor=False))
    with pytest.raises(ObliviateError, match="k must be in"):
        min_k_score(lp, 0.0)


def test_min_k_pp_z_on_a_three_word_vocabulary():
    # logits (ln 2, 0, 0) -> p = (1/2, 1/4, 1/4), log p = (-ln2, -2ln2, -2ln2)
    # mu = 1/2(-ln2) + 2 * 1/4(-2ln2) = -1.5 ln2; E[log p^2] = 1/2 ln2^2 + 2 * 1/4 * 4 ln2^2 = 2.5 ln2^2
    # var = 2.5 - 2.25 = 0.25 ln2^2, sigma = 0.5 ln2 -> z(word 0) = (0.5 ln2)/(0.5 ln2) = 1, z(word 1) = -1
    logits = torch.tensor([[LN2, 0.0, 0.0], [LN2, 0.0, 0.0]])
    z = min_k_pp_z(logits, torch.tensor([0, 1]))
    assert z.dtype == torch.float32
    assert z.tolist() == pytest.approx([1.0, -1.0], abs=1e-5)
    # Min-K%++ with k = 0.5 (floor): the lowest int(1) z = -1 -> score 1
    assert min_k_score(z, 0.5, floor=True) == pytest.approx(1.0, abs=1e-5)
    # logits (0, 0, -100): p ~ (1/2, 1/2, 0), var ~ 0 -> clamped to 1e-6, sigma = 1e-3;
    # z(word 2) = (-100 - ln2 - (-ln2)) / 1e-3 = -1e5; z(word 0) = 0
    z = min_k_pp_z(torch.tensor([[0.0, 0.0, -100.0]] * 2), torch.tensor([2, 0]))
    assert z[0].item() == pytest.approx(-1e5, rel=1e-4)
    assert abs(z[1].item()) < 1e-2


# ---------------------------------------------------------------- masking conventions

def test_ou_drops_last_labelled_token_muse_scores_from_token_1():
    V = 3
    p = torch.tensor([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.6, 0.3, 0.1], [0.3, 0.3, 0.4]])
    logits = p.log()[None]  # (1, 4, 3): log-probs as logits, log_softmax leaves them unchanged
    full = torch.tensor([[0, 1, 2, 0]])
    # position t predicts label t+1: log p0[1], log p1[2], log p2[0]
    muse = [math.log(0.5), math.log(0.8), math.log(0.6)]
    assert token_logprobs(logits, full, "muse")[0].tolist() == pytest.approx(muse, abs=1e-6)
    assert token_logprobs(logits, full, "ou")[0].tolist() == pytest.approx(muse[:2], abs=1e-6)
    prompt = torch.tensor([[IGNORE_INDEX, IGNORE_INDEX, 2, 0]])  # answer-only labels
    assert token_logprobs(logits, prompt, "muse")[0].tolist() == pytest.approx(muse[1:], abs=1e-6)
    assert token_logprobs(logits, prompt, "ou")[0].tolist() == pytest.approx(muse[1:2], abs=1e-6)
    padded = torch.tensor([[0, 1, IGNORE_INDEX, IGNORE_INDEX], [0, 1, 2, 0]])
    lp = token_logprobs(torch.cat([logits, logits]), padded, "ou")
    assert lp[0].numel() == 0 and lp[1].numel() == 2  # one scored target, dropped by OU
    assert lp[0].dtype == torch.float32 and V == 3
    with pytest.raises(ObliviateError, match="did you mean 'ou'"):
        token_logprobs(logits, full, "oo")


# ---------------------------------------------------------------- zlib, grad norm (pure)

def test_zlib_score_uses_the_compressed_utf8_length():
    text = "the cat sat on the mat, the cat sat on the mat"
    assert zlib_score(3.0, text) == pytest.approx(3.0 / len(zlib.compress(text.encode("utf-8"))))
    assert zlib_score(1.0, "é") == pytest.approx(1.0 / len(zlib.compress("é".encode())))


def test_mean_grad_norm_skips_missing_gradients():
    # norms 5 (3,4) and 0 (zeros); None is skipped -> mean 2.5
    assert mean_grad_norm([torch.tensor([3.0, 4.0]), None, torch.zeros(2)]) == pytest.approx(2.5)
    with pytest.raises(ObliviateError, match="no parameter"):
        mean_grad_norm([None])


class Bigram(nn.Module):
    """logits[t] = W[token t] + b: a causal LM small enough to differentiate by hand."""

    def __init__(self, W: torch.Tensor | None = None) -> None:
        super().__init__()
        self.W = nn.Parameter(torch.zeros(2, 2) if W is None else W)
        self.b = nn.Parameter(torch.zeros(2))

    def forward(self, input_ids, attention_mask=None, position_ids=None):
        return SimpleNamespace(logits=self.W[input_ids] + self.b)


def test_grad_norm_by_hand_and_model_state_restored():
    # row 0 = [0, 1]: one target (1) from token 0, logits 0 -> p = (1/2, 1/2), dNLL/dlogits = p - e1 = (1/2, -1/2)
    #   grad W = [[1/2, -1/2], [0, 0]] -> norm 1/sqrt2; grad b = (1/2, -1/2) -> 1/sqrt2; mean 1/sqrt2
    # row 1 = [0, 1, 0]: mean NLL over 2 targets, each dlogits / 2: (1/4, -1/4) at token 0, (-1/4, 1/4) at token 1
    #   grad W = [[1/4, -1/4], [-1/4, 1/4]] -> norm 1/2; grad b = 0 -> 0; mean 1/4
    data = TokenData.from_sequences([[0, 1], [0, 1, 0]], pad_id=0)
    model = Bigram()
    model.b.requires_grad_(False)
    sentinel = torch.full((2, 2), 7.0)
    model.W.grad = sentinel.clone()
    model.train()
    scores = grad_norm_scores(model, data)
    assert scores == pytest.approx([1 / math.sqrt(2), 0.25])
    assert model.training and not model.b.requires_grad and model.W.requires_grad
    assert torch.equal(model.W.grad, sentinel) and model.b.grad is None
    # only the trainable W: 1/sqrt2 and 1/2
    assert grad_norm_scores(model, data, only_trainable=True) == pytest.approx([1 / math.sqrt(2), 0.5])
    # a row with no scored target has no gradient to take: NaN (caught by the AUC)
    empty = TokenData(torch.tensor([[0, 1]]), torch.ones(1, 2, dtype=torch.long), torch.full((1, 2), IGNORE_INDEX))
    assert math.isnan(grad_norm_scores(model, empty)[0])


def test_attack_scores_on_the_bigram_model():
    # W = 0: every target has log p = -ln2, so loss = Min-K% = ln2 for every row; MUSE's Min-40% of a 1-target row
    # is NaN (int(0.4) = 0), OU's is ln2 (floor) -- but OU drops that row's only target: empty -> 0
    data = TokenData.from_sequences([[0, 1], [0, 1, 0, 1, 1, 0]], pad_id=0)
    model = Bigram()
    assert attack_scores(model, data, "loss") == pytest.approx([LN2, LN2])
    muse = attack_scores(model, data, "min_k", convention="muse")
    assert math.isnan(muse[0]) and muse[1] == pytest.approx(LN2)  # 5 targets: int(2.0) = 2
    assert attack_scores(model, data, "min_k", convention="ou") == pytest.approx([0.0, LN2])
    assert attack_scores(model, data, "min_k", convention="muse", floor=True) == pytest.approx([LN2, LN2])
    texts = ["ab", "abab"]
    assert attack_scores(model, data, "zlib", texts=texts) == pytest.approx(
        [LN2 / len(zlib.compress(t.encode())) for t in texts])
    # reference model: W = [[0, ln 3], ...] gives p(1|0) = 3/4; row 0 ref loss = ln(4/3) -> ln2 - ln(4/3) = ln(3/2)
    ref = Bigram(torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]]))
    assert attack_scores(model, data, "reference", ref_model=ref)[0] == pytest.approx(math.log(1.5), abs=1e-6)
    z = attack_scores(model, data, "min_k_pp", convention="ou")  # uniform p: var clamped, z = 0
    assert z == pytest.approx([0.0, 0.0], abs=1e-3)
    with pytest.raises(ObliviateError, match="one text per row"):
        attack_scores(model, data, "zlib")
    with pytest.raises(ObliviateError, match="ref_model"):
        attack_scores(model, data, "reference")
    with pytest.raises(ObliviateError, match="did you mean 'min_k'"):
        attack_scores(model, data, "min_kk")


def test_item_stats_restores_eval_mode_and_marks_unscored_rows_nan():
    data = TokenData(torch.tensor([[0, 1, 0], [1, 1, 0]]), torch.ones(2, 3, dtype=torch.long),
                     torch.tensor([[0, 1, 0], [IGNORE_INDEX] * 3]))
    model = Bigram()
    model.train()
    stats = item_stats(model, data, "ou", batch_size=1, zscores=True)
    assert model.training
    assert stats.loss[0] == pytest.approx(LN2) and math.isnan(stats.loss[1])
    assert [t.numel() for t in stats.logprobs] == [1, 0] and stats.zscores is not None


# ---------------------------------------------------------------- AUC

def test_auc_perfect_separation_both_conventions():
    forget, holdout = [1.0, 2.0], [3.0, 4.0]  # forget has the lower (member-like) loss
    auc_ou, _ = membership_auc(forget, holdout, "ou")
    auc_muse, acc = membership_auc(forget, holdout, "muse")
    assert auc_ou == 1.0  # holdout (label 1) always scores higher
    assert auc_muse == 0.0  # MUSE ranks by -score: holdout always lower
    assert acc == 0.5  # MUSE's sweep accuracy in its own orientation: the reversed ranking gains nothing


def test_auc_ties_count_one_half():
    # holdout-forget pairs: (2>1) 1, (2=2) 1/2, (3>1) 1, (3>2) 1 -> 3.5/4 = 0.875 (OU); MUSE = 1 - 0.875
    assert membership_auc([1.0, 2.0], [2.0, 3.0], "ou")[0] == pytest.approx(0.875)
    assert membership_auc([1.0, 2.0], [2.0, 3.0], "muse")[0] == pytest.approx(0.125)
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 5, 40).astype(float), rng.integers(1, 6, 30).astype(float)  # many ties
    assert membership_auc(a, b, "muse")[0] == pytest.approx(1.0 - membership_auc(a, b, "ou")[0], abs=1e-12)
    # +-inf (a loss after gradient ascent) keeps its order
    assert membership_auc([1.0, -math.inf], [math.inf, 3.0], "ou")[0] == 1.0


def test_auc_errors_name_the_sets_and_the_nan_cause():
    with pytest.raises(ObliviateError, match=r"1 of 2 forget and 0 of 1 holdout scores are NaN.*Min-K% without a"):
        membership_auc([1.0, math.nan], [2.0], "muse")
    assert membership_auc([1.0, math.nan], [2.0], "muse", on_nan="drop")[0] == 0.0
    with pytest.raises(ObliviateError, match="retain has 0"):
        membership_auc([1.0], [], "ou", names=("forget", "retain"))
    with pytest.raises(ObliviateError, match="forget has 0"):
        membership_auc([math.nan], [1.0], "ou", on_nan="drop")


def test_mia_result_json_and_conversion():
    r = MIAResult("min_k", "ou", 0.9, ("forget", "holdout"), ([1.0, math.nan], [2.0]), k=0.4)
    assert r.auc_as("muse") == pytest.approx(0.1) and r.auc_as("ou") == 0.9 and not r.higher_is_better
    d = json.loads(json.dumps(r.to_dict()))
    assert d["scores"] == {"forget": [1.0, None], "holdout": [2.0]} and d["convention"] == "ou"
    m = r.as_metric_result()
    assert m.name == "mia_min_k" and m.value == 0.9 and m.per_item == [1.0, None, 2.0]


# ---------------------------------------------------------------- PrivLeak

def test_privleak_muse_with_published_numbers():
    assert muse_privleak(0.0, MUSE_RETRAIN_AUC_NEWS) == pytest.approx(-100.0)  # memorised: AUC 0
    assert muse_privleak(0.4772, MUSE_RETRAIN_AUC_NEWS) == pytest.approx(0.0)
    assert muse_privleak(1.5 * 0.5393, MUSE_RETRAIN_AUC_BOOKS) == pytest.approx(50.0)
    assert privleak(0.0, corpus="news").value == pytest.approx(-100.0)
    assert privleak(0.5393, corpus="books").value == pytest.approx(0.0)
    # an OU-convention result of AUC 0.9 is MUSE AUC 0.1: (0.1 - 0.4772) / 0.4772 x 100
    r = MIAResult("min_k", "ou", 0.9, ("forget", "holdout"), ([1.0], [2.0]), k=0.4)
    assert privleak(r, corpus="news").value == pytest.approx((0.1 - 0.4772) / 0.4772 * 100)
    # your own retrained model: MUSE AUC 0.1 vs 0.5 -> -80
    retrained = MIAResult("min_k", "muse", 0.5, ("forget", "holdout"), ([1.0], [1.0]), k=0.4)
    assert privleak(r, retrain=retrained).value == pytest.approx(-80.0)


def test_privleak_ou_formula_and_rel_diff():
    # score = 1 - 1 = 0, ref = 1 - 0.5 = 0.5 -> (0 - 0.5) / (0.5 + 1e-10) x 100
    assert ou_privleak(1.0) == pytest.approx(-100.0) and ou_privleak(1.0) > -100.0
    assert ou_privleak(0.7, retain_auc=0.6) == pytest.approx((0.3 - 0.4) / (0.4 + 1e-10) * 100)
    assert ou_rel_diff(0.6) == pytest.approx(20.0)
    assert ou_rel_diff(0.6, 0.4) == pytest.approx(50.0)
    r = MIAResult("min_k", "muse", 0.1, ("forget", "holdout"), ([1.0], [2.0]), k=0.4)
    # to OU: AUC 0.9 -> score 0.1, ref 0.5 -> -80
    res = privleak(r, formula="ou")
    assert res.name == "privleak_ou" and res.value == pytest.approx(-80.0)
    # the published reference under OU's formula: ref = 1 - (1 - 0.4772) = 0.4772 -> same as MUSE's up to 1e-10
    assert privleak(r, formula="ou", corpus="news").value == pytest.approx(privleak(r, corpus="news").value)


def test_privleak_errors():
    r = MIAResult("loss", "muse", 0.1, ("forget", "holdout"), ([1.0], [2.0]))
    with pytest.raises(ObliviateError, match="needs a retrained reference"):
        privleak(0.1)
    with pytest.raises(ObliviateError, match="not both"):
        privleak(0.1, corpus="news", retrain=0.5)
    with pytest.raises(ObliviateError, match="forget_holdout_Min-40%"):
        privleak(r, corpus="news")
    with pytest.raises(ObliviateError, match="did you mean 'news'"):
        privleak(0.1, corpus="newz")
    with pytest.raises(ObliviateError, match="did you mean 'ou'"):
        privleak(0.1, corpus="news", formula="oo")


def test_registered_in_metrics():
    from obliviate.metrics.base import METRICS

    for name in ("mia_loss", "mia_zlib", "mia_min_k", "mia_min_k_pp", "mia_reference", "mia_gradnorm"):
        assert not METRICS.get(name).higher_is_better and METRICS.get(name).needs_model
    assert not METRICS.get("privleak").needs_model


# ---------------------------------------------------------------- a tiny GPT-2 that memorised its members

def test_tiny_gpt2_members_are_detected(tiny_hf_lm):
    import random

    from conftest import TINY_WORDS
    from transformers import AutoTokenizer, GPT2LMHeadModel

    tok = AutoTokenizer.from_pretrained(tiny_hf_lm, local_files_only=True)
    model = GPT2LMHeadModel.from_pretrained(tiny_hf_lm, local_files_only=True)
    rng = random.Random(1)
    texts = [" ".join(rng.choice(TINY_WORDS) for _ in range(8)) for _ in range(24)]
    members, others = texts[:12], texts[12:]

    def data(ts):
        return TokenData.from_sequences(tok(ts)["input_ids"], pad_id=tok.pad_token_id)

    forget, holdout = data(members), data(others)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 1-layer, 32-wide model: one thread is fastest, and immune to a busy machine
    try:
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        model.train()
        for _ in range(20):
            loss = mean_nll(model(input_ids=forget.input_ids).logits, forget.labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
        _check_members_detected(model, tok, forget, holdout, members)
    finally:
        torch.set_num_threads(threads)


def _check_members_detected(model, tok, forget, holdout, members):
    before = [q.detach().clone() for q in model.parameters()]

    loss_ou = membership_inference(model, forget, holdout, "loss", convention="ou")
    assert loss_ou.auc > 0.9  # members have the lower loss: label 0 ranks low
    mink = membership_inference(model, forget, holdout)  # MUSE's Min-40%
    assert mink.auc < 0.1 and mink.convention == "muse" and len(mink.scores[0]) == 12
    assert privleak(mink, corpus="news").value < -75
    for attack in ("min_k_pp", "gradnorm"):
        assert membership_inference(model, forget, holdout, attack, convention="ou").auc > 0.75
    zl = membership_inference(model, forget, holdout, "zlib", convention="ou", tokenizer=tok)
    assert labelled_texts(forget, tok)[0] == tok.decode(tok(members[0])["input_ids"], skip_special_tokens=True)
    assert zl.auc > 0.75
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # scoring changed nothing
    assert all(q.grad is not None for q in model.parameters())  # the last training step's grads are kept
