"""Canaries: random secrets planted in training text, to measure memorization in a pretrained LM (Carlini et al.,
2019, "The Secret Sharer"; used here as the TinyMem paper plants its artifacts: duplicated 1, 10, 100 times).

A canary is ``prefix + secret + suffix``: the template ``"The secret code of {key} is {secret}."`` with a made-up
name as the key (so every canary has its own prefix: a shared prefix could only ever complete to one secret) and a
secret of uniformly random characters from a small alphabet (digits by default), drawn from a seeded RNG. The
secret space R = alphabet^length is what exposure ranks the secret against (:mod:`obliviate.metrics.exposure`).

* :func:`make_canaries`: ``per_group`` canaries for each duplication count in ``groups`` plus ``held_out`` canaries
  with ``copies == 0``, never inserted (their exposure is the untrained baseline).
* :func:`mix_canaries`: every copy inserted at a random sentence boundary of a random text passage; the passages
  come back shuffled (all seeded).
* :func:`read_canary_file`: your own canaries, JSON Lines, one object per line, one of
    ``{"prefix": "...", "secret": "...", "suffix": "..."}``  (``suffix`` optional) or
    ``{"text": "...", "secret": "..."}``  (the secret is its LAST occurrence in the text) or
    ``{"text": "..."}``                   (the secret is the LAST run of digits 0-9 in the text),
  each optionally with ``"copies": N`` (how often to insert it when planting; 0 = held out, never inserted;
  default 1) and ``"id"``. The prefix must be non-empty (extraction prompts with it). The secret's alphabet, for
  exposure, is the smallest of digits, lowercase letters, lowercase letters + digits, letters + digits that holds
  every character of the secret; other characters are an error. Every error names the file and the line.
"""

from __future__ import annotations

import json
import random
import re
import string
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError

DEFAULT_TEMPLATE = "The secret code of {key} is {secret}."
DEFAULT_GROUPS = (1, 10, 100)  # TinyMem's duplication powers 10^0, 10^1, 10^2
DEFAULT_SECRET_LENGTH = 6
DEFAULT_EXACT_LIMIT = 1024  # exposure: rank among every candidate when |R| <= this (obliviate.metrics.exposure)
DEFAULT_SAMPLES = 256  # exposure: candidates sampled for the skew-normal estimate otherwise
ALPHABETS = {  # smallest first: read_canary_file picks the first that holds a secret
    "digits": string.digits,
    "lower": string.ascii_lowercase,
    "lower_digits": string.ascii_lowercase + string.digits,
    "alnum": string.ascii_letters + string.digits,
}
# made-up names for the {key} slot (20 x 20 = 400 distinct keys)
FIRST = ("Alma", "Boris", "Celia", "Dario", "Edda", "Felix", "Greta", "Hugo", "Ines", "Jonas", "Kira", "Lorenz",
         "Mira", "Nils", "Orla", "Pavel", "Quinn", "Rosa", "Sven", "Tilda")
LAST = ("Abernathy", "Brightwater", "Castellan", "Dunmore", "Eskildsen", "Fairweather", "Gundersen", "Holloway",
        "Ivanova", "Jablonski", "Kettleby", "Lindqvist", "Marchetti", "Northcott", "Okonkwo", "Pemberton",
        "Quaresma", "Ravenscroft", "Szabo", "Thornbury")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@dataclass(frozen=True)
