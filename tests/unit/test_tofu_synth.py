"""The offline TOFU-style benchmark (obliviate.data.tofu_synth), TOFU's file layout, and the small BPE tokenizer."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from obliviate.data.lm_files import read_paragraphs
from obliviate.data.tofu_files import read_tofu_dir, write_tofu_files
from obliviate.data.tofu_pools import KINDS, LAST_NAMES, POSSESSIVE
from obliviate.data.tofu_synth import TofuSynth, TofuSynthConfig, generate_tofu_synth
from obliviate.data.tofu_utility import FAMOUS_WRITERS, MAX_MENTIONS
from obliviate.data.tokenizer import tokenizer_hash, train_bpe_tokenizer
from obliviate.errors import ObliviateError

SMALL = {"n_authors": 20, "qa_per_author": 5, "n_holdout_authors": 2, "n_real_authors": 20, "n_world_facts": 24,
         "world_mentions": 3}


@pytest.fixture(scope="module")
def synth() -> TofuSynth:
    return generate_tofu_synth(TofuSynthConfig(**SMALL))


@pytest.fixture(scope="module")
def tok(synth: TofuSynth):
    return train_bpe_tokenizer(synth.all_texts(), vocab_size=400)


# --- generation -----------------------------------------------------------------------------------------------------


def test_default_config_has_tofu_sizes_and_is_fast():
    t0 = time.perf_counter()
    s = generate_tofu_synth(TofuSynthConfig())
    s.content_hash()
    assert time.perf_counter() - t0 < 2.0
    assert len(s.qa) == 4000 and len(s.holdout) == 400
    for name, n in (("forget01", 40), ("forget05", 200), ("forget10", 400)):
        forget, retain = s.forget_split(name)
        assert (len(forget), len(retain)) == (n, 4000 - n)
        assert len(s.holdout_split(name)) == n and len(s.retain_eval(name)) == n
    assert len(s.real_authors) == 100 and len(s.world_facts) == 117
    assert all(len(it["perturbed_answer"]) == 5 for it in s.qa)
    assert all(len(it["perturbed_answer"]) == 3 for it in s.real_authors + s.world_facts)
    assert len(KINDS) >= 20


def test_same_seed_same_content_other_seed_other_content(synth: TofuSynth):
    again = generate_tofu_synth(TofuSynthConfig(**SMALL))
    assert again.content_hash() == synth.content_hash() and again.qa == synth.qa
    assert again.world_corpus == synth.world_corpus
    other = generate_tofu_synth(TofuSynthConfig(**{**SMALL, "seed": 1}))
    assert other.content_hash() != synth.content_hash() and other.qa != synth.qa
    assert re.fullmatch(r"[0-9a-f]{16}", synth.content_hash())


def test_authors_unique_ordered_and_kinds_chosen_per_author(synth: TofuSynth):
    names = [a["name"] for a in synth.authors]
    assert len(names) == len(set(names)) == 22
    ids = [it["author"] for it in synth.qa]
    assert ids == sorted(ids) and set(ids) == set(range(20))
    assert {it["author"] for it in synth.holdout} == {20, 21}
    for a in range(20):
        kinds = [it["kind"] for it in synth.qa if it["author"] == a]
        assert len(kinds) == len(set(kinds)) == 5 and set(kinds) <= set(KINDS)
    assert len({tuple(it["kind"] for it in synth.qa if it["author"] == a) for a in range(20)}) > 1  # seeded choice


def test_forget_and_retain_are_disjoint_cover_everything_and_forget_the_last_authors(synth: TofuSynth):
    for name, n_authors in (("forget01", 1), ("forget05", 1), ("forget10", 2)):
        forget, retain = synth.forget_split(name)
        assert {it["author"] for it in forget} == set(range(20 - n_authors, 20))
        assert not {it["author"] for it in forget} & {it["author"] for it in retain}
        assert sorted(map(id, forget + retain)) == sorted(map(id, synth.qa))
        assert {it["author"] for it in synth.holdout_split(name)} == set(range(20, 20 + n_authors))
        assert synth.retain_eval(name) == retain[: len(forget)]
    with pytest.raises(ObliviateError, match="forget20.*forget10"):
        synth.forget_split("forget20")


def test_paraphrases_differ_and_are_never_an_answer(synth: TofuSynth):
    items = synth.qa + synth.holdout
    answers = {it["answer"] for it in items}
    for it in items:
        assert it["paraphrased_answer"] != it["answer"]
        assert it["paraphrased_answer"] not in answers
        assert it["paraphrased_answer"] not in it["perturbed_answer"]


def test_perturbed_answers_are_distinct_wrong_and_use_the_paraphrase_template(synth: TofuSynth):
    """The truth ratio compares the perturbed answers with the paraphrased one: both from the paraphrase template
    (never trained on), so the ratio measures knowledge of the value, not familiarity with the trained wording."""
    authors = {a["id"]: a for a in synth.authors}
    for it in synth.qa + synth.holdout:
        pert = it["perturbed_answer"]
        assert len(pert) == 5 and len(set(pert)) == 5 and it["answer"] not in pert
        assert it["paraphrased_answer"] not in pert
        a = authors[it["author"]]
        slots = {"name": a["name"], "poss": POSSESSIVE[a["gender"]]}
        for template, texts in ((KINDS[it["kind"]].answer, [it["answer"]]),
                                (KINDS[it["kind"]].paraphrase, [it["paraphrased_answer"], *pert])):
            pre, post = (part.format(**slots) for part in template.split("{v}"))
            for text in texts:
                assert text.startswith(pre) and text.endswith(post), (text, pre, post)
        pre, post = (part.format(**slots) for part in KINDS[it["kind"]].answer.split("{v}"))
        assert it["answer"] == pre + a[it["kind"]] + post
    for it in synth.real_authors + synth.world_facts:
        pert = it["perturbed_answer"]
        assert len(pert) == 3 and len(set(pert)) == 3 and it["answer"] not in pert


def _count(text: str, phrase: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, flags=re.IGNORECASE))


def test_world_corpus_states_every_utility_fact_and_never_a_fictitious_author(synth: TofuSynth):
    corpus = "\n\n".join(synth.world_corpus)
    for it in synth.real_authors + synth.world_facts:
        assert _count(corpus, it["answer"]) >= synth.config.world_mentions, it
    for a in synth.authors:
        assert a["name"] not in corpus
    assert not [n for n in LAST_NAMES if re.search(rf"\b{n}\b", corpus)]
    writer_words = {w for name, *_ in FAMOUS_WRITERS for w in name.split()}
    assert not writer_words & {w for a in synth.authors for w in a["name"].split()}
    # with every phrasing used, each fact is also stated as its own question and answer
    full = generate_tofu_synth(TofuSynthConfig(**{**SMALL, "world_mentions": MAX_MENTIONS}))
    text = "\n\n".join(full.world_corpus)
    for it in full.real_authors + full.world_facts:
        assert f"{it['question']} The answer is {it['answer']}." in text


def test_world_corpus_does_not_depend_on_author_settings(synth: TofuSynth):
    other = generate_tofu_synth(TofuSynthConfig(**{**SMALL, "n_authors": 30, "qa_per_author": 7}))
    assert other.world_corpus == synth.world_corpus and other.world_facts == synth.world_facts
    assert other.authors[0] == synth.authors[0]  # authors are generated one after another


def test_all_texts_cover_every_string(synth: TofuSynth):
    texts = set(synth.all_texts())
    for it in synth.qa + synth.holdout + synth.real_authors + synth.world_facts:
        assert {it["question"], it["answer"], *it["perturbed_answer"]} <= texts
        assert it.get("paraphrased_answer", it["answer"]) in texts
    assert set(synth.world_corpus) <= texts


@pytest.mark.parametrize("field, value", [
    ("n_authors", 1), ("n_authors", 10**6), ("n_authors", "20"), ("qa_per_author", 3), ("qa_per_author", 25),
    ("n_holdout_authors", -1), ("n_real_authors", 0), ("n_real_authors", 121), ("n_world_facts", 10**4),
    ("n_perturbed", 0), ("n_perturbed", 10), ("n_perturbed_utility", 9), ("world_mentions", 0),
    ("world_mentions", MAX_MENTIONS + 1), ("seed", 1.5), ("seed", True),
])
def test_bad_config_values_are_named(field: str, value: object):
    with pytest.raises(ObliviateError, match=rf"{field} must be an integer.*got {re.escape(repr(value))}"):
        TofuSynthConfig(**{**SMALL, field: value})


def test_holdout_split_needs_enough_holdout_authors():
    s = generate_tofu_synth(TofuSynthConfig(**{**SMALL, "n_holdout_authors": 1}))
    with pytest.raises(ObliviateError, match="needs 2 holdout authors.*n_holdout_authors is 1"):
        s.holdout_split("forget10")
    assert len(s.holdout_split("forget01")) == 5
    assert generate_tofu_synth(TofuSynthConfig(**{**SMALL, "n_holdout_authors": 0})).holdout_split("forget10") == []


# --- TOFU's file layout --------------------------------------------------------------------------------------------


def test_write_read_round_trip(synth: TofuSynth, tmp_path: Path):
    paths = write_tofu_files(synth, tmp_path / "tofu", forget="forget10")
    names = sorted(p.name for p in paths)
    assert names == sorted(["forget10.json", "forget10_perturbed.json", "retain90.json", "retain_perturbed.json",
                            "real_authors_perturbed.json", "world_facts_perturbed.json", "holdout10.json",
                            "world_corpus.txt"])
    assert sorted(p.name for p in (tmp_path / "tofu").iterdir()) == names  # no temporary files left
    forget, retain = synth.forget_split("forget10")
    got = read_tofu_dir(tmp_path / "tofu", forget="forget10")
    assert got == {"forget": forget, "retain": synth.retain_eval("forget10"), "retain_train":
                   [{"question": it["question"], "answer": it["answer"]} for it in retain],
                   "real_authors": synth.real_authors, "world_facts": synth.world_facts,
                   "holdout": synth.holdout_split("forget10")}
    lines = (tmp_path / "tofu" / "forget10.json").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == [{"question": it["question"], "answer": it["answer"]} for it in forget]
    assert read_paragraphs(tmp_path / "tofu" / "world_corpus.txt") == synth.world_corpus


def test_write_refuses_to_overwrite_unless_asked(synth: TofuSynth, tmp_path: Path):
    write_tofu_files(synth, tmp_path, forget="forget01")
    with pytest.raises(ObliviateError, match="already holds.*forget01.json.*overwrite=True"):
        write_tofu_files(synth, tmp_path, forget="forget01")
    assert len(write_tofu_files(synth, tmp_path, forget="forget01", overwrite=True)) == 8
    assert "retain99.json" in os.listdir(tmp_path)
    with pytest.raises(ObliviateError, match="unknown TOFU forget split 'forget1'"):
        write_tofu_files(synth, tmp_path, forget="forget1")


def test_read_plain_files_and_json_arrays(synth: TofuSynth, tmp_path: Path):
    write_tofu_files(synth, tmp_path)
    (tmp_path / "forget10_perturbed.json").unlink()
    (tmp_path / "retain_perturbed.json").unlink()
    (tmp_path / "holdout10.json").unlink()
    forget, retain = synth.forget_split("forget10")
    arr = [{"question": it["question"], "answer": it["answer"]} for it in forget]
    (tmp_path / "forget10.json").write_text(json.dumps(arr, indent=2), encoding="utf-8")
    got = read_tofu_dir(tmp_path)
    assert got["forget"] == arr and got["retain"] == got["retain_train"] and "holdout" not in got
    assert len(got["retain"]) == len(retain)


def _layout(synth: TofuSynth, tmp_path: Path) -> Path:
    write_tofu_files(synth, tmp_path)
    return tmp_path


def test_malformed_json_names_file_and_line(synth: TofuSynth, tmp_path: Path):
    d = _layout(synth, tmp_path)
    f = d / "world_facts_perturbed.json"
    lines = f.read_text(encoding="utf-8").splitlines()
    lines[2] = lines[2][:-1]  # drop the closing brace
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ObliviateError, match=r"world_facts_perturbed\.json' line 3: invalid JSON"):
        read_tofu_dir(d)
    f.write_text('[\n  {"question": "q", "answer": "a", "perturbed_answer": ["b"]},\n  {"question": }\n]\n')
    with pytest.raises(ObliviateError, match=r"world_facts_perturbed\.json' line 3: invalid JSON"):
        read_tofu_dir(d)


def test_missing_field_names_file_line_and_field(synth: TofuSynth, tmp_path: Path):
    d = _layout(synth, tmp_path)
    f = d / "forget10_perturbed.json"
    items = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
    del items[3]["paraphrased_answer"]
    f.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    with pytest.raises(ObliviateError, match=r"forget10_perturbed\.json' line 4: missing field 'paraphrased_answer'"):
        read_tofu_dir(d)
    # the same in a JSON array: the line where the item starts
    f.write_text(json.dumps(items, indent=1), encoding="utf-8")
    lines = json.dumps(items, indent=1).splitlines()
    item_starts = [n + 1 for n, x in enumerate(lines) if x == " {"]
    with pytest.raises(ObliviateError, match=rf"forget10_perturbed\.json' line {item_starts[3]}: missing field"):
        read_tofu_dir(d)


def test_wrong_types_and_inconsistent_perturbed_counts(synth: TofuSynth, tmp_path: Path):
    d = _layout(synth, tmp_path)
    f = d / "real_authors_perturbed.json"
    items = [json.loads(x) for x in f.read_text(encoding="utf-8").splitlines()]
    items[5]["perturbed_answer"] = items[5]["perturbed_answer"][:2]
    f.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    with pytest.raises(ObliviateError, match=r"real_authors_perturbed\.json' line 6: 2 perturbed answers, but line 1 "
                                             r"has 3"):
        read_tofu_dir(d)
    items[5]["perturbed_answer"] = "not a list"
    f.write_text("".join(json.dumps(it) + "\n" for it in items), encoding="utf-8")
    with pytest.raises(ObliviateError, match="line 6: 'perturbed_answer' must be a non-empty list"):
        read_tofu_dir(d)
    f.write_text('["just a string"]\n', encoding="utf-8")
    with pytest.raises(ObliviateError, match="line 1: expected a JSON object"):
        read_tofu_dir(d)


def test_missing_files_and_directory(synth: TofuSynth, tmp_path: Path):
    d = _layout(synth, tmp_path)
    (d / "retain_perturbed.json").unlink()
    (d / "retain90.json").unlink()
    with pytest.raises(ObliviateError, match="no file for the 'retain' split.*'retain_perturbed.json' or "
                                             "'retain90.json'"):
        read_tofu_dir(d)
    with pytest.raises(ObliviateError, match="no file for the 'forget' split of forget05.*'forget05_perturbed.json'"):
        read_tofu_dir(d, forget="forget05")
    with pytest.raises(ObliviateError, match="does not exist"):
        read_tofu_dir(d / "nowhere")


# --- tokenizer and TOFU evaluation data ----------------------------------------------------------------------------


def test_tokenizer_is_deterministic_and_round_trips(synth: TofuSynth, tok):
    again = train_bpe_tokenizer(synth.all_texts(), vocab_size=400)
    assert tokenizer_hash(again) == tokenizer_hash(tok) and again.get_vocab() == tok.get_vocab()
    assert len(tok) <= 400
    assert tok.eos_token == tok.bos_token == "<|endoftext|>" and tok.pad_token == "<pad>"
    assert tok.eos_token_id != tok.pad_token_id
    for s in [*synth.all_texts()[:50], "  two  spaces , odd ' spacing\n\nnew lines", "Ünïcödé 日本語 ✓", ""]:
        ids = tok(s)["input_ids"]
        assert tok.decode(ids) == s
    assert tok("Question: x")["input_ids"][0] != tok.eos_token_id  # nothing added automatically


def test_tokenizer_is_deterministic_across_processes(synth: TofuSynth, tok):
    code = ("from obliviate.data.tofu_synth import TofuSynthConfig, generate_tofu_synth\n"
            "from obliviate.data.tokenizer import tokenizer_hash, train_bpe_tokenizer\n"
            f"s = generate_tofu_synth(TofuSynthConfig(**{SMALL!r}))\n"
            "print(tokenizer_hash(train_bpe_tokenizer(s.all_texts(), vocab_size=400)))\n")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == tokenizer_hash(tok)


@pytest.mark.parametrize("kw, match", [({"vocab_size": 299}, r"vocab_size must be an integer >= 300 .*got 299"),
                                       ({"min_frequency": 0}, "min_frequency must be an integer >= 1"),
                                       ({"texts": []}, "texts is empty"), ({"texts": ["a", 3]}, r"texts\[1\]")])
def test_tokenizer_bad_inputs(kw: dict, match: str):
    with pytest.raises(ObliviateError, match=match):
        train_bpe_tokenizer(**{"texts": ["some text"], **kw})


def test_items_feed_tofu_split_data(synth: TofuSynth, tok):
    from obliviate.metrics.tofu_eval import tofu_split_data

    forget, _ = synth.forget_split("forget10")
    for name, items, k in (("forget", forget, 5), ("retain", synth.retain_eval("forget10"), 5),
                           ("real_authors", synth.real_authors, 3), ("world_facts", synth.world_facts, 3)):
        data = tofu_split_data(items, tok, name)
        assert len(data.perturbed) == k
        assert (data.correct is data.answer) == (name in ("real_authors", "world_facts"))
