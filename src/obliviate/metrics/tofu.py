"""TOFU metrics (Maini et al., 2024, *TOFU: A Task of Fictitious Unlearning for LLMs*, arXiv 2401.06121), computed
as open-unlearning (OU, locuslab/open-unlearning @ d3d7cf9) computes them; the original locuslab/tofu (@ bdc209e)
variants are options. Pure functions on per-item numbers first, then the model-level scorers that produce them.

Per item, ``avg_loss`` = summed next-token CE over the scored targets (labels != -100: answer + EOS; the prompt is
not scored) / their count, and p̂ = exp(-avg_loss), the per-token geometric-mean probability (both references).

Truth ratio, in OU's orientation tr = p̂(perturbed) / p̂(correct) (lower = the model prefers the truth):
* ``"geometric"`` (default; OU ``truth_ratio`` = TOFU ``aggregate_eval_stat.py``): the K perturbed answers are
  combined by averaging their avg_losses, tr = exp(-mean_k L_pert) / (exp(-L_correct) + 1e-10). TOFU stores
  x = exp(mean_k L_pert - L_correct) = p̂(correct) / p̂_geo(perturbed), so tr = (1/x) * p / (p + 1e-10) with
  p = p̂(correct): tr = 1/x up to that factor, which departs from 1 by over 1 % only when p̂(correct) < 1e-8
  (avg loss > ~18, e.g. after gradient ascent collapses a model). TOFU's forget stat mean(min(x, 1/x)) is then OU's
  mean(min(tr, 1/(tr + 1e-10))), and its mean(max(0, 1 - 1/x)) is OU's mean(max(0, 1 - tr)).
* ``"arithmetic"`` (TOFU ``utils.py::get_model_utility``, the one ``evaluate_util.py`` imports):
  tr = mean_k exp(-L_pert) / exp(-L_correct) (an arithmetic mean of probabilities, no epsilon); the
  aggregators are the same without epsilon. Its numbers differ from the geometric ones (AM >= GM).
Aggregators: the forget split gets ``closer_to_1_better`` mean(min(tr, 1/tr)); retain, real authors and world
facts get ``true_better`` mean(max(0, 1 - tr)). "Correct" is the paraphrased answer on forget and retain, the
original answer on real authors and world facts (TOFU eval_everything.yaml ``base_answer_key``; OU
retain_Truth_Ratio pre-computes retain_Q_A_PARA_Prob).

Forget quality = scipy ``ks_2samp(tr_unlearned, tr_retain_model).pvalue`` with scipy's defaults (KS is rank based,
so tr and 1/tr give the same p-value); the retain model's per-item forget-set truth ratios are read from its saved
evaluation (:func:`save_tofu_eval`, :func:`load_reference_truth_ratios`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from torch import Tensor

from obliviate.errors import ObliviateError
from obliviate.losses.nll import shift_labels, token_nll
from obliviate.metrics.base import register_metric
from obliviate.metrics.text_generation import (
    cut_at_stop_strings,
    decode_tokens,
)
from obliviate.papers import TOFU

EPS = 1e-10  # OU's epsilon in the truth ratio, its forget aggregator and probability_w_options
SPLITS = ("forget", "retain", "real_authors", "world_facts")
OU_PREFIX = {"forget": "forget", "retain": "retain", "real_authors": "ra", "world_facts": "wf"}
CORRECT_KEY = {"forget": "paraphrased_answer", "retain": "paraphrased_answer", "real_authors": "answer",
               "world_facts": "answer"}
MODEL_UTILITY_KEYS = ("retain_Q_A_Prob", "retain_Q_A_ROUGE", "retain_Truth_Ratio",
                      "ra_Q_A_Prob_normalised", "ra_Q_A_ROUGE", "ra_Truth_Ratio",
                      "wf_Q_A_Prob_normalised", "wf_Q_A_ROUGE", "wf_Truth_Ratio")
TruthRatioVersion = Literal["geometric", "arithmetic"]
Aggregator = Literal["closer_to_1_better", "true_better"]


def _check_version(version: str) -> None:
    if version not in ("geometric", "arithmetic"):
        raise ObliviateError(f"truth-ratio version must be 'geometric' (open-unlearning / TOFU aggregate_eval_stat) "
                             f"or 'arithmetic' (TOFU utils.py), got {version!r}")


# --- per-item primitives -----------------------------------------------------------------------------------------


def answer_losses_from_logits(logits: Tensor, labels: Tensor) -> Tensor:
    """avg_loss per row: summed CE over the scored targets / their count. logits (B, T, V), labels (B, T) -> (B,)
    float32; NaN for a row with no scored target (OU divides 0 by 0 too)."""
    targets, mask = shift_labels(labels)
    nll = token_nll(logits[:, :-1], targets) * mask  # (B, T-1)
    return nll.sum(1) / mask.sum(1).float()


def truth_ratios(correct_loss: Sequence[float] | np.ndarray, perturbed_loss: Sequence[Sequence[float]] | np.ndarray,
                 version: TruthRatioVersion = "geometric") -> np.ndarray:
    """Per-item tr = p̂(perturbed) / p̂(correct) from avg losses: correct (N,), perturbed (N, K) -> (N,).
    ``"geometric"`` (default, OU): exp(-mean_k L_pert) / (exp(-L_correct) + 1e-10); ``"arithmetic"`` (TOFU
    utils.py): mean_k exp(-L_pert) / exp(-L_correct)."""
    _check_version(version)
    c = np.asarray(correct_loss, dtype=np.float64)
    w = np.asarray(perturbed_loss, dtype=np.float64)
    if w.ndim != 2 or w.shape[0] != c.shape[0] or w.shape[1] == 0:
        raise ObliviateError(f"perturbed losses must be (N, K>=1) for N = {c.shape[0]} items, got shape {w.shape}")
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
        if version == "geometric":
            return np.exp(-w.mean(1)) / (np.exp(-c) + EPS)
        return np.exp(-w).mean(1) / np.exp(-c)


def aggregate_truth_ratio(tr: Sequence[float] | np.ndarray, aggregator: Aggregator,
                          version: TruthRatioVersion = "geometric") -> float:
    """``closer_to_1_better`` (forget): mean(min(tr, 1/(tr + eps))); ``true_better`` (retain, real authors, world
    facts): mean(max(0, 1 - tr)). eps = 1e-10 for ``"geometric"`` (OU), 0 for ``"arithmetic"`` (TOFU utils.py)."""
    _check_version(version)
    t = np.asarray(tr, dtype=np.float64)
    with np.errstate(divide="ignore"):
        if aggregator == "closer_to_1_better":
            return float(np.mean(np.minimum(t, 1.0 / (t + (EPS if version == "geometric" else 0.0)))))
        if aggregator == "true_better":
            return float(np.mean(np.maximum(0.0, 1.0 - t)))
    raise ObliviateError(f"truth-ratio aggregator must be 'closer_to_1_better' or 'true_better', got {aggregator!r}")


def split_aggregator(split: str) -> Aggregator:
    """The aggregator TOFU and OU use for a split: forget -> closer_to_1_better, the others -> true_better."""
    if split not in SPLITS:
        raise ObliviateError(f"unknown TOFU split {split!r} (valid: {', '.join(SPLITS)})")
    return "closer_to_1_better" if split == "forget" else "true_better"


def probability_w_options(correct_prob: Sequence[float] | np.ndarray,
                          wrong_probs: Sequence[Sequence[float]] | np.ndarray, eps: float = EPS) -> np.ndarray:
    """Per-item normalised probability p̂(a) / (p̂(a) + Σ_k p̂(pert_k) + eps): correct (N,), wrong (N, K) -> (N,).
    eps = 1e-10 as OU; TOFU's aggregate_eval_stat/utils.py use none (pass eps=0). Its mean is the real-authors /
    world-facts "Prob"."""
    c = np.asarray(correct_prob, dtype=np.float64)
    w = np.asarray(wrong_probs, dtype=np.float64)
    return c / (c + w.sum(1) + eps)


def masked_predictions(logits: Tensor, labels: Tensor) -> list[tuple[Tensor, Tensor]]:
    """(greedy argmax, label) of each row's scored targets, **without the last one** (the EOS), as OU's
    tokenwise_vocab_logprobs masks for extraction strength and exact memorization. logits (B, T, V), labels (B, T)
    -> B pairs of (n,) tensors. Position 0 is never a target here (nothing predicts it)."""
    preds = logits[:, :-1].argmax(-1)  # (B, T-1)
    targets, mask = shift_labels(labels)
    out = []
    for b in range(labels.shape[0]):
        pos = mask[b].nonzero().flatten()[:-1]
        out.append((preds[b, pos].cpu(), targets[b, pos].cpu()))
    return out


def extraction_strength(preds: Tensor, labels: Tensor,
                        no_match: Literal["reference", "zero"] = "reference") -> float:
    """ES = 1 - k/n, k = the first index from which the argmax predictions equal the labels to the end (n = the
    number of scored tokens). When even the last token differs there is no such k < n: OU's loop then leaves
    k = n - 1, so ES = 1/n (``no_match="reference"``, the default); ``"zero"`` takes k = n (ES = 0, the empty
    suffix). No scored token at all: 0 (as OU)."""
    n = int(labels.numel())
    if n == 0:
        return 0.0
    match = (preds == labels).flip(0).long()  # reversed, so the trailing run of matches comes first
    run = int(match.cumprod(0).sum())  # length of the run of matches at the end
    if run == 0:
        k = n - 1 if no_match == "reference" else n
    else:
        k = n - run
    return 1.0 - k / n


def exact_memorization(preds: Tensor, labels: Tensor) -> float | None:
    """EM = fraction of scored tokens whose argmax prediction equals the label; None with no scored token (OU)."""
    n = int(labels.numel())
    return None if n == 0 else float((preds == labels).sum()) / n


# --- ROUGE ---------------------------------------------------------------------------------------------------------


def rouge_scores(ground_truths: Sequence[str], generations: Sequence[str]) -> list[dict[str, float]]:
    """``RougeScorer(["rouge1", "rougeL"], use_stemmer=True).score(gt, gen)`` per pair (OU and TOFU): rouge1 and
    rougeL recall (TOFU reports rougeL_recall) and rougeL F1 (MUSE-style configs)."""
    from rouge_score import rouge_scorer

    if len(ground_truths) != len(generations):
        raise ObliviateError(f"{len(ground_truths)} ground truths but {len(generations)} generations")
    scorer = rouge_scorer.RougeScorer(["rouge1", "rougeL"], use_stemmer=True)
    out = []
    for gt, gen in zip(ground_truths, generations):
        s = scorer.score(gt, gen)
        out.append({"rouge1_recall": s["rouge1"].recall, "rougeL_recall": s["rougeL"].recall,
                    "rougeL_f1": s["rougeL"].fmeasure})
    return out


def ground_truth_text(tokenizer: Any, prompt_ids: Sequence[int], label_ids: Sequence[int]) -> str:
    """OU's reference text: the scored label tokens decoded, with the decoded prompt text removed, stripped.
    Decoding skips special tokens (so the EOS label goes) and applies transformers 4.x's tokenization-space
    clean-up, as OU ran (``text_generation.decode_tokens``)."""
    return decode_tokens(tokenizer, label_ids).replace(decode_tokens(tokenizer, prompt_ids), "").strip()


def clean_generation(text: str, eos_text: str, stopwords: Sequence[str] = ()) -> str:
    """OU's generation post-processing: cut at the EOS text, then at each stop word in order, then strip."""
    return cut_at_stop_strings(text, [w for w in (eos_text, *stopwords) if w]).strip()


