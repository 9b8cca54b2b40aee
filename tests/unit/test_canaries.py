"""Canaries (generation, mixing, user files), exposure (hand-derived ranks) and ``obliviate canaries`` end to end on a
tiny GPT-2."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from obliviate.data.canaries import (
    ALPHABETS,
    Canary,
    alphabet_of,
    make_canaries,
    mix_canaries,
    passages,
    read_canary_file,
    split_passages,
    write_canary_file,
)
from obliviate.errors import ObliviateError
from obliviate.metrics.exposure import (
    all_secrets,
    canary_exposure,
    exposure_from_rank,
    rank_of,
    sample_secrets,
    sampled_exposure,
    skewnorm_exposure,
)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the machine's cores are shared with other jobs


# --- generation and mixing ----------------------------------------------------------------------------------------


def test_generation_is_deterministic_per_seed_and_follows_the_groups():
    a = make_canaries(groups=(1, 10, 100), per_group=2, held_out=3, secret_length=6, seed=7)
    assert a == make_canaries(groups=(1, 10, 100), per_group=2, held_out=3, secret_length=6, seed=7)
    assert [c.secret for c in a] != [c.secret for c in make_canaries((1, 10, 100), 2, 3, secret_length=6, seed=8)]
    assert [c.copies for c in a] == [1, 1, 10, 10, 100, 100, 0, 0, 0]
    assert len({c.secret for c in a}) == 9 and len({c.prefix for c in a}) == 9  # distinct secrets and prompts
    for c in a:
        assert len(c.secret) == 6 and c.secret.isdigit() and c.space_size == 10**6
        assert c.text == f"{c.prefix}{c.secret}." and c.text.startswith("The secret code of ")
        assert c.text[c.secret_start:c.secret_start + 6] == c.secret
    lower = make_canaries((5,), 1, 0, template="pin {secret}!", secret_length=3, alphabet="lower", seed=0)[0]
    assert lower.prefix == "pin " and lower.suffix == "!" and lower.space_size == 26**3


@pytest.mark.parametrize("kwargs, match", [
    ({"template": "no slot here"}, "exactly once"),
    ({"template": "{secret} first"}, "text before"),
    ({"template": "a {other} {secret}"}, "only {key} and {secret}"),
    ({"groups": (0, 10)}, ">= 1"),
    ({"secret_length": 1, "per_group": 4}, "raise secret_length"),
    ({"alphabet": "hex"}, "unknown alphabet"),
])
def test_generation_errors(kwargs, match):
    with pytest.raises(ObliviateError, match=match):
        make_canaries(**kwargs)


def test_mixing_inserts_every_copy_and_no_held_out_canary():
    cans = make_canaries(groups=(1, 10, 100), per_group=1, held_out=2, secret_length=4, seed=0)
    texts = [f"Sentence {i} one. Sentence {i} two! Sentence {i} three?" for i in range(20)]
    docs, hosted = mix_canaries(texts, cans, seed=3)
    assert (docs, hosted) == mix_canaries(texts, cans, seed=3)
    joined = "\n".join(docs)
    for c in cans:
        assert joined.count(c.text) == c.copies
    assert sum(hosted) == 111 and len(docs) == 20
    # the clean text is all still there, in order within each passage
    for i in range(20):
        assert any(all(f"Sentence {i} {w}" in d for w in ("one.", "two!", "three?")) for d in docs)


def test_passages_pack_whole_sentences_and_split_is_seeded():
    ps = passages(["A b c. D e f. G h i j k l.", "X y."], max_words=6)
    assert ps == ["A b c. D e f.", "G h i j k l.", "X y."]
    train, held = split_passages([f"p{i}" for i in range(10)], 5, 3, seed=1)
    assert (train, held) == split_passages([f"p{i}" for i in range(10)], 5, 3, seed=1)
    assert len(train) == 5 and len(held) == 3 and not set(train) & set(held)
    with pytest.raises(ObliviateError, match="need at least 5"):
        split_passages(["a", "b", "c"], 5, 3)


# --- user canary files ---------------------------------------------------------------------------------------------


def test_read_canary_file_formats_and_round_trip(tmp_path):
    f = tmp_path / "c.jsonl"
    rows = [{"prefix": "My PIN is ", "secret": "4821", "suffix": ".", "copies": 10},
            {"text": "Call me at 555 0199 tonight."},  # the last run of digits
            {"text": "the password is hunter then", "secret": "hunter", "copies": 0, "id": "pw"},
            {"prefix": "key: ", "secret": "ab12"}]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    a, b, c, d = read_canary_file(f)
    assert (a.prefix, a.secret, a.suffix, a.copies, a.alphabet, a.id) == ("My PIN is ", "4821", ".", 10, "digits",
                                                                          "line1")
    assert (b.prefix, b.secret, b.suffix, b.copies) == ("Call me at 555 ", "0199", " tonight.", 1)
    assert (c.secret, c.alphabet, c.copies, c.id, c.space_size) == ("hunter", "lower", 0, "pw", 26**6)
    assert d.alphabet == "lower_digits" and alphabet_of("aB3") == "alnum" and alphabet_of("a-b") is None
    out = tmp_path / "out.jsonl"
    write_canary_file(out, [a, b, c, d])
    assert read_canary_file(out) == [a, b, c, d]


@pytest.mark.parametrize("line, match", [
    ('{"prefix": "a", "secret": "1"', "invalid JSON"),
    ('["a"]', "expected a JSON object"),
    ('{"prefix": "a"}', "expected keys 'prefix' and 'secret'"),
    ('{"text": "no digits here"}', "no digits"),
    ('{"text": "abc 12", "secret": "99"}', "does not occur"),
    ('{"prefix": "  ", "secret": "12"}', "nothing precedes"),
    ('{"prefix": "a ", "secret": "1-2"}', "outside a-z"),
    ('{"prefix": "a ", "secret": "12", "copies": -1}', "'copies' must be an integer"),
    ('{"prefix": "a ", "secret": "12", "colour": 1}', "unknown key"),
    ('{"prefix": "a ", "secret": 12}', "must be a string"),
])
def test_bad_canary_rows_name_file_and_line(tmp_path, line, match):
    f = tmp_path / "bad.jsonl"
    f.write_text('{"prefix": "ok ", "secret": "1"}\n' + line + "\n")
    with pytest.raises(ObliviateError, match=match) as exc:
        read_canary_file(f)
    assert "bad.jsonl" in str(exc.value) and "line 2" in str(exc.value)


def test_duplicate_and_empty_canary_files(tmp_path):
    f = tmp_path / "dup.jsonl"
    f.write_text('{"prefix": "a ", "secret": "1"}\n{"text": "a 1"}\n')
    with pytest.raises(ObliviateError, match="line 2: the same canary text 'a 1' as line 1"):
        read_canary_file(f)
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(ObliviateError, match="holds no canaries"):
        read_canary_file(tmp_path / "empty.jsonl")


# --- exposure, derived by hand ---------------------------------------------------------------------------------------


def test_rank_and_exposure_by_hand():
    # a stub scorer with known log-perplexities over the 10 one-digit secrets: the secret "7" scores 2.0; three
    # candidates score lower (0.5, 1.0, 1.5) and one ties (2.0) -> mid-rank 1 + 3 + 0.5 = 4.5
    table = {"0": 9.0, "1": 0.5, "2": 1.0, "3": 1.5, "4": 2.0, "5": 8.0, "6": 7.0, "7": 2.0, "8": 6.0, "9": 5.0}
    canary = Canary("x", "code ", "7", ".", copies=1)
    calls = []

    def scorer(texts):
        calls.append(len(texts))
        return [table[t[len("code "):-1]] for t in texts]

    e = canary_exposure(canary, scorer, exact_limit=10)
    assert e["method"] == "exact" and e["rank"] == 4.5 and calls == [10]  # the secret + 9 others, one call
    assert e["exposure"] == pytest.approx(math.log2(10) - math.log2(4.5))
    assert rank_of(0.1, [1.0, 2.0]) == 1.0 and exposure_from_rank(1.0, 1024) == 10.0  # the most likely: log2|R|
    assert rank_of(3.0, [1.0, 2.0]) == 3.0 and exposure_from_rank(3.0, 3) == 0.0  # the least likely: 0
    assert rank_of(1.0, [1.0] * 9) == 5.5  # all tied: mid-rank, ~1 bit, not the maximum
    with pytest.raises(ObliviateError, match="rank must be in"):
        exposure_from_rank(0.5, 10)


def test_candidates_enumerated_and_sampled():
    assert all_secrets("digits", 2)[:3] == ["00", "01", "02"] and len(all_secrets("digits", 2)) == 100
    s = sample_secrets("digits", 6, 200, seed=3, exclude="123456")
    assert s == sample_secrets("digits", 6, 200, seed=3, exclude="123456") and "123456" not in s
    assert all(len(x) == 6 and set(x) <= set(ALPHABETS["digits"]) for x in s)
    assert set(sample_secrets("digits", 1, 100, seed=0, exclude="3")) == set("012456789")


def test_estimated_exposure():
    rng = np.random.default_rng(0)
    samples = rng.normal(50.0, 2.0, size=4000)
    # secret at the candidates' median: P[score <= secret] = 1/2 -> 1 bit (both estimators)
    assert skewnorm_exposure(50.0, samples, 10**6) == pytest.approx(1.0, abs=0.1)
    assert sampled_exposure(50.0, samples, 10**6) == pytest.approx(1.0, abs=0.1)
    # 3 standard deviations below: P = Phi(-3) = 0.00135 -> 9.53 bits; the plain sampling estimate agrees here
    assert skewnorm_exposure(44.0, samples, 10**6) == pytest.approx(-math.log2(0.0013499), abs=0.4)
    # far below every sample: the fit extrapolates up to log2|R|; sampling saturates near log2(samples + 1)
    assert skewnorm_exposure(0.0, samples, 10**6) == pytest.approx(math.log2(10**6))
    assert sampled_exposure(0.0, samples, 10**6) == pytest.approx(math.log2(2 * 4001))
    assert sampled_exposure(0.0, [1.0] * 5, 10**6) == pytest.approx(math.log2(12))  # (0.5 / 6) -> log2 12
    assert sampled_exposure(0.0, [1.0] * 5, 8) == 3.0  # capped at log2 |R|
    # no spread: the sampled estimate, all 50 tied with the secret -> (0.5 + 25) / 51 = 1/2 -> 1 bit
    assert skewnorm_exposure(1.0, [1.0] * 50, 100) == pytest.approx(1.0)
    e = canary_exposure(Canary("y", "p ", "12345"), lambda ts: [float(sum(map(int, t[2:]))) for t in ts],
                        exact_limit=1000, samples=300)
    assert e["method"] == "skewnorm" and e["rank"] is None and e["candidates"] == 301 and 0 < e["exposure"] < 16.7


# --- model-facing: scorer, extraction, CLI ---------------------------------------------------------------------------


def test_scorer_and_extraction_on_a_tiny_model(tiny_hf_lm):
    from obliviate.lm_unlearn import load_model_and_tokenizer
    from obliviate.metrics.exposure import extraction, lm_scorer, secret_span

    model, tok = load_model_and_tokenizer(tiny_hf_lm)
    c = Canary("a", "the cat is ", "42", ".")
    ids, b, e = secret_span(tok, c)
    assert tok.decode(ids[:b]).rstrip() == "the cat is" and "42" in tok.decode(ids[b:e])
    (score,) = lm_scorer(model, tok)([c.text])
    with torch.no_grad():
        t = torch.tensor([ids])
        want = model(input_ids=t, labels=t).loss.item() * (len(ids) - 1)
    assert score == pytest.approx(want, rel=1e-5)
    # candidates share the prompt: scoring it once (KV cache) gives the numbers of scoring whole rows
    texts = [c.with_secret(s) for s in ("42", "07", "99", "1", "123")] + ["the dog sat"]
    shared = lm_scorer(model, tok, batch_size=4)(texts)
    assert shared == pytest.approx(lm_scorer(model, tok, share_prefix=False)(texts), rel=1e-5)
    assert shared[0] == pytest.approx(score, rel=1e-5)
    assert lm_scorer(model, tok)(texts[:5]) == pytest.approx(shared[:5], rel=1e-5)  # common prefix 'the cat is'
    # greedy decoding of the prompt: extracted exactly when the greedy tokens are the secret's tokens
    with torch.no_grad():
        g = model.generate(torch.tensor([ids[:b]]), max_new_tokens=e - b, do_sample=False,
                           pad_token_id=tok.pad_token_id)[0, b:].tolist()
    (x,) = extraction(model, tok, [c])
    assert x["extracted"] == (g == ids[b:e]) and x["continuation"] == tok.decode(g)
    # after fine-tuning on the canary (plant), greedy decoding reproduces the secret and it ranks first
    from obliviate.canary_transfer import CanaryRunConfig, plant
    from obliviate.data.lm_files import text_rows
    from obliviate.families.lm import TokenData

    rows = TokenData.from_sequences(text_rows([c.text] * 4, tok, 64)[0], tok.pad_token_id)
    log = plant(model, rows, CanaryRunConfig(plant_steps=30, plant_lr=1e-2, plant_batch_size=4), seed=0)
    assert log["steps"] == 30 and log["loss_last"] < log["loss_first"]
    assert extraction(model, tok, [c, Canary("b", "the cat is ", "17", ".")])[0]["extracted"]
    assert canary_exposure(c, lm_scorer(model, tok), exact_limit=100)["rank"] == 1.0


def _write_text(path):
    words = ["the", "cat", "dog", "sat", "on", "a", "mat", "red", "blue", "green", "river", "city", "tree", "house"]
    rng = random.Random(0)
    paras = [" ".join(" ".join(rng.choice(words) for _ in range(rng.randint(4, 8))) + "." for _ in range(3))
             for _ in range(30)]
    path.write_text("\n\n".join(paras) + "\n")
    return path


CLI_SMALL = ["--groups", "1,10,100", "--secret-length", "2", "--train-passages", "16", "--heldout-passages", "4",
             "--max-length", "128", "--plant-steps", "40", "--plant-lr", "0.01", "--exact-limit", "100", "--quiet"]


def test_cli_end_to_end_plant_unlearn_and_measure(tiny_hf_lm, tmp_path, capsys):
    from obliviate.cli import main

    text = _write_text(tmp_path / "text.txt")
    out = tmp_path / "run"
    argv = ["canaries", "--model", str(tiny_hf_lm), "--text", str(text), "--method", "durable", "--method", "zero_out",
            "--set", "methods.zero_out.ratio=0.05", "--out", str(out), *CLI_SMALL]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "exp@100x" in printed and "zero_out" in printed and str(out / "results.json") in printed
    res = json.loads((out / "results.json").read_text())
    assert res["format"] == "obliviate-canaries/1" and list(res["runs"]) == ["original", "before", "durable",
                                                                             "zero_out"]
    assert res["canaries"]["copies"] == {"0": 1, "1": 1, "10": 1, "100": 1} and res["canaries"]["space_log2"] == [
        pytest.approx(math.log2(100), abs=1e-3)]
    assert res["plant"]["steps"] == 40 and res["plant"]["loss_last"] < res["plant"]["loss_first"]
    before = res["runs"]["before"]
    assert set(before["by_group"]) == {"100", "10", "1", "0"} and before["perplexity"] > 1
    assert all(r["method"] == "exact" for r in before["per_canary"])
    # planting raised the planted canaries' exposure above the never-inserted one's
    assert before["by_group"]["100"]["exposure_mean"] > before["by_group"]["0"]["exposure_mean"]
    assert before["planted"]["exposure_mean"] > res["runs"]["original"]["planted"]["exposure_mean"]
    for m in ("durable", "zero_out"):
        r = res["runs"][m]
        assert {"selection_score", "selection_score_exposure", "unlearn_s", "params", "perplexity"} <= set(r)
        assert r["params"]["ratio"] == 0.05 and r["unlearn_s"] >= 0
    assert (out / "planted" / "model.safetensors").is_file() and (out / "heldout.txt").is_file()
    cans = read_canary_file(out / "canaries.jsonl")
    assert [c.copies for c in cans] == [1, 10, 100, 0]
    assert (out / "plant.txt").read_text().count(cans[2].text) == 100

    # a user's own checkpoint (the planted one) and own canary file: --no-plant measures the same numbers
    out2 = tmp_path / "mine"
    assert main(["canaries", "--model", str(out / "planted"), "--canaries", str(out / "canaries.jsonl"), "--text",
                 str(text), "--no-plant", "--out", str(out2), *CLI_SMALL]) == 0
    res2 = json.loads((out2 / "results.json").read_text())
    assert list(res2["runs"]) == ["before"] and res2["plant"] is None
    assert [r["exposure"] for r in res2["runs"]["before"]["per_canary"]] == pytest.approx(
        [r["exposure"] for r in before["per_canary"]])
    assert res2["runs"]["before"]["perplexity"] == pytest.approx(before["perplexity"], rel=1e-5)
    assert main(["canaries", "--model", str(out / "planted"), "--no-plant", "--out", str(out2), *CLI_SMALL]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("extra, match", [
    (["--method", "durabel"], "did you mean 'durable'"),
    (["--method", "lotus"], "classifier family"),
    (["--set", "methods.durable.ratio=2", "--method", "durable"], "ratio must be in"),
    (["--set", "methods.npo.lr=1", "--method", "durable"], "not a --method"),
    (["--groups", "1,x"], "comma-separated integers"),
    (["--canaries", "MISSING"], "does not exist"),
])
def test_cli_bad_input_is_a_one_line_error(tiny_hf_lm, tmp_path, capsys, extra, match):
    from obliviate.cli import main

    argv = ["canaries", "--model", str(tiny_hf_lm), "--out", str(tmp_path / "o"), "--quiet",
            *[a.replace("MISSING", str(tmp_path / "nope.jsonl")) for a in extra]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert match in err and err.startswith("obliviate: error:")
    assert not (tmp_path / "o" / "results.json").exists()
