"""Refusal answers ("I don't know" and the like) for IdkDPO's winners, and a seeded choice of one per forget row.

The pool is our own wording (TOFU ships ~100 such lines in ``data/idontknow.jsonl``; open-unlearning reads them
from ``data/idk.jsonl``). Each is a short, self-contained statement that the answer is not known, phrased many ways
so the model does not learn one fixed string. A user pool: a text file, one answer per line (a line that is a JSON
string is decoded, so TOFU-style ``.jsonl`` files of strings work too).

open-unlearning draws a new random refusal for a forget item every time the item is read (every epoch); here each
forget row gets one refusal, drawn once with the run's seed, so the winner rows are fixed token data
(docs/methods.md).
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from obliviate.errors import ObliviateError

IDK_ANSWERS: tuple[str, ...] = (
    "I don't know.",
    "I'm not sure about that.",
    "I don't have that information.",
    "That is something I can't answer.",
    "I have no idea.",
    "I'm afraid I don't know the answer to that.",
    "I can't say for certain.",
    "Sorry, I don't know.",
    "That's beyond what I know.",
    "I don't have any details on that.",
    "I'm unable to answer that question.",
    "I really couldn't tell you.",
    "I don't know enough to answer that.",
    "I'm not aware of the answer.",
    "Unfortunately, I don't have an answer for you.",
    "I haven't come across that information.",
    "That isn't something I know about.",
    "I'm not able to provide that information.",
    "I'm drawing a blank on that one.",
    "I wish I could help, but I don't know.",
    "I don't have reliable information about that.",
    "I can't recall anything about that.",
    "That's not something I have knowledge of.",
    "I'm uncertain, so I'd rather not guess.",
    "I honestly don't know.",
    "No idea, I'm afraid.",
    "I lack the information needed to answer.",
    "I'm not the right source for that answer.",
    "I can't answer that with any confidence.",
    "I don't know the details of that.",
    "That question is outside what I know.",
    "I'm not familiar with that.",
    "I have nothing reliable to say about that.",
    "I don't have an answer to that question.",
    "I'm sorry, but I can't help with that one.",
    "I'm not in a position to answer that.",
    "I don't know anything about that.",
    "My knowledge doesn't cover that.",
    "I couldn't say.",
    "I can't give you an answer on that.",
    "I have no information on that topic.",
    "That's a question I can't answer.",
    "I'm not certain, and I don't want to mislead you.",
    "I don't remember ever learning that.",
    "Nothing I know answers that.",
    "I'm clueless about that, sorry.",
    "I'd be guessing, so I'll say I don't know.",
    "I can't find an answer to that in what I know.",
    "That's unknown to me.",
    "I'm unsure of the answer.",
    "I don't have the facts on that.",
    "I can't confirm anything about that.",
    "It's not something I can speak to.",
    "I'm not knowledgeable about that.",
    "I don't have a good answer for that.",
    "I'm not able to say.",
    "Your guess is as good as mine.",
    "I don't know, unfortunately.",
    "I have no knowledge of that.",
    "That's not something I'm able to answer.",
    "I can't speak to that, as I don't know.",
    "I'm not informed about that.",
    "I don't know who or what that refers to.",
    "Sorry, that's not something I know.",
)


def read_idk_pool(path: str | Path) -> list[str]:
    """Refusal answers from a text file: one per non-blank line (stripped); a line holding a JSON string is decoded.
    An empty pool or a line that decodes to something other than a string is an error naming the file and line."""
    p = Path(path)
    if not p.is_file():
        raise ObliviateError(f"{str(p)!r} does not exist (the \"I don't know\" answer pool: one answer per line)")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ObliviateError(f"{str(p)!r} is not UTF-8 text: {exc}") from None
    pool = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if not s:
            continue
        if s.startswith('"'):
            try:
                s = json.loads(s)
            except json.JSONDecodeError:
                pass  # a plain line that happens to start with a quote
        if not isinstance(s, str) or not s.strip():
            raise ObliviateError(f"{str(p)!r} line {n}: expected an answer (text, or a JSON string), got {line!r}")
        pool.append(s.strip())
    if not pool:
        raise ObliviateError(f"{str(p)!r} holds no answers (one \"I don't know\" answer per line)")
    return pool


def idk_pool(source: bool | str | Path | Sequence[str] = True) -> list[str]:
    """The pool: ``True`` = :data:`IDK_ANSWERS`, a path = :func:`read_idk_pool`, or a list of strings."""
    if source is True:
        return list(IDK_ANSWERS)
    if isinstance(source, (str, Path)):
        return read_idk_pool(source)
    if isinstance(source, Sequence) and source and all(isinstance(s, str) and s.strip() for s in source):
        return [s.strip() for s in source]
    raise ObliviateError(f"idk must be True (the built-in pool), a file path or a non-empty list of answers, got "
                         f"{source!r}")


def assign_idk(n: int, seed: int, pool: Sequence[str] = IDK_ANSWERS) -> list[str]:
    """One refusal per forget row (``n`` rows), drawn uniformly and independently from ``pool`` with ``seed``."""
    if not pool:
        raise ObliviateError("the \"I don't know\" pool is empty")
    rng = random.Random(seed)
    return [pool[rng.randrange(len(pool))] for _ in range(n)]
