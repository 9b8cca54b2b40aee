"""TOFU evaluation of a model (the per-split scorers behind the metrics in :mod:`obliviate.metrics.tofu`) and the
saved evaluation of the retain-only model that forget quality compares against."""

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
from torch import nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import TokenData, batch_of
from obliviate.losses.nll import IGNORE_INDEX
from obliviate.metrics.generation import max_positions
from obliviate.metrics.text_generation import (
    Truncate,
    check_plain_greedy,
    decode_tokens,
    fit_to_positions,
    greedy_generate,
    model_eos_ids,
)
from obliviate.metrics.tofu import (
    CORRECT_KEY,
    MODEL_UTILITY_KEYS,
    OU_PREFIX,
    TruthRatioVersion,
    _check_version,
    aggregate_truth_ratio,
    answer_losses_from_logits,
    clean_generation,
    exact_memorization,
    extraction_strength,
    forget_quality,
    ground_truth_text,
    masked_predictions,
    model_utility,
    probability_w_options,
    rouge_scores,
    split_aggregator,
    truth_ratios,
)

EVAL_FORMAT, EVAL_FORMAT_VERSION = "obliviate.tofu_eval", 1  # the saved retain-model evaluation


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
            logits, labels = b.scored_logits(model)
            losses.extend(answer_losses_from_logits(logits, labels).tolist())
            for p, lab in masked_predictions(logits, labels):
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
