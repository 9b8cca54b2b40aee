"""Alternate answers for AltPO (Mekala et al., 2024, arXiv 2409.13474): plausible but false answers to each forget
question, sampled from the model to be unlearned, as open-unlearning's ``community/methods/AltPO/generate.py`` (spec
``shared/specs/ou-extra-methods.md`` §2.4), and token-level pairing for data that is already tokenized.

Generation: the model sees the question and its true answer, is asked (our own wording, following the AltPO prompt's
intent) to make up a differently worded answer that changes every fact the answer introduces, stays plausible and
keeps what the question states, and continues after a pre-filled ``Alternate Answer:``. ``repeats`` samples per
question (5 in AltPO), each its own record ``{question, answer, alternate}``, so a forget file of N questions becomes
5N rows -- the forget row repeated once per alternate. Sampling: temperature 1.0, at most 200 new tokens, one seed set
once at the start (top-p / top-k left to the model's generation config, as open-unlearning, unless given). Each
sample is cut at the first stop string and stripped; generation stops at the model's last position. No filtering (the AltPO files keep alternates that repeat the
true fact), except that an empty sample -- which cannot train -- is drawn again (a few times) and its record is left
out if it stays empty.

``obliviate alternates --model DIR --forget F --out alt.jsonl`` runs :func:`alternates_file`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import TokenData
from obliviate.losses.nll import IGNORE_INDEX

STOP_STRINGS = ("Question:", "Question: ", "Q: ", "Q:")  # generate.py's stop strings (cut + stopping criteria)
PREFILL = "Alternate Answer:"
INSTRUCTION = (
    "Question: {question}\n"
    "Answer: {answer}\n\n"
    "Suppose you did not know the real answer and had to invent one. Write another answer to the same question, "
    "phrased in a different way from the answer above, in which every fact that the answer introduces is replaced by "
    "an invented one that still sounds believable. Do not change anything that the question itself states."
)
EMPTY_RETRIES = 3  # extra draws for a sample that is empty after cutting and stripping


@dataclass(frozen=True)
class AlternatesConfig:
    """How alternates are sampled (defaults: open-unlearning's AltPO generate.yaml)."""

    repeats: int = 5  # samples per question, each its own record
    max_new_tokens: int = 200
    temperature: float = 1.0
    seed: int = 0
    top_p: float | None = None  # None = the model's generation config decides
    top_k: int | None = None
    chat_template: bool = False  # prompt with the tokenizer's chat template (an instruct model) instead of plain text
    instruction: str = INSTRUCTION  # the request, with {question} and {answer}

    def __post_init__(self) -> None:
        try:
            self.instruction.format(question="q", answer="a")
        except (KeyError, IndexError, ValueError) as exc:
            raise ObliviateError(f"instruction {self.instruction!r}: {exc!r} (use {{question}} and {{answer}}; write "
                                 "literal braces as {{ and }})") from None
        if "{question}" not in self.instruction or "{answer}" not in self.instruction:
            raise ObliviateError(f"the instruction must contain {{question}} and {{answer}}, got {self.instruction!r}")
        if self.repeats < 1:
            raise ObliviateError(f"repeats must be >= 1, got {self.repeats}")
        if self.max_new_tokens < 1:
            raise ObliviateError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise ObliviateError(f"temperature must be > 0 (sampling), got {self.temperature}")
        if self.seed < 0:
            raise ObliviateError(f"seed must be >= 0, got {self.seed}")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ObliviateError(f"top_p must be in (0, 1] or null, got {self.top_p}")
        if self.top_k is not None and self.top_k < 0:
            raise ObliviateError(f"top_k must be >= 0 (0 = off) or null, got {self.top_k}")


def cut_at_stop(text: str, stops: Sequence[str] = STOP_STRINGS) -> str:
    """``text`` up to the first occurrence of any stop string, stripped."""
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=len(text))
    return text[:cut].strip()


