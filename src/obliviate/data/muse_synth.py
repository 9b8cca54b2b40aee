"""An offline MUSE-style benchmark built from real English text, and a reader / writer for MUSE's file layout.

MUSE (Shi et al., 2024, *MUSE: Machine Unlearning Six-Way Evaluation for Language Models*, arXiv 2407.06460)
publishes, per corpus (``muse-bench/MUSE-News``, ``MUSE-Books``): raw forget / retain / holdout text, VerbMem
excerpts (``prompt``, ``gt``), KnowMem QA pairs with in-context (ICL) examples for the forget and the retain side,
and PrivLeak forget / retain / holdout texts. :func:`build_muse_synth` builds the same pieces from text that ships
offline with gensim's test data (:mod:`obliviate.data.corpora`), so the MUSE metrics in
:mod:`obliviate.metrics.muse` can run without a download:

- ``source="wikipedia"``: the paragraphs of gensim's shortened enwiki dump (about 4,500); ``source="lee"``: the 300
  ABC news articles of the Lee background corpus (293 distinct).
- Documents are cleaned (wiki ``''italic''`` / ``'''bold'''`` quote runs and empty ``()`` left by ``filter_wiki``
  removed, blocks with list or table lines skipped, whitespace collapsed to single spaces), cut to at most
  ``max_words`` words at a sentence boundary (a document whose first sentence is already longer is skipped),
  skipped when shorter than ``min_words`` words or without a cloze answer span (see below; so that every set holds
  the same kind of text and every document can give a question), and de-duplicated on their normalised text
  (case-folded, punctuation dropped), keeping the first in file order. With the defaults 3,440 Wikipedia paragraphs
  and 292 Lee articles are usable. A seeded shuffle splits them into disjoint forget / retain / holdout sets; the
  documents left over are the ICL pool. The default config builds in ~4 s on 2 CPU cores in a fresh process (mostly
  gensim's Wikipedia parse, cached per process; a rebuild takes ~0.6 s; Lee < 0.1 s).
- VerbMem: one excerpt per forget document, as MUSE's excerpt split: ``prompt`` = its first ``prompt_words`` words,
  ``gt`` = the rest (``prompt + " " + gt`` is the document).
- KnowMem: at most one cloze question per document, for the first ``n_qa`` forget (retain) documents that have one;
  the ICL examples are cloze questions from left-over documents, in no set and not in the QA lists.
- PrivLeak: the forget / retain / holdout documents themselves, as ``{"text": ...}`` items.

Deviations from MUSE:

- Text: Wikipedia paragraphs or Lee news articles instead of BBC News articles / the Harry Potter books.
- KnowMem QA: MUSE's questions were written by GPT-4 from the forget / retain text. Here, without an LLM, they are
  cloze questions: a sentence of the document with a salient span -- a capitalised word of >= 2 letters that does
  not start the sentence, or a number / year -- replaced by ``___``; the question is
  ``'Fill in the blank: "<sentence with ___>"'`` and the answer is the removed span.
- Raw text files: MUSE's ``raw/*.txt`` are continuous text; ``data/muse_files.py`` (the layout's reader and writer) separates documents by one blank
  line (documents hold no newlines), and :func:`read_muse_dir` splits a raw file at blank lines. Only
  ``retain1.txt`` is written (MUSE also has ``retain2.txt``).
- Sizes: MUSE uses 100 VerbMem excerpts (prompts of ~650 words for News); here there are ``n_forget`` excerpts of at
  most ``max_words`` words.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from obliviate.errors import ObliviateError, unknown_name_error

SOURCES = ("wikipedia", "lee")
BLANK = "___"
QUESTION_TEMPLATE = 'Fill in the blank: "{sentence}"'
MIN_CLOZE_SENTENCE_WORDS = 6  # shorter sentences give too little context for a cloze question



# --- config ---------------------------------------------------------------------------------------------------------


def _check_int(name: str, value: Any, lowest: int, bound: str = "") -> None:
    """``value`` must be an int (not a bool) >= ``lowest``; ``bound`` names where ``lowest`` comes from."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ObliviateError(f"MuseSynthConfig.{name} must be an int >= {bound or lowest}, got {value!r}")
    if value < lowest:
        raise ObliviateError(f"MuseSynthConfig.{name} must be >= {bound or lowest}, got {value}")


