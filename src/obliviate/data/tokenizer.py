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
