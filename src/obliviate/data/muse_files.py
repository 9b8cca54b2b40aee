"""MUSE's published file layout (``muse-bench/MUSE-News`` / ``MUSE-Books``): write an offline benchmark built by
:mod:`obliviate.data.muse_synth` into it, and read a local copy of it (yours or the published one) back.

Layout (paths relative to the corpus directory)::

    raw/forget.txt  raw/retain1.txt  raw/holdout.txt           documents separated by a blank line (our choice)
    verbmem/forget.json                                         [{"prompt", "gt"}]
    knowmem/{forget,retain}_qa.json, knowmem/*_qa_icl.json      [{"question", "answer"}]
    privleak/{forget,retain,holdout}.json                       [{"text"}]
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from obliviate.data.lm_files import read_text_file
from obliviate.data.muse_synth import MuseSynth
from obliviate.errors import ObliviateError

RAW_FILES = {"forget": "raw/forget.txt", "retain": "raw/retain1.txt", "holdout": "raw/holdout.txt"}
VERBMEM_FILE = "verbmem/forget.json"
KNOWMEM_FILES = {
    "knowmem_forget": "knowmem/forget_qa.json",
    "knowmem_forget_icl": "knowmem/forget_qa_icl.json",
    "knowmem_retain": "knowmem/retain_qa.json",
    "knowmem_retain_icl": "knowmem/retain_qa_icl.json",
}
PRIVLEAK_FILES = {
    "privleak_forget": "privleak/forget.json",
    "privleak_retain": "privleak/retain.json",
    "privleak_holdout": "privleak/holdout.json",
}
LAYOUT = (*RAW_FILES.values(), VERBMEM_FILE, *KNOWMEM_FILES.values(), *PRIVLEAK_FILES.values())

# --- MUSE's file layout ---------------------------------------------------------------------------------------------


def _json_text(items: Any) -> str:
    return json.dumps(items, ensure_ascii=False, indent=2) + "\n"


def muse_file_contents(synth: MuseSynth) -> dict[str, str]:
    """Relative path -> text of every file of the layout, in ``LAYOUT`` order."""
    contents = {path: "\n\n".join(getattr(synth, key)) + "\n" for key, path in RAW_FILES.items()}
    contents[VERBMEM_FILE] = _json_text(synth.verbmem)
    contents.update({path: _json_text(getattr(synth, key)) for key, path in KNOWMEM_FILES.items()})
    for key, path in PRIVLEAK_FILES.items():
        contents[path] = _json_text([{"text": t} for t in getattr(synth, key.removeprefix("privleak_"))])
    return contents


def _atomic_write(path: Path, text: str) -> None:
    """Write via a temporary file in the same directory, then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_muse_files(synth: MuseSynth, directory: str | Path, overwrite: bool = False) -> list[Path]:
    """Write ``synth`` in MUSE's layout (``LAYOUT``) under ``directory``; return the paths written. Refuses, before
    writing anything, if a file of the layout exists, unless ``overwrite=True``."""
    root = Path(directory)
    contents = muse_file_contents(synth)
    targets = [root / rel for rel in contents]
    existing = [str(p) for p in targets if p.exists()]
    if existing and not overwrite:
        raise ObliviateError(f"{len(existing)} MUSE files already exist under {str(root)!r} (e.g. {existing[0]!r}); "
                             f"pass overwrite=True to replace them")
    for path, text in zip(targets, contents.values()):
        _atomic_write(path, text)
    return targets


def read_raw_file(path: str | Path) -> list[str]:
    """The documents of a raw text file: blank-line separated blocks, stripped."""
    p = Path(path)
    docs = [block.strip() for block in re.split(r"\n\s*\n", read_text_file(p))]
    docs = [d for d in docs if d]
    if not docs:
        raise ObliviateError(f"{str(p)!r} holds no text; expected documents separated by blank lines")
    return docs


def parse_privleak_items(data: Any, source: str) -> list[str]:
    """The texts of a list of ``{"text": str}`` objects; errors name ``source`` and the item."""
    if not isinstance(data, list):
        raise ObliviateError(f"{source}: expected a JSON list of objects with 'text', got {type(data).__name__}")
    if not data:
        raise ObliviateError(f"{source}: no items")
    texts = []
    for i, item in enumerate(data):
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            got = f"keys: {', '.join(map(str, item))}" if isinstance(item, dict) else type(item).__name__
            raise ObliviateError(f"{source}: item {i} must be an object with a string 'text' field ({got})")
        texts.append(item["text"])
    return texts


def read_privleak_file(path: str | Path) -> list[str]:
    """MUSE's ``privleak/{forget,retain,holdout}.json``: a JSON list of ``{"text": str}``."""
    p = Path(path)
    try:
        data = json.loads(read_text_file(p))
    except json.JSONDecodeError as exc:
        raise ObliviateError(f"{str(p)!r}: not valid JSON ({exc})") from None
    return parse_privleak_items(data, str(p))


def _check_layout(root: Path) -> None:
    if not root.is_dir():
        raise ObliviateError(f"{str(root)!r} is not a directory; expected a MUSE data directory holding "
                             f"{', '.join(LAYOUT)}")
    missing = [rel for rel in LAYOUT if not (root / rel).is_file()]
    if missing:
        raise ObliviateError(f"{str(root)!r} lacks {', '.join(missing)}; a MUSE data directory holds "
                             f"{', '.join(LAYOUT)}")


def read_muse_dir(directory: str | Path) -> dict[str, Any]:
    """A MUSE data directory (``LAYOUT``, as :func:`write_muse_files` writes it) from a local path.

    Keys: ``forget``, ``retain``, ``holdout`` (documents of the raw files), ``verbmem`` (``VerbMemItem``s),
    ``knowmem_forget``, ``knowmem_forget_icl``, ``knowmem_retain``, ``knowmem_retain_icl`` (``QAItem``s; the ICL
    lists may be empty), ``privleak_forget``, ``privleak_retain``, ``privleak_holdout`` (texts).
    """
    from obliviate.metrics.muse import read_knowmem_file, read_verbmem_file  # imports torch

    root = Path(directory)
    _check_layout(root)
    out: dict[str, Any] = {key: read_raw_file(root / rel) for key, rel in RAW_FILES.items()}
    out["verbmem"] = read_verbmem_file(root / VERBMEM_FILE)
    for key, rel in KNOWMEM_FILES.items():
        out[key] = read_knowmem_file(root / rel, allow_empty=key.endswith("_icl"))
    out.update({key: read_privleak_file(root / rel) for key, rel in PRIVLEAK_FILES.items()})
    return out
