"""The offline MUSE-style benchmark (data/muse_synth.py): splits, VerbMem / cloze KnowMem items, MUSE file layout."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import pytest

from obliviate.data.corpora import lee_texts
from obliviate.data.muse_files import LAYOUT, read_muse_dir, write_muse_files
from obliviate.data.muse_synth import (
    BLANK,
    MuseSynth,
    MuseSynthConfig,
    build_muse_synth,
    clean_text,
    cloze_qa,
    cut_at_sentence,
    normalise,
    prepare_documents,
    split_sentences,
    verbmem_item,
)
from obliviate.errors import ObliviateError
from obliviate.metrics.muse import QAItem, VerbMemItem, parse_qa_items, parse_verbmem_items

LEE = MuseSynthConfig(source="lee", n_forget=30, n_retain=25, n_holdout=20, n_qa=20, n_icl=3, seed=7)


@pytest.fixture(scope="module")
def synth() -> MuseSynth:
    return build_muse_synth(LEE)


@pytest.fixture(scope="module")
def written(synth: MuseSynth, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("muse")
    write_muse_files(synth, root)
    return root


def _fill(question: str, answer: str) -> str:
    """The sentence of a cloze question with its blank filled in."""
    prefix, suffix = 'Fill in the blank: "', '"'
    assert question.startswith(prefix) and question.endswith(suffix)
    return question[len(prefix):-len(suffix)].replace(BLANK, answer)


# --- pure text functions ---------------------------------------------------------------------------------------------


def test_split_sentences_reconstructs_text():
    text = 'He said "Go." Then 3 people left. Dr. Smith stayed! Why? (It rained.) End'
    sentences = split_sentences(text)
    assert " ".join(sentences) == text
    assert sentences[:3] == ['He said "Go."', "Then 3 people left.", "Dr."]


def test_cut_at_sentence():
    text = "One two three. Four five six seven. Eight."
    assert cut_at_sentence(text, 7) == "One two three. Four five six seven."
    assert cut_at_sentence(text, 8) == text
    assert cut_at_sentence(text, 2) is None  # the first sentence is longer


def test_clean_text_removes_wiki_markup():
    assert clean_text("The ''Iliad'' () was   '''long'''\n , said Homer.") == "The Iliad was long, said Homer."
    assert clean_text("Items:\n* one\n* two") is None


def test_cloze_picks_salient_span_not_at_start():
    sentence = "Sydney is far from the town of Goulburn in 2001 today."
    for seed in range(20):
        qa = cloze_qa(sentence, random.Random(seed))
        assert qa is not None and qa["answer"] in {"Goulburn", "2001"}
        assert BLANK in qa["question"] and _fill(qa["question"], qa["answer"]) == sentence
    assert cloze_qa("nothing here is capitalised or a number at all.", random.Random(0)) is None
    # a span that occurs twice would give itself away
    assert cloze_qa("the cat met Tom and then Tom met the dog.", random.Random(0)) is None


def test_verbmem_item_split():
    assert verbmem_item("a b c d e", 2) == {"prompt": "a b", "gt": "c d e"}


# --- the benchmark ---------------------------------------------------------------------------------------------------


def test_counts(synth: MuseSynth):
    assert (len(synth.forget), len(synth.retain), len(synth.holdout)) == (30, 25, 20)
    assert len(synth.verbmem) == 30
    assert len(synth.knowmem_forget) == len(synth.knowmem_retain) == 20
    assert len(synth.knowmem_forget_icl) == len(synth.knowmem_retain_icl) == 3
    assert synth.all_texts() == synth.forget + synth.retain + synth.holdout


def test_deterministic_and_seeded(synth: MuseSynth):
    again = build_muse_synth(LEE)
    assert again.to_dict() == synth.to_dict()
    assert again.content_hash() == synth.content_hash()
    assert len(synth.content_hash()) == 16 and int(synth.content_hash(), 16) >= 0
    other = build_muse_synth(MuseSynthConfig(**{**asdict(LEE), "seed": 8}))
    assert other.content_hash() != synth.content_hash()
    assert other.forget != synth.forget


def test_splits_disjoint_and_deduplicated(synth: MuseSynth):
    sets = [synth.forget, synth.retain, synth.holdout]
    keys = [{normalise(d) for d in docs} for docs in sets]
    assert [len(k) for k in keys] == [len(d) for d in sets]  # no duplicate within a set
    for i in range(3):
        for j in range(i + 1, 3):
            assert not set(sets[i]) & set(sets[j])
            assert not keys[i] & keys[j]


def test_lee_has_duplicates_that_are_removed():
    raw = lee_texts()
    assert len({normalise(t) for t in raw}) < len(raw)  # the corpus itself repeats articles
    docs = prepare_documents(raw, 40, 200)
    assert len({normalise(d) for d in docs}) == len(docs)


def test_document_lengths(synth: MuseSynth):
    for doc in synth.all_texts():
        assert LEE.min_words <= len(doc.split()) <= LEE.max_words
        assert "\n" not in doc and doc == doc.strip()


def test_verbmem_reconstructs_forget_documents(synth: MuseSynth):
    for item, doc in zip(synth.verbmem, synth.forget):
        assert len(item["prompt"].split()) == LEE.prompt_words
        assert item["gt"]
        assert " ".join((item["prompt"] + " " + item["gt"]).split()) == " ".join(doc.split())


def test_cloze_answers_come_from_their_side(synth: MuseSynth):
    for items, docs in ((synth.knowmem_forget, synth.forget), (synth.knowmem_retain, synth.retain)):
        for item in items:
            assert BLANK in item["question"] and item["question"].count(BLANK) == 1
            assert item["answer"] and item["answer"] not in item["question"]
            sentence = _fill(item["question"], item["answer"])
            assert any(sentence in doc for doc in docs)
            assert any(item["answer"] in doc for doc in docs)


def test_one_question_per_document(synth: MuseSynth):
    for items, docs in ((synth.knowmem_forget, synth.forget), (synth.knowmem_retain, synth.retain)):
        sources = [next(i for i, d in enumerate(docs) if _fill(it["question"], it["answer"]) in d) for it in items]
        assert len(set(sources)) == len(sources)


def test_icl_items_are_not_in_the_qa_sets(synth: MuseSynth):
    qa_questions = {it["question"] for it in synth.knowmem_forget + synth.knowmem_retain}
    icl = synth.knowmem_forget_icl + synth.knowmem_retain_icl
    assert not {it["question"] for it in icl} & qa_questions
    assert len({it["question"] for it in icl}) == len(icl)
    for item in icl:  # from documents outside the three sets
        sentence = _fill(item["question"], item["answer"])
        assert not any(sentence in doc for doc in synth.all_texts())


def test_items_parse_with_muse_metric_parsers(synth: MuseSynth):
    assert parse_verbmem_items(synth.verbmem)[0] == VerbMemItem(**synth.verbmem[0])
    for items in (synth.knowmem_forget, synth.knowmem_retain, synth.knowmem_forget_icl, synth.knowmem_retain_icl):
        assert parse_qa_items(items) == [QAItem(**it) for it in items]


def test_wikipedia_small():
    cfg = MuseSynthConfig(source="wikipedia", n_forget=15, n_retain=15, n_holdout=15, n_qa=15, n_icl=2)
    s = build_muse_synth(cfg)
    assert (len(s.forget), len(s.retain), len(s.holdout), len(s.knowmem_forget)) == (15, 15, 15, 15)
    assert not set(s.forget) & set(s.retain) and not set(s.forget) & set(s.holdout)
    assert all("''" not in doc for doc in s.all_texts())


# --- config errors ---------------------------------------------------------------------------------------------------


def test_too_many_documents_names_the_available_count():
    available = len(prepare_documents(lee_texts(), 40, 200))
    with pytest.raises(ObliviateError, match=f"has {available} usable documents"):
        build_muse_synth(MuseSynthConfig(source="lee", n_forget=200, n_retain=100, n_holdout=100))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "bbc"}, "unknown MuseSynthConfig.source 'bbc'.*valid: lee, wikipedia"),
        ({"n_forget": 0, "n_qa": 0}, "n_forget must be >= 1, got 0"),
        ({"n_icl": -1}, "n_icl must be >= 0, got -1"),
        ({"n_retain": True}, "n_retain must be an int >= 1, got True"),
        ({"max_words": 30}, "max_words must be >= min_words=40, got 30"),
        ({"prompt_words": 40}, "prompt_words=40 must be < min_words=40"),
        ({"n_qa": 101}, "n_qa=101 must be <= n_forget=100"),
        ({"n_retain": 50}, "n_qa=100 must be <= n_retain=50"),
    ],
)
def test_bad_config(kwargs: dict, message: str):
    with pytest.raises(ObliviateError, match=message):
        MuseSynthConfig(**kwargs)


# --- MUSE file layout ------------------------------------------------------------------------------------------------


def test_write_layout(synth: MuseSynth, tmp_path: Path):
    paths = write_muse_files(synth, tmp_path)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == list(LAYOUT)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()) == sorted(LAYOUT)
    raw = (tmp_path / "raw/forget.txt").read_text(encoding="utf-8")
    assert raw.split("\n\n")[0] == synth.forget[0]
    privleak = json.loads((tmp_path / "privleak/holdout.json").read_text(encoding="utf-8"))
    assert privleak == [{"text": t} for t in synth.holdout]
    assert json.loads((tmp_path / "verbmem/forget.json").read_text(encoding="utf-8")) == synth.verbmem


def test_round_trip(synth: MuseSynth, written: Path):
    data = read_muse_dir(written)
    assert data["forget"] == synth.forget and data["retain"] == synth.retain and data["holdout"] == synth.holdout
    assert [asdict(it) for it in data["verbmem"]] == synth.verbmem
    for key in ("knowmem_forget", "knowmem_retain", "knowmem_forget_icl", "knowmem_retain_icl"):
        assert [asdict(it) for it in data[key]] == getattr(synth, key)
    for side in ("forget", "retain", "holdout"):
        assert data[f"privleak_{side}"] == getattr(synth, side)


def test_round_trip_without_icl(tmp_path: Path):
    s = build_muse_synth(MuseSynthConfig(source="lee", n_forget=5, n_retain=5, n_holdout=5, n_qa=5, n_icl=0))
    write_muse_files(s, tmp_path)
    data = read_muse_dir(tmp_path)
    assert data["knowmem_forget_icl"] == [] and len(data["knowmem_forget"]) == 5


def test_refuses_to_overwrite(synth: MuseSynth, tmp_path: Path):
    write_muse_files(synth, tmp_path)
    target = tmp_path / "knowmem/forget_qa.json"
    target.write_text("[]", encoding="utf-8")
    with pytest.raises(ObliviateError, match="already exist.*overwrite=True"):
        write_muse_files(synth, tmp_path)
    assert target.read_text(encoding="utf-8") == "[]"  # nothing was written
    write_muse_files(synth, tmp_path, overwrite=True)
    assert json.loads(target.read_text(encoding="utf-8")) == synth.knowmem_forget
    assert not [p for p in tmp_path.rglob("*.tmp")]


def test_missing_file_names_it_and_the_layout(written: Path, tmp_path: Path):
    _copy(written, tmp_path)
    (tmp_path / "knowmem/retain_qa_icl.json").unlink()
    with pytest.raises(ObliviateError, match=r"lacks knowmem/retain_qa_icl\.json; a MUSE data directory holds raw/"):
        read_muse_dir(tmp_path)
    with pytest.raises(ObliviateError, match="is not a directory"):
        read_muse_dir(tmp_path / "nope")


def _copy(src: Path, dst: Path) -> Path:
    for rel in LAYOUT:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        (dst / rel).write_bytes((src / rel).read_bytes())
    return dst


@pytest.mark.parametrize(
    ("rel", "content", "message"),
    [
        ("verbmem/forget.json", "[{", r"verbmem/forget\.json: not valid JSON"),
        ("verbmem/forget.json", '[{"prompt": "a"}]', r"verbmem/forget\.json: item 0 has no 'gt' field"),
        ("knowmem/forget_qa.json", '[{"question": "q", "answer": 3}]', r"forget_qa\.json: item 0 field 'answer'"),
        ("knowmem/retain_qa.json", "[]", r"retain_qa\.json: no items"),
        ("privleak/retain.json", "{oops", r"privleak/retain\.json': not valid JSON"),
        ("privleak/forget.json", '[{"text": "a"}, {"txt": "b"}]', r"forget\.json: item 1 must .* 'text' .*keys: txt"),
        ("privleak/holdout.json", '{"text": "a"}', r"holdout\.json: expected a JSON list"),
        ("raw/holdout.txt", "\n\n  \n", r"holdout\.txt' holds no text"),
    ],
)
def test_malformed_files(written: Path, tmp_path: Path, rel: str, content: str, message: str):
    root = _copy(written, tmp_path)
    (root / rel).write_text(content, encoding="utf-8")
    with pytest.raises(ObliviateError, match=message):
        read_muse_dir(root)