# --- forget quality and model utility ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ForgetQuality:
    """The KS test of the unlearned model's forget-set truth ratios against the retain model's.
    ``forget_quality_pvalue`` is THE forget quality (TOFU/OU); ``forget_quality_log10`` is log10 of it (base 10,
    -inf when the p-value underflows to 0), for plots and tables."""

    forget_quality_pvalue: float
    forget_quality_log10: float
    ks_statistic: float
    n_model: int
    n_reference: int


def _finite_sample(x: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64).ravel()
    if a.size == 0:
        raise ObliviateError(f"forget quality needs truth ratios of {what}; got none")
    if np.isnan(a).any():
        raise ObliviateError(f"{int(np.isnan(a).sum())} of the {a.size} truth ratios of {what} are NaN "
                             "(an item with no scored answer token?)")
    return a


@register_metric("tofu_forget_quality", higher_is_better=True, needs_model=False, paper=TOFU,
                 description="KS-test p-value, forget-set truth ratios: unlearned vs retain model")
def forget_quality(model_tr: Sequence[float] | np.ndarray, reference_tr: Sequence[float] | np.ndarray) -> ForgetQuality:
    """``scipy.stats.ks_2samp(model_tr, reference_tr)`` with scipy's defaults (exact for small samples)."""
    from scipy.stats import ks_2samp

    a, b = _finite_sample(model_tr, "the unlearned model"), _finite_sample(reference_tr, "the retain model")
    res = ks_2samp(a, b)
    p = float(res.pvalue)
    return ForgetQuality(p, math.log10(p) if p > 0 else -math.inf, float(res.statistic), a.size, b.size)


