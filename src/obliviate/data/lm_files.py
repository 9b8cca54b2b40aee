"""Forget / retain data for a Hugging Face causal LM from files: jsonl QA pairs or plain text.

* ``.jsonl`` (or ``.json``: a JSON list, or one object per line): objects with string ``question`` and ``answer``.
  Each item becomes prompt + answer + EOS; only the answer and EOS are scored (the prompt's labels are -100), the
  TOFU / open-unlearning convention. The prompt is ``template.format(question=...)`` or, with
  ``chat_template=True``, the tokenizer's own chat template (user = question, assistant = answer).
* ``.txt``: one document per blank-line-separated paragraph, + EOS, cut into ``max_length`` chunks; every token
  is scored.

Every error names the file, and the line or item, it is about.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData

DEFAULT_TEMPLATE = "Question: {question}\nAnswer: "
QA_KEYS = ("question", "answer")
QA_SUFFIXES = (".jsonl", ".json")
TEXT_SUFFIXES = (".txt",)

Seqs = tuple[list[list[int]], list[int] | None]  # token lists and, for QA, each one's prompt length


# --- reading -------------------------------------------------------------------------------------------------------


def read_text_file(path: Path) -> str:
    """A file's UTF-8 text; a missing file or other bytes are errors naming the file."""
    if not path.is_file():
        raise ObliviateError(f"{str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ObliviateError(f"{str(path)!r} is not UTF-8 text: {exc}") from None


def jsonl_records(path: Path, text: str) -> list[tuple[int, Any]]:
    """(line number, parsed value) for each non-blank line of JSON Lines ``text`` read from ``path``; a line that is
    not JSON is an error naming the file, the line and the column."""
    records = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append((n, json.loads(line)))
        except json.JSONDecodeError as exc:
            raise ObliviateError(f"{str(path)!r} line {n}: invalid JSON ({exc.msg} at column {exc.colno})") from None
    return records


def _records(path: Path, keys: Sequence[str]) -> tuple[str, list[tuple[int, dict[str, Any]]]]:
    """("line" or "item", [(its number, object)]) for the records of a jsonl file, or of a .json file holding a
    list (numbered by item: its lines do not map to items)."""
    text = read_text_file(path)
    if not text.strip():
        raise ObliviateError(f"{str(path)!r} is empty: expected one JSON object per line with keys "
                             f"{', '.join(repr(k) for k in keys)}")
    records: list[tuple[int, Any]] = []
    stripped = text.lstrip()
    if path.suffix == ".json" and stripped.startswith("["):
        try:
            items = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ObliviateError(f"{str(path)!r} line {exc.lineno}: invalid JSON ({exc.msg})") from None
        # a list: report the item number (the file's lines do not map to items)
        records = [(i, obj) for i, obj in enumerate(items)]
        where = "item"
    else:
        where = "line"
        records = jsonl_records(path, text)
    if not records:
        raise ObliviateError(f"{str(path)!r} holds no records")
    for n, obj in records:
        if not isinstance(obj, dict):
            raise ObliviateError(f"{str(path)!r} {where} {n}: expected a JSON object with keys "
                                 f"{', '.join(repr(k) for k in keys)}, got a {type(obj).__name__}")
        for k in keys:
            if k not in obj:
                raise ObliviateError(f"{str(path)!r} {where} {n}: missing key {k!r} (it has "
                                     f"{', '.join(repr(x) for x in obj) or 'no keys'})")
            if not isinstance(obj[k], str):
                raise ObliviateError(f"{str(path)!r} {where} {n}: {k!r} must be a string, got a "
                                     f"{type(obj[k]).__name__}")
    return where, records


def read_jsonl(path: str | Path, keys: Sequence[str] = QA_KEYS) -> list[dict[str, Any]]:
    """The objects of a jsonl file (blank lines skipped), each checked to have string values under ``keys``.
    Invalid JSON, a line that is not an object, a missing key and an empty file are errors naming file and line."""
    return [obj for _, obj in _records(Path(path), keys)[1]]


def read_jsonl_located(path: str | Path, keys: Sequence[str] = QA_KEYS) -> list[tuple[str, dict[str, Any]]]:
    """As :func:`read_jsonl`, each object with where it is (``"'f.jsonl' line 3"``), for later error messages."""
    where, records = _records(Path(path), keys)
    return [(f"{str(path)!r} {where} {n}", obj) for n, obj in records]


def read_paragraphs(path: str | Path) -> list[str]:
    """The blank-line-separated paragraphs of a text file (stripped; at least one)."""
    p = Path(path)
    text = read_text_file(p)
    paras = [t.strip() for t in re.split(r"\n\s*\n", text) if t.strip()]
    if not paras:
        raise ObliviateError(f"{str(p)!r} holds no text (empty or whitespace only)")
    return paras


# --- tokenizing ----------------------------------------------------------------------------------------------------


def pad_id_of(tokenizer: Any) -> int:
    """The tokenizer's pad id, else its EOS id (padding is known from row lengths, so pad may equal EOS)."""
    for name in ("pad_token_id", "eos_token_id"):
        v = getattr(tokenizer, name, None)
        if v is not None:
            return int(v)
    raise ObliviateError("the tokenizer has neither a pad nor an EOS token: set tokenizer.pad_token")


def _eos_id(tokenizer: Any) -> int:
    eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        raise ObliviateError("the tokenizer has no EOS token (tokenizer.eos_token): QA answers end with EOS")
    return int(eos)


def _ids(tokenizer: Any, text: str, special: bool) -> list[int]:
    return list(tokenizer(text, add_special_tokens=special)["input_ids"])


def _chat_prompt_and_answer(tokenizer: Any, question: str, answer: str, eos: int) -> tuple[list[int], list[int]]:
    """Prompt = the chat template with ``add_generation_prompt``; answer = what the full conversation adds after it
    (the template's own end-of-turn marker included), + EOS unless the template already put one there."""
    if not getattr(tokenizer, "chat_template", None):
        raise ObliviateError("chat_template=True, but the tokenizer has no chat template (tokenizer.chat_template); "
                             "use a prompt template instead")
    user = [{"role": "user", "content": question}]
    prompt_text = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    full_text = tokenizer.apply_chat_template([*user, {"role": "assistant", "content": answer}], tokenize=False)
    prompt = _ids(tokenizer, prompt_text, special=False)  # the template writes its own BOS where it wants one
    if full_text.startswith(prompt_text):
        ans = _ids(tokenizer, full_text[len(prompt_text):], special=False)
    else:  # a template that renders the turn differently once answered: fall back to the plain answer
        ans = _ids(tokenizer, answer, special=False)
    if eos not in ans:
        ans.append(eos)
    return prompt, ans


def qa_rows(items: Sequence[Mapping[str, Any]], tokenizer: Any, template: str = DEFAULT_TEMPLATE,
            chat_template: bool = False, max_length: int = 512, source: str | None = None) -> Seqs:
    """Token lists prompt + answer + EOS and each one's prompt length (the prompt is not scored).

    An item whose answer is cut away entirely by ``max_length``, or whose answer is empty, is an error naming the
    item's index (0-based) and ``source``."""
    if max_length < 2:
        raise ObliviateError(f"max_length must be >= 2, got {max_length}")
    if not chat_template and "{question}" not in template:
        raise ObliviateError(f"the prompt template must contain {{question}}, got {template!r}")
    where = f"{source} " if source else ""
    eos = _eos_id(tokenizer)
    seqs, prompt_lens = [], []
    for i, item in enumerate(items):
        if not isinstance(item, Mapping) or any(not isinstance(item.get(k), str) for k in QA_KEYS):
            raise ObliviateError(f"{where}item {i}: expected a mapping with string 'question' and 'answer'")
        q, a = item["question"], item["answer"]
        if not a.strip():
            raise ObliviateError(f"{where}item {i}: the answer is empty (nothing to score)")
        if chat_template:
            prompt, ans = _chat_prompt_and_answer(tokenizer, q, a, eos)
        else:
            try:
                prompt_text = template.format(question=q)
            except (KeyError, IndexError, ValueError) as exc:
                raise ObliviateError(f"prompt template {template!r}: {exc!r} (use {{question}}; write literal "
                                     "braces as {{ and }})") from None
            prompt = _ids(tokenizer, prompt_text, special=True)
            ans = [*_ids(tokenizer, a, special=False), eos]
        if len(prompt) >= max_length:
            raise ObliviateError(f"{where}item {i}: the prompt is {len(prompt)} tokens, so max_length {max_length} "
                                 "leaves no answer token; raise max_length or shorten the question")
        seqs.append((prompt + ans)[:max_length])
        prompt_lens.append(len(prompt))
    if not seqs:
        raise ObliviateError(f"{where}holds no QA items")
    return seqs, prompt_lens


def text_rows(path_or_texts: str | Path | Sequence[str], tokenizer: Any, max_length: int = 512,
              source: str | None = None) -> Seqs:
    """Token lists of documents (+ EOS) cut into ``max_length`` chunks; every token is scored. A path reads a text
    file (one document per blank-line-separated paragraph); a list is taken as documents, one each."""
    if max_length < 2:
        raise ObliviateError(f"max_length must be >= 2, got {max_length}")
    if isinstance(path_or_texts, (str, Path)):
        source = source or str(path_or_texts)
        docs = read_paragraphs(path_or_texts)
    else:
        docs = list(path_or_texts)
        for i, d in enumerate(docs):
            if not isinstance(d, str) or not d.strip():
                raise ObliviateError(f"{source + ' ' if source else ''}text {i} is "
                                     f"{'empty' if isinstance(d, str) else 'a ' + type(d).__name__}")
        if not docs:
            raise ObliviateError(f"{source + ' ' if source else ''}holds no texts")
    eos = _eos_id(tokenizer)
    seqs = []
    for d in docs:
        ids = [*_ids(tokenizer, d, special=True), eos]
        # a 1-token tail chunk has no next-token target: it is dropped
        seqs += [ids[s:s + max_length] for s in range(0, len(ids), max_length) if len(ids[s:s + max_length]) > 1]
    return seqs, None


def load_split(path: str | Path, tokenizer: Any, template: str = DEFAULT_TEMPLATE, chat_template: bool = False,
               max_length: int = 512) -> Seqs:
    """One split from a file: ``.jsonl``/``.json`` QA pairs (:func:`qa_rows`) or ``.txt`` text (:func:`text_rows`)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in QA_SUFFIXES:
        return qa_rows(read_jsonl(p), tokenizer, template, chat_template, max_length, source=str(p))
    if suffix in TEXT_SUFFIXES:
        return text_rows(p, tokenizer, max_length)
    raise ObliviateError(f"{str(p)!r}: unknown data file type {p.suffix or '(none)'!r} "
                         f"(valid: {', '.join(QA_SUFFIXES + TEXT_SUFFIXES)})")


def _split(spec: Any, tokenizer: Any, name: str, template: str, chat_template: bool, max_length: int) -> Seqs:
    """A path, a list of QA mappings or a list of texts."""
    if isinstance(spec, (str, Path)):
        return load_split(spec, tokenizer, template, chat_template, max_length)
    if isinstance(spec, Sequence) and spec and all(isinstance(x, Mapping) for x in spec):
        return qa_rows(spec, tokenizer, template, chat_template, max_length, source=name)
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        return text_rows(spec, tokenizer, max_length, source=name)
    raise ObliviateError(f"{name}: expected a file path, a list of {{'question', 'answer'}} mappings or a list of "
                         f"texts, got a {type(spec).__name__}")


def _check_rows(seqs: list[list[int]], prompt_lens: list[int] | None, pad_id: int, eos: int | None,
                name: str) -> None:
    """Every row must score a target and must not be padding only."""
    for i, s in enumerate(seqs):
        if pad_id != eos and s and all(t == pad_id for t in s):
            raise ObliviateError(f"{name} row {i} is padding only (token {pad_id})")
        start = 0 if prompt_lens is None else prompt_lens[i]
        if len(s) - max(start, 1) < 1:
            raise ObliviateError(f"{name} row {i} has no scored token")


def _to_token_data(seqs: Seqs, pad_id: int, eos: int | None, name: str) -> TokenData:
    rows, prompt_lens = seqs
    _check_rows(rows, prompt_lens, pad_id, eos, name)
    return TokenData.from_sequences(rows, pad_id, prompt_lens=prompt_lens)


# --- alternates (the winners of DPO-style methods: IdkDPO, AltPO) -------------------------------------------------

def lm_unlearn_data(tokenizer: Any, forget: Any, retain: Any = None, template: str = DEFAULT_TEMPLATE,
                    chat_template: bool = False, max_length: int = 512, alternates: bool | Sequence[str] | None = None,
                    idk: bool | str | Path | Sequence[str] | None = False, idk_seed: int = 0) -> LMUnlearnData:
    """:class:`LMUnlearnData` from forget (and retain) data: each a file path (``.jsonl``/``.json`` QA, ``.txt``),
    a list of ``{"question", "answer"}`` mappings, or a list of texts. Forget data identical to the retain data is
    an error (unlearning would fight itself).

    Alternate answers (the winners of DPO-style methods) go to ``extra["alternate"]``, row i = forget record i's
    prompt + the alternate + EOS. ``alternates``: None (default) = the forget records' own ``alternate`` (or
    ``sub_answer``) keys when they have them; True = those keys are required; False = ignored; a list of strings =
    one alternate per forget record. ``idk``: True = one "I don't know" answer per record from the built-in pool
    (:mod:`obliviate.data.idk`), a path or a list = your own pool, drawn with ``idk_seed``; it replaces the records'
    alternates."""
    if isinstance(forget, (str, Path)) and isinstance(retain, (str, Path)) and Path(forget).resolve() == \
            Path(retain).resolve():
        raise ObliviateError(f"the forget and retain data are the same file ({str(forget)!r})")
    pad_id = pad_id_of(tokenizer)
    eos = getattr(tokenizer, "eos_token_id", None)
    opts = {"template": template, "chat_template": chat_template, "max_length": max_length}
    from obliviate.data.lm_alternates import ALTERNATE, alternate_split

    f = _split(forget, tokenizer, "forget", **opts)
    fd = _to_token_data(f, pad_id, eos, "forget")
    alt = alternate_split(forget, tokenizer, opts, pad_id, alternates, idk, idk_seed)
    rd = None
    if retain is not None:
        r = _split(retain, tokenizer, "retain", **opts)
        rd = _to_token_data(r, pad_id, eos, "retain")
        if _row_set(fd) == _row_set(rd):
            raise ObliviateError("the forget data and the retain data are identical (same token rows and scored "
                                 "positions): unlearning would undo itself; give disjoint sets")
    return LMUnlearnData(fd, rd, extra={} if alt is None else {ALTERNATE: alt})


def _row_set(d: TokenData) -> set[tuple[tuple[int, ...], tuple[int, ...]]]:
    out = set()
    for ids, mask, labels in zip(d.input_ids, d.attention_mask, d.labels):
        n = int(mask.sum())
        out.add((tuple(ids[:n].tolist()), tuple(labels[:n].tolist())))
    return out


def overlap(data: LMUnlearnData) -> int:
    """How many forget rows also occur (same tokens, same scored positions) in the retain set."""
    if data.retain is None:
        return 0
    r = _row_set(data.retain)
    return sum(1 for row in _row_set(data.forget) if row in r)


def check_vocab(tokenizer: Any, model: Any, data: LMUnlearnData | None = None) -> None:
    """The tokenizer's ids must fit the model's embedding rows (a larger model vocabulary is fine: padded)."""
    emb = model.get_input_embeddings()
    rows = int(emb.num_embeddings if hasattr(emb, "num_embeddings") else emb.weight.shape[0])
    n = len(tokenizer)
    if n > rows:
        raise ObliviateError(f"tokenizer/model mismatch: the tokenizer has {n} tokens but the model's embedding has "
                             f"{rows} rows (a tokenizer from another model? resize the embeddings first)")
    if data is not None:
        splits = [data.forget, *([data.retain] if data.retain is not None else [])]
        top = max(int(s.input_ids.max()) for s in splits if s.input_ids.numel())
        if top >= rows:
            raise ObliviateError(f"token id {top} is out of range for the model's {rows} embedding rows")
