"""The reference_compatible definitions of the TinyMem metrics next to ours: perplexity (PAD targets, mean over
batches of exp) and % memorized (decoding with EOS banned, as the reference's min_length = max_ctx does)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from obliviate.data.tinymem import EOS, PAD
from obliviate.metrics.generation import _next_token
from obliviate.metrics.lm_quality import perplexity
from obliviate.metrics.memorization import eligible_artifacts, percent_memorized


class FixedProbs(nn.Module):
    """Every position predicts the same distribution ``probs``."""

    def __init__(self, probs):
        super().__init__()
        self.logp = nn.Parameter(torch.tensor(probs).log(), requires_grad=False)

    def forward(self, input_ids, **kw):
        return SimpleNamespace(logits=self.logp.expand(*input_ids.shape, -1))


def test_perplexity_ours_masks_pad_and_the_reference_averages_exp_over_batches():
    pad = 2
    model = FixedProbs([0.05, 0.05, 0.9])
    rows = torch.tensor([[0, 1, 2, 2], [0, 1, 0, 2]])  # real targets: 1 in row 0, 2 in row 1
    got = perplexity(model, rows, pad, batch_size=1)
    assert got.value == pytest.approx(20.0)  # every real target has p = 0.05
    row0 = math.exp((-math.log(0.05) - 2 * math.log(0.9)) / 3)  # PAD targets included
    row1 = math.exp((-2 * math.log(0.05) - math.log(0.9)) / 3)
    assert got.breakdown["reference"] == pytest.approx((row0 + row1) / 2)
    ref = perplexity(model, rows, pad, batch_size=1, reference_compatible=True)
    assert ref.value == pytest.approx((row0 + row1) / 2) and ref.breakdown == got.breakdown
    both = perplexity(model, rows, pad, batch_size=2)  # ours does not depend on the batch size
    assert both.value == pytest.approx(20.0) and both.breakdown["reference"] != pytest.approx((row0 + row1) / 2)


def test_a_banned_token_is_never_chosen():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 1.0]])
    assert _next_token(logits, 0.0, None, banned=1).tolist() == [2, 0]
    g = torch.Generator().manual_seed(0)
    assert (_next_token(logits.repeat(50, 1), 1.0, g, banned=1) != 1).all()


class Bigram(nn.Module):
    """Next token = a fixed function of the current token (works with the KV-cached decoder, one token at a time)."""

    def __init__(self, nxt: dict[int, list[int]], vocab: int = 14):
        super().__init__()
        table = torch.zeros(vocab, vocab)
        for cur, ranked in nxt.items():  # ranked next tokens, best first
            for r, t in enumerate(ranked):
                table[cur, t] = 10.0 - r
        self.table = nn.Parameter(table, requires_grad=False)

    def forward(self, input_ids, **kw):
        return SimpleNamespace(logits=self.table[input_ids], past_key_values=None)


def test_reference_memorized_bans_eos_so_a_row_ending_in_the_window_never_counts():
    # row 0 ends inside the window (... 3 EOS); row 1 does not; the bigram model reproduces both exactly
    model = Bigram({1: [2], 2: [3], 3: [EOS, 5], EOS: [PAD], PAD: [PAD], 4: [5], 5: [6], 6: [7], 7: [8]})
    art = torch.tensor([[10, 1, 2, 3, EOS, PAD, PAD, PAD], [10, 4, 5, 6, 7, 8, 9, 0]])
    clean = torch.tensor([[10, 1, 0, 0, 0, 0, 0, 0], [10, 4, 0, 0, 0, 0, 0, 0]])
    plen, group = torch.tensor([2, 2]), torch.tensor([0, 0])
    mem, _, ours = percent_memorized(model, art, clean, plen, group, PAD, k=4, eos_id=EOS)
    ref_mem, _, ref = percent_memorized(model, art, clean, plen, group, PAD, k=4, eos_id=EOS,
                                        reference_compatible=True)
    assert ours.memorized.tolist() == [True, True] and mem.value == 100.0
    assert ref.memorized.tolist() == [False, True] and ref_mem.value == 50.0  # after 3 it decodes 5, not EOS
    assert torch.equal(ref.eligible, eligible_artifacts(art, clean, plen, 4))
    with pytest.raises(ValueError, match="EOS"):
        percent_memorized(model, art, clean, plen, group, PAD, k=4, reference_compatible=True)


def test_subnet_reference_objective_is_ce_over_every_full_width_position_and_the_count_floors(trained_tiny,
                                                                                             micro_data):
    import copy

    from obliviate.families.lm import LMUnlearnData, batch_of
    from obliviate.methods import build_method
    from obliviate.methods.localize.supermask import pruned_count, topk_mask

    assert pruned_count(1000, 0.0015) == 2 and pruned_count(1000, 0.0015, floor=True) == 1
    assert int((topk_mask(torch.arange(1.0, 11.0), 0.25, floor=True) == 0).sum()) == 2  # int(2.5)
    assert int((topk_mask(torch.arange(1.0, 11.0), 0.35) == 0).sum()) == 4  # round(3.5), banker's -> 4
    data = LMUnlearnData.from_rows(micro_data.artifacts, micro_data.clean_train[:16], PAD)
    batch = batch_of(data.forget, torch.arange(4))
    assert batch.input_ids.shape[1] < micro_data.artifacts.shape[1]  # the loop trims all-PAD columns
    for ref in (True, False):
        model = copy.deepcopy(trained_tiny)
        m = build_method("subnet", {"reference_compatible": ref, "ratio": 0.1})
        m.setup(model, data, seed=0)
        got = m.sequence_ce(model, batch)
        full = micro_data.artifacts[:4]
        with torch.no_grad():
            logits = model(input_ids=full if ref else batch.input_ids).logits
        lp = torch.log_softmax(logits[:, :-1].float(), -1)
        if ref:  # every next-token position of the max_ctx-wide rows, PAD targets included
            want = -lp.gather(-1, full[:, 1:, None])[..., 0].mean(1)
        else:  # the scored (non-PAD) targets only
            tgt = batch.labels[:, 1:]
            keep = tgt != -100
            nll = -lp.gather(-1, tgt.clamp_min(0)[..., None])[..., 0]
            want = (nll * keep).sum(1) / keep.sum(1)
        assert torch.allclose(got, want, atol=1e-5), ref
        m.teardown(model, None)


def test_reference_sequences_start_at_f_of_i():
    from obliviate.data.tinymem import TinyMemDataConfig, decode, generate, recurrence

    assert recurrence("mult", 7, 3, 4, 20134) == [3, 21, 147, 1029]
    assert recurrence("mult", 7, 3, 4, 20134, skip_start=True) == [21, 147, 1029, 7203]
    kw = {"task": "increment", "n_main": 300, "n_aux": 100, "n_test": 30, "aux_c": (2,), "n_artifacts": 20, "seed": 0}
    ours, ref = generate(TinyMemDataConfig(**kw)), generate(TinyMemDataConfig(**kw, reference_sequences=True))
    nums = lambda row: [int(x) for x in decode(row).strip("^$").split()]
    for a, b in zip(ours.tests["c2"], ref.tests["c2"]):  # the same split: row j starts from the same x0
        assert nums(b) == [x + 2 for x in nums(a)]  # f(x) = x + 2, one step later


class Unigram(nn.Module):
    """A trainable model whose every position predicts softmax(``logits``)."""

    def __init__(self, probs):
        super().__init__()
        self.logits = nn.Parameter(torch.tensor(probs).log())

    def forward(self, input_ids, **kw):
        return SimpleNamespace(logits=self.logits.expand(*input_ids.shape, -1))


@pytest.mark.parametrize("trim_padding", [True, False])
def test_training_loss_over_every_position_without_trim_padding(trim_padding):
    from obliviate.families.lm import TokenData
    from obliviate.train.pretrain import PretrainRecipe, TrainConfig, pretrain

    probs = [0.0] * 14
    probs[1], probs[PAD], probs[0] = 0.2, 0.5, 0.3
    rows = torch.tensor([[0, 1, PAD, PAD, PAD], [0, PAD, PAD, PAD, PAD]])
    cfg = TrainConfig(epochs=1, batch_size=2, lr=1e-9, trim_padding=trim_padding)
    stats = pretrain(Unigram(probs), TokenData.from_rows(rows, PAD, score_pad=True), cfg, seed=0, progress=False,
                     trim=PretrainRecipe(cfg, pad_id=PAD).trim())
    a, b = math.log(0.2), math.log(0.5)
    # trimmed: trailing all-PAD columns dropped but one -> width 3, targets (1, PAD) and (PAD, PAD);
    # the reference: all 4 targets of each row, PAD -> PAD included
    want = -(a + 3 * b) / 4 if trim_padding else -(a + 7 * b) / 8
    assert stats.final_loss == pytest.approx(want, rel=1e-6)
    assert (PretrainRecipe(cfg, pad_id=PAD).trim() is None) == (not trim_padding)


@pytest.mark.parametrize("retain", ["clean", "reference"])
def test_reference_retain_set_adds_every_artifact_row(retain):
    from obliviate.config import apply_overrides
    from obliviate.presets import preset_dict
    from obliviate.runconfig import run_config_from_dict
    from obliviate.suites import SUITES

    run = run_config_from_dict(apply_overrides(preset_dict("tinymem-micro"), [f"eval.retain={retain}"]))
    suite = SUITES.get("tinymem")
    data = suite.build_data(run.suite_config, 0)
    n = len(data.artifacts)
    before = {"percent_memorized": {"per_item": [1.0, 0.0] * (n // 2) + [1.0] * (n % 2)}}
    ud = suite.unlearn_data(data, before, run.suite_config)
    assert len(ud.forget) == (n + 1) // 2
    clean = len(data.clean_train)
    assert len(ud.retain) == (clean + n if retain == "reference" else clean)
    assert torch.equal(ud.retain.input_ids[:clean], data.clean_train)
    if retain == "reference":  # every trained artifact row once (not its duplicates), as trained
        assert torch.equal(ud.retain.input_ids[clean:], data.artifacts)
        assert len(data.train) > clean + n  # duplicated groups: the training rows repeat artifacts


def test_backdoor_clean_test_set_is_reported_but_not_in_the_mean_accuracy():
    from obliviate.config import apply_overrides
    from obliviate.presets import preset_dict
    from obliviate.runconfig import run_config_from_dict
    from obliviate.suites import SUITES

    sets = ["data.artifact=backdoor", "eval.residual=false", "data.n_main=1500"]
    run = run_config_from_dict(apply_overrides(preset_dict("tinymem-micro"), sets))
    suite = SUITES.get("tinymem")
    data = suite.build_data(run.suite_config, 0)
    assert "backdoor_clean" in data.tests
    torch.manual_seed(0)
    model = suite.new_model(run.suite_config, 0, torch.device("cpu"))
    sc = suite.evaluate(model, data, run.suite_config).scalars
    clean = [sc[f"acc_c{c}"] for c in (7, *run.suite_config.data.aux_c)]
    assert sc["mean_accuracy"] == pytest.approx(sum(clean) / len(clean))
    assert "acc_backdoor_clean" in sc and sc["acc_backdoor_clean"] != pytest.approx(sc["mean_accuracy"])
