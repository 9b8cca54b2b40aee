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

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import TokenData, batch_of
from obliviate.losses.nll import IGNORE_INDEX, shift_labels, token_nll
from obliviate.metrics.base import register_metric
from obliviate.metrics.generation import max_positions
from obliviate.metrics.text_generation import (
    Truncate,
    check_plain_greedy,
    cut_at_stop_strings,
    decode_tokens,
    fit_to_positions,
    greedy_generate,
    model_eos_ids,
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
EVAL_FORMAT, EVAL_FORMAT_VERSION = "obliviate.tofu_eval", 1


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


# --- the saved evaluation of the retain model ---------------------------------------------------------------------


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """sha256 of what decides the token ids: the tokenizer's serialisation (fast tokenizers) or vocabulary, its
    special tokens and chat template."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    blob = json.dumps({"class": type(tokenizer).__name__, "tokenizer": body,
                       "special": sorted(getattr(tokenizer, "all_special_tokens", [])),
                       "chat_template": getattr(tokenizer, "chat_template", None)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def save_tofu_eval(path: str | Path, forget_truth_ratios: Sequence[float] | np.ndarray, *, benchmark: str,
                   benchmark_version: str, forget_split: str, tokenizer_hash: str, tokenizer_name: str = "",
                   truth_ratio_version: TruthRatioVersion = "geometric",
                   metrics: Mapping[str, float] | None = None) -> None:
    """Write a model's TOFU evaluation (atomically) as JSON::

        {"format": "obliviate.tofu_eval", "format_version": 1,
         "benchmark": {"name": ..., "version": ...}, "forget_split": "forget05",
         "tokenizer": {"name": ..., "sha256": ...}, "truth_ratio_version": "geometric",
         "forget_truth_ratio": {"orientation": "p(perturbed)/p(correct)", "per_item": [...]},
         "metrics": {...}}

    ``per_item`` lists the forget-set truth ratios in item order (the retain model's file is the forget-quality
    reference)."""
    from obliviate.io import write_json

    _check_version(truth_ratio_version)
    write_json(path, {"format": EVAL_FORMAT, "format_version": EVAL_FORMAT_VERSION,
                      "benchmark": {"name": benchmark, "version": benchmark_version}, "forget_split": forget_split,
                      "tokenizer": {"name": tokenizer_name, "sha256": tokenizer_hash},
                      "truth_ratio_version": truth_ratio_version,
                      "forget_truth_ratio": {"orientation": "p(perturbed)/p(correct)",
                                             "per_item": [float(x) for x in np.asarray(forget_truth_ratios).ravel()]},
                      "metrics": dict(metrics or {})})


def load_reference_truth_ratios(path: str | Path, *, benchmark: str, benchmark_version: str, forget_split: str,
                                tokenizer_hash: str, truth_ratio_version: TruthRatioVersion = "geometric") -> np.ndarray:
    """The per-item forget-set truth ratios of a saved evaluation, refusing a file whose format, benchmark name or
    version, forget split, tokenizer or truth-ratio version differs from what is asked (its ratios would not be
    comparable). A null entry (a non-finite ratio when it was written) becomes NaN."""
    from obliviate.io import read_json

    where = repr(str(path))
    d = read_json(path)
    if not isinstance(d, dict) or d.get("format") != EVAL_FORMAT:
        raise ObliviateError(f"{where} is not a saved TOFU evaluation (format {EVAL_FORMAT!r})")
    if d.get("format_version") != EVAL_FORMAT_VERSION:
        raise ObliviateError(f"{where} has format_version {d.get('format_version')!r}; this obliviate reads "
                             f"{EVAL_FORMAT_VERSION}")
    got = {"benchmark": (d.get("benchmark") or {}).get("name"),
           "benchmark version": (d.get("benchmark") or {}).get("version"),
           "forget split": d.get("forget_split"),
           "tokenizer": (d.get("tokenizer") or {}).get("sha256"),
           "truth-ratio version": d.get("truth_ratio_version")}
    want = {"benchmark": benchmark, "benchmark version": benchmark_version, "forget split": forget_split,
            "tokenizer": tokenizer_hash, "truth-ratio version": truth_ratio_version}
    diff = [f"{k} {got[k]!r} (expected {want[k]!r})" for k in want if got[k] != want[k]]
    if diff:
        name = (d.get("tokenizer") or {}).get("name")
        raise ObliviateError(f"{where} cannot be the forget-quality reference here: its {'; '.join(diff)}"
                             + (f" [its tokenizer: {name}]" if name else "") + "; re-evaluate the retain model")
    items = (d.get("forget_truth_ratio") or {}).get("per_item")
    if not isinstance(items, list) or not items:
        raise ObliviateError(f"{where} holds no per-item forget truth ratios")
    return np.array([math.nan if x is None else float(x) for x in items], dtype=np.float64)


# --- model-level scorers -------------------------------------------------------------------------------------------


@dataclass
class AnswerScores:
    """Per item of a TokenData split: avg_loss (TOFU/OU), extraction strength and exact memorization (OU)."""

    avg_loss: np.ndarray  # (N,)
    extraction_strength: np.ndarray  # (N,)
    exact_memorization: list[float | None]


@torch.no_grad()
def score_answers(model: nn.Module, data: TokenData, batch_size: int = 16,
                  no_match: Literal["reference", "zero"] = "reference") -> AnswerScores:
    """One teacher-forced pass over ``data`` (no grad; the model's train/eval mode is restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses: list[float] = []
    es: list[float] = []
    em: list[float | None] = []
    try:
        for s in range(0, len(data), batch_size):
            b = batch_of(data, torch.arange(s, min(s + batch_size, len(data)))).to(device)
            logits = b.logits(model)
            losses.extend(answer_losses_from_logits(logits, b.labels).tolist())
            for p, lab in masked_predictions(logits, b.labels):
                es.append(extraction_strength(p, lab, no_match))
                em.append(exact_memorization(p, lab))
    finally:
        model.train(was_training)
    return AnswerScores(np.array(losses, dtype=np.float64), np.array(es, dtype=np.float64), em)


def answer_losses(model: nn.Module, data: TokenData, batch_size: int = 16) -> np.ndarray:
    """avg_loss (N,) of every item of ``data`` (answer + EOS scored, the prompt not)."""
    return score_answers(model, data, batch_size).avg_loss


def prompts_and_answers(data: TokenData) -> tuple[list[list[int]], list[list[int]]]:
    """Each row's prompt (the tokens before its first scored one) and its scored label tokens."""
    prompts, answers = [], []
    for ids, labels in zip(data.input_ids, data.labels):
        scored = (labels != IGNORE_INDEX).nonzero().flatten()
        if scored.numel() == 0 or int(scored[0]) == 0:
            raise ObliviateError("a QA row needs an unscored prompt before its scored answer")
        prompts.append(ids[: int(scored[0])].tolist())
        answers.append(labels[scored].tolist())
    return prompts, answers


def rouge_eval(model: nn.Module, tokenizer: Any, data: TokenData, max_new_tokens: int = 200, batch_size: int = 16,
               stopwords: Sequence[str] = (), truncate: Truncate = "error") -> list[dict[str, Any]]:
    """Greedy generation from each row's prompt (OU's generation args: greedy, ``max_new_tokens`` 200, pad = EOS;
    a row stops at the model's ``generation_config`` EOS ids, else the tokenizer's, as HF ``generate`` would),
    batched with a KV cache (``text_generation.greedy_generate``); OU's post-processing of generations and
    ground truths, then :func:`rouge_scores`. A prompt that leaves no room for ``max_new_tokens`` in the model's
    positions is an error (``truncate="left"`` drops its oldest tokens instead). Per item: the scores plus
    ``generation`` and ``ground_truth``."""
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ObliviateError("ROUGE generation needs a tokenizer with an EOS token (generation pads with it)")
    check_plain_greedy(model)
    prompts, answers = prompts_and_answers(data)
    fitted = fit_to_positions(prompts, max_new_tokens, max_positions(model), truncate)
    new = greedy_generate(model, fitted, max_new_tokens, int(eos), model_eos_ids(model) or (int(eos),), batch_size)
    eos_text = tokenizer.decode([eos])
    gens = [clean_generation(decode_tokens(tokenizer, ids), eos_text, stopwords) for ids in new]
    gts = [ground_truth_text(tokenizer, p, a) for p, a in zip(prompts, answers)]
    return [{**s, "generation": g, "ground_truth": t} for s, g, t in zip(rouge_scores(gts, gens), gens, gts)]


@dataclass
class TofuSplitData:
    """One TOFU evaluation split, tokenised. Item i of ``answer``, ``correct`` and each ``perturbed[k]`` is the same
    question with the original answer, the truth ratio's "correct" answer, and the k-th perturbed answer."""

    name: str  # forget / retain / real_authors / world_facts
    answer: TokenData
    correct: TokenData
    perturbed: list[TokenData]

    def __post_init__(self) -> None:
        split_aggregator(self.name)
        n = len(self.answer)
        if not self.perturbed or any(len(d) != n for d in (self.correct, *self.perturbed)):
            raise ObliviateError(f"TOFU split {self.name!r}: answer, correct and every perturbed set need the same "
                                 f"{n} items, and there must be at least one perturbed set")


def tofu_split_data(items: Sequence[Mapping[str, Any]], tokenizer: Any, name: str, correct_key: str | None = None,
                    **qa_kw: Any) -> TofuSplitData:
    """Tokenise TOFU-style items (``question``, ``answer``, ``perturbed_answer``: a list of K, and
    ``paraphrased_answer`` where the split's correct answer is the paraphrase) with :func:`qa_rows` (``qa_kw``:
    template, chat_template, max_length). ``correct_key`` defaults to :data:`CORRECT_KEY`[name]."""
    from obliviate.data.lm_files import pad_id_of, qa_rows

    key = correct_key or CORRECT_KEY.get(name, "answer")
    split_aggregator(name)
    pad = pad_id_of(tokenizer)
    ks = {len(it.get("perturbed_answer") or []) for it in items}
    if len(ks) != 1 or 0 in ks:
        raise ObliviateError(f"TOFU split {name!r}: every item needs the same number (>= 1) of perturbed answers, "
                             f"got {sorted(ks)}")

    def rows(answers: list[str], what: str) -> TokenData:
        qa = [{"question": it["question"], "answer": a} for it, a in zip(items, answers)]
        seqs, plens = qa_rows(qa, tokenizer, source=f"TOFU {name} ({what})", **qa_kw)
        return TokenData.from_sequences(seqs, pad, plens)

    for i, it in enumerate(items):
        if not isinstance(it.get(key), str):
            raise ObliviateError(f"TOFU split {name!r} item {i}: no string {key!r} (the truth ratio's correct answer)")
    answer = rows([it["answer"] for it in items], "answer")
    correct = answer if key == "answer" else rows([it[key] for it in items], key)
    perturbed = [rows([it["perturbed_answer"][k] for it in items], f"perturbed {k}") for k in range(ks.pop())]
    return TofuSplitData(name, answer, correct, perturbed)


@dataclass
class TofuSplitScores:
    """Per-item numbers of one split; the aggregates are methods so both truth-ratio versions stay available."""

    name: str
    answer: AnswerScores
    correct_loss: np.ndarray  # (N,)
    perturbed_loss: np.ndarray  # (N, K)
    rouge: list[dict[str, Any]] = field(default_factory=list)

    def truth_ratios(self, version: TruthRatioVersion = "geometric") -> np.ndarray:
        return truth_ratios(self.correct_loss, self.perturbed_loss, version)

    def truth_ratio(self, version: TruthRatioVersion = "geometric") -> float:
        return aggregate_truth_ratio(self.truth_ratios(version), split_aggregator(self.name), version)

    def prob(self) -> float:
        """mean p̂(original answer) ("Prob" of forget / retain; OU's ra/wf ``Q_A_Prob``)."""
        return float(np.mean(np.exp(-self.answer.avg_loss)))

    def prob_normalised(self) -> float:
        """mean of probability_w_options ("Prob" of real authors / world facts)."""
        return float(np.mean(probability_w_options(np.exp(-self.answer.avg_loss), np.exp(-self.perturbed_loss))))

    def summary(self, version: TruthRatioVersion = "geometric") -> dict[str, float]:
        """OU-named aggregates of this split."""
        p = OU_PREFIX[self.name]
        out = {f"{p}_Q_A_Prob": self.prob()}
        if self.name in ("real_authors", "world_facts"):
            out[f"{p}_Q_A_Prob_normalised"] = self.prob_normalised()
        if self.rouge:
            out[f"{p}_Q_A_ROUGE"] = float(np.mean([r["rougeL_recall"] for r in self.rouge]))
        out["forget_truth_ratio" if self.name == "forget" else f"{p}_Truth_Ratio"] = self.truth_ratio(version)
        if self.name == "forget":
            em = [x for x in self.answer.exact_memorization if x is not None]
            out["extraction_strength"] = float(np.mean(self.answer.extraction_strength))
            out["exact_memorization"] = float(np.mean(em)) if em else math.nan
        return out


def score_tofu_split(model: nn.Module, tokenizer: Any, split: TofuSplitData, generate: bool = True,
                     max_new_tokens: int = 200, batch_size: int = 16) -> TofuSplitScores:
    """Everything TOFU measures on one split: teacher-forced losses of the answer, correct and perturbed sets, and
    (``generate``) greedy generations scored with ROUGE."""
    answer = score_answers(model, split.answer, batch_size)
    correct = answer.avg_loss if split.correct is split.answer else answer_losses(model, split.correct, batch_size)
    perturbed = np.stack([answer_losses(model, d, batch_size) for d in split.perturbed], 1)  # (N, K)
    rouge = rouge_eval(model, tokenizer, split.answer, max_new_tokens, batch_size) if generate else []
    return TofuSplitScores(split.name, answer, correct, perturbed, rouge)


def tofu_summary(scores: Mapping[str, TofuSplitScores], version: TruthRatioVersion = "geometric",
                 reference_truth_ratios: Sequence[float] | np.ndarray | None = None) -> dict[str, float]:
    """The OU-named aggregates of every scored split, ``model_utility`` when all 9 inputs are there, and
    ``forget_quality_pvalue`` / ``forget_quality_log10`` / ``forget_quality_ks_statistic`` when the retain model's
    forget truth ratios (same ``version``) are given."""
    out: dict[str, float] = {}
    for s in scores.values():
        out.update(s.summary(version))
    if all(k in out for k in MODEL_UTILITY_KEYS):
        out["model_utility"] = model_utility(out)
    if reference_truth_ratios is not None:
        if "forget" not in scores:
            raise ObliviateError("forget quality needs the forget split's scores")
        fq = forget_quality(scores["forget"].truth_ratios(version), reference_truth_ratios)
        out.update(forget_quality_pvalue=fq.forget_quality_pvalue, forget_quality_log10=fq.forget_quality_log10,
                   forget_quality_ks_statistic=fq.ks_statistic)
    return out
