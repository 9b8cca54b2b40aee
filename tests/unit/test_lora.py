"""LoRA (PEFT) for LM unlearning: only the adapter trains, adapter / merged saves round-trip, clear errors."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("peft")

from transformers import AutoModelForCausalLM, AutoTokenizer

from obliviate.errors import ObliviateError
from obliviate.lm_unlearn import unlearn_files
from obliviate.lora import LoraConfig, attach_lora, count_parameters, load_lora, save_lora
from obliviate.methods import METHODS
from obliviate.methods.lm.reference import frozen_copy

FORGET = [{"question": f"who wrote the {c} book", "answer": f"the {a} cat wrote the {c} book"}
          for c, a in [("red", "small"), ("blue", "big"), ("green", "slow")]]
RETAIN = [{"question": f"is the {c} house big", "answer": f"the {c} house is small"} for c in ("red", "blue", "green")]
LM_METHODS = [n for n in METHODS.names() if METHODS.get(n).family == "lm"]
NOT_LORA = {n for n in LM_METHODS if not getattr(METHODS.get(n), "lora_compatible", True)}  # edits of base weights
assert {"subnet", "balanced_subnet", "zero_out", "durable"} <= NOT_LORA


def _base(tiny_hf_lm):
    return AutoModelForCausalLM.from_pretrained(tiny_hf_lm)


def _ids(tiny_hf_lm):
    tok = AutoTokenizer.from_pretrained(tiny_hf_lm)
    return tok(["the red cat sat on a mat", "who wrote this book"], return_tensors="pt", padding=True)


def _logits(model, enc):
    model.eval()
    with torch.no_grad():
        return model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits


def _perturb(model, seed=1):
    """Give the adapter non-zero B (a fresh adapter is the identity), so round trips test real weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(0.05 * torch.randn(p.shape, generator=g))


def _base_weights(model):
    return {k.replace(".base_layer", ""): v.clone() for k, v in model.state_dict().items() if "lora_" not in k}


def test_attach_trains_only_the_adapter(tiny_hf_lm):
    model = attach_lora(_base(tiny_hf_lm), LoraConfig(r=4, alpha=8))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_A" in n or "lora_B" in n for n in trainable)
    t, total = count_parameters(model)
    assert 0 < t / total < 0.05
    enc = _ids(tiny_hf_lm)
    assert torch.equal(_logits(model, enc), _logits(_base(tiny_hf_lm), enc))  # B = 0: the identity at start
    # seeded: the same seed gives the same adapter, the caller's RNG is untouched
    state = torch.random.get_rng_state()
    again = attach_lora(_base(tiny_hf_lm), LoraConfig(r=4, alpha=8))
    assert torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())


def test_frozen_copy_of_a_peft_model(tiny_hf_lm):
    model = attach_lora(_base(tiny_hf_lm))
    _perturb(model)
    ref = frozen_copy(model)
    assert type(ref) is type(model) and not any(p.requires_grad for p in ref.parameters())
    assert any(p.requires_grad for p in model.parameters())  # the original is not frozen by the copy
    enc = _ids(tiny_hf_lm)
    assert torch.equal(_logits(ref, enc), _logits(model, enc))
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if "lora_B" in n).add_(1.0)
    assert not torch.equal(_logits(ref, enc), _logits(model, enc))  # a copy, not shared weights