@dataclass(frozen=True)
class MuseSynthConfig:
    """What :func:`build_muse_synth` builds; see the module docstring."""

    source: str = "wikipedia"  # "wikipedia" (enwiki paragraphs) or "lee" (Lee news articles)
    n_forget: int = 100  # documents per set
    n_retain: int = 100
    n_holdout: int = 100
    min_words: int = 40  # shorter documents are skipped
    max_words: int = 200  # longer documents are cut at a sentence boundary at or below this
    prompt_words: int = 32  # VerbMem prompt = the first prompt_words words of a forget document, gt = the rest
    n_qa: int = 100  # KnowMem questions per side (forget, retain)
    n_icl: int = 3  # ICL examples per side
    seed: int = 0

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise unknown_name_error("MuseSynthConfig.source", str(self.source), SOURCES)
        for name in ("n_forget", "n_retain", "n_holdout", "min_words", "prompt_words", "n_qa"):
            _check_int(name, getattr(self, name), 1)
        _check_int("n_icl", self.n_icl, 0)
        _check_int("max_words", self.max_words, self.min_words, f"min_words={self.min_words}")
        _check_int("seed", self.seed, 0)
        if self.prompt_words >= self.min_words:
            raise ObliviateError(f"MuseSynthConfig.prompt_words={self.prompt_words} must be < min_words="
                                 f"{self.min_words}, so that every VerbMem gt is non-empty")
        for side in ("forget", "retain"):
            n_docs = getattr(self, f"n_{side}")
            if self.n_qa > n_docs:
                raise ObliviateError(f"MuseSynthConfig.n_qa={self.n_qa} must be <= n_{side}={n_docs} "
                                     f"(at most one question per document)")

    @property
    def n_documents(self) -> int:
        """Documents the three sets need."""
        return self.n_forget + self.n_retain + self.n_holdout


# --- text processing (pure) -----------------------------------------------------------------------------------------

