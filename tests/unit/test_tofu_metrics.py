"""TOFU metrics (metrics/tofu.py): expected values derived by hand in the comments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from obliviate.errors import ObliviateError
from obliviate.metrics import tofu, tofu_eval
from obliviate.metrics.tofu import (
    MODEL_UTILITY_KEYS,
    aggregate_truth_ratio,
    answer_losses_from_logits,
    clean_generation,
    exact_memorization,
    extraction_strength,
    forget_quality,
    masked_predictions,
    model_utility,
    probability_w_options,
    rouge_scores,
    truth_ratios,
)

LN2, LN3, LN4, LN8 = math.log(2), math.log(3), math.log(4), math.log(8)


# --- avg loss masking ----------------------------------------------------------------------------------------------


def test_avg_loss_scores_answer_and_eos_not_prompt():
    # row 0: prompt = tokens 0-1 (labels -100), answer token 1 at position 2, EOS (id 2) at position 3.
    # logits[t] predicts labels[t+1]: t=0 -> -100 (not scored, made extreme to show it is ignored),
    # t=1 -> token 1 with logits [0, ln2, 0]: softmax [1/4, 1/2, 1/4], CE = ln 2;
    # t=2 -> token 2 with logits [0, 0, 0]: CE = ln 3; t=3 predicts nothing.
    # avg = (ln2 + ln3) / 2 = ln(6)/2, prob = 6^(-1/2). Row 1 has no scored target: NaN (as OU's 0/0).
    logits = torch.zeros(2, 4, 3)
    logits[0, 0] = torch.tensor([100.0, -100.0, -100.0])
    logits[0, 1] = torch.tensor([0.0, LN2, 0.0])
    logits[0, 3] = torch.tensor([-50.0, 50.0, 0.0])
    labels = torch.tensor([[-100, -100, 1, 2], [-100, -100, -100, -100]])
    avg = answer_losses_from_logits(logits, labels)
    assert avg[0].item() == pytest.approx(math.log(6) / 2, rel=1e-6)
    assert math.exp(-avg[0].item()) == pytest.approx(6 ** -0.5, rel=1e-6)
    assert math.isnan(avg[1].item())


# --- truth ratio ---------------------------------------------------------------------------------------------------

# item 1: correct loss ln2 (p = 1/2), perturbed losses ln2, ln8 (p = 1/2, 1/8)
# item 2: correct loss ln4 (p = 1/4), perturbed losses 0, ln4 (p = 1, 1/4)
CORRECT = [LN2, LN4]
PERTURBED = [[LN2, LN8], [0.0, LN4]]


def test_truth_ratio_geometric_is_open_unlearning_and_tofu_aggregate_eval_stat():
    # geometric: mean perturbed loss ln4 -> p 1/4, tr = (1/4)/(1/2) = 0.5; item 2: mean ln2 -> 1/2, tr = (1/2)/(1/4) = 2
    tr = truth_ratios(CORRECT, PERTURBED)
    np.testing.assert_allclose(tr, [0.5, 2.0], rtol=1e-9)
    # forget: mean(min(tr, 1/tr)) = mean(0.5, 0.5) = 0.5; others: mean(max(0, 1 - tr)) = mean(0.5, 0) = 0.25
    assert aggregate_truth_ratio(tr, "closer_to_1_better") == pytest.approx(0.5, rel=1e-9)
    assert aggregate_truth_ratio(tr, "true_better") == pytest.approx(0.25, rel=1e-9)
    # TOFU aggregate_eval_stat.py stores x = exp(mean pert - para) = 1/tr: 2 and 0.5; forget mean(min(x, 1/x)) = 0.5,
    # others mean(max(0, 1 - 1/x)) = mean(0.5, 0) = 0.25: the same numbers
    x = np.exp(np.mean(PERTURBED, 1) - np.array(CORRECT))
    np.testing.assert_allclose(x, 1 / tr, rtol=1e-9)
    assert np.mean(np.minimum(x, 1 / x)) == pytest.approx(0.5)
    assert np.mean(np.maximum(0, 1 - 1 / x)) == pytest.approx(0.25)


def test_truth_ratio_arithmetic_is_tofu_utils_and_differs():
    # arithmetic: item 1 mean prob (1/2 + 1/8)/2 = 5/16, tr = (5/16)/(1/2) = 5/8; item 2 (1 + 1/4)/2 = 5/8, tr = 5/2
    tr = truth_ratios(CORRECT, PERTURBED, "arithmetic")
    np.testing.assert_allclose(tr, [0.625, 2.5], rtol=1e-12)
    # forget: mean(min(5/8, 8/5), min(5/2, 2/5)) = (0.625 + 0.4)/2 = 0.5125; others: mean(0.375, 0) = 0.1875
    assert aggregate_truth_ratio(tr, "closer_to_1_better", "arithmetic") == pytest.approx(0.5125, rel=1e-12)
    assert aggregate_truth_ratio(tr, "true_better", "arithmetic") == pytest.approx(0.1875, rel=1e-12)
    # the two versions give different numbers on the same losses (0.5 vs 0.5125, 0.25 vs 0.1875)
    assert aggregate_truth_ratio(tr, "true_better", "arithmetic") != pytest.approx(
        aggregate_truth_ratio(truth_ratios(CORRECT, PERTURBED), "true_better"))


def test_truth_ratio_errors():
    with pytest.raises(ObliviateError, match="geometric"):
        truth_ratios(CORRECT, PERTURBED, "harmonic")
    with pytest.raises(ObliviateError, match="perturbed losses"):
        truth_ratios(CORRECT, [[1.0], [2.0], [3.0]])
    with pytest.raises(ObliviateError, match="aggregator"):
        aggregate_truth_ratio([1.0], "closest")
    assert tofu.split_aggregator("forget") == "closer_to_1_better"
    assert tofu.split_aggregator("world_facts") == "true_better"


# --- probabilities, forget quality, model utility -----------------------------------------------------------------


def test_probability_w_options():
    # item 1: 0.5 / (0.5 + 0.25 + 0.25) = 0.5; item 2: 0.2 / (0.2 + 0.6 + 0.2) = 0.2; mean 0.35
    p = probability_w_options([0.5, 0.2], [[0.25, 0.25], [0.6, 0.2]])
    np.testing.assert_allclose(p, [0.5, 0.2], rtol=1e-9)
    assert p.mean() == pytest.approx(0.35, rel=1e-9)
    np.testing.assert_allclose(probability_w_options([0.5], [[0.5]], eps=0.0), [0.5], rtol=0, atol=0)


def test_forget_quality_exact_ks_pvalues():
    # fully separated samples of sizes 3 and 3: D = 1, and under H0 all C(6,3) = 20 orderings are equally likely;
    # D = 1 only when one sample is entirely below the other: 2 orderings, so the exact two-sided p = 2/20 = 0.1
    fq = forget_quality([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert fq.forget_quality_pvalue == pytest.approx(0.1, rel=1e-9)
    assert fq.forget_quality_log10 == pytest.approx(-1.0, abs=1e-9)
    assert fq.ks_statistic == 1.0 and (fq.n_model, fq.n_reference) == (3, 3)
    # interleaved samples: D = 1/3 is the smallest D any ordering of 3 + 3 distinct values can have, so P(D >= 1/3) = 1
    fq = forget_quality([1.0, 3.0, 5.0], [2.0, 4.0, 6.0])
    assert fq.ks_statistic == pytest.approx(1 / 3) and fq.forget_quality_pvalue == pytest.approx(1.0)
    assert fq.forget_quality_log10 == pytest.approx(0.0, abs=1e-12)
    # rank based: tr and 1/tr give the same p-value
    assert forget_quality([1.0, 1 / 2, 1 / 3], [1 / 4, 1 / 5, 1 / 6]).forget_quality_pvalue == pytest.approx(0.1)
    with pytest.raises(ObliviateError, match="NaN"):
        forget_quality([1.0, float("nan")], [1.0])
    with pytest.raises(ObliviateError, match="none"):
        forget_quality([], [1.0])


def test_model_utility_is_the_harmonic_mean_of_nine():
    # 9 / (3 * 1 + 3 * 2 + 3 * 4) = 9 / 21 = 3/7
    vals = dict(zip(MODEL_UTILITY_KEYS, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25]))
    assert model_utility({**vals, "forget_Q_A_Prob": 0.9}) == pytest.approx(3 / 7, rel=1e-12)
    assert model_utility({**vals, "ra_Q_A_ROUGE": 0.0}) == 0.0  # any zero gives 0, as hmean
    with pytest.raises(ObliviateError, match="missing: retain_Q_A_ROUGE, wf_Truth_Ratio"):
        model_utility({k: v for k, v in vals.items() if k not in ("retain_Q_A_ROUGE", "wf_Truth_Ratio")})
    with pytest.raises(ObliviateError, match="wf_Q_A_ROUGE=-0.1"):
        model_utility({**vals, "wf_Q_A_ROUGE": -0.1})
    with pytest.raises(ObliviateError, match="NaN"):
        model_utility({**vals, "ra_Truth_Ratio": float("nan")})


# --- extraction strength / exact memorization ---------------------------------------------------------------------


def test_extraction_strength_and_exact_memorization():
    t = torch.tensor
    # matches F F T T: the suffix from k = 2 matches, n = 4: ES = 1 - 2/4 = 0.5; EM = 2/4
    assert extraction_strength(t([5, 1, 2, 3]), t([9, 9, 2, 3])) == 0.5
    assert exact_memorization(t([5, 1, 2, 3]), t([9, 9, 2, 3])) == 0.5
    # everything matches: k = 0, ES = 1; a middle match does not count (F T F T -> k = 3, ES = 1/4)
    assert extraction_strength(t([1, 2, 3]), t([1, 2, 3])) == 1.0
    assert extraction_strength(t([0, 2, 0, 4]), t([1, 2, 3, 4])) == 0.25
    # last token wrong: OU's loop ends with k = n - 1 -> ES = 1/4 (reference), or k = n -> 0 ("zero"); EM = 3/4
    assert extraction_strength(t([1, 2, 3, 4]), t([1, 2, 3, 9])) == 0.25
    assert extraction_strength(t([1, 2, 3, 4]), t([1, 2, 3, 9]), no_match="zero") == 0.0
    assert exact_memorization(t([1, 2, 3, 4]), t([1, 2, 3, 9])) == 0.75
    assert extraction_strength(t([]), t([])) == 0.0 and exact_memorization(t([]), t([])) is None


def test_masked_predictions_drop_the_last_scored_token():
    # labels: prompt at 0-1, answer 2 3 at positions 2-3, EOS 4 at position 4. Targets predicted by logits[1..3]:
    # 2, 3, 4; OU drops the last (EOS), leaving targets 2, 3 predicted by logits[1], logits[2]
    V = 6
    logits = torch.zeros(1, 5, V)
    for t_, tok in enumerate([0, 2, 5, 4, 1]):  # argmax at each position
        logits[0, t_, tok] = 1.0
    labels = torch.tensor([[-100, -100, 2, 3, 4]])
    [(preds, labs)] = masked_predictions(logits, labels)
    assert preds.tolist() == [2, 5] and labs.tolist() == [2, 3]
    # matches T F: no matching suffix -> ES = 1/2 (reference); EM = 1/2
    assert extraction_strength(preds, labs) == 0.5 and exact_memorization(preds, labs) == 0.5


# --- ROUGE -----------------------------------------------------------------------------------------------------------


def test_rouge_l_recall_by_hand():
    # gt: the cat sat on the mat (6 tokens). gen 1: the cat on a mat -> LCS the, cat, on, mat = 4: recall 4/6.
    # gen 2: mat on the cat -> LCS 2 ("the cat" or "on the"): recall 2/6, precision 2/4, F1 = 2PR/(P+R) = 0.4;
    # rouge1 recall counts the unigram overlap (the, cat, on, mat) = 4/6 regardless of order
    s1, s2 = rouge_scores(["the cat sat on the mat"] * 2, ["the cat on a mat", "mat on the cat"])
    assert s1["rougeL_recall"] == pytest.approx(4 / 6)
    assert s2["rougeL_recall"] == pytest.approx(2 / 6) and s2["rougeL_f1"] == pytest.approx(0.4)
    assert s2["rouge1_recall"] == pytest.approx(4 / 6)
    # the stemmer: "cats" and "cat" are one token
    assert rouge_scores(["cats sat"], ["cat sat"])[0]["rougeL_recall"] == 1.0


def test_generation_post_processing():
    assert clean_generation("  Paris.<|endoftext|> more", "<|endoftext|>") == "Paris."
    # EOS text first, then each stop word in order, then strip
    assert clean_generation(" Paris\n\nQuestion: next", "</s>", ["\n\n", "Question:"]) == "Paris"
    assert clean_generation("no stop here ", "", ["", "zzz"]) == "no stop here"


# --- the saved evaluation ----------------------------------------------------------------------------------------


def test_saved_evaluation_round_trip_and_refusals(tmp_path):
    path = tmp_path / "retain_eval.json"
    ids = {"benchmark": "tofu_like", "benchmark_version": "1.0", "forget_split": "forget05", "tokenizer_hash": "abc"}
    tofu_eval.save_tofu_eval(path, [0.5, 2.0, 1.25], tokenizer_name="tiny-bpe", metrics={"model_utility": 0.6}, **ids)
    np.testing.assert_array_equal(tofu_eval.load_reference_truth_ratios(path, **ids), [0.5, 2.0, 1.25])
    with pytest.raises(ObliviateError, match=r"benchmark version '1.0' \(expected '1.1'\)"):
        tofu_eval.load_reference_truth_ratios(path, **{**ids, "benchmark_version": "1.1"})
    with pytest.raises(ObliviateError, match=r"tokenizer 'abc' \(expected 'xyz'\).*tiny-bpe"):
        tofu_eval.load_reference_truth_ratios(path, **{**ids, "tokenizer_hash": "xyz"})
    with pytest.raises(ObliviateError, match="forget split"):
        tofu_eval.load_reference_truth_ratios(path, **{**ids, "forget_split": "forget10"})
    with pytest.raises(ObliviateError, match="truth-ratio version"):
        tofu_eval.load_reference_truth_ratios(path, **ids, truth_ratio_version="arithmetic")
    other = tmp_path / "other.json"
    other.write_text('{"forget_truth_ratio": {"value_by_index": {}}}')
    with pytest.raises(ObliviateError, match="not a saved TOFU evaluation"):
        tofu_eval.load_reference_truth_ratios(other, **ids)


# --- model level, on a tiny HF GPT-2 ------------------------------------------------------------------------------


def _items(n: int, paraphrase: bool) -> list[dict]:
    words = ["red", "blue", "green", "paris", "river", "tree"]
    out = []
    for i in range(n):
        it = {"question": f"who wrote the {words[i]} book", "answer": f"the {words[i + 1]} cat",
              "perturbed_answer": [f"a {words[i + 2]} dog", f"the {words[(i + 3) % 6]} mat"]}
        if paraphrase:
            it["paraphrased_answer"] = f"a {words[i + 1]} cat"
        out.append(it)
    return out


def test_model_level_scorers_end_to_end(tiny_hf_lm, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from obliviate.losses.nll import sequence_nll
    from obliviate.metrics.text_generation import decode_tokens, generate_reference

    tok = AutoTokenizer.from_pretrained(tiny_hf_lm, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(tiny_hf_lm).train()
    splits = {name: tofu_eval.tofu_split_data(_items(3, name in ("forget", "retain")), tok, name)
              for name in tofu.SPLITS}
    assert splits["real_authors"].correct is splits["real_authors"].answer  # the original answer is "correct" there
    # qa_rows: the prompt is not scored, the answer is, and the last scored label is the EOS
    ans = splits["forget"].answer
    first = int((ans.labels[0] != -100).nonzero()[0])
    assert ans.labels[0, first:int(ans.attention_mask[0].sum())].tolist()[-1] == tok.eos_token_id

    scores = {n: tofu_eval.score_tofu_split(model, tok, s, max_new_tokens=5) for n, s in splits.items()}
    assert model.training  # the train/eval mode is restored
    f = scores["forget"]
    assert f.perturbed_loss.shape == (3, 2) and f.answer.extraction_strength.shape == (3,)
    with torch.no_grad():  # the avg losses are the per-row mean NLL of the scored targets
        ref = sequence_nll(model.eval()(input_ids=ans.input_ids).logits, ans.labels)
    model.train()
    np.testing.assert_allclose(f.answer.avg_loss, ref.numpy(), rtol=1e-5)
    # generation: what HF generate (greedy, stop at EOS) continues each prompt with, decoded and post-processed.
    # One prompt per batch here: a random tiny model's logits are near-ties, so the few-ulp differences that left
    # padding makes could flip an argmax (the batched decoder itself is tested with text_generation)
    prompts = [ans.input_ids[i, : int((ans.labels[i] != -100).nonzero()[0])].tolist() for i in range(3)]
    hf = generate_reference(model.eval(), prompts, 5, tok.eos_token_id, (tok.eos_token_id,))  # eval: no dropout
    ours = tofu_eval.rouge_eval(model, tok, ans, max_new_tokens=5, batch_size=1)
    assert [r["generation"] for r in ours] == [decode_tokens(tok, h).strip() for h in hf]
    assert [r["ground_truth"] for r in f.rouge] == ["the blue cat", "the green cat", "the paris cat"]
    with pytest.raises(ObliviateError, match="positions"):  # 200 new tokens do not fit GPT-2's 128 positions
        tofu_eval.rouge_eval(model, tok, ans)

    # the retain model's saved evaluation (here: the same model) as the forget-quality reference
    fp = tofu_eval.tokenizer_fingerprint(tok)
    ids = {"benchmark": "tofu_like", "benchmark_version": "1.0", "forget_split": "forget01", "tokenizer_hash": fp}
    tofu_eval.save_tofu_eval(tmp_path / "retain.json", f.truth_ratios(), **ids)
    ref_tr = tofu_eval.load_reference_truth_ratios(tmp_path / "retain.json", **ids)
    summary = tofu_eval.tofu_summary(scores, reference_truth_ratios=ref_tr)
    assert summary["forget_quality_pvalue"] == pytest.approx(1.0)  # identical samples
    assert summary["forget_quality_log10"] == pytest.approx(0.0, abs=1e-12)
    assert 0.0 <= summary["model_utility"] <= 1.0
    assert summary["model_utility"] == pytest.approx(model_utility(summary))
    assert set(MODEL_UTILITY_KEYS) <= set(summary) and "extraction_strength" in summary
    arith = tofu_eval.tofu_summary(scores, version="arithmetic")
    assert arith["forget_truth_ratio"] == pytest.approx(
        aggregate_truth_ratio(f.truth_ratios("arithmetic"), "closer_to_1_better", "arithmetic"))
    # a different chat template is a different tokenizer for the saved evaluation
    tok.chat_template = "{{ messages }}"
    assert tofu_eval.tokenizer_fingerprint(tok) != fp