@register_metric("tofu_model_utility", higher_is_better=True, needs_model=False, paper=TOFU,
                 description="harmonic mean of retain / real-authors / world-facts Prob, ROUGE-L recall, truth ratio")
def model_utility(values: Mapping[str, float]) -> float:
    """``scipy.stats.hmean`` of the 9 entries :data:`MODEL_UTILITY_KEYS` (OU names; other keys are ignored).
    A zero entry gives 0 (as hmean). A negative or NaN entry is an error: none of the 9 can be one, and hmean's
    answer for them depends on the scipy version (ValueError before 1.11-ish, NaN with a warning now)."""
    from scipy.stats import hmean

    missing = [k for k in MODEL_UTILITY_KEYS if k not in values or values[k] is None]
    if missing:
        raise ObliviateError(f"model utility needs {len(MODEL_UTILITY_KEYS)} values; missing: {', '.join(missing)}")
    bad = [f"{k}={values[k]!r}" for k in MODEL_UTILITY_KEYS if not float(values[k]) >= 0]
    if bad:
        raise ObliviateError(f"model utility entries must be >= 0 and not NaN: {', '.join(bad)}")
    x = np.array([float(values[k]) for k in MODEL_UTILITY_KEYS])
    return 0.0 if (x == 0).any() else float(hmean(x))
