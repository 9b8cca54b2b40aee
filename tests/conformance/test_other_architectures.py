"""Methods are not tied to GPT-2 or to a dedicated pad token: they run on any HF causal LM (here a tiny Llama built
from a config) with HF-style batches, where pad = EOS and rows have different lengths."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from obliviate.context import RunContext
from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData, batch_of
from obliviate.losses.nll import sequence_nll
from obliviate.methods import METHODS, build_method
from obliviate.methods.localize.supermask import mlp_linears

from .fixtures import with_alternates

EOS = 2


@pytest.fixture
def tiny_llama():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=64,
                          pad_token_id=EOS, eos_token_id=EOS)
        return LlamaForCausalLM(cfg)


def _seqs(n, gen, lo=6, hi=24):
    return [torch.randint(3, 50, (int(torch.randint(lo, hi, (1,), generator=gen)),), generator=gen).tolist() + [EOS]
            for _ in range(n)]


def test_pad_equal_to_eos_keeps_real_eos_targets():
    # regression: masking targets by `!= pad_id` dropped every real EOS target when pad == EOS
    data = TokenData.from_sequences([[5, 6, EOS], [7, EOS]], pad_id=EOS)
    assert data.input_ids.tolist() == [[5, 6, EOS], [7, EOS, EOS]]
    assert data.labels.tolist() == [[5, 6, EOS], [7, EOS, -100]]
    assert data.scored_tokens.tolist() == [2, 1]  # 6 -> EOS and 7 -> EOS are both scored


def test_answer_only_labels_for_qa():
    data = TokenData.from_sequences([[1, 2, 3, 4, EOS]], pad_id=EOS, prompt_lens=[3])
    assert data.labels.tolist() == [[-100, -100, -100, 4, EOS]]


def test_left_padding_gives_the_same_loss_as_no_padding(tiny_llama):
    ids = torch.tensor([[5, 6, 7, 8]])
    alone = LMBatch(ids, torch.ones_like(ids), ids.clone(), torch.tensor([0]))
    left = LMBatch(torch.tensor([[EOS, EOS, 5, 6, 7, 8]]), torch.tensor([[0, 0, 1, 1, 1, 1]]),
                   torch.tensor([[-100, -100, -100, 6, 7, 8]]), torch.tensor([0]))
    with torch.no_grad():
        a = sequence_nll(alone.logits(tiny_llama), alone.labels)
        b = sequence_nll(left.logits(tiny_llama), left.labels)
    assert torch.allclose(a, b, atol=1e-5)


def test_right_padded_batches_trim_only_dead_columns():
    data = TokenData.from_sequences([[5, 6, EOS], [7, EOS]], pad_id=EOS, max_len=8)
    b = batch_of(data, torch.tensor([1]))
    assert b.input_ids.tolist() == [[7, EOS]]


def test_supermask_targets_llama_mlp(tiny_llama):
    names = [n for n, _ in mlp_linears(tiny_llama)]
    assert len(names) == 6 and all(n.split(".")[-1] in {"gate_proj", "up_proj", "down_proj"} for n in names)


@pytest.mark.parametrize("name", ["balanced_subnet", "grad_diff"])
def test_methods_run_on_llama_with_padded_rows(name, tiny_llama):
    g = torch.Generator().manual_seed(0)
    data = LMUnlearnData(TokenData.from_sequences(_seqs(8, g), EOS), TokenData.from_sequences(_seqs(32, g), EOS))
    assert (data.forget.attention_mask == 0).any(), "the fixture must contain padding"
    before = copy.deepcopy(tiny_llama)
    params = {"epochs": 2, "ratio": 0.1} if name == "balanced_subnet" else {"epochs": 2, "lr": 1e-3}
    with torch.no_grad():
        f0 = sequence_nll(tiny_llama(input_ids=data.forget.input_ids).logits, data.forget.labels).mean()
    build_method(name, params).unlearn(tiny_llama, data, RunContext(seed=0))
    with torch.no_grad():
        f1 = sequence_nll(tiny_llama(input_ids=data.forget.input_ids).logits, data.forget.labels).mean()
    changed = [k for k, v in before.state_dict().items() if not torch.equal(v, tiny_llama.state_dict()[k])]
    assert changed and f1 > f0
    if name == "balanced_subnet":
        assert all("mlp" in k for k in changed)


def test_forget_split_validation_names_the_problem():
    from obliviate.errors import ObliviateError

    with pytest.raises(ObliviateError, match="image batch"):
        LMUnlearnData(forget=torch.zeros(4, 3, 8, 8))
    with pytest.raises(ObliviateError, match="from_rows"):
        LMUnlearnData(forget=torch.zeros(4, 8, dtype=torch.long))
    with pytest.raises(ObliviateError, match="no scored tokens"):
        LMUnlearnData(forget=TokenData.from_sequences([[1, 2]], EOS, prompt_lens=[2]))


def _tiny_neox():
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    with torch.random.fork_rng():
        torch.manual_seed(0)
        cfg = GPTNeoXConfig(vocab_size=50, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, max_position_embeddings=64, pad_token_id=EOS, eos_token_id=EOS)
        return GPTNeoXForCausalLM(cfg)


LM_METHODS = sorted(n for n in METHODS.names() if METHODS.get(n).family == "lm")


@pytest.mark.parametrize("arch", ["llama", "gpt_neox"])
@pytest.mark.parametrize("name", LM_METHODS)
def test_every_lm_method_runs_on_llama_and_gpt_neox(name, arch, tiny_llama):
    model = tiny_llama if arch == "llama" else _tiny_neox()
    g = torch.Generator().manual_seed(1)
    data = LMUnlearnData(TokenData.from_sequences(_seqs(8, g), EOS), TokenData.from_sequences(_seqs(16, g), EOS))
    data = with_alternates(data, EOS)  # the DPO-style methods' winners; the others ignore them
    before = copy.deepcopy(model)
    params = {**METHODS.get(name).smoke_config, "epochs": 2}
    result = build_method(name, params).unlearn(model, data, RunContext(seed=0))
    sd0, sd1 = before.state_dict(), model.state_dict()
    assert sd0.keys() == sd1.keys(), f"{name} on {arch}: the architecture changed"
    assert any(not torch.equal(sd0[k], sd1[k]) for k in sd0), f"{name} on {arch}: nothing changed"
    assert all(torch.isfinite(v).all() for v in sd1.values() if v.is_floating_point())
    assert result.logs and all(math.isfinite(x) for entry in result.logs for x in entry.values())