class Canary:
    """One canary: ``text = prefix + secret + suffix``; ``copies`` is how often it is planted (0 = held out);
    ``alphabet`` names the secret's character set in :data:`ALPHABETS` (the secret space is alphabet^len(secret))."""

    id: str
    prefix: str
    secret: str
    suffix: str = ""
    copies: int = 1
    alphabet: str = "digits"

    def __post_init__(self) -> None:
        if not self.prefix.strip():
            raise ObliviateError(f"canary {self.id!r}: the prefix is empty (extraction prompts with it)")
        if not self.secret:
            raise ObliviateError(f"canary {self.id!r}: the secret is empty")
        if self.alphabet not in ALPHABETS:
            raise ObliviateError(f"canary {self.id!r}: unknown alphabet {self.alphabet!r} "
                                 f"(valid: {', '.join(ALPHABETS)})")
        bad = sorted(set(self.secret) - set(ALPHABETS[self.alphabet]))
        if bad:
            raise ObliviateError(f"canary {self.id!r}: secret {self.secret!r} has characters {bad} outside the "
                                 f"{self.alphabet} alphabet")
        if isinstance(self.copies, bool) or not isinstance(self.copies, int) or self.copies < 0:
            raise ObliviateError(f"canary {self.id!r}: copies must be an integer >= 0, got {self.copies!r}")

    @property
    def text(self) -> str:
        return self.prefix + self.secret + self.suffix

    def with_secret(self, secret: str) -> str:
        """The canary's text with another candidate secret in its place."""
        return self.prefix + secret + self.suffix

    @property
    def space_size(self) -> int:
        """|R| = |alphabet| ** len(secret): the number of candidate secrets."""
        return len(ALPHABETS[self.alphabet]) ** len(self.secret)

    @property
    def secret_start(self) -> int:
        """Character offset of the secret in :attr:`text`."""
        return len(self.prefix)


def _split_template(template: str) -> tuple[str, str]:
    if template.count("{secret}") != 1:
        raise ObliviateError(f"the canary template must contain {{secret}} exactly once, got {template!r}")
    head, tail = template.split("{secret}")
    if "{secret}" in tail or not head.replace("{key}", "").strip():
        raise ObliviateError(f"the canary template needs text before {{secret}} (the prompt), got {template!r}")
    if "{" in (head + tail).replace("{key}", ""):
        raise ObliviateError(f"the canary template may hold only {{key}} and {{secret}}, got {template!r}")
    return head, tail


def make_canaries(groups: Sequence[int] = DEFAULT_GROUPS, per_group: int = 1, held_out: int = 1,
                  template: str = DEFAULT_TEMPLATE, secret_length: int = DEFAULT_SECRET_LENGTH,
                  alphabet: str = "digits", seed: int = 0) -> list[Canary]:
    """``per_group`` canaries with ``copies = g`` for each g in ``groups`` (in that order), then ``held_out`` with
    ``copies = 0``. Secrets are uniform over alphabet^secret_length and distinct; keys (names) are distinct. The
    same arguments give the same canaries (``random.Random(seed)``)."""
    head, tail = _split_template(template)
    groups = [int(g) for g in groups]
    if not groups or any(g < 1 for g in groups):
        raise ObliviateError(f"canary groups (copies per canary) must be integers >= 1, got {list(groups)}")
    if per_group < 1 or held_out < 0:
        raise ObliviateError(f"per_group must be >= 1 and held_out >= 0, got {per_group} and {held_out}")
    if alphabet not in ALPHABETS:
        raise ObliviateError(f"unknown alphabet {alphabet!r} (valid: {', '.join(ALPHABETS)})")
    if secret_length < 1:
        raise ObliviateError(f"secret_length must be >= 1, got {secret_length}")
    copies = [g for g in groups for _ in range(per_group)] + [0] * held_out
    chars = ALPHABETS[alphabet]
    if len(chars) ** secret_length < 2 * len(copies):
        raise ObliviateError(f"{len(copies)} canaries need more than {len(chars) ** secret_length} possible secrets: "
                             "raise secret_length")
    if "{key}" in template and len(copies) > len(FIRST) * len(LAST):
        raise ObliviateError(f"at most {len(FIRST) * len(LAST)} canaries have distinct keys, asked for {len(copies)}")
    rng = random.Random(seed)
    keys = rng.sample([f"{f} {la}" for f in FIRST for la in LAST], len(copies)) if "{key}" in template else \
        [""] * len(copies)
    secrets: list[str] = []
    while len(secrets) < len(copies):
        s = "".join(rng.choice(chars) for _ in range(secret_length))
        if s not in secrets:
            secrets.append(s)
    return [Canary(f"c{i:03d}", head.replace("{key}", k), s, tail.replace("{key}", k), c, alphabet)
            for i, (k, s, c) in enumerate(zip(keys, secrets, copies))]


