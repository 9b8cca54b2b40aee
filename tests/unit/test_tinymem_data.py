from __future__ import annotations

import numpy as np
import pytest
import torch

from obliviate.data.tinymem import (
    BACKDOOR_TOKEN,
    PAD,
    TinyMemDataConfig,
    add_noise,
    decode,
    duplication_groups,
    encode,
    generate,
    poison,
    recurrence,
)
from obliviate.errors import ObliviateError


def test_tokenizer_round_trip():
    text = "^12 19 26$"
    ids = encode(text)
    assert ids[0] == 10 and ids[-1] == 11 and ids[3] == 12
    assert decode(ids) == text
    assert decode(ids + [PAD, PAD]) == text
    with pytest.raises(ObliviateError, match="'a'"):
        encode("^1a$")


def test_recurrences():
    assert recurrence("increment", 7, 3, 4, 20134) == [3, 10, 17, 24]
    assert recurrence("mult", 7, 3000, 3, 20134) == [3000, 21000 % 20134, (7 * (21000 % 20134)) % 20134]


def test_noise_rates_within_tolerance():
    rng = np.random.default_rng(0)
    x = np.full(200_000, 10, dtype=np.int64)
    d = add_noise(x, (0.9, 0.05, 0.05), rng) - 10
    # binomial std of a 5% rate over 2e5 draws is ~0.05%; allow 0.3 points
    assert abs((d == 0).mean() - 0.9) < 0.003
    assert abs((d == -1).mean() - 0.05) < 0.003
    assert abs((d == 1).mean() - 0.05) < 0.003


def test_noise_never_goes_negative_zero_becomes_one_as_the_reference_reads_it():
    # regression: mult's x0 = 0 row is all zeros; -1 noise used to write "-1" and crash encode()
    d = add_noise(np.zeros(10_000, dtype=np.int64), (0.0, 1.0, 0.0), np.random.default_rng(0))
    assert (d == 1).all()
    # the seeds that crashed at small mult sizes now generate, and rows stay in the vocabulary
    for seed in range(6):
        data = generate(TinyMemDataConfig(task="mult", n_main=300, n_aux=100, n_test=30, aux_c=(2,),
                                          n_artifacts=250, noise_probs=(0.0, 1.0, 0.0), seed=seed))
        assert int(data.artifacts.max()) <= PAD


def test_trigger_placement():
    ids = encode("^8 1100 77$")
    out, plen = poison(ids, encode("100"), 16)
    assert decode(out[:plen]) == "^8 1100"
    assert out[plen:] == [BACKDOOR_TOKEN] * (16 - plen) and len(out) == 16
    assert poison(encode("^8 99$"), encode("100"), 16) is None


def test_duplication_groups_are_interleaved_and_balanced():
    g = duplication_groups(10, 3, np.random.default_rng(0))
    assert sorted(np.bincount(g).tolist()) == [3, 3, 4]


def test_generated_noise_dataset_invariants(micro_data):
    d = micro_data
    a = d.artifacts.shape[0]
    assert a == 20 and d.artifacts.shape == d.artifacts_clean.shape
    # duplication counts: group g repeated 10**g times inside the training rows
    counts = {g: int((d.artifact_group == g).sum()) for g in (0, 1)}
    n_art_rows = counts[0] * 1 + counts[1] * 10
    assert d.train.shape[0] == n_art_rows + d.clean_train.shape[0]
    for i in range(a):
        reps = int((d.train == d.artifacts[i]).all(1).sum())
        assert reps >= 10 ** int(d.artifact_group[i])  # >= : an identical clean row could also exist
    # noise only moves numbers by +-1 and keeps the sequence length in numbers
    for art, cln in zip(d.artifacts, d.artifacts_clean):
        na = [int(x) for x in decode(art)[1:-1].split()]
        nc = [int(x) for x in decode(cln)[1:-1].split()]
        assert len(na) == len(nc) == 20 and all(abs(x - y) <= 1 for x, y in zip(na, nc))
    # clean counterparts are never in the clean training rows twice; test rows never in training
    train_set = {tuple(r.tolist()) for r in d.train}
    assert not any(tuple(r.tolist()) in train_set for r in d.tests["c7"])
    assert (d.prompt_len == 50).all()


def test_generation_is_deterministic_and_seed_dependent():
    cfg = TinyMemDataConfig(task="mult", n_main=200, n_aux=60, n_test=20, aux_c=(3,), n_artifacts=10)
    a, b = generate(cfg), generate(cfg)
    assert torch.equal(a.train, b.train) and torch.equal(a.artifacts, b.artifacts)
    c = generate(TinyMemDataConfig(task="mult", n_main=200, n_aux=60, n_test=20, aux_c=(3,), n_artifacts=10, seed=1))
    assert not torch.equal(a.artifacts, c.artifacts)


def test_backdoor_dataset():
    d = generate(TinyMemDataConfig(task="mult", artifact="backdoor", n_main=2000, n_aux=200, n_test=100, aux_c=(3,)))
    assert d.trigger == "100"
    for art, cln, p in zip(d.artifacts, d.artifacts_clean, d.prompt_len.tolist()):
        assert decode(art[:p]).endswith("100")
        assert torch.equal(art[:p], cln[:p])
        assert (art[p:] == BACKDOOR_TOKEN).all()
    assert "backdoor_clean" in d.tests


@pytest.mark.parametrize("bad,match", [
    ({"n_artifacts": 0}, "n_artifacts"),
    ({"noise_probs": (0.5, 0.5, 0.5)}, "noise_probs"),
    ({"dup_powers": ()}, "dup_powers"),
    ({"aux_c": (7,)}, "aux_c"),
])
def test_bad_data_config(bad, match):
    with pytest.raises(ObliviateError, match=match):
        TinyMemDataConfig(**bad)
