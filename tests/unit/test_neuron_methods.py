"""Neuron-level unlearning (TinyMem): attributions derived by hand or recomputed directly, batched == naive loops,
the weight edit == the masked activations, layer lookup, errors, and a behaviour check against random ablation."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn
from transformers import LlamaConfig, LlamaForCausalLM

from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.losses.nll import mean_nll
from obliviate.methods import METHODS, build_method
from obliviate.methods.neuron.activations import activation_scores, mean_activations
from obliviate.methods.neuron.base import ablate_neurons, find_neuron_sites, patched, top_k_per_layer
from obliviate.methods.neuron.hard_concrete import expected_l0, hard_concrete_gate
from obliviate.methods.neuron.integrated_gradients import integrated_gradients, integrated_gradients_naive
from obliviate.methods.neuron.zero_out import zero_out_scores
from obliviate.models.gpt2 import TinyMemModelConfig, build_model

NAMES = ["zero_out", "activations", "slimming", "hard_concrete", "integrated_gradients"]


@pytest.fixture(autouse=True)
def _one_thread():
    # these models are tiny: a second intra-op thread only adds barrier waits (many times slower on a busy machine)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class ToyMLP(nn.Module):
    def __init__(self, w1: list[list[float]], w2: list[list[float]]) -> None:
        super().__init__()
        self.c_fc = nn.Linear(2, 3, bias=False)
        self.c_proj = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.c_fc.weight.copy_(torch.tensor(w1))
            self.c_proj.weight.copy_(torch.tensor(w2))

    def forward(self, h):
        return self.c_proj(torch.relu(self.c_fc(h)))


class ToyLM(nn.Module):
    """Embedding -> one residual MLP block -> head; its activations are easy to derive by hand."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding.from_pretrained(torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
        self.block = nn.Module()
        # neuron inputs: n0 reads x, n1 reads 2y, n2 reads -(x + y) (never active)
        self.block.mlp = ToyMLP([[1, 0], [0, 2], [-1, -1]], [[3, 0, 1], [4, 1, 0]])
        self.head = nn.Linear(2, 3, bias=False)

    def forward(self, input_ids, attention_mask=None, **_):
        h = self.emb(input_ids)
        return SimpleNamespace(logits=self.head(h + self.block.mlp(h)))


def _small(n_layer: int = 2, n_embd: int = 16):
    return build_model(TinyMemModelConfig(n_layer=n_layer, n_embd=n_embd, n_head=2, n_positions=32), seed=0).eval()


