"""An offline TOFU-style benchmark: question-answer pairs about fictitious authors, generated locally.

TOFU (Maini et al., 2024, "TOFU: A Task of Fictitious Unlearning for LLMs", arXiv 2401.06121; HF ``locuslab/TOFU``)
fine-tunes a model on 20 QA pairs about each of 200 fictitious authors, then unlearns 1 / 5 / 10 % of the authors.
:func:`generate_tofu_synth` builds the same structure from templates and a seed:

* **Fictitious authors.** Every attribute (name, gender, birth city and country, birth year, genre, parents'
  professions, award, two book titles, publisher, theme, ... -- 24 kinds, see
  :data:`obliviate.data.tofu_pools.KINDS`, where the pools and the templates live) is drawn independently from a
  pool, so no fact follows from the name. Each author gets ``qa_per_author`` of the kinds (seeded). An item
  carries TOFU's keys: ``question``, ``answer`` (one sentence from template A), ``paraphrased_answer`` (the same
  fact from a different template B, never trained on) and ``perturbed_answer`` (template B with the fact replaced
  by other values of the same pool: the truth ratio p(perturbed) / p(paraphrase) then compares values in one unseen
  wording, not the trained wording against an unseen one), plus ``author`` (an int) and ``kind``.
* **Splits.** forget01 / forget05 / forget10 are the LAST 1 / 5 / 10 % of the authors (rounded, at least one), as in
  TOFU; the retain split is every other author. Holdout authors are generated the same way but never trained on
  (membership inference); they are numbered after the trained ones.
* **Utility sets.** TOFU's ``real_authors_perturbed`` and ``world_facts_perturbed`` ask about knowledge the base
  model already has. Here that knowledge is made up too -- famous writers of a fictional world, fictional
  countries' capitals, currencies and rivers, colours, counts, arithmetic in words -- and taught by
  :attr:`TofuSynth.world_corpus`, stage-1 "pretraining" text that states each of these facts ``world_mentions``
  times in different phrasings and never mentions a fictitious author. Items have ``question``, ``answer`` (short,
  as in TOFU) and ``perturbed_answer`` (``n_perturbed_utility`` of them), no paraphrase. These sets do not depend on
  the seed (TOFU's are fixed files); the corpus's phrasing choice and order do, and nothing else does, so one
  stage-1 model serves every author setting with the same seed. The facts, their phrasings and the corpus builder
  live in :mod:`obliviate.data.tofu_utility`.

:func:`obliviate.data.tofu_files.write_tofu_files` writes TOFU's published layout (JSON Lines under the HF file
names, plus our own ``world_corpus.txt``) and :func:`obliviate.data.tofu_files.read_tofu_dir` reads that layout from
a local directory -- the real TOFU files included, one JSON object per line or one JSON array per file.

What differs from TOFU: answers are single templated sentences (TOFU's were written by GPT-4 and are longer and
varied); the perturbed answers change only the fact (TOFU's rewrite the whole answer); items carry ``author`` and
``kind``; the retain evaluation set ``retain_perturbed.json`` is the first ``len(forget)`` items of the retain
split (TOFU ships one fixed set of 400 retain items for every split).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from obliviate.data.tofu_pools import (
    DEBUT_AGES,
    FIRST_NAMES,
    GENDERS,
    KINDS,
    LAST_NAMES,
    MAX_AUTHORS,
    MAX_PERTURBED,
    MIN_QA_PER_AUTHOR,
    POSSESSIVE,
    SHARED_POOL,
    AttributeKind,
)
from obliviate.data.tofu_utility import (
    FAMOUS_WRITERS,
    MAX_MENTIONS,
    MAX_PERTURBED_UTILITY,
    REAL_AUTHOR_FACTS,
    UTILITY_SEED,
    WORLD_FACTS,
    Fact,
    world_corpus,
)
from obliviate.errors import ObliviateError, unknown_name_error

# --- configuration -------------------------------------------------------------------------------------------------

FORGET_SPLITS = {"forget01": 1, "forget05": 5, "forget10": 10}


def _check_int(name: str, value: Any, lo: int, hi: int | None = None, why: str = "") -> None:
    """``value`` must be an int (not a bool) in [lo, hi]."""
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= lo and (hi is None or value <= hi)
    if not ok:
        allowed = f">= {lo}" if hi is None else f"between {lo} and {hi}"
        raise ObliviateError(f"TofuSynthConfig.{name} must be an integer {allowed}{why}, got {value!r}")


@dataclass(frozen=True)
class TofuSynthConfig:
    """What :func:`generate_tofu_synth` builds (the defaults give TOFU's sizes)."""

    n_authors: int = 200
    qa_per_author: int = 20
    n_holdout_authors: int = 20  # never trained on (membership inference); 0 = none
    n_real_authors: int = 100  # real-authors-like utility questions
    n_world_facts: int = 117
    n_perturbed: int = 5
    n_perturbed_utility: int = 3
    world_mentions: int = 6  # differently phrased statements of each utility fact in the world corpus
    seed: int = 0

    def __post_init__(self) -> None:
        _check_int("n_authors", self.n_authors, 2, MAX_AUTHORS, " (a retain split needs at least 2 authors)")
        _check_int("n_holdout_authors", self.n_holdout_authors, 0, MAX_AUTHORS - self.n_authors,
                   f" (names for at most {MAX_AUTHORS} authors in all)")
        _check_int("qa_per_author", self.qa_per_author, MIN_QA_PER_AUTHOR, len(KINDS),
                   f" (there are {len(KINDS)} question kinds)")
        _check_int("n_real_authors", self.n_real_authors, 1, len(REAL_AUTHOR_FACTS),
                   f" ({len(FAMOUS_WRITERS)} famous writers x 4 facts)")
        _check_int("n_world_facts", self.n_world_facts, 1, len(WORLD_FACTS), " (the world facts there are)")
        _check_int("n_perturbed", self.n_perturbed, 1, MAX_PERTURBED, " (the smallest attribute pool's wrong values)")
        _check_int("n_perturbed_utility", self.n_perturbed_utility, 1, MAX_PERTURBED_UTILITY,
                   " (the smallest utility pool's wrong values)")
        _check_int("world_mentions", self.world_mentions, 1, MAX_MENTIONS, " (the phrasings per fact)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ObliviateError(f"TofuSynthConfig.seed must be an integer, got {self.seed!r}")


def forget_author_count(n_authors: int, split: str) -> int:
    """How many authors ``split`` (forget01 / forget05 / forget10) forgets: the percentage of ``n_authors``, rounded
    half up, at least one."""
    if split not in FORGET_SPLITS:
        raise unknown_name_error("TOFU forget split", split, FORGET_SPLITS)
    return max(1, math.floor(n_authors * FORGET_SPLITS[split] / 100 + 0.5))


# --- generation ----------------------------------------------------------------------------------------------------


def _wrong_values(rng: random.Random, pool: Sequence[str], truth: str, exclude: set[str], n: int) -> list[str]:
    """``n`` distinct values of ``pool`` other than ``truth`` and ``exclude`` (seeded)."""
    picks = rng.sample(pool, min(len(pool), n + 1 + len(exclude)))
    wrong = [p for p in picks if p != truth and p not in exclude][:n]
    if len(wrong) < n:  # cannot happen within the config's limits
        raise ObliviateError(f"only {len(wrong)} wrong values for {truth!r}, {n} needed")
    return wrong


def _sample_name(rng: random.Random, used: set[str]) -> tuple[str, str]:
    """(gender, a full name not in ``used``); the name is added to ``used``."""
    while True:
        gender = rng.choice(GENDERS)
        name = f"{rng.choice(FIRST_NAMES[gender])} {rng.choice(LAST_NAMES)}"
        if name not in used:
            used.add(name)
            return gender, name


def _sample_author(rng: random.Random, author_id: int, used: set[str]) -> dict[str, Any]:
    """An author's profile: every attribute drawn independently (book2 differs from book1; the first book comes
    out at a debut age of 19..34)."""
    gender, name = _sample_name(rng, used)
    author: dict[str, Any] = {"id": author_id, "name": name, "gender": gender}
    for kind in KINDS.values():
        if kind.name == "first_book_year":
            author[kind.name] = str(int(author["birth_year"]) + rng.randint(*DEBUT_AGES))
        elif kind.name == "book2":
            author[kind.name] = _wrong_values(rng, kind.pool, author["book1"], set(), 1)[0]
        else:
            author[kind.name] = rng.choice(kind.pool)
    return author


def _author_item(rng: random.Random, author: Mapping[str, Any], kind: AttributeKind,
                 n_perturbed: int) -> dict[str, Any]:
    """The TOFU item for one attribute of one author."""
    slots = {"name": author["name"], "poss": POSSESSIVE[author["gender"]]}
    truth = author[kind.name]
    exclude = {author[k] for k in SHARED_POOL[kind.name]}
    wrong = _wrong_values(rng, kind.pool, truth, exclude, n_perturbed)
    return {"question": kind.question.format(**slots), "answer": kind.answer.format(**slots, v=truth),
            "paraphrased_answer": kind.paraphrase.format(**slots, v=truth),
            "perturbed_answer": [kind.paraphrase.format(**slots, v=w) for w in wrong],
            "author": author["id"], "kind": kind.name}


def _authors_and_items(rng: random.Random, first_id: int, n: int, cfg: TofuSynthConfig,
                       used: set[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``n`` authors numbered from ``first_id`` and their items (``qa_per_author`` kinds each, in KINDS order)."""
    kinds = list(KINDS.values())
    authors, items = [], []
    for i in range(n):
        author = _sample_author(rng, first_id + i, used)
        chosen = sorted(rng.sample(range(len(kinds)), cfg.qa_per_author))
        authors.append(author)
        items += [_author_item(rng, author, kinds[k], cfg.n_perturbed) for k in chosen]
    return authors, items


def _utility_items(facts: Sequence[Fact], n_perturbed: int, stream: str) -> list[dict[str, Any]]:
    rng = random.Random(f"{UTILITY_SEED}:{stream}")
    return [{"question": f.question, "answer": f.answer,
             "perturbed_answer": _wrong_values(rng, f.pool, f.answer, set(), n_perturbed)} for f in facts]


@dataclass
class TofuSynth:
    """A generated benchmark. ``authors`` holds every author's profile (trained ones, then holdout ones)."""

    config: TofuSynthConfig
    qa: list[dict[str, Any]]
    holdout: list[dict[str, Any]]
    real_authors: list[dict[str, Any]]
    world_facts: list[dict[str, Any]]
    world_corpus: list[str]
    authors: list[dict[str, Any]] = field(default_factory=list)

    def forget_split(self, name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(forget items, retain items): the last authors of ``name``'s share, and every other author."""
        first_forgotten = self.config.n_authors - forget_author_count(self.config.n_authors, name)
        return ([it for it in self.qa if it["author"] >= first_forgotten],
                [it for it in self.qa if it["author"] < first_forgotten])

    def retain_eval(self, name: str) -> list[dict[str, Any]]:
        """The retain evaluation set written as ``retain_perturbed.json``: the first ``len(forget)`` retain items."""
        forget, retain = self.forget_split(name)
        return retain[: len(forget)]

    def holdout_split(self, name: str) -> list[dict[str, Any]]:
        """The items of the first holdout authors, as many authors as ``name`` forgets ([] with no holdout
        authors)."""
        k = forget_author_count(self.config.n_authors, name)
        have = self.config.n_holdout_authors
        if have == 0:
            return []
        if have < k:
            raise ObliviateError(f"the holdout split of {name} needs {k} holdout authors, but n_holdout_authors is "
                                 f"{have}: raise it to at least {k} (or 0 for no holdout split)")
        return [it for it in self.holdout if it["author"] < self.config.n_authors + k]

    def content_hash(self) -> str:
        """sha256 (16 hex digits) of a canonical JSON of the config and everything generated."""
        blob = json.dumps({"config": asdict(self.config), "authors": self.authors, "qa": self.qa,
                           "holdout": self.holdout, "real_authors": self.real_authors,
                           "world_facts": self.world_facts, "world_corpus": self.world_corpus},
                          sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    def all_texts(self) -> list[str]:
        """Every string a tokenizer should be trained on: the corpus, then every question and answer (paraphrased
        and perturbed ones included) of every set, holdout too."""
        texts = list(self.world_corpus)
        for it in (*self.qa, *self.holdout, *self.real_authors, *self.world_facts):
            texts += [it["question"], it["answer"]]
            if "paraphrased_answer" in it:
                texts.append(it["paraphrased_answer"])
            texts += it["perturbed_answer"]
        return texts


def generate_tofu_synth(cfg: TofuSynthConfig | None = None) -> TofuSynth:
    """The benchmark ``cfg`` describes (deterministic in ``cfg``). Authors are generated one after another, so the
    first authors do not depend on ``n_authors`` and the trained ones do not depend on ``n_holdout_authors``."""
    cfg = cfg if cfg is not None else TofuSynthConfig()
    if not isinstance(cfg, TofuSynthConfig):
        raise ObliviateError(f"generate_tofu_synth needs a TofuSynthConfig, got a {type(cfg).__name__}")
    rng, used = random.Random(cfg.seed), set()
    authors, qa = _authors_and_items(rng, 0, cfg.n_authors, cfg, used)
    held, holdout = _authors_and_items(rng, cfg.n_authors, cfg.n_holdout_authors, cfg, used)
    ra_facts, wf_facts = REAL_AUTHOR_FACTS[: cfg.n_real_authors], WORLD_FACTS[: cfg.n_world_facts]
    return TofuSynth(config=cfg, qa=qa, holdout=holdout,
                     real_authors=_utility_items(ra_facts, cfg.n_perturbed_utility, "real_authors"),
                     world_facts=_utility_items(wf_facts, cfg.n_perturbed_utility, "world_facts"),
                     world_corpus=world_corpus([*ra_facts, *wf_facts], cfg.world_mentions, cfg.seed),
                     authors=authors + held)
