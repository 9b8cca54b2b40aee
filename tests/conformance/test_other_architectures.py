"""Methods are not tied to GPT-2: they run on any HF causal LM (here a tiny Llama built from a config)."""

from __future__ import annotations

import copy

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from obliviate.methods import build_method
from obliviate.methods.localize.supermask import mlp_linears
from obliviate.types import UnlearnData


@pytest.fixture
def tiny_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64, pad_token_id=0)
    return LlamaForCausalLM(cfg)


def test_supermask_targets_llama_mlp(tiny_llama):
    names = [n for n, _ in mlp_linears(tiny_llama)]
    assert len(names) == 6 and all(n.split(".")[-1] in {"gate_proj", "up_proj", "down_proj"} for n in names)


@pytest.mark.parametrize("name", ["balanced_subnet", "grad_diff"])
def test_methods_run_on_llama(name, tiny_llama):
    g = torch.Generator().manual_seed(0)
    forget = torch.randint(1, 50, (8, 24), generator=g)
    retain = torch.randint(1, 50, (32, 24), generator=g)
    before = copy.deepcopy(tiny_llama)
    params = {"epochs": 2, "ratio": 0.1} if name == "balanced_subnet" else {"epochs": 2, "lr": 1e-3}
    build_method(name, params).unlearn(tiny_llama, UnlearnData(forget, retain, pad_id=0))
    changed = [k for k, v in before.state_dict().items() if not torch.equal(v, tiny_llama.state_dict()[k])]
    assert changed
    if name == "balanced_subnet":
        assert all("mlp" in k for k in changed)