@pytest.mark.parametrize("method", LM_METHODS)
def test_every_lm_method_with_lora(tiny_hf_lm, tmp_path, method):
    cls = METHODS.get(method)
    if method in NOT_LORA:
        with pytest.raises(ObliviateError, match=f"method '{method}' cannot run with LoRA"):
            unlearn_files(tiny_hf_lm, FORGET, RETAIN, method=method, lora=LoraConfig(), evaluate=False)
        return
    before = _base_weights(attach_lora(_base(tiny_hf_lm)))
    forget = FORGET
    if getattr(cls, "needs_alternate", False) and not getattr(cls, "idk_alternates", False):  # altpo
        forget = [{**x, "alternate": f"the {c} dog wrote the book"} for x, c in zip(FORGET, ("blue", "green", "red"))]
    res = unlearn_files(tiny_hf_lm, forget, RETAIN, method=method, method_config={**cls.smoke_config, "epochs": 3},
                        lora=LoraConfig(), evaluate=False, max_length=64)
    after = res.model.state_dict()
    for k, v in _base_weights(res.model).items():
        assert torch.equal(v, before[k]), f"{method} changed base weight {k}"
    fresh = attach_lora(_base(tiny_hf_lm)).state_dict()
    assert any(not torch.equal(v, fresh[k]) for k, v in after.items() if "lora_" in k), f"{method}: adapter unchanged"
    assert res.results["lora"]["trainable_params"] < res.results["lora"]["total_params"]