def prompt_text(tokenizer: Any, question: str, answer: str, chat_template: bool = False,
                instruction: str = INSTRUCTION) -> str:
    """The generation prompt: the instruction as plain text, or as the user turn of the tokenizer's chat template
    (with its generation prompt); either way it ends with the pre-filled ``Alternate Answer:``."""
    user = instruction.format(question=question, answer=answer)
    if not chat_template:
        return f"{user}\n{PREFILL}"
    if not getattr(tokenizer, "chat_template", None):
        raise ObliviateError("chat_template=True, but the tokenizer has no chat template (tokenizer.chat_template)")
    head = tokenizer.apply_chat_template([{"role": "user", "content": user}], add_generation_prompt=True,
                                        tokenize=False)
    return f"{head}{PREFILL}"


def _prompt_ids(tokenizer: Any, text: str, chat_template: bool) -> list[int]:
    # a chat template writes its own BOS: no second one (open-unlearning's hand-written Llama-3 prompt gets two)
    return list(tokenizer(text, add_special_tokens=not chat_template)["input_ids"])


@torch.no_grad()
def sample_alternates(model: nn.Module, tokenizer: Any, question: str, answer: str, n: int,
                      cfg: AlternatesConfig) -> list[str]:
    """``n`` sampled alternates for one QA pair (cut and stripped; possibly empty), drawing from torch's global
    generator (seed it around the call: :func:`generate_alternates` does)."""
    device = next(model.parameters()).device
    text = prompt_text(tokenizer, question, answer, cfg.chat_template, cfg.instruction)
    ids = torch.tensor([_prompt_ids(tokenizer, text, cfg.chat_template)], device=device)
    new_tokens = cfg.max_new_tokens
    limit = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if isinstance(limit, int) and limit > 0:
        if ids.shape[1] >= limit:
            raise ObliviateError(f"the generation prompt for question {question[:40]!r} is {ids.shape[1]} tokens, but "
                                 f"the model has {limit} positions; shorten the instruction (--instruction)")
        new_tokens = min(new_tokens, limit - ids.shape[1])  # what fits after the prompt
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    extra: dict[str, Any] = {}
    if cfg.top_p is not None:
        extra["top_p"] = cfg.top_p
    if cfg.top_k is not None:
        extra["top_k"] = cfg.top_k
    out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), do_sample=True,
                         temperature=cfg.temperature, max_new_tokens=new_tokens, num_return_sequences=n,
                         pad_token_id=pad, stop_strings=list(STOP_STRINGS), tokenizer=tokenizer, **extra)
    texts = tokenizer.batch_decode(out[:, ids.shape[1]:], skip_special_tokens=True)
    return [cut_at_stop(t) for t in texts]


def generate_alternates(model: nn.Module, tokenizer: Any, items: Sequence[Mapping[str, Any]],
                        cfg: AlternatesConfig | None = None,
                        on_item: Callable[[int], None] | None = None) -> tuple[list[dict[str, str]], int]:
    """``cfg.repeats`` records ``{question, answer, alternate}`` per QA item, in item order, and how many samples
    stayed empty after :data:`EMPTY_RETRIES` redraws (their records are left out). Seeded once at the start with
    ``cfg.seed``; the caller's random state is restored after. ``on_item(i)`` is called after each item."""
    cfg = cfg or AlternatesConfig()
    device = next(model.parameters()).device
    devices = [device.index or 0] if device.type == "cuda" else []
    was = model.training
    model.eval()
    records: list[dict[str, str]] = []
    dropped = 0
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            for i, item in enumerate(items):
                q, a = str(item["question"]), str(item["answer"])
                samples = sample_alternates(model, tokenizer, q, a, cfg.repeats, cfg)
                for s in samples:
                    tries = 0
                    while not s and tries < EMPTY_RETRIES:
                        s = sample_alternates(model, tokenizer, q, a, 1, cfg)[0]
                        tries += 1
                    if s:
                        records.append({"question": q, "answer": a, "alternate": s})
                    else:
                        dropped += 1
                if on_item is not None:
                    on_item(i)
    finally:
        model.train(was)
    return records, dropped