def alphabet_of(secret: str) -> str | None:
    """The smallest alphabet of :data:`ALPHABETS` holding every character of ``secret`` (None: no such one)."""
    for name, chars in ALPHABETS.items():
        if set(secret) <= set(chars):
            return name
    return None


def _row_canary(where: str, n: int, obj: dict[str, Any]) -> Canary:
    known = {"id", "prefix", "secret", "suffix", "text", "copies"}
    extra = sorted(set(obj) - known)
    if extra:
        raise ObliviateError(f"{where}: unknown key(s) {extra} (valid: {', '.join(sorted(known))})")
    for k in ("prefix", "secret", "suffix", "text"):
        if k in obj and not isinstance(obj[k], str):
            raise ObliviateError(f"{where}: {k!r} must be a string, got a {type(obj[k]).__name__}")
    if "text" in obj:
        if "prefix" in obj or "suffix" in obj:
            raise ObliviateError(f"{where}: give either 'text' (+ optional 'secret') or 'prefix' + 'secret', "
                                 "not both")
        text = obj["text"]
        if "secret" in obj:
            at = text.rfind(obj["secret"]) if obj["secret"] else -1
            if at < 0:
                raise ObliviateError(f"{where}: the secret {obj['secret']!r} does not occur in the text")
            secret = obj["secret"]
        else:
            runs = list(re.finditer(r"[0-9]+", text))
            if not runs:
                raise ObliviateError(f"{where}: no digits in 'text', so no secret (the rule: the last run of "
                                     "digits); give 'secret' or 'prefix' + 'secret'")
            at, secret = runs[-1].start(), runs[-1].group()
        prefix, suffix = text[:at], text[at + len(secret):]
    elif "prefix" in obj and "secret" in obj:
        prefix, secret, suffix = obj["prefix"], obj["secret"], obj.get("suffix", "")
    else:
        raise ObliviateError(f"{where}: expected keys 'prefix' and 'secret' (or 'text'), got "
                             f"{', '.join(repr(k) for k in obj) or 'none'}")
    if not secret:
        raise ObliviateError(f"{where}: the secret is empty")
    if not prefix.strip():
        raise ObliviateError(f"{where}: nothing precedes the secret (extraction prompts with the prefix)")
    alphabet = alphabet_of(secret)
    if alphabet is None:
        raise ObliviateError(f"{where}: secret {secret!r} has characters outside a-z, A-Z, 0-9; exposure ranks it "
                             "among all strings of one of: " + ", ".join(ALPHABETS))
    copies = obj.get("copies", 1)
    if isinstance(copies, bool) or not isinstance(copies, int) or copies < 0:
        raise ObliviateError(f"{where}: 'copies' must be an integer >= 0 (0 = held out), got {copies!r}")
    cid = obj.get("id", f"line{n}")
    if not isinstance(cid, str) or not cid:
        raise ObliviateError(f"{where}: 'id' must be a non-empty string, got {cid!r}")
    return Canary(cid, prefix, secret, suffix, copies, alphabet)


def read_canary_file(path: str | Path) -> list[Canary]:
    """Canaries from a JSON Lines file (the formats are in the module docstring). Errors name the file and line."""
    from obliviate.data.lm_files import jsonl_records, read_text_file

    p = Path(path)
    records = jsonl_records(p, read_text_file(p))
    if not records:
        raise ObliviateError(f"{str(p)!r} holds no canaries: expected one JSON object per line with 'prefix' and "
                             "'secret' (or 'text')")
    out: list[Canary] = []
    seen: dict[str, int] = {}
    for n, obj in records:
        where = f"{str(p)!r} line {n}"
        if not isinstance(obj, dict):
            raise ObliviateError(f"{where}: expected a JSON object, got a {type(obj).__name__}")
        c = _row_canary(where, n, obj)
        for key, what in ((c.id, "id"), (c.text, "canary text")):
            if f"{what}:{key}" in seen:
                raise ObliviateError(f"{where}: the same {what} {key!r} as line {seen[f'{what}:{key}']}")
            seen[f"{what}:{key}"] = n
        out.append(c)
    return out