def _small_data(n: int = 6, seed: int = 0) -> TokenData:
    g = torch.Generator().manual_seed(seed)
    seqs = [torch.randint(0, 13, (int(torch.randint(10, 16, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]
    return TokenData.from_sequences(seqs, pad_id=13, prompt_lens=[5] * n)


def _nll(model, split: TokenData) -> float:
    with torch.no_grad():
        return mean_nll(model(input_ids=split.input_ids).logits, split.labels).item()


def test_activations_by_hand():
    # row 0 scores every target: positions 0, 1, 2 (tokens 0, 1, 2) predict; row 1 has a 2-token prompt: positions
    # 1, 2 (token 2). Activations: token 0 -> (1, 0, 0), token 1 -> (0, 2, 0), token 2 -> (1, 2, 0).
    split = TokenData(torch.tensor([[0, 1, 2, 0], [2, 2, 2, 2]]), torch.ones(2, 4, dtype=torch.long),
                      torch.tensor([[0, 1, 2, 0], [-100, -100, 2, 2]]))
    model = ToyLM()
    sites = find_neuron_sites(model)
    means = mean_activations(model, split, sites, batch_size=1)
    assert torch.allclose(means[0], torch.tensor([4 / 5, 8 / 5, 0.0]))
    # outgoing weights of n0, n1, n2: columns (3, 4), (0, 1), (1, 0) -> norms 5, 1, 1
    assert torch.allclose(activation_scores(means, sites)[0], torch.tensor([4.0, 8 / 5, 0.0]))


def test_top_k_per_layer_is_per_layer_highest_first():
    s = [torch.tensor([0.1, 0.5, 0.3, 0.5]), torch.tensor([float("nan"), 2.0, -1.0, 0.0])]
    m = top_k_per_layer(s, 0.5)
    assert m[0].tolist() == [False, True, False, True]  # tie at 0.5: both highest
    assert m[1].tolist() == [False, True, False, True]  # NaN ranks lowest
    assert int(top_k_per_layer([torch.rand(100)], 0.29)[0].sum()) == 29  # floor, not 28 from 0.29 * 100 = 28.99..
    assert int(top_k_per_layer([torch.rand(512)], 0.05)[0].sum()) == 25  # floor(25.6)


def test_sites_are_the_mlp_output_projections_in_order():
    model = build_model(TinyMemModelConfig(n_layer=16, n_embd=8, n_head=1), seed=0)
    sites = find_neuron_sites(model)
    assert [s.module for s in sites] == [blk.mlp.c_proj for blk in model.transformer.h]
    assert all(s.inner == 32 for s in sites)
    # the reference's substring lookup resolved layer 1 to h.15 (and h.10 ... h.15): ablating layer 1 edits h.1 only
    before = copy.deepcopy(model.state_dict())
    masks = [torch.zeros(32, dtype=torch.bool) for _ in sites]
    masks[1][[0, 5]] = True
    ablate_neurons(sites, masks)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed == ["transformer.h.1.mlp.c_proj.weight"]
    w = model.transformer.h[1].mlp.c_proj.weight  # Conv1D (in, out): rows 0 and 5 are the neurons' outputs
    assert (w[[0, 5]] == 0).all() and torch.equal(w[1:5], before["transformer.h.1.mlp.c_proj.weight"][1:5])


def _tiny_llama():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return LlamaForCausalLM(LlamaConfig(vocab_size=20, hidden_size=16, intermediate_size=24, num_hidden_layers=2,
                                            num_attention_heads=2, num_key_value_heads=2,
                                            max_position_embeddings=32)).eval()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_weight_edit_equals_masked_activations(arch):
    model = _small() if arch == "gpt2" else _tiny_llama()
    sites = find_neuron_sites(model)
    if arch == "llama":
        assert [s.module for s in sites] == [layer.mlp.down_proj for layer in model.model.layers]
    g = torch.Generator().manual_seed(0)
    masks = [torch.rand(s.inner, generator=g) < 0.3 for s in sites]
    ids = torch.randint(0, 13, (3, 12), generator=g)
    with torch.no_grad(), patched(sites, {s.index: (lambda x, m=m: x * (~m).to(x.dtype)) for s, m in zip(sites, masks)}):
        hooked = model(input_ids=ids).logits
    ablate_neurons(sites, masks)
    with torch.no_grad():
        edited = model(input_ids=ids).logits
    assert torch.allclose(hooked, edited, atol=1e-6)


def test_weight_edit_under_lora_removes_the_adapter_path_too():
    peft = pytest.importorskip("peft")
    model = peft.get_peft_model(_small(), peft.LoraConfig(r=4, target_modules=["c_fc", "c_proj"], fan_in_fan_out=True,
                                                           init_lora_weights=False)).eval()
    sites = find_neuron_sites(model)
    assert [s.name for s in sites] == [f"base_model.model.transformer.h.{i}.mlp.c_proj" for i in range(2)]
    assert [tuple(w.shape) for w, _ in sites[0].weights] == [(64, 16), (4, 64)]  # base (in, out), lora_A (r, in)
    masks = [torch.arange(64) % 5 == 0 for _ in sites]
    ids = torch.randint(0, 13, (2, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), patched(sites, {s.index: (lambda x, m=m: x * (~m).to(x.dtype)) for s, m in zip(sites, masks)}):
        hooked = model(input_ids=ids).logits
    ablate_neurons(sites, masks)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, hooked, atol=1e-6)


def test_a_model_without_mlps_is_a_clear_error():
    with pytest.raises(ObliviateError, match=r"mlp.*c_proj.*down_proj"):
        find_neuron_sites(nn.Sequential(nn.Linear(2, 2)))
    data = LMUnlearnData(_small_data())
    with pytest.raises(ObliviateError, match="no MLP layers"):
        build_method("activations").unlearn(nn.Sequential(nn.Embedding(14, 4)), data)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("ratio", [0.0, 1.0, -0.1, 1.5])
def test_ratio_outside_0_1_names_value_and_range(name, ratio):
    with pytest.raises(ObliviateError, match=rf"ratio must be in \(0, 1\).*got {ratio}"):
        build_method(name, {"ratio": ratio})


def test_zero_out_equals_direct_recomputation_and_any_batching():
    model, split = _small(n_embd=8), _small_data()
    sites = find_neuron_sites(model)
    scores = zero_out_scores(model, split, sites, batch_size=64)  # 6 rows x 10 neurons per forward
    # rows in blocks of 4, one neuron per forward (layer 0 only, to keep it short)
    assert torch.allclose(scores[0], zero_out_scores(model, split, sites[:1], batch_size=4)[0], atol=1e-5)
    base = _nll(model, split)
    for layer, j in [(0, 0), (0, int(scores[0].argmax())), (1, 7), (1, 31)]:
        edited = copy.deepcopy(model)
        with torch.no_grad():
            edited.transformer.h[layer].mlp.c_proj.weight[j] = 0
        assert scores[layer][j].item() == pytest.approx(_nll(edited, split) - base, abs=1e-5)


def test_zero_out_reference_patch_keeps_only_the_neuron():
    model, split = _small(n_layer=1), _small_data(n=3)
    sites = find_neuron_sites(model)
    ref = zero_out_scores(model, split, sites, batch_size=64, keep_only=True, all_tokens=True)[0]
    everything = TokenData(split.input_ids, split.attention_mask, split.input_ids.clone())
    edited = copy.deepcopy(model)
    with torch.no_grad():
        w = edited.transformer.h[0].mlp.c_proj.weight
        w[torch.arange(64) != 3] = 0
    assert ref[3].item() == pytest.approx(_nll(edited, everything) - _nll(model, everything), abs=1e-5)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("kv_cache", [True, False])
def test_batched_integrated_gradients_equal_the_per_step_loop(arch, kv_cache):
    model, split = (_small(), _small_data(n=2)) if arch == "gpt2" else (_tiny_llama(), _small_data(n=3, seed=1))
    assert (split.attention_mask == 0).any(), "rows of different lengths (right padding)"
    sites = find_neuron_sites(model)
    batched = integrated_gradients(model, split, sites, steps=3, pairs_per_forward=5, kv_cache=kv_cache)
    naive = integrated_gradients_naive(model, split, sites, steps=3)
    for b, n in zip(batched, naive):
        assert torch.allclose(b, n, rtol=1e-4, atol=1e-5 * float(n.abs().max()))
        assert n.abs().max() > 0


def test_integrated_gradients_are_nearly_complete():
    # completeness: sum_j IG_j = p(target | a) - p(target | 0 at that position), up to the Riemann error
    model = _small(n_layer=1)
    split = TokenData(torch.tensor([[1, 2, 3, 4]]), torch.ones(1, 4, dtype=torch.long), torch.tensor([[-100] * 3 + [4]]))
    sites = find_neuron_sites(model)
    ig = integrated_gradients(model, split, sites, steps=400, pairs_per_forward=1)[0]

    def prob(scale: float) -> float:
        def fn(x):
            x = x.clone()
            x[:, 2] = x[:, 2] * scale
            return x

        with torch.no_grad(), patched(sites, {0: fn}):
            return model(input_ids=split.input_ids).logits[0, 2].softmax(-1)[4].item()

    assert ig.sum().item() == pytest.approx(prob(1.0) - prob(0.0), rel=0.02, abs=1e-6)


def test_hard_concrete_gate_and_penalty_by_hand():
    gate = hard_concrete_gate(torch.tensor([0.0, 0.0, 10.0]), torch.tensor([0.5, 1e-6, 0.5]), 2 / 3, (-0.1, 1.1))
    # sigmoid(0) = 0.5 -> 0.5 * 1.2 - 0.1 = 0.5; u ~ 0 -> sigmoid very negative -> -0.1 -> clamped 0; s = 10 -> 1
    assert torch.allclose(gate, torch.tensor([0.5, 0.0, 1.0]), atol=1e-6)
    expected = 1 / (1 + math.exp(-(2 / 3) * math.log(11)))  # sigmoid(0 - beta * log(0.1 / 1.1))
    assert expected_l0(torch.tensor([0.0]), 2 / 3, (-0.1, 1.1)).item() == pytest.approx(expected)


@pytest.mark.parametrize("name", NAMES)
def test_result_contract_and_caller_state(name):
    model, split = _small(), _small_data()
    model.train()
    model.transformer.wte.weight.requires_grad_(False)
    cls = METHODS.get(name)
    result = build_method(name, {**cls.smoke_config, "epochs": 2}).unlearn(model, LMUnlearnData(split),
                                                                             RunContext(seed=0))
    assert model.training and not model.transformer.wte.weight.requires_grad
    assert all(p.grad is None for p in model.parameters())
    assert result.info["ablated_per_layer"] == [16, 16]  # floor(0.25 * 64) per layer
    for i, site in enumerate(find_neuron_sites(model)):
        mask = result.masks[f"ablated.layer{i}"]
        assert mask.dtype == torch.bool and int(mask.sum()) == 16
        assert result.masks[f"attribution.layer{i}"].shape == (64,)
        # the highest-scored neurons are the ablated ones, and exactly their outputs are zero
        att = result.masks[f"attribution.layer{i}"]
        assert att[mask].min() >= att[~mask].max()
        w = site.module.weight
        assert (w[mask] == 0).all() and (w[~mask] != 0).any(1).all()
    assert result.logs and result.wall_s > 0 and result.info["forget_nll_after"] > 0


def test_slimming_stop_rule_fires_when_checked():
    model, data = _small(), LMUnlearnData(_small_data())
    result = build_method("slimming", {"epochs": 5, "check_every": 2, "stop_loss": 10.0}).unlearn(model, data)
    assert result.stopped_at == 2 and result.info["epochs_run"] == 2
    result = build_method("slimming", {"epochs": 3}).unlearn(_small(), data)  # checked every 100: never at 3
    assert result.stopped_at is None and result.info["epochs_run"] == 3


@pytest.mark.parametrize("name", ["zero_out", "activations", "slimming", "integrated_gradients"])
def test_beats_ablating_as_many_random_neurons(name, tiny_unlearn):
    # on the trained TinyMem model, ratio 0.1 (12 of 128 neurons): zero_out +0.14 nats, activations +0.12, slimming
    # +0.18, IG +0.11; 20 random draws: +0.016 on average, +0.05 at most (hard_concrete: +0.017, no better)
    model, data = tiny_unlearn
    base = copy.deepcopy(model)
    extra = {"steps": 2, "batch_size": 64} if name == "integrated_gradients" else {}
    result = build_method(name, {"ratio": 0.1, **extra}).unlearn(model, data, RunContext(seed=0))
    k = result.info["ablated_per_layer"]
    after = result.info["forget_nll_after"]
    g = torch.Generator().manual_seed(0)
    random_after = []
    for _ in range(5):
        m = copy.deepcopy(base)
        sites = find_neuron_sites(m)
        masks = []
        for s, n in zip(sites, k):
            mask = torch.zeros(s.inner, dtype=torch.bool)
            mask[torch.randperm(s.inner, generator=g)[:n]] = True
            masks.append(mask)
        ablate_neurons(sites, masks)
        random_after.append(_nll(m, data.forget))
    before = result.info["forget_nll_before"]
    mean_random = sum(random_after) / len(random_after)
    assert after > max(random_after) and after - before > 3 * (mean_random - before), (before, after, random_after)
