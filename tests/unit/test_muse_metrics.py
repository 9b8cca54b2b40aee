"""MUSE VerbMem / KnowMem (metrics/muse.py) and batched text generation (metrics/text_generation.py).

ROUGE values are derived by hand in the comments; generation is checked token for token against per-sample HF
``generate(do_sample=False)`` (MUSE's loop) on a tiny GPT-2 and a tiny Llama built from config.
"""

from __future__ import annotations

import json

import pytest
import torch
from rouge_score import rouge_scorer

from obliviate.errors import ObliviateError
from obliviate.metrics.muse import (
    KNOWMEM_STOP_STRINGS,
    QAItem,
    VerbMemItem,
    cut_knowmem_output,
    knowmem,
    knowmem_prefix,
    knowmem_prompt,
    make_rouge_scorer,
    read_knowmem_file,
    read_verbmem_file,
    rouge_item,
    truncate_gt,
    verbmem,
)
from obliviate.metrics.text_generation import (
    check_plain_greedy,
    clean_up_tokenization_spaces,
    decode_tokens,
    fit_to_positions,
    generate_reference,
    generate_texts,
    greedy_generate,
)
from tests.conftest import build_tiny_tokenizer

# --- ROUGE (MUSE's scorer: rouge1/2/L/Lsum, no stemmer) -------------------------------------------------------------


def test_rouge_l_f_by_hand():
    s = make_rouge_scorer()
    # gt: the cat sat on the mat (6 tokens); output: the cat on a mat (5). LCS = the cat on mat = 4.
    # P = 4/5, R = 4/6, F = 2PR/(P+R) = 2*4/(5+6) = 8/11.
    r = rouge_item(s, "the cat sat on the mat", "the cat on a mat")
    assert r["rougeL"] == pytest.approx(8 / 11)
    assert r["rougeL_recall"] == pytest.approx(4 / 6)
    # reversed order: every unigram matches (rouge1 F = 1) but the LCS is one token: F = 2*1/(4+4) = 1/4
    r = rouge_item(s, "a b c d", "d c b a")
    assert (r["rouge1"], r["rougeL"]) == (pytest.approx(1.0), pytest.approx(0.25))
    # rouge_score's tokeniser lowercases and drops punctuation; no stemmer: cats != cat, running != run
    assert rouge_item(s, "The Cat!", "the cat")["rougeL"] == pytest.approx(1.0)
    assert rouge_item(s, "cats running", "cat run")["rougeL"] == 0.0
    assert rouge_item(s, "the cat", "")["rougeL"] == 0.0


def test_clean_up_tokenization_spaces_is_transformers_4_rules():
    assert clean_up_tokenization_spaces("Hi , you . do n't ! I 'm ok ?") == "Hi, you. don't! I'm ok?"
    assert clean_up_tokenization_spaces("it ' s") == "it's"


# --- KnowMem prompt and cutting -------------------------------------------------------------------------------------


def test_knowmem_prompt_exact():
    prefix = knowmem_prefix([QAItem("q1", "a1")])
    assert knowmem_prompt(prefix, "q") == "Question: q1\nAnswer: a1\n\nQuestion: q\nAnswer: "
    two = knowmem_prefix([QAItem("q1", "a1"), QAItem("q2", "a2")])
    assert two == "Question: q1\nAnswer: a1\n\nQuestion: q2\nAnswer: a2\n\n"
    assert knowmem_prompt(knowmem_prefix([]), "q") == "Question: q\nAnswer: "


@pytest.mark.parametrize("raw, cut", [
    ("a\n\nQuestion: x", "a"),
    ("a\nQuestion b", "a"),
    ("aQuestion: b", "a"),
    (" a ", " a "),  # no strip
    ("a\nb", "a\nb"),
    ("x\nQuestion: y\n\nz", "x"),  # "\n\n" first -> "x\nQuestion: y", then "\nQuestion" -> "x"
    ("Question: at the start", ""),
])
def test_knowmem_cut_order(raw, cut):
    assert KNOWMEM_STOP_STRINGS == ("\n\n", "\nQuestion", "Question:")
    assert cut_knowmem_output(raw) == cut


