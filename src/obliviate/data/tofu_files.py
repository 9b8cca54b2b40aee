"""TOFU's published file layout: :func:`write_tofu_files` writes a :class:`~obliviate.data.tofu_synth.TofuSynth`
as JSON Lines under the HF file names (plus our own ``world_corpus.txt``), and :func:`read_tofu_dir` /
:func:`read_tofu_file` read that layout from a local directory -- the real TOFU files included, one JSON object per
line or one JSON array per file -- with errors that name the file and the line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from obliviate.data.lm_files import jsonl_records, read_text_file
from obliviate.data.tofu_synth import FORGET_SPLITS, TofuSynth
from obliviate.errors import ObliviateError, unknown_name_error

QA_KEYS = ("question", "answer")
PERTURBED_KEYS = ("question", "answer", "paraphrased_answer", "perturbed_answer")
UTILITY_KEYS = ("question", "answer", "perturbed_answer")
CORPUS_FILE = "world_corpus.txt"


def _split_number(forget: str) -> str:
    """"forget10" -> "10" (after checking the name)."""
    if forget not in FORGET_SPLITS:
        raise unknown_name_error("TOFU forget split", forget, FORGET_SPLITS)
    return forget.removeprefix("forget")


def _retain_file(forget: str) -> str:
    return f"retain{100 - int(_split_number(forget))}.json"


def _jsonl(items: Sequence[Mapping[str, Any]]) -> str:
    return "".join(json.dumps(dict(it), ensure_ascii=False) + "\n" for it in items)


def _atomic_write(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def tofu_file_contents(synth: TofuSynth, forget: str = "forget10") -> dict[str, str]:
    """File name -> text of TOFU's layout for ``forget`` (what :func:`write_tofu_files` writes)."""
    nn = _split_number(forget)
    forget_items, retain_items = synth.forget_split(forget)
    files = {f"{forget}.json": _jsonl([{k: it[k] for k in QA_KEYS} for it in forget_items]),
             f"{forget}_perturbed.json": _jsonl(forget_items),
             _retain_file(forget): _jsonl([{k: it[k] for k in QA_KEYS} for it in retain_items]),
             "retain_perturbed.json": _jsonl(synth.retain_eval(forget)),
             "real_authors_perturbed.json": _jsonl(synth.real_authors),
             "world_facts_perturbed.json": _jsonl(synth.world_facts)}
    holdout = synth.holdout_split(forget)
    if holdout:
        files[f"holdout{nn}.json"] = _jsonl(holdout)
    files[CORPUS_FILE] = "\n\n".join(synth.world_corpus) + "\n"
    return files


def write_tofu_files(synth: TofuSynth, directory: str | Path, forget: str = "forget10",
                     overwrite: bool = False) -> list[Path]:
    """Write ``synth`` in TOFU's published layout (JSON Lines under the HF file names) for one forget split:

    ``{forget}.json`` (question / answer) and ``{forget}_perturbed.json`` (full items), ``retain{100-N}.json``
    (the retain split, question / answer), ``retain_perturbed.json`` (the retain evaluation set: the first
    ``len(forget)`` retain items, full), ``real_authors_perturbed.json``, ``world_facts_perturbed.json``,
    ``holdout{N}.json`` (when there are holdout authors) and ``world_corpus.txt`` (ours: paragraphs separated by
    blank lines). Each file is written atomically; existing files are an error unless ``overwrite``. Returns the
    paths written."""
    files = tofu_file_contents(synth, forget)
    d = Path(directory)
    if d.exists() and not d.is_dir():
        raise ObliviateError(f"{str(d)!r} exists and is not a directory")
    paths = [d / name for name in files]
    existing = [p.name for p in paths if p.exists()]
    if existing and not overwrite:
        raise ObliviateError(f"{str(d)!r} already holds {', '.join(existing)}: pass overwrite=True to replace them")
    d.mkdir(parents=True, exist_ok=True)
    for path, text in zip(paths, files.values()):
        _atomic_write(path, text)
    return paths


_WS = re.compile(r"[ \t\n\r]*")


def _array_records(text: str) -> list[tuple[int, Any]]:
    """(line where it starts, element) for each element of a valid JSON array."""
    dec = json.JSONDecoder()
    i = _WS.match(text, text.index("[") + 1).end()
    line, seen = 1, 0
    out = []
    while text[i] != "]":
        obj, end = dec.raw_decode(text, i)
        line += text.count("\n", seen, i)
        seen = i
        out.append((line, obj))
        i = _WS.match(text, end).end()
        if text[i] == ",":
            i = _WS.match(text, i + 1).end()
    return out