def write_jsonl(path: str | Path, records: Sequence[Mapping[str, Any]], overwrite: bool = False) -> Path:
    """Write JSON Lines atomically; an existing file is kept unless ``overwrite``."""
    from obliviate.io import atomic_write_text

    p = Path(path)
    if p.exists() and not overwrite:
        raise ObliviateError(f"{str(p)!r} already exists; pass --overwrite (overwrite=True) or choose another --out")
    atomic_write_text(p, "".join(json.dumps(dict(r), ensure_ascii=False) + "\n" for r in records))
    return p


def alternates_file(model_dir: str | Path, forget: str | Path, out: str | Path, cfg: AlternatesConfig | None = None,
                    *, device: str = "auto", trust_remote_code: bool = False, overwrite: bool = False,
                    progress: bool = False) -> dict[str, Any]:
    """Read QA pairs from ``forget`` (.jsonl/.json), sample alternates with the HF causal LM in ``model_dir`` (the
    model to be unlearned) and write ``out`` (JSON Lines: question, answer, alternate). Returns a summary."""
    from tqdm.auto import tqdm

    from obliviate.data.lm_files import QA_SUFFIXES, read_jsonl
    from obliviate.lm_unlearn import load_model_and_tokenizer
    from obliviate.runconfig import resolve_device

    cfg = cfg or AlternatesConfig()
    out_p, forget_p = Path(out), Path(forget)
    if out_p.exists() and not overwrite:  # before loading anything
        raise ObliviateError(f"{str(out_p)!r} already exists; pass --overwrite (overwrite=True) or choose another --out")
    if forget_p.suffix.lower() not in QA_SUFFIXES:
        raise ObliviateError(f"{str(forget_p)!r}: alternates are made for QA pairs (.jsonl/.json with question and "
                             f"answer), not {forget_p.suffix or 'a file without suffix'}")
    if out_p.resolve() == forget_p.resolve():
        raise ObliviateError(f"--out {str(out_p)!r} is the forget file itself; write the alternates elsewhere")
    items = read_jsonl(forget_p)
    model, tok = load_model_and_tokenizer(model_dir, resolve_device(device), trust_remote_code)
    bar = tqdm(total=len(items), desc="alternates", unit="question", disable=not progress, leave=False)
    try:
        records, dropped = generate_alternates(model, tok, items, cfg, on_item=lambda _: bar.update(1))
    finally:
        bar.close()
    if not records:
        raise ObliviateError(f"every sampled alternate was empty ({dropped}); nothing written to {str(out_p)!r}")
    write_jsonl(out_p, records, overwrite=overwrite)
    return {"questions": len(items), "records": len(records), "dropped_empty": dropped, "out": str(out_p)}


# --- token-level pairing -------------------------------------------------------------------------------------------


def prompt_length(labels: torch.Tensor) -> int:
    """The unscored prefix of one row's labels (T,): the index of its first scored label (0 when all are -100)."""
    scored = (labels != IGNORE_INDEX).nonzero()
    return int(scored[0]) if scored.numel() else 0


def with_answers(forget: TokenData, answers: Sequence[Sequence[int]], pad_id: int) -> TokenData:
    """Alternate rows for already-tokenized forget data: row i = forget row i's prompt (its unscored prefix) +
    ``answers[i]`` (scored), right-padded with ``pad_id``. The pairing DPO-style methods take as
    ``extra["alternate"]``."""
    if len(answers) != len(forget):
        raise ObliviateError(f"{len(answers)} answers for {len(forget)} forget rows (one each)")
    seqs, prompt_lens = [], []
    for i, ans in enumerate(answers):
        if len(ans) == 0:
            raise ObliviateError(f"answer {i} is empty")
        p = prompt_length(forget.labels[i])
        seqs.append(forget.input_ids[i, :p].tolist() + [int(t) for t in ans])
        prompt_lens.append(p)
    return TokenData.from_sequences(seqs, pad_id, prompt_lens=prompt_lens)