# --- tokenizers and tiny models --------------------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _threads():
    """One thread (overrides conftest's two): the models are tiny, and a second thread only adds contention."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tok():
    """Byte-level BPE with EOS (0) and PAD (1), no BOS: GPT-2-like."""
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def tok_bos():
    """The same BPE adding a BOS "<s>" in front of every encoding (add_special_tokens=True): Llama-like."""
    from tokenizers.processors import TemplateProcessing

    t = build_tiny_tokenizer()
    t.add_special_tokens({"bos_token": "<s>"})
    t.backend_tokenizer.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                                            special_tokens=[("<s>", t.bos_token_id)])
    return t


def tiny_gpt2(vocab: int, eos: int, n_positions: int = 256):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_layer=2, n_embd=32, n_head=2, n_positions=n_positions,
                                      bos_token_id=eos, eos_token_id=eos)).eval()


def tiny_llama(vocab: int, bos: int, eos: int, pad: int):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                                        bos_token_id=bos, eos_token_id=eos, pad_token_id=pad)).eval()


@pytest.fixture(scope="module")
def gpt2(tok):
    return tiny_gpt2(len(tok), tok.eos_token_id)


@pytest.fixture(scope="module")
def llama(tok_bos):
    return tiny_llama(len(tok_bos), tok_bos.bos_token_id, tok_bos.eos_token_id, tok_bos.pad_token_id)


PROMPT_LENS = [1, 5, 17, 40, 3, 64, 9]


def random_prompts(vocab: int, seed: int = 1) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(2, vocab - 1, (n,), generator=g).tolist() for n in PROMPT_LENS]


# --- generation == per-sample generate -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_greedy_generate_equals_per_sample_generate(which, request):
    model = request.getfixturevalue(which)
    prompts = random_prompts(model.config.vocab_size)
    ours = greedy_generate(model, prompts, 24, pad_id=1, batch_size=3)  # 3 batches, mixed lengths in each
    assert ours == generate_reference(model, prompts, 24, pad_id=1)
    assert all(len(o) == 24 for o in ours)
    # EOS stopping: take as EOS a token that row 3 emits at step 10 -> rows stop at their first occurrence of it
    eos = ours[3][10]
    stopped = greedy_generate(model, prompts, 24, pad_id=1, eos_ids=[eos], batch_size=3)
    assert stopped == generate_reference(model, prompts, 24, pad_id=1, eos_ids=[eos])
    assert all(s == o[: o.index(eos) + 1] if eos in o else s == o for s, o in zip(stopped, ours))
    assert len(stopped[3]) <= 11 and stopped[3][-1] == eos


def muse_style_generate(model, tokenizer, prompt: str, max_new_tokens: int) -> str:
    """MUSE's per-sample loop: encode with special tokens, generate greedily with the model's generation config,
    decode the new tokens (with transformers 4.x's clean-up, see decode_tokens)."""
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=True).input_ids
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
                         pad_token_id=tokenizer.pad_token_id)
    return decode_tokens(tokenizer, out[0, ids.shape[1]:].tolist())


PROMPTS = ["the cat", "who wrote this book ? the big red dog sat on a mat", "paris",
           "the capital of france is paris . the river ran slow , the small tree"]


@pytest.mark.parametrize("which", ["gpt2", "llama"])
def test_generate_texts_equals_muse_loop_with_model_eos(which, request):
    model = request.getfixturevalue(which)
    t = request.getfixturevalue("tok" if which == "gpt2" else "tok_bos")
    ids = [t(p)["input_ids"] for p in PROMPTS]
    assert (ids[0][0] == t.bos_token_id) == (which == "llama")  # special tokens added as MUSE adds them
    free = greedy_generate(model, ids, 20, pad_id=1)
    eos = free[1][6]  # make a mid-generation token the model's EOS, so rows really stop early
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = eos
    try:
        ours = generate_texts(model, t, PROMPTS, 20, batch_size=2)
        assert ours == [muse_style_generate(model, t, p, 20) for p in PROMPTS]
        assert ours != generate_texts(model, t, PROMPTS, 20, stop_at_eos=False)
    finally:
        model.generation_config.eos_token_id = old


