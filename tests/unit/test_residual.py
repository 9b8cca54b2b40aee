"""Is it really gone? (metrics/residual.py): hand-derived pieces, the held-out artifacts of the data, and the
behaviour on a trained model (the metrics see memorization that greedy exact match misses)."""

from __future__ import annotations

import math

import pytest
import torch

from obliviate.data.tinymem import PAD, TinyMemDataConfig, generate
from obliviate.errors import ObliviateError
from obliviate.metrics.generation import greedy_continue
from obliviate.metrics.memorization import compare_continuations
from obliviate.metrics.residual import (
    ResidualConfig,
    auc_lower_is_member,
    continuation_stats,
    residual_memorization,
    sampled_extraction,
    token_loss_and_rank,
    window_targets,
)


def test_window_targets_are_the_k_positions_after_the_prompt_without_pad():
    rows = torch.tensor([[1, 2, 3, 4, 5, PAD], [1, 2, 3, PAD, PAD, PAD]])
    got = window_targets(rows, torch.tensor([2, 1]), 3, PAD)
    assert got.tolist() == [[False, False, True, True, True, False], [False, True, True, False, False, False]]


def test_token_loss_and_rank_by_hand():
    logits = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 5.0]])
    nll, rank = token_loss_and_rank(logits, torch.tensor([1, 2]))
    z = math.log(math.exp(2) + math.exp(1) + 1)
    assert nll[0].item() == pytest.approx(z - 1.0, abs=1e-6) and rank.tolist() == [2, 1]


def test_auc_counts_pairs_where_the_unseen_loss_is_higher_ties_half():
    # pairs (member, nonmember): (.1,.3) yes, (.1,.5) yes, (.5,.3) no, (.5,.5) tie -> (2 + .5) / 4
    assert auc_lower_is_member(torch.tensor([0.1, 0.5]), torch.tensor([0.3, 0.5])) == pytest.approx(0.625)
    assert math.isnan(auc_lower_is_member(torch.tensor([float("nan")]), torch.tensor([1.0])))


def test_heldout_artifacts_are_never_trained_and_follow_the_artifact_recipe(micro_data):
    d = micro_data
    assert d.heldout is not None and d.heldout.shape == d.heldout_clean.shape
    trained = {tuple(r) for r in d.train.tolist()}
    assert not any(tuple(r) in trained for r in d.heldout.tolist())
    assert torch.equal(d.heldout_clean, d.tests["c7"]) and (d.heldout_prompt_len == 50).all()
    assert (d.heldout != d.heldout_clean).any(1).float().mean() > 0.5  # noised like the artifacts
    bd = generate(TinyMemDataConfig(task="increment", artifact="backdoor", n_main=2000, n_aux=100, n_test=30,
                                    aux_c=(2,), dup_powers=(0,), seed=0))
    clean_test = {tuple(r) for r in bd.tests["backdoor_clean"].tolist()}
    assert 0 < len(bd.heldout) and all(tuple(r) in clean_test for r in bd.heldout_clean.tolist())  # held-out triggers
    assert (bd.heldout[torch.arange(len(bd.heldout)), bd.heldout_prompt_len] == 2).all()  # poisoned after trigger
    assert not any(tuple(r) in {tuple(x) for x in bd.train.tolist()} for r in bd.heldout.tolist())


def test_continuation_stats_equal_a_direct_computation(trained_tiny, micro_data):
    rows, plen = micro_data.artifacts[:5], micro_data.prompt_len[:5]
    loss, rank = continuation_stats(trained_tiny, rows, plen, 20, PAD, batch_size=2)
    with torch.no_grad():
        logits = trained_tiny(input_ids=rows).logits
    for i in range(5):
        pos = [j for j in range(int(plen[i]), int(plen[i]) + 20) if rows[i, j] != PAD]
        lp = torch.log_softmax(logits[i, [j - 1 for j in pos]], -1)
        true = lp[torch.arange(len(pos)), rows[i, pos]]
        assert loss[i].item() == pytest.approx(-true.mean().item(), abs=1e-5)
        ranks = [(lp[t] > true[t]).sum().item() + 1 for t in range(len(pos))]
        assert rank[i].item() == pytest.approx(sum(ranks) / len(ranks), abs=1e-6)


def test_sampling_at_a_tiny_temperature_is_greedy_and_samples_are_seeded(trained_tiny, micro_data):
    d = micro_data
    greedy = greedy_continue(trained_tiny, d.artifacts_clean, d.prompt_len, 20, PAD)
    _, mem, _ = compare_continuations(greedy, d.artifacts, d.artifacts_clean, d.prompt_len, 20)
    cold = sampled_extraction(trained_tiny, d.artifacts, d.artifacts_clean, d.prompt_len, 20, PAD, n_samples=2,
                              temperature=1e-4)
    assert torch.equal(cold, mem)
    a = sampled_extraction(trained_tiny, d.artifacts, d.artifacts_clean, d.prompt_len, 20, PAD, 3, seed=5)
    b = sampled_extraction(trained_tiny, d.artifacts, d.artifacts_clean, d.prompt_len, 20, PAD, 3, seed=5)
    assert torch.equal(a, b)
    with pytest.raises(ObliviateError, match="temperature"):
        sampled_extraction(trained_tiny, d.artifacts, d.artifacts_clean, d.prompt_len, 20, PAD, 3, temperature=0)


def test_a_model_that_memorized_shows_it_and_a_fresh_one_does_not(micro_data, tiny_model):
    """A model trained to fit the artifacts: trained continuations have a lower loss than the held-out ones (AUC well
    above 0.5), many artifacts are extracted by sampling, none of the held-out ones; an untrained model: AUC ~ 0.5."""
    from obliviate.families.lm import TokenData
    from obliviate.models.gpt2 import TinyMemModelConfig, build_model
    from obliviate.train.pretrain import TrainConfig, pretrain

    d = micro_data
    model = build_model(TinyMemModelConfig(n_layer=1, n_embd=64, n_head=2), seed=0)
    rows = torch.cat([d.artifacts.repeat(30, 1), d.clean_train])
    pretrain(model, TokenData.from_rows(rows, PAD, score_pad=False), TrainConfig(epochs=6, batch_size=32, lr=3e-3),
             seed=0, progress=False)
    cfg = ResidualConfig(k=20, n_samples=4)
    args = (d.artifacts, d.artifacts_clean, d.prompt_len, d.artifact_group, d.heldout, d.heldout_clean,
            d.heldout_prompt_len, d.group_names, PAD, cfg)
    got = residual_memorization(model, *args)
    assert got["loss_auc"] > 0.9 and got["sampled_extraction"] > 20
    assert got["heldout"]["sampled_extraction"] == 0 and got["heldout"]["percent_memorized"] == 0
    assert got["continuation_loss"] < got["heldout"]["continuation_loss"]
    assert set(got["by_group"]) == set(d.group_names)
    fresh = residual_memorization(tiny_model, *args)
    assert abs(fresh["loss_auc"] - 0.5) < 0.25 and fresh["sampled_extraction"] == 0