_QUOTE_RUN = re.compile(r"'{2,}")  # wiki italic / bold markup
_EMPTY_PARENS = re.compile(r"\(\s*[,;]?\s*\)")  # left where filter_wiki dropped a template
_MARKUP_LINE = re.compile(r"^\s*[*#:;|{!]", re.MULTILINE)  # list, indent or table lines
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]* (?=[\"'(\[]?[A-Z0-9])")
_SPAN = re.compile(
    r"(?<![\w'.,:/-])"
    r"(?:[A-Z][A-Za-z]+|\d+(?:[.,]\d+)*)"
    r"(?![\w'/:-]|[.,]\d)"
)


def clean_text(text: str) -> str | None:
    """``text`` with wiki quote runs and empty parentheses removed and whitespace collapsed; ``None`` for a block
    holding list or table lines."""
    if _MARKUP_LINE.search(text):
        return None
    text = _EMPTY_PARENS.sub("", _QUOTE_RUN.sub("", text))
    text = re.sub(r"\s+", " ", text).strip()
    return re.sub(r" ([,.;:])", r"\1", text)


def split_sentences(text: str) -> list[str]:
    """Sentences of a whitespace-collapsed ``text``: split at the space after ``.!?`` (and closing quotes or
    brackets) before a capital letter or digit. ``" ".join(split_sentences(t)) == t``."""
    sentences: list[str] = []
    start = 0
    for m in _SENTENCE_END.finditer(text):
        sentences.append(text[start:m.end() - 1])
        start = m.end()
    sentences.append(text[start:])
    return [s for s in sentences if s]


def word_count(text: str) -> int:
    return len(text.split())


def cut_at_sentence(text: str, max_words: int) -> str | None:
    """The longest prefix of whole sentences with <= ``max_words`` words; ``None`` if the first is longer."""
    kept: list[str] = []
    n = 0
    for sentence in split_sentences(text):
        n += word_count(sentence)
        if n > max_words:
            break
        kept.append(sentence)
    return " ".join(kept) if kept else None


def normalise(text: str) -> str:
    """The de-duplication key: case-folded words and numbers, single-spaced."""
    return " ".join(re.findall(r"\w+", text.casefold()))


def prepare_documents(texts: Sequence[str], min_words: int, max_words: int) -> list[str]:
    """Cleaned, cut, long-enough, de-duplicated documents with a cloze candidate, in the order of ``texts``."""
    seen: set[str] = set()
    documents: list[str] = []
    for raw in texts:
        cleaned = clean_text(raw)
        doc = cut_at_sentence(cleaned, max_words) if cleaned else None
        if doc is None or word_count(doc) < min_words or not cloze_candidates(doc):
            continue
        key = normalise(doc)
        if key in seen:
            continue
        seen.add(key)
        documents.append(doc)
    return documents


def verbmem_item(document: str, prompt_words: int) -> dict[str, str]:
    """MUSE's excerpt split: the first ``prompt_words`` words, then the rest."""
    words = document.split()
    return {"prompt": " ".join(words[:prompt_words]), "gt": " ".join(words[prompt_words:])}


def cloze_candidates(document: str) -> list[tuple[str, int, int]]:
    """(sentence, start, end) of every salient span that can be blanked: a capitalised word of >= 2 letters not at
    the sentence start, or a number, in a sentence of >= MIN_CLOZE_SENTENCE_WORDS words, whose text occurs only
    once in that sentence (so the question does not give the answer away)."""
    out = []
    for sentence in split_sentences(document):
        if word_count(sentence) < MIN_CLOZE_SENTENCE_WORDS:
            continue
        spans = [m for m in _SPAN.finditer(sentence) if m.start() > 0]
        texts = [m.group() for m in spans]
        out.extend((sentence, m.start(), m.end()) for m in spans if texts.count(m.group()) == 1
                   and sentence.count(m.group()) == 1)
    return out


def cloze_qa(document: str, rng: random.Random) -> dict[str, str] | None:
    """One cloze question about ``document`` (a span chosen by ``rng``), or ``None`` if it has no candidate."""
    candidates = cloze_candidates(document)
    if not candidates:
        return None
    sentence, start, end = candidates[rng.randrange(len(candidates))]
    blanked = sentence[:start] + BLANK + sentence[end:]
    return {"question": QUESTION_TEMPLATE.format(sentence=blanked), "answer": sentence[start:end]}


def _rng(seed: int, *parts: str) -> random.Random:
    """A generator for one purpose; a str seed is hashed with sha512, so it does not depend on PYTHONHASHSEED."""
    return random.Random(":".join((str(seed), *parts)))


def _doc_rng(seed: int, document: str) -> random.Random:
    return _rng(seed, "qa", hashlib.sha256(document.encode("utf-8")).hexdigest())


def collect_qa(documents: Sequence[str], n: int, seed: int, exclude: set[str]) -> list[dict[str, str]]:
    """Up to ``n`` cloze QA items, one per document in order, skipping documents without a candidate and questions
    in ``exclude`` or already taken."""
    items: list[dict[str, str]] = []
    taken = set(exclude)
    for doc in documents:
        if len(items) == n:
            break
        qa = cloze_qa(doc, _doc_rng(seed, doc))
        if qa is None or qa["question"] in taken:
            continue
        taken.add(qa["question"])
        items.append(qa)
    return items


# --- the benchmark --------------------------------------------------------------------------------------------------


@dataclass
class MuseSynth:
    """A MUSE-style benchmark: documents, VerbMem excerpts and KnowMem QA (dicts in MUSE's JSON shape)."""

    config: MuseSynthConfig
    forget: list[str]
    retain: list[str]
    holdout: list[str]
    verbmem: list[dict[str, str]]  # {"prompt", "gt"}, one per forget document
    knowmem_forget: list[dict[str, str]]  # {"question", "answer"}
    knowmem_retain: list[dict[str, str]]
    knowmem_forget_icl: list[dict[str, str]] = field(default_factory=list)
    knowmem_retain_icl: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def content_hash(self) -> str:
        """The first 16 hex characters of the sha256 of the canonical JSON (sorted keys, no spaces) of
        :meth:`to_dict`."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def all_texts(self) -> list[str]:
        """Every document: forget, then retain, then holdout."""
        return [*self.forget, *self.retain, *self.holdout]


def source_texts(source: str) -> list[str]:
    """The raw documents of a source, in file order."""
    from obliviate.data.corpora import lee_texts, wikipedia_texts

    if source == "lee":
        return lee_texts()
    if source == "wikipedia":
        return wikipedia_texts("paragraph")[1]
    raise unknown_name_error("MUSE synth source", str(source), SOURCES)


def split_documents(documents: Sequence[str], cfg: MuseSynthConfig) -> tuple[list[str], ...]:
    """(forget, retain, holdout, left over) from a seeded shuffle of ``documents``."""
    need = cfg.n_documents + 2 * cfg.n_icl
    if len(documents) < need:
        raise ObliviateError(
            f"source {cfg.source!r} has {len(documents)} usable documents (distinct, >= min_words={cfg.min_words} "
            f"words after cutting at max_words={cfg.max_words}), but n_forget + n_retain + n_holdout + 2 * n_icl = "
            f"{cfg.n_forget} + {cfg.n_retain} + {cfg.n_holdout} + 2 * {cfg.n_icl} = {need} are needed; "
            f"lower the counts to fit {len(documents)}"
        )
    order = list(range(len(documents)))
    _rng(cfg.seed, "split").shuffle(order)
    shuffled = [documents[i] for i in order]
    a, b, c = cfg.n_forget, cfg.n_forget + cfg.n_retain, cfg.n_documents
    return shuffled[:a], shuffled[a:b], shuffled[b:c], shuffled[c:]


def _qa_side(docs: Sequence[str], cfg: MuseSynthConfig, side: str) -> list[dict[str, str]]:
    items = collect_qa(docs, cfg.n_qa, cfg.seed, set())
    if len(items) < cfg.n_qa:
        raise ObliviateError(f"only {len(items)} of the {len(docs)} {side} documents have a cloze answer span; "
                             f"lower n_qa={cfg.n_qa} to <= {len(items)}")
    return items


def _icl_items(pool: Sequence[str], cfg: MuseSynthConfig, qa: list[dict[str, str]]) -> list[dict[str, str]]:
    items = collect_qa(pool, 2 * cfg.n_icl, cfg.seed, {it["question"] for it in qa})
    if len(items) < 2 * cfg.n_icl:
        raise ObliviateError(f"only {len(items)} of the {len(pool)} left-over documents have a cloze answer span, "
                             f"but 2 * n_icl = {2 * cfg.n_icl} ICL examples are needed; lower n_icl or the "
                             f"document counts")
    return items


def build_muse_synth(cfg: MuseSynthConfig | None = None) -> MuseSynth:
    """The benchmark of ``cfg`` (default :class:`MuseSynthConfig`); deterministic in ``cfg``."""
    cfg = MuseSynthConfig() if cfg is None else cfg
    documents = prepare_documents(source_texts(cfg.source), cfg.min_words, cfg.max_words)
    forget, retain, holdout, pool = split_documents(documents, cfg)
    qa_f = _qa_side(forget, cfg, "forget")
    qa_r = _qa_side(retain, cfg, "retain")
    icl = _icl_items(pool, cfg, qa_f + qa_r)
    return MuseSynth(
        config=cfg,
        forget=forget,
        retain=retain,
        holdout=holdout,
        verbmem=[verbmem_item(doc, cfg.prompt_words) for doc in forget],
        knowmem_forget=qa_f,
        knowmem_retain=qa_r,
        knowmem_forget_icl=icl[:cfg.n_icl],
        knowmem_retain_icl=icl[cfg.n_icl:],
    )
