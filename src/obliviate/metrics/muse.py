"""MUSE's VerbMem and KnowMem (Shi et al., 2024, *MUSE: Machine Unlearning Six-Way Evaluation for Language Models*,
arXiv 2407.06460), computed as swj0419/muse_bench (commit fcd6651) computes them, on batched greedy decoding.

- VerbMem: greedy-decode 128 new tokens after each ``prompt`` (tokenised with special tokens); the reference text is
  ``gt`` tokenised with special tokens, cut to its first ``max_new_tokens`` (128) tokens and decoded.
- KnowMem: the prompt is an in-context prefix, ``"Question: {q}\\nAnswer: {a}\\n\\n"`` per ICL pair, then
  ``"Question: {q}\\nAnswer: "``; greedy-decode 32 new tokens, cut at "\\n\\n", then "\\nQuestion", then "Question:".
- Both: decode only the new tokens (special tokens skipped, tokenization spaces cleaned up), score
  ``RougeScorer([rouge1, rouge2, rougeL, rougeLsum], use_stemmer=False).score(gt, output)``; the metric is the mean
  ROUGE-L F1 x 100. On the forget set lower means more forgotten; KnowMem on the retain set is a utility (higher).

Generation is ``text_generation.generate_texts``: token for token what MUSE's per-sample ``model.generate`` gives.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from obliviate.errors import ObliviateError
from obliviate.metrics.text_generation import Truncate, cut_at_stop_strings, decode_tokens, generate_texts
from obliviate.types import MetricResult

VERBMEM_MAX_NEW_TOKENS = 128
KNOWMEM_MAX_NEW_TOKENS = 32
KNOWMEM_STOP_STRINGS = ("\n\n", "\nQuestion", "Question:")
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL", "rougeLsum")


@dataclass(frozen=True)
class VerbMemItem:
    """One VerbMem excerpt (an item of MUSE's ``verbmem/forget.json``)."""

    prompt: str
    gt: str


@dataclass(frozen=True)
class QAItem:
    """One KnowMem question (an item of ``knowmem/{forget,retain}_qa.json`` or ``..._qa_icl.json``)."""

    question: str
    answer: str


@dataclass
class MuseResult:
    """A MUSE score: ``value`` = mean ROUGE-L F1 x 100 over ``items``, one dict per item with the model's
    ``output``, the reference ``gt`` it was scored against and MUSE's logged scores (``rougeL``, ``rougeL_recall``,
    ``rouge1``, ``rouge1_recall``, in [0, 1]); KnowMem items also carry their ``question``."""

    name: str
    value: float
    items: list[dict[str, Any]] = field(default_factory=list)

    def per_item(self) -> list[float]:
        """ROUGE-L F1 x 100 per item (their mean is ``value``)."""
        return [100.0 * it["rougeL"] for it in self.items]

    def to_metric_result(self, higher_is_better: bool) -> MetricResult:
        """As a ``MetricResult``; the direction depends on the split (forget: lower is better; retain: higher)."""
        return MetricResult(self.name, self.value, higher_is_better, per_item=self.per_item())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "value": self.value, "items": self.items}


def make_rouge_scorer() -> Any:
    """MUSE's scorer: rouge1, rouge2, rougeL and rougeLsum, no stemmer (rouge_score's default tokeniser)."""
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)


def rouge_item(scorer: Any, gt: str, output: str) -> dict[str, float]:
    """The scores MUSE logs per item, from ``scorer.score(gt, output)`` (reference first)."""
    s = scorer.score(gt, output)
    return {"rougeL": s["rougeL"].fmeasure, "rougeL_recall": s["rougeL"].recall,
            "rouge1": s["rouge1"].fmeasure, "rouge1_recall": s["rouge1"].recall}


def _mean_rouge_l(name: str, items: list[dict[str, Any]]) -> MuseResult:
    return MuseResult(name, 100.0 * sum(it["rougeL"] for it in items) / len(items), items)


def truncate_gt(tokenizer: Any, gt: str, n_tokens: int = VERBMEM_MAX_NEW_TOKENS) -> str:
    """``gt`` tokenised with special tokens, cut to its first ``n_tokens`` tokens, decoded as the outputs are."""
    ids = list(tokenizer(gt, add_special_tokens=True)["input_ids"])[:n_tokens]
    return decode_tokens(tokenizer, ids)


def knowmem_prefix(icl_items: Sequence[QAItem]) -> str:
    """The in-context prefix: ``"Question: {q}\\nAnswer: {a}\\n\\n"`` per ICL pair, in order."""
    return "".join(f"Question: {it.question}\nAnswer: {it.answer}\n\n" for it in icl_items)


def knowmem_prompt(prefix: str, question: str) -> str:
    """The query: the ICL prefix, then ``"Question: {q}\\nAnswer: "`` (with the trailing space)."""
    return prefix + f"Question: {question}\nAnswer: "


def cut_knowmem_output(text: str) -> str:
    """Keep what precedes "\\n\\n", then "\\nQuestion", then "Question:" (in that order); no strip."""
    return cut_at_stop_strings(text, KNOWMEM_STOP_STRINGS)