def test_generate_texts_without_special_tokens_and_stop_strings(tok_bos, llama):
    plain = generate_texts(llama, tok_bos, PROMPTS[:2], 12, add_special_tokens=False, stop_at_eos=False)
    ids = [tok_bos(p, add_special_tokens=False)["input_ids"] for p in PROMPTS[:2]]
    ref = generate_reference(llama, ids, 12, pad_id=1)
    assert plain == [decode_tokens(tok_bos, r) for r in ref]
    stop = plain[0][2:4]  # occurs in output 0 (at index 2 or earlier): the text is cut there
    cut = generate_texts(llama, tok_bos, PROMPTS[:2], 12, add_special_tokens=False, stop_at_eos=False,
                         stop_strings=[stop])
    assert cut == [t.split(stop)[0] for t in plain] and len(cut[0]) <= 2


def test_positions_bound_error_and_left_truncation(tok):
    model = tiny_gpt2(len(tok), tok.eos_token_id, n_positions=64)
    # 40 prompt tokens + 30 new feed positions 0..68 > 63
    long = [list(range(2, 42))]
    with pytest.raises(ObliviateError, match="prompt 0 has 40 tokens.*69 positions.*only 64"):
        fit_to_positions(long, 30, 64)
    assert fit_to_positions(long, 30, 64, "left") == [list(range(7, 42))]  # 64 - 30 + 1 = 35 kept
    assert fit_to_positions([[99, *range(2, 42)]], 30, 64, "left", bos_id=99) == [[99, *range(8, 42)]]
    with pytest.raises(ObliviateError, match="truncate must be"):
        fit_to_positions(long, 30, 64, "right")
    with pytest.raises(ObliviateError, match="prompt 0"):
        generate_texts(model, tok, ["cat " * 40], 30)
    # exactly at the bound (35 + 30 - 1 = 64 positions: 0..63) decodes like generate
    p = [list(range(2, 37))]
    assert greedy_generate(model, p, 30, pad_id=1) == generate_reference(model, p, 30, pad_id=1)
    assert len(generate_texts(model, tok, ["cat " * 40], 30, truncate="left", stop_at_eos=False)) == 1


def test_logits_processors_in_generation_config_are_refused(tok):
    model = tiny_gpt2(len(tok), tok.eos_token_id)
    check_plain_greedy(model)
    model.generation_config.repetition_penalty = 1.3
    with pytest.raises(ObliviateError, match="repetition_penalty=1.3"):
        generate_texts(model, tok, ["the cat"], 4)


# --- VerbMem / KnowMem end to end ------------------------------------------------------------------------------------


def test_gt_truncated_to_128_tokens(tok, tok_bos):
    # this tiny BPE splits "cat cat ... cat " into c, at, (" c", at) x 199, " ": 401 tokens
    gt = "cat " * 200
    ids = tok(gt)["input_ids"]
    assert len(ids) == 401 and ids[2] != ids[0] and ids[3] == ids[1]
    assert truncate_gt(tok, gt) == "cat" + " cat" * 63  # 128 tokens = c, at + 63 pairs
    assert truncate_gt(tok_bos, gt) == "cat" + " cat" * 62 + " c"  # BOS counts: 127 text tokens, a pair is cut
    assert truncate_gt(tok, "the cat") == "the cat"


def muse_reference_score(pairs: list[tuple[str, str]]) -> float:
    s = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL", "rougeLsum"], use_stemmer=False)
    return 100 * sum(s.score(gt, out)["rougeL"].fmeasure for gt, out in pairs) / len(pairs)


