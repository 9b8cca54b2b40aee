"""Alternate answers (the winners of idk_dpo / altpo): the "I don't know" pool and its seeded assignment, alternates
in forget files (``alternate`` / ``sub_answer``) and their errors, token-level pairing, and sampling alternates with
the model to be unlearned."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from obliviate.data.alternates import (
    AlternatesConfig,
    alternates_file,
    cut_at_stop,
    generate_alternates,
    prompt_text,
    with_answers,
)
from obliviate.data.idk import IDK_ANSWERS, assign_idk, idk_pool, read_idk_pool
from obliviate.data.lm_alternates import alternate_texts
from obliviate.data.lm_files import lm_unlearn_data
from obliviate.errors import ObliviateError
from obliviate.families.lm import IGNORE_INDEX, TokenData

QA = [{"question": "who wrote this book", "answer": "the cat wrote it"},
      {"question": "what is the capital of france", "answer": "paris"},
      {"question": "is the river big", "answer": "the river is small and slow"}]
ALT = ["the dog wrote it", "the red city", "the river is big and fast"]
SHORT = "Q: {question} A: {answer} Other:"  # the tiny model has 128 positions: the default instruction is too long


@pytest.fixture(scope="module")
def tok(tiny_hf_lm):
    return AutoTokenizer.from_pretrained(tiny_hf_lm, local_files_only=True)


def _jsonl(path, items):
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


def _prompt(data: TokenData, i: int) -> list[int]:
    lab = data.labels[i]
    first = int((lab != IGNORE_INDEX).nonzero()[0])
    return data.input_ids[i, :first].tolist()


def _answer(data: TokenData, i: int) -> list[int]:
    lab = data.labels[i]
    return lab[lab != IGNORE_INDEX].tolist()


# ------------------------------------------------------------------------------------------------ the idk pool
def test_idk_pool_is_varied_and_the_assignment_seeded():
    assert 40 <= len(IDK_ANSWERS) <= 100 and len(set(IDK_ANSWERS)) == len(IDK_ANSWERS)
    assert all(a.strip() == a and a for a in IDK_ANSWERS)
    a, b, c = assign_idk(50, 0), assign_idk(50, 0), assign_idk(50, 1)
    assert a == b and a != c and set(a) <= set(IDK_ANSWERS) and len(set(a)) > 10


def test_idk_pool_from_a_file_and_its_errors(tmp_path):
    f = tmp_path / "idk.jsonl"
    f.write_text('"I do not know."\n\n  no clue  \n"\\"quoted\\" answer"\n')
    assert read_idk_pool(f) == ["I do not know.", "no clue", '"quoted" answer']
    assert idk_pool(f) == read_idk_pool(f) and idk_pool(True) == list(IDK_ANSWERS) and idk_pool(["x "]) == ["x"]
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(ObliviateError, match="holds no answers"):
        read_idk_pool(tmp_path / "empty.txt")
    (tmp_path / "bad.txt").write_text('ok\n""\n')
    with pytest.raises(ObliviateError, match="bad.txt' line 2"):
        read_idk_pool(tmp_path / "bad.txt")
    with pytest.raises(ObliviateError, match="does not exist"):
        read_idk_pool(tmp_path / "missing.txt")
    with pytest.raises(ObliviateError, match="idk must be"):
        idk_pool([])


# ------------------------------------------------------------------------------------------------ alternates in files
def test_alternates_from_forget_records_pair_row_for_row(tmp_path, tok):
    f = _jsonl(tmp_path / "f.jsonl", [{**q, "alternate": a} for q, a in zip(QA, ALT)])
    data = lm_unlearn_data(tok, f, max_length=64)
    alt = data.extra["alternate"]
    assert len(alt) == len(data.forget) == 3
    for i, a in enumerate(ALT):
        assert _prompt(alt, i) == _prompt(data.forget, i)  # the same prompt
        assert _answer(alt, i) == tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    # the AltPO authors' key is read too; a list of records works as a file does
    authors = lm_unlearn_data(tok, [{**q, "sub_answer": a} for q, a in zip(QA, ALT)], max_length=64)
    assert torch.equal(authors.extra["alternate"].input_ids, alt.input_ids)
    # ignored on request, and absent records mean no alternate split
    assert "alternate" not in lm_unlearn_data(tok, f, alternates=False, max_length=64).extra
    assert "alternate" not in lm_unlearn_data(tok, QA, max_length=64).extra
    # an explicit list, one per record
    listed = lm_unlearn_data(tok, QA, alternates=ALT, max_length=64)
    assert torch.equal(listed.extra["alternate"].input_ids, alt.input_ids)


def test_alternate_errors_name_the_file_and_line(tmp_path, tok):
    some = _jsonl(tmp_path / "some.jsonl", [{**QA[0], "alternate": ALT[0]}, QA[1], {**QA[2], "alternate": ALT[2]}])
    with pytest.raises(ObliviateError, match=r"some.jsonl' line 2: no 'alternate' key, but 2 of the 3"):
        lm_unlearn_data(tok, some)
    empty = _jsonl(tmp_path / "empty.jsonl", [{**QA[0], "alternate": ALT[0]}, {**QA[1], "alternate": "  "}])
    with pytest.raises(ObliviateError, match=r"empty.jsonl' line 2: the 'alternate' answer is empty"):
        lm_unlearn_data(tok, empty)
    both = _jsonl(tmp_path / "both.jsonl", [{**QA[0], "alternate": "a", "sub_answer": "b"}])
    with pytest.raises(ObliviateError, match=r"both.jsonl' line 1: has both 'alternate' and 'sub_answer'"):
        alternate_texts(both)
    typed = _jsonl(tmp_path / "typed.jsonl", [{**QA[0], "alternate": 3}])
    with pytest.raises(ObliviateError, match=r"typed.jsonl' line 1: 'alternate' must be a string"):
        alternate_texts(typed)
    with pytest.raises(ObliviateError, match="no 'alternate' answers"):
        lm_unlearn_data(tok, QA, alternates=True)
    with pytest.raises(ObliviateError, match="2 answers for 3 forget records"):
        lm_unlearn_data(tok, QA, alternates=ALT[:2])
    with pytest.raises(ObliviateError, match="forget item 1: the alternate answer is empty"):
        lm_unlearn_data(tok, QA, alternates=[ALT[0], "", ALT[2]])
    with pytest.raises(ObliviateError, match="not both"):
        lm_unlearn_data(tok, QA, alternates=ALT, idk=True)
    text = tmp_path / "t.txt"
    text.write_text("the cat sat on the mat\n")
    with pytest.raises(ObliviateError, match="pair with QA forget data"):
        lm_unlearn_data(tok, text, idk=True)


def test_idk_alternates_are_seeded_refusals_after_the_same_prompt(tok):
    data = lm_unlearn_data(tok, QA, idk=True, idk_seed=3, max_length=64)
    alt = data.extra["alternate"]
    want = assign_idk(3, 3)
    for i, a in enumerate(want):
        assert _prompt(alt, i) == _prompt(data.forget, i)
        assert _answer(alt, i) == tok(a, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    own = lm_unlearn_data(tok, QA, idk=["no idea"], max_length=64).extra["alternate"]
    assert all(tok.decode(_answer(own, i)[:-1]) == "no idea" for i in range(3))
    # the refusal replaces the records' own alternates; the chat template builds the same prompt for both
    chat = lm_unlearn_data(tok, [{**q, "alternate": a} for q, a in zip(QA, ALT)], idk=True, chat_template=True,
                           max_length=64)
    assert _prompt(chat.extra["alternate"], 0) == _prompt(chat.forget, 0)
    assert tok.decode(_answer(chat.extra["alternate"], 0)).startswith(assign_idk(1, 0)[0])


def test_with_answers_keeps_the_prompt():
    forget = TokenData.from_sequences([[1, 2, 3, 4], [5, 6, 7]], pad_id=0, prompt_lens=[2, 1])
    alt = with_answers(forget, [[9, 9, 9], [8]], pad_id=0)
    assert alt.input_ids.tolist() == [[1, 2, 9, 9, 9], [5, 8, 0, 0, 0]]
    assert alt.labels.tolist() == [[-100, -100, 9, 9, 9], [-100, 8, -100, -100, -100]]
    with pytest.raises(ObliviateError, match="1 answers for 2 forget rows"):
        with_answers(forget, [[1]], pad_id=0)


# ------------------------------------------------------------------------------------------------ generation
def test_cut_at_stop_and_prompt(tok):
    assert cut_at_stop("  the dog wrote it\nQuestion: who") == "the dog wrote it"
    assert cut_at_stop("a Q: b Question: c") == "a" and cut_at_stop(" plain ") == "plain"
    p = prompt_text(tok, "who wrote it", "the cat")
    assert p.startswith("Question: who wrote it\nAnswer: the cat\n") and p.endswith("\nAlternate Answer:")
    chat = prompt_text(tok, "who wrote it", "the cat", chat_template=True)
    assert chat.startswith("<|user|>Question: who wrote it") and chat.endswith("<|assistant|>Alternate Answer:")


def test_config_validation():
    for bad, match in [({"repeats": 0}, "repeats"), ({"temperature": 0.0}, "temperature"),
                       ({"max_new_tokens": 0}, "max_new_tokens"), ({"top_p": 1.5}, "top_p"),
                       ({"instruction": "no fields"}, "must contain"), ({"instruction": "{x} {question}"}, "instruction")]:
        with pytest.raises(ObliviateError, match=match):
            AlternatesConfig(**bad)


def test_generate_alternates_is_seeded_and_leaves_the_rng_alone(tiny_hf_lm, tok):
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_lm)
    cfg = AlternatesConfig(repeats=3, max_new_tokens=8, instruction=SHORT)
    torch.manual_seed(7)
    expected = torch.rand(2)
    torch.manual_seed(7)
    a, dropped = generate_alternates(model, tok, QA[:2], cfg)
    assert torch.equal(torch.rand(2), expected)  # the caller's random state is restored
    b, _ = generate_alternates(model, tok, QA[:2], cfg)
    c, _ = generate_alternates(model, tok, QA[:2], AlternatesConfig(repeats=3, max_new_tokens=8, instruction=SHORT,
                                                                     seed=1))
    assert a == b and a != c
    assert len(a) + dropped == 6 and [r["question"] for r in a[:3]] == [QA[0]["question"]] * 3
    assert all(set(r) == {"question", "answer", "alternate"} and r["alternate"] == r["alternate"].strip() and
               r["alternate"] for r in a)


def test_alternates_file_writes_jsonl_once(tiny_hf_lm, tmp_path, tok):
    f = _jsonl(tmp_path / "f.jsonl", QA)
    out = tmp_path / "alt.jsonl"
    cfg = AlternatesConfig(repeats=2, max_new_tokens=6, instruction=SHORT)
    res = alternates_file(tiny_hf_lm, f, out, cfg, device="cpu")
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert res["questions"] == 3 and res["records"] == len(rows) == 6 - res["dropped_empty"]
    assert lm_unlearn_data(tok, out, max_length=64).extra["alternate"].input_ids.shape[0] == len(rows)  # trainable
    with pytest.raises(ObliviateError, match="already exists; pass --overwrite"):
        alternates_file(tiny_hf_lm, f, out, cfg, device="cpu")
    with pytest.raises(ObliviateError, match="is the forget file itself"):
        alternates_file(tiny_hf_lm, f, f, cfg, device="cpu", overwrite=True)
    (tmp_path / "t.txt").write_text("text\n")
    with pytest.raises(ObliviateError, match="QA pairs"):
        alternates_file(tiny_hf_lm, tmp_path / "t.txt", tmp_path / "o.jsonl", cfg, device="cpu")
    with pytest.raises(ObliviateError, match="128 positions"):  # the default instruction does not fit
        alternates_file(tiny_hf_lm, f, tmp_path / "o.jsonl", AlternatesConfig(repeats=1), device="cpu")