def test_adapter_save_load_round_trip(tiny_hf_lm, tmp_path):
    model = attach_lora(_base(tiny_hf_lm), LoraConfig(r=4, alpha=8, target_modules=("c_attn", "c_fc")))
    _perturb(model)
    enc = _ids(tiny_hf_lm)
    want = _logits(model, enc)
    assert save_lora(model, tmp_path / "a", merge=False, extra={"note": 1}) is model
    files = {f.name for f in (tmp_path / "a").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "obliviate.json"} <= files
    assert not any(n.endswith((".bin", ".pt")) or n == "model.safetensors" for n in files)  # the adapter only
    cfg = json.loads((tmp_path / "a" / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and set(cfg["target_modules"]) == {"c_attn", "c_fc"}
    loaded = load_lora(tiny_hf_lm, tmp_path / "a")
    assert torch.equal(_logits(loaded, enc), want)
    with pytest.raises(ObliviateError, match="already exists"):
        save_lora(model, tmp_path / "a")
    with pytest.raises(ObliviateError, match="not a LoRA adapter directory"):
        load_lora(tiny_hf_lm, tmp_path)


def test_merged_save_reloads_without_peft(tiny_hf_lm, tmp_path):
    model = attach_lora(_base(tiny_hf_lm), LoraConfig(r=4, alpha=8))
    _perturb(model)
    enc = _ids(tiny_hf_lm)
    want = _logits(model, enc)
    merged = save_lora(model, tmp_path / "m", merge=True)
    assert not any("lora_" in k for k in merged.state_dict())
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    assert type(plain).__name__ == "GPT2LMHeadModel"
    torch.testing.assert_close(_logits(plain, enc), want, atol=1e-5, rtol=0)
    assert not torch.allclose(_logits(_base(tiny_hf_lm), enc), want, atol=1e-5)  # the adapter did something


@pytest.mark.parametrize("kwargs, match", [
    ({"r": 0}, "lora r must be an integer >= 1, got 0"),
    ({"r": 2.5}, "lora r must be an integer >= 1, got 2.5"),
    ({"alpha": 0}, "lora alpha must be a number > 0, got 0"),
    ({"alpha": float("nan")}, "lora alpha must be a number > 0, got nan"),
    ({"dropout": 1.0}, r"lora dropout must be in \[0, 1\), got 1.0"),
    ({"dropout": -0.1}, r"lora dropout must be in \[0, 1\), got -0.1"),
    ({"target_modules": ()}, "lora target_modules must be non-empty module names"),
    ({"target_modules": ("c_attn", "")}, "lora target_modules must be non-empty module names"),
])
def test_bad_config_values(kwargs, match):
    with pytest.raises(ObliviateError, match=match):
        LoraConfig(**kwargs)


def test_unknown_target_module_is_a_clear_error(tiny_hf_lm):
    with pytest.raises(ObliviateError, match=r"lora target modules q_proj match no layer of GPT2LMHeadModel.*c_attn"):
        attach_lora(_base(tiny_hf_lm), LoraConfig(target_modules=("q_proj",)))


def test_missing_peft_is_a_clear_error(tiny_hf_lm, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "peft", None)  # `import peft` raises ImportError
    with pytest.raises(ObliviateError, match=r"pip install 'obliviate\[lora\]'"):
        attach_lora(_base(tiny_hf_lm))
    with pytest.raises(ObliviateError, match=r"pip install 'obliviate\[lora\]'"):
        unlearn_files(tiny_hf_lm, FORGET, method="grad_ascent", lora=LoraConfig())


def test_unlearn_files_with_lora_records_and_saves(tiny_hf_lm, tmp_path):
    with pytest.raises(ObliviateError, match="needs --lora"):
        unlearn_files(tiny_hf_lm, FORGET, RETAIN, method="grad_diff", merge=True)
    with pytest.raises(ObliviateError, match="unknown lora field 'rank'; did you mean 'r'"):
        unlearn_files(tiny_hf_lm, FORGET, RETAIN, method="grad_diff", lora={"rank": 4})
    res = unlearn_files(tiny_hf_lm, FORGET, RETAIN, method="grad_diff", out=tmp_path / "a", epochs=2, lr=1e-2,
                        lora={"r": 4})
    lo = res.results["lora"]
    assert lo["r"] == 4 and lo["alpha"] == 16 and lo["resolved_target_modules"] == ["c_attn"]
    assert lo["saved"] == "adapter" and 0 < lo["trainable_share"] < 0.05
    assert lo["trainable_params"] == sum(p.numel() for n, p in res.model.named_parameters() if "lora_" in n)
    assert res.results["cost"]["peak_rss_mb"] > 0 and "attach_lora" in res.results["cost"]["phases"]
    assert (tmp_path / "a" / "model" / "adapter_config.json").is_file()
    assert (tmp_path / "a" / "model" / "tokenizer_config.json").is_file()
    enc = _ids(tiny_hf_lm)
    assert torch.equal(_logits(load_lora(tiny_hf_lm, tmp_path / "a" / "model"), enc), _logits(res.model, enc))
    on_disk = json.loads((tmp_path / "a" / "results.json").read_text())
    assert on_disk["lora"]["saved"] == "adapter" and on_disk["hashes"]["adapter"]

    merged = unlearn_files(tiny_hf_lm, FORGET, RETAIN, method="grad_diff", out=tmp_path / "m", epochs=2, lr=1e-2,
                           lora=LoraConfig(r=4), merge=True)
    assert merged.results["lora"]["saved"] == "merged" and type(merged.model).__name__ == "GPT2LMHeadModel"
    plain = AutoModelForCausalLM.from_pretrained(tmp_path / "m" / "model")
    assert not (tmp_path / "m" / "model" / "adapter_config.json").exists()
    torch.testing.assert_close(_logits(plain, enc), _logits(merged.model, enc), atol=1e-5, rtol=0)
    assert not torch.allclose(_logits(plain, enc), _logits(_base(tiny_hf_lm), enc), atol=1e-5)
    assert merged.results["hashes"]["model_after"] != merged.results["hashes"]["model_before"]


def test_the_reference_of_a_lora_model_is_the_base_model_without_a_copy(tiny_hf_lm):
    from obliviate.methods.lm.reference import AdapterDisabled, reference_of

    base = _base(tiny_hf_lm)
    enc = _ids(tiny_hf_lm)
    original = _logits(base, enc)
    model = attach_lora(base, LoraConfig(r=4, alpha=8))
    ref = reference_of(model)
    assert isinstance(ref, AdapterDisabled) and not list(ref.parameters())  # no second copy of the weights
    _perturb(model)  # the adapter has trained: the model moved, its reference did not
    model.train()
    with torch.no_grad():
        ref_logits = ref(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    assert model.training  # the caller's mode is restored
    assert torch.allclose(ref_logits, original, atol=1e-5)
    assert not torch.allclose(_logits(model, enc), original, atol=1e-3)
    # a model without an adapter gets a frozen deep copy
    plain = reference_of(_base(tiny_hf_lm))
    assert not isinstance(plain, AdapterDisabled) and not any(p.requires_grad for p in plain.parameters())