def test_verbmem_matches_muse_loop(tok_bos, llama):
    prompts = PROMPTS[:3]
    outs = [muse_style_generate(llama, tok_bos, p, 128) for p in prompts]
    # gts: item 0 repeats part of the model's own output (a nonzero score), item 2 is long (cut to 128 tokens)
    gts = [" ".join(outs[0].split()[:5]) + " the cat", "the dog sat on a mat", "the red tree " * 80]
    items = [{"prompt": p, "gt": g} for p, g in zip(prompts, gts)]
    res = verbmem(llama, tok_bos, items, batch_size=2)
    gts_short = [decode_tokens(tok_bos, tok_bos(g)["input_ids"][:128]) for g in gts]
    assert [it["output"] for it in res.items] == outs
    assert [it["gt"] for it in res.items] == gts_short
    assert res.value == pytest.approx(muse_reference_score(list(zip(gts_short, outs))))
    assert res.items[0]["rougeL"] > 0
    assert res.value == pytest.approx(sum(res.per_item()) / 3)
    mr = res.to_metric_result(higher_is_better=False)
    assert mr.value == res.value and len(mr.per_item) == 3
    json.dumps(res.to_dict())


def test_knowmem_matches_muse_loop(tok, gpt2):
    icl = [{"question": "who wrote this book", "answer": "the cat"}, QAItem("capital of france", "paris")]
    qa = [{"question": "who sat on the mat", "answer": "the dog"}, {"question": "big red", "answer": "tree"}]
    res = knowmem(gpt2, tok, qa, icl)
    prefix = "Question: who wrote this book\nAnswer: the cat\n\nQuestion: capital of france\nAnswer: paris\n\n"
    outs = [cut_knowmem_output(muse_style_generate(gpt2, tok, prefix + f"Question: {q['question']}\nAnswer: ", 32))
            for q in qa]
    assert [it["output"] for it in res.items] == outs
    assert [it["question"] for it in res.items] == ["who sat on the mat", "big red"]
    assert res.value == pytest.approx(muse_reference_score([(q["answer"], o) for q, o in zip(qa, outs)]))


# --- readers ---------------------------------------------------------------------------------------------------------


def write(tmp_path, name, obj) -> str:
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(p)


def test_readers_read_muse_formats(tmp_path):
    p = write(tmp_path, "forget.json", [{"prompt": "a", "gt": "b", "extra": 1}])
    assert read_verbmem_file(p) == [VerbMemItem("a", "b")]
    q = write(tmp_path, "forget_qa.json", [{"question": "q", "answer": "a"}])
    assert read_knowmem_file(q) == [QAItem("q", "a")]
    assert read_knowmem_file(write(tmp_path, "icl.json", []), allow_empty=True) == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    ({"prompt": "a", "gt": "b"}, "expected a list of objects with prompt, gt, got dict"),
    ([], "no items"),
    ([{"prompt": "a", "gt": "b"}, "x"], "item 1 is str, expected an object"),
    ([{"prompt": "a"}], "item 0 has no 'gt' field"),
    ([{"prompt": "a", "gt": "b"}, {"prompt": 3, "gt": "b"}], "item 1 field 'prompt' is int, expected str"),
])
def test_verbmem_reader_errors_name_file_and_item(tmp_path, content, message):
    p = write(tmp_path, "forget.json", content)
    with pytest.raises(ObliviateError, match=message) as e:
        read_verbmem_file(p)
    assert p in str(e.value)


def test_knowmem_reader_errors(tmp_path):
    with pytest.raises(ObliviateError, match="no such file"):
        read_knowmem_file(tmp_path / "missing.json")
    p = write(tmp_path, "forget_qa.json", [{"question": "q", "answer": ["a"]}])
    with pytest.raises(ObliviateError, match=r"forget_qa.json: item 0 field 'answer' is list, expected str"):
        read_knowmem_file(p)
    with pytest.raises(ObliviateError, match="knowmem qa items: item 0 has no 'answer'"):
        knowmem(None, None, [{"question": "q"}], [])  # validated before any model call
