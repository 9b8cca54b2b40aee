from __future__ import annotations

import pytest
import torch

from obliviate.data.tinymem import TinyMemDataConfig, generate
from obliviate.models.gpt2 import TinyMemModelConfig, build_model


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def micro_data():
    return generate(TinyMemDataConfig(task="increment", n_main=300, n_aux=100, n_test=30, aux_c=(2,),
                                      n_artifacts=20, dup_powers=(0, 1)))


@pytest.fixture
def tiny_model():
    return build_model(TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2), seed=0)


@pytest.fixture(scope="session")
def trained_tiny(micro_data):
    """A tiny model trained a few epochs on the micro data, so its forget rows are better fit than chance."""
    from obliviate.data.tinymem import PAD
    from obliviate.families.lm import TokenData
    from obliviate.train.pretrain import TrainConfig, pretrain

    torch.set_num_threads(2)
    model = build_model(TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2), seed=0)
    pretrain(model, TokenData.from_rows(micro_data.train, PAD, score_pad=True), TrainConfig(epochs=3, batch_size=64),
             seed=0, progress=False)
    return model