def write_canary_file(path: str | Path, canaries: Sequence[Canary]) -> None:
    """The canaries as JSON Lines in the ``prefix``/``secret`` format :func:`read_canary_file` reads (atomic)."""
    from obliviate.io import atomic_write_text

    keys = ("id", "prefix", "secret", "suffix", "copies")
    atomic_write_text(path, "".join(json.dumps({k: asdict(c)[k] for k in keys}) + "\n" for c in canaries))


# --- text: passages, mixing --------------------------------------------------------------------------------------


def sentences(text: str) -> list[str]:
    """``text`` split after ., ! or ? followed by whitespace (a simple rule: abbreviations split too)."""
    return [s for s in _SENTENCE_END.split(" ".join(text.split())) if s]


def passages(texts: Sequence[str], max_words: int = 40) -> list[str]:
    """Whole sentences of each text packed greedily into passages of at most ``max_words`` words (a longer
    sentence is a passage of its own); passages never span two texts."""
    if max_words < 1:
        raise ObliviateError(f"max_words must be >= 1, got {max_words}")
    out: list[str] = []
    for text in texts:
        cur: list[str] = []
        words = 0
        for s in sentences(text):
            n = len(s.split())
            if cur and words + n > max_words:
                out.append(" ".join(cur))
                cur, words = [], 0
            cur.append(s)
            words += n
        if cur:
            out.append(" ".join(cur))
    return out


def offline_texts() -> tuple[str, list[str]]:
    """(source name, texts) of the default real text: gensim's Lee corpus, 300 ABC news articles (offline)."""
    from obliviate.data.corpora import LEE_FILE, lee_texts

    return f"gensim {LEE_FILE}", lee_texts()


def split_passages(items: Sequence[str], n_train: int, n_heldout: int, seed: int = 0) -> tuple[list[str], list[str]]:
    """(train, held-out): a seeded shuffle of ``items`` cut into ``n_train`` and ``n_heldout`` passages (fewer train
    passages when there are not enough; at least 2 train and ``n_heldout`` held-out are required)."""
    if n_heldout < 1 or n_train < 2:
        raise ObliviateError(f"need >= 2 train and >= 1 held-out passages, asked for {n_train} and {n_heldout}")
    if len(items) < n_heldout + 2:
        raise ObliviateError(f"the text has {len(items)} passages; need at least {n_heldout + 2} ({n_heldout} "
                             "held out + 2 to train on): give more text or fewer held-out passages")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    held = [items[i] for i in order[:n_heldout]]
    train = [items[i] for i in order[n_heldout:n_heldout + n_train]]
    return train, held


def mix_canaries(texts: Sequence[str], canaries: Sequence[Canary], seed: int = 0) -> tuple[list[str], list[int]]:
    """(documents, how many canary copies each holds): each canary's ``copies`` copies inserted into uniformly
    random passages of ``texts``, each at a uniformly random sentence boundary (start, between sentences, end),
    then the documents shuffled. Held-out canaries (copies 0) are not inserted."""
    if not texts:
        raise ObliviateError("mixing canaries needs at least one text passage")
    rng = random.Random(seed)
    hosted: list[list[str]] = [[] for _ in texts]
    for c in canaries:
        for _ in range(c.copies):
            hosted[rng.randrange(len(texts))].append(c.text)
    docs: list[tuple[str, int]] = []
    for text, extra in zip(texts, hosted):
        parts = sentences(text)
        for canary in extra:
            parts.insert(rng.randint(0, len(parts)), canary)
        docs.append((" ".join(parts), len(extra)))
    rng.shuffle(docs)
    return [d for d, _ in docs], [k for _, k in docs]