def verbmem(model: nn.Module, tokenizer: Any, items: Sequence[Mapping[str, Any] | VerbMemItem], *,
            max_new_tokens: int = VERBMEM_MAX_NEW_TOKENS, truncate: Truncate = "error",
            batch_size: int = 16) -> MuseResult:
    """VerbMem: mean ROUGE-L F1 x 100 between the greedy continuation of each ``prompt`` and its ``gt`` cut to
    ``max_new_tokens`` tokens (MUSE cuts the reference to the generation length). Items: dicts with ``prompt``
    and ``gt`` (MUSE's file format) or ``VerbMemItem``s."""
    parsed = parse_verbmem_items(items, "verbmem items")
    outputs = generate_texts(model, tokenizer, [it.prompt for it in parsed], max_new_tokens, truncate=truncate,
                             batch_size=batch_size)
    scorer = make_rouge_scorer()
    logged = []
    for i, (it, out) in enumerate(zip(parsed, outputs)):
        gt = truncate_gt(tokenizer, it.gt, max_new_tokens)
        logged.append({"index": i, "gt": gt, "output": out, **rouge_item(scorer, gt, out)})
    return _mean_rouge_l("verbmem", logged)


def knowmem(model: nn.Module, tokenizer: Any, qa_items: Sequence[Mapping[str, Any] | QAItem],
            icl_items: Sequence[Mapping[str, Any] | QAItem], *, max_new_tokens: int = KNOWMEM_MAX_NEW_TOKENS,
            truncate: Truncate = "error", batch_size: int = 16) -> MuseResult:
    """KnowMem: mean ROUGE-L F1 x 100 between each answer and the model's in-context answer to its question
    (cut at MUSE's stop strings). Items: dicts with ``question`` and ``answer`` or ``QAItem``s."""
    qa = parse_qa_items(qa_items, "knowmem qa items")
    icl = parse_qa_items(icl_items, "knowmem icl items", allow_empty=True)
    prefix = knowmem_prefix(icl)
    prompts = [knowmem_prompt(prefix, it.question) for it in qa]
    outputs = generate_texts(model, tokenizer, prompts, max_new_tokens, stop_strings=KNOWMEM_STOP_STRINGS,
                             truncate=truncate, batch_size=batch_size)
    scorer = make_rouge_scorer()
    logged = [{"index": i, "question": it.question, "gt": it.answer, "output": out,
               **rouge_item(scorer, it.answer, out)} for i, (it, out) in enumerate(zip(qa, outputs))]
    return _mean_rouge_l("knowmem", logged)


# ---- MUSE's data files (read from local paths) ----

def _parse_items(data: Any, source: str, cls: type, fields: tuple[str, ...], allow_empty: bool) -> list[Any]:
    """Each item must be a ``cls`` or an object with string ``fields`` (other keys are ignored); errors name the
    source (a file path) and the item's index."""
    if not isinstance(data, Sequence) or isinstance(data, (str, bytes)):
        raise ObliviateError(f"{source}: expected a list of objects with {', '.join(fields)}, "
                             f"got {type(data).__name__}")
    if not data and not allow_empty:
        raise ObliviateError(f"{source}: no items")
    out = []
    for i, item in enumerate(data):
        if isinstance(item, cls):
            out.append(item)
            continue
        if not isinstance(item, Mapping):
            raise ObliviateError(f"{source}: item {i} is {type(item).__name__}, expected an object with "
                                 f"{', '.join(fields)}")
        for f in fields:
            if f not in item:
                raise ObliviateError(f"{source}: item {i} has no {f!r} field (keys: {', '.join(map(str, item))})")
            if not isinstance(item[f], str):
                raise ObliviateError(f"{source}: item {i} field {f!r} is {type(item[f]).__name__}, expected str")
        out.append(cls(*(item[f] for f in fields)))
    return out


def parse_verbmem_items(data: Any, source: str = "verbmem items") -> list[VerbMemItem]:
    """Validate a list of ``{"prompt": str, "gt": str}`` or ``VerbMemItem``s."""
    return _parse_items(data, source, VerbMemItem, ("prompt", "gt"), False)


def parse_qa_items(data: Any, source: str = "knowmem items", allow_empty: bool = False) -> list[QAItem]:
    """Validate a list of ``{"question": str, "answer": str}`` or ``QAItem``s."""
    return _parse_items(data, source, QAItem, ("question", "answer"), allow_empty)


def _read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise ObliviateError(f"{p}: no such file")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ObliviateError(f"{p}: not valid JSON ({e})") from e


def read_verbmem_file(path: str | Path) -> list[VerbMemItem]:
    """MUSE's ``verbmem/forget.json``: a JSON list of ``{"prompt": str, "gt": str}``."""
    return parse_verbmem_items(_read_json(path), str(path))


def read_knowmem_file(path: str | Path, allow_empty: bool = False) -> list[QAItem]:
    """MUSE's ``knowmem/{forget,retain}_qa.json`` or ``..._qa_icl.json``: a JSON list of
    ``{"question": str, "answer": str}``."""
    return parse_qa_items(_read_json(path), str(path), allow_empty)
