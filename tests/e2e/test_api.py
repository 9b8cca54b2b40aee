"""The Python API of the README: ``obliviate.unlearn`` on a user's own model and data, and the suite step by step."""

from __future__ import annotations

import pytest
import torch

import obliviate
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData


def test_unlearn_on_a_users_model_with_pad_equal_to_eos(tiny_model):
    eos = 11
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randint(0, 10, (int(n),), generator=g).tolist() + [eos] for n in torch.randint(5, 30, (24,), generator=g)]
    data = LMUnlearnData(TokenData.from_sequences(seqs[:8], eos), TokenData.from_sequences(seqs[8:], eos))
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    result = obliviate.unlearn(tiny_model, data, method="balanced_subnet", ratio=0.2, epochs=2)
    assert result.model is tiny_model and result.info["seed"] == 0 and len(result.logs) == 2
    assert any(not torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    with pytest.raises(ObliviateError, match="takes LMUnlearnData"):
        obliviate.unlearn(tiny_model, {"forget": seqs}, method="grad_diff")
    with pytest.raises(ObliviateError, match="method.ratio must be in"):
        obliviate.unlearn(tiny_model, data, method="subnet", ratio=3)


def test_suite_step_by_step_as_the_readme_shows():
    from obliviate.presets import load_run_config
    from obliviate.study import run_trial, train_base

    run = load_run_config("tinymem-micro", overrides=["train.epochs=6"])
    suite, cfg = run.suite_obj, run.suite_config
    model, data, base = train_base(suite, cfg, seed=0, device="cpu")
    edited, rec = run_trial(suite, cfg, data, model, base["before"], "balanced_subnet", {"ratio": 0.25}, seed=0,
                            device="cpu")
    assert base["before"]["scalars"]["percent_memorized"] > 0
    assert rec["scalars"]["percent_memorized"] < base["before"]["scalars"]["percent_memorized"]
    assert edited is not model
