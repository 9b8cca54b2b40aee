"""Pinned trajectories: the same seed gives the same numbers. Values were recorded with torch 2.13.0 (CPU);
a change here means the data, the model init, the loss or the loop changed -- on purpose or not."""

from __future__ import annotations

import pytest

from obliviate.data.tinymem import PAD, TinyMemDataConfig, generate
from obliviate.families.lm import TokenData, drop_trailing_token_columns
from obliviate.io import hash_tensors
from obliviate.models.gpt2 import TinyMemModelConfig, build_model
from obliviate.train.pretrain import TrainConfig, pretrain

# sha256 of the generated tensors is exact (pure integer work, no float kernels involved)
DATA_HASH = "49f81e11935129d92fe555328251ac3c9eb0328b205c78da3a77ae06ff7b76ad"
LOSSES = [2.553163, 2.199665, 2.061192]


def _data():
    return generate(TinyMemDataConfig(task="increment", n_main=300, n_aux=100, n_test=30, aux_c=(2,),
                                      n_artifacts=20, dup_powers=(0, 1)))


def test_data_is_pinned():
    d = _data()
    assert hash_tensors([("train", d.train), ("artifacts", d.artifacts), ("clean", d.artifacts_clean)]) == DATA_HASH


def test_training_loss_trajectory_is_pinned(tmp_path):
    d = _data()
    model = build_model(TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2), seed=0)
    stats = pretrain(model, TokenData.from_rows(d.train, PAD, score_pad=True),
                     TrainConfig(epochs=3, batch_size=64, checkpoint_every=1), seed=0, out_dir=tmp_path, progress=False,
                     trim=lambda b: drop_trailing_token_columns(b, PAD, keep=1))
    got = [h["train_loss"] for h in stats.history]
    # float kernels may differ in the last bits across CPUs; the trajectory must not
    assert got == pytest.approx(LOSSES, rel=1e-4)


UNLEARN_LOSSES = {"balanced_subnet": [0.962784, 0.945482, 0.912543], "grad_diff": [-0.061093, -0.637194, -0.900852]}


@pytest.mark.parametrize("name", sorted(UNLEARN_LOSSES))
def test_unlearning_trajectory_is_pinned(name):
    """Per-epoch losses of a short unlearning run on a pinned pre-trained model: a change to the loop, the retain
    stream, batching or a loss that keeps the loss *direction* still changes these numbers."""
    from obliviate.context import RunContext
    from obliviate.families.lm import LMUnlearnData
    from obliviate.methods import build_method

    d = _data()
    model = build_model(TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2), seed=0)
    pretrain(model, TokenData.from_rows(d.train, PAD, score_pad=True), TrainConfig(epochs=3, batch_size=64), seed=0,
             progress=False, trim=lambda b: drop_trailing_token_columns(b, PAD, keep=1))
    data = LMUnlearnData.from_rows(d.artifacts, d.clean_train[:64], PAD)
    params = {"epochs": 3, "batch_size": 8, **({"ratio": 0.25} if "subnet" in name else {"lr": 3e-3})}
    result = build_method(name, params).unlearn(model, data, RunContext(seed=0))
    got = [round(e["loss"], 6) for e in result.logs]
    assert got == pytest.approx(UNLEARN_LOSSES[name], rel=1e-4)
