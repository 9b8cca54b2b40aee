"""Alternate (winner) answers of DPO-style methods read with the forget data: the records' own ``alternate`` (or the
AltPO authors' ``sub_answer``) keys, a list given by the caller, or "I don't know" answers drawn from a pool, turned
into token rows aligned with the forget rows (:func:`obliviate.data.lm_files.lm_unlearn_data` puts them in
``LMUnlearnData.extra["alternate"]``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from obliviate.data.lm_files import QA_SUFFIXES, qa_rows, read_jsonl_located
from obliviate.errors import ObliviateError
from obliviate.families.lm import TokenData

ALTERNATE_KEYS = ("alternate", "sub_answer")  # open-unlearning's key; the AltPO authors' files use "sub_answer"
ALTERNATE = "alternate"  # the name of the winners' split in LMUnlearnData.extra


def _located_qa(spec: Any, name: str) -> list[tuple[str, Mapping[str, Any]]] | None:
    """The QA records of a forget spec, each with where it is; None for text data."""
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        return read_jsonl_located(p) if p.suffix.lower() in QA_SUFFIXES else None
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)) and spec and \
            all(isinstance(x, Mapping) for x in spec):
        return [(f"{name} item {i}", x) for i, x in enumerate(spec)]
    return None


def _record_alternate(obj: Mapping[str, Any], where: str) -> str | None:
    present = [k for k in ALTERNATE_KEYS if k in obj]
    if not present:
        return None
    if len(present) > 1:
        raise ObliviateError(f"{where}: has both {' and '.join(repr(k) for k in present)}; keep one (the "
                             "alternate answer)")
    key = present[0]
    v = obj[key]
    if not isinstance(v, str):
        raise ObliviateError(f"{where}: {key!r} must be a string, got a {type(v).__name__}")
    if not v.strip():
        raise ObliviateError(f"{where}: the {key!r} answer is empty (nothing to prefer)")
    return v


def alternate_texts(forget: Any, name: str = "forget") -> list[str] | None:
    """The alternate answers the forget records carry (key ``alternate``, or the AltPO authors' ``sub_answer``),
    one per record, in order; None when no record has one (or the data is text). Some records with one and others
    without is an error naming the first record without."""
    located = _located_qa(forget, name)
    if located is None:
        return None
    alts = [_record_alternate(obj, where) for where, obj in located]
    have = [a is not None for a in alts]
    if not any(have):
        return None
    if not all(have):
        raise ObliviateError(f"{located[have.index(False)][0]}: no 'alternate' key, but {sum(have)} of the "
                             f"{len(alts)} forget records have one; give every record its alternate answer (or none)")
    return [a for a in alts if a is not None]


def _alternate_rows(located: list[tuple[str, Mapping[str, Any]]], texts: Sequence[str], tokenizer: Any,
                    opts: dict[str, Any], pad_id: int) -> TokenData:
    """Row i = forget record i's prompt + ``texts[i]`` + EOS (the prompt unscored), tokenized as the forget rows."""
    for (where, _), t in zip(located, texts):
        if not isinstance(t, str) or not t.strip():
            raise ObliviateError(f"{where}: the alternate answer is empty (nothing to prefer)")
    items = [{"question": obj["question"], "answer": t} for (_, obj), t in zip(located, texts)]
    rows, prompt_lens = qa_rows(items, tokenizer, source="alternate", **opts)
    for i, (seq, start) in enumerate(zip(rows, prompt_lens)):
        if len(seq) - max(start, 1) < 1:
            raise ObliviateError(f"{located[i][0]}: the alternate answer has no token left after tokenization "
                                 f"(max_length {opts['max_length']}); raise max_length or shorten the question")
    return TokenData.from_sequences(rows, pad_id, prompt_lens=prompt_lens)


def alternate_split(forget: Any, tokenizer: Any, opts: dict[str, Any], pad_id: int, alternates: Any, idk: Any,
                     idk_seed: int) -> TokenData | None:
    """The winners' TokenData (see :func:`lm_unlearn_data`), or None."""
    from obliviate.data.idk import assign_idk, idk_pool

    use_idk = idk is not None and idk is not False
    explicit = alternates is not None and not isinstance(alternates, bool)
    if not use_idk and alternates is False:
        return None
    if use_idk and explicit:
        raise ObliviateError("give either alternates=[...] or idk=..., not both (idk makes the alternates)")
    located = _located_qa(forget, "forget")
    if located is None:
        if use_idk or explicit or alternates is True:
            raise ObliviateError("alternate answers pair with QA forget data ({'question', 'answer'} records, e.g. a "
                                 ".jsonl file); the forget data here is text")
        return None
    if use_idk:
        texts: Sequence[str] | None = assign_idk(len(located), idk_seed, idk_pool(idk))
    elif explicit:
        texts = list(alternates)
        if len(texts) != len(located):
            raise ObliviateError(f"alternates has {len(texts)} answers for {len(located)} forget records (one each)")
    else:
        texts = alternate_texts(forget)
        if texts is None:
            if alternates is True:
                raise ObliviateError("the forget records carry no 'alternate' answers (add an 'alternate' key to "
                                     "each, e.g. with `obliviate alternates`)")
            return None
    return _alternate_rows(located, texts, tokenizer, opts, pad_id)