def _load_records(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed value) for each record of a JSON Lines file or a file holding one JSON array."""
    text = read_text_file(path)
    if not text.strip():
        raise ObliviateError(f"{str(path)!r} is empty: expected one JSON object per line (or a JSON array)")
    if text.lstrip().startswith("["):
        try:
            json.loads(text)
        except json.JSONDecodeError as exc:
            raise ObliviateError(f"{str(path)!r} line {exc.lineno}: invalid JSON ({exc.msg} at column "
                                 f"{exc.colno})") from None
        return _array_records(text)
    return jsonl_records(path, text)


def _check_item(path: Path, line: int, obj: Any, keys: Sequence[str]) -> None:
    """A record must be an object with string ``keys`` (``perturbed_answer``: a non-empty list of strings)."""
    where = f"{str(path)!r} line {line}"
    if not isinstance(obj, dict):
        raise ObliviateError(f"{where}: expected a JSON object with keys {', '.join(keys)}, got a "
                             f"{type(obj).__name__}")
    for k in keys:
        if k not in obj:
            raise ObliviateError(f"{where}: missing field {k!r} (required: {', '.join(keys)}; it has "
                                 f"{', '.join(obj) or 'no fields'})")
        v = obj[k]
        if k == "perturbed_answer":
            if not isinstance(v, list) or not v or not all(isinstance(x, str) for x in v):
                raise ObliviateError(f"{where}: 'perturbed_answer' must be a non-empty list of strings, got {v!r}")
        elif not isinstance(v, str):
            raise ObliviateError(f"{where}: {k!r} must be a string, got a {type(v).__name__}")


def _check_perturbed_counts(path: Path, records: Sequence[tuple[int, Any]]) -> None:
    """Every item with perturbed answers has as many as the first one."""
    first: tuple[int, int] | None = None
    for line, obj in records:
        if isinstance(obj.get("perturbed_answer"), list):
            k = len(obj["perturbed_answer"])
            if first is None:
                first = (line, k)
            elif k != first[1]:
                raise ObliviateError(f"{str(path)!r} line {line}: {k} perturbed answers, but line {first[0]} has "
                                     f"{first[1]} (every item of a split needs the same number)")


def read_tofu_file(path: str | Path, keys: Sequence[str] = QA_KEYS) -> list[dict[str, Any]]:
    """The items of one TOFU file (JSON Lines or one JSON array), checked: required ``keys``, and the same number of
    perturbed answers in every item. Errors name the file and the line."""
    p = Path(path)
    if not p.is_file():
        raise ObliviateError(f"{str(p)!r} does not exist")
    records = _load_records(p)
    if not records:
        raise ObliviateError(f"{str(p)!r} holds no items")
    for line, obj in records:
        _check_item(p, line, obj, keys)
    _check_perturbed_counts(p, records)
    return [obj for _, obj in records]


def _split_files(forget: str) -> dict[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    """split -> the files that can hold it, in order of preference, each with its required keys."""
    nn = _split_number(forget)
    return {"forget": ((f"{forget}_perturbed.json", PERTURBED_KEYS), (f"{forget}.json", QA_KEYS)),
            "retain": (("retain_perturbed.json", PERTURBED_KEYS), (_retain_file(forget), QA_KEYS)),
            "retain_train": ((_retain_file(forget), QA_KEYS),),
            "real_authors": (("real_authors_perturbed.json", UTILITY_KEYS),),
            "world_facts": (("world_facts_perturbed.json", UTILITY_KEYS),),
            "holdout": ((f"holdout{nn}.json", QA_KEYS),)}


OPTIONAL_SPLITS = ("retain_train", "holdout")


def read_tofu_dir(directory: str | Path, forget: str = "forget10") -> dict[str, list[dict[str, Any]]]:
    """TOFU's published layout from a local directory, for one forget split.

    Keys: ``forget`` (``{forget}_perturbed.json``, else ``{forget}.json``), ``retain`` (the evaluation set
    ``retain_perturbed.json``, else ``retain{100-N}.json``), ``real_authors`` and ``world_facts``
    (``*_perturbed.json``) -- all required -- and, when the files are there, ``retain_train``
    (``retain{100-N}.json``: the retain split to train on) and ``holdout`` (``holdout{N}.json``). The world corpus
    (``world_corpus.txt``) is read with :func:`obliviate.data.lm_files.read_paragraphs`."""
    d = Path(directory)
    if not d.is_dir():
        raise ObliviateError(f"TOFU directory {str(d)!r} does not exist or is not a directory")
    out: dict[str, list[dict[str, Any]]] = {}
    for split, candidates in _split_files(forget).items():
        found = next(((name, keys) for name, keys in candidates if (d / name).is_file()), None)
        if found is None:
            if split in OPTIONAL_SPLITS:
                continue
            names = " or ".join(repr(name) for name, _ in candidates)
            raise ObliviateError(f"{str(d)!r} has no file for the {split!r} split of {forget}: expected {names} "
                                 f"(TOFU's layout: {', '.join(c[0][0] for c in _split_files(forget).values())})")
        out[split] = read_tofu_file(d / found[0], found[1])
    return out
