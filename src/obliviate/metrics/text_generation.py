"""Prompts -> greedy continuations as text, batched with a KV cache, token for token what per-sample HF
``model.generate(input_ids, do_sample=False, max_new_tokens=...)`` returns (the way MUSE and TOFU evaluate).

Per-sample ``generate`` runs one forward per new token for one prompt at a time; here prompts are sorted by length,
left-padded into batches, and decoded together. Position ids skip the padding and the attention mask hides it, so
every row decodes as it would alone (``greedy_continue`` in ``generation.py`` does the same for fixed-width token
rows; this module decodes exactly ``max_new_tokens`` past each prompt, optionally stopping a row at EOS).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.metrics.generation import max_positions

Truncate = Literal["error", "left"]

# generation_config settings that would make HF ``generate`` differ from a plain argmax, with their neutral values.
# We decode with argmax only, so a model configured with any of these must not be evaluated silently.
_NEUTRAL_SETTINGS: dict[str, Any] = {
    "repetition_penalty": 1.0, "encoder_repetition_penalty": 1.0, "no_repeat_ngram_size": 0, "min_length": 0,
    "min_new_tokens": 0, "num_beams": 1, "bad_words_ids": None, "forced_bos_token_id": None,
    "forced_eos_token_id": None, "suppress_tokens": None, "begin_suppress_tokens": None, "sequence_bias": None,
    "exponential_decay_length_penalty": None, "guidance_scale": 1.0,
}


def check_plain_greedy(model: nn.Module) -> None:
    """Raise if the model's ``generation_config`` sets a logits processor that greedy ``generate`` would apply."""
    cfg = getattr(model, "generation_config", None)
    if cfg is None:
        return
    bad = [f"{k}={getattr(cfg, k)!r}" for k, neutral in _NEUTRAL_SETTINGS.items()
           if getattr(cfg, k, None) not in (None, neutral)]
    if bad:
        raise ObliviateError("the model's generation_config sets " + ", ".join(bad) + "; batched greedy decoding "
                             "applies none of them (set them to their neutral values to evaluate this model)")


def model_eos_ids(model: nn.Module) -> tuple[int, ...]:
    """The EOS ids HF ``generate`` stops at by default: ``model.generation_config.eos_token_id`` (int or list)."""
    cfg = getattr(model, "generation_config", None) or getattr(model, "config", None)
    eos = getattr(cfg, "eos_token_id", None)
    if eos is None:
        return ()
    return (int(eos),) if isinstance(eos, int) else tuple(int(e) for e in eos)


def fit_to_positions(prompt_ids: list[list[int]], max_new_tokens: int, limit: int | None, truncate: Truncate = "error",
                     bos_id: int | None = None) -> list[list[int]]:
    """Check (or make) every prompt leave room for ``max_new_tokens`` within the model's ``limit`` positions.

    Decoding n tokens after a prompt of p tokens feeds positions 0 .. p + n - 2 (the last token is never fed), so
    p + n - 1 <= limit is required. ``truncate="error"`` raises naming the first prompt that does not fit;
    ``"left"`` drops its oldest tokens, keeping a leading ``bos_id`` when the prompt starts with it.
    """
    if truncate not in ("error", "left"):
        raise ObliviateError(f"truncate must be 'error' or 'left', got {truncate!r}")
    if limit is None:
        return prompt_ids
    budget = limit - max_new_tokens + 1  # the longest prompt that fits
    out = []
    for i, ids in enumerate(prompt_ids):
        if len(ids) <= budget:
            out.append(ids)
            continue
        if truncate == "error" or budget < 1:
            raise ObliviateError(
                f"prompt {i} has {len(ids)} tokens; with max_new_tokens={max_new_tokens} it needs "
                f"{len(ids) + max_new_tokens - 1} positions but the model embeds only {limit} "
                f"(pass truncate='left' to drop the oldest prompt tokens)")
        keep_bos = bos_id is not None and ids[0] == bos_id and budget >= 2
        out.append([ids[0], *ids[len(ids) - budget + 1 :]] if keep_bos else ids[len(ids) - budget :])
    return out


def _forward_kwargs(model: nn.Module) -> dict[str, int]:
    """``logits_to_keep=1`` where the model takes it: only the last position's logits are needed (HF ``generate``
    does the same), which avoids a (B, P, V) logits tensor on long prompts."""
    params = inspect.signature(model.forward).parameters
    return {"logits_to_keep": 1} if "logits_to_keep" in params else {}


@torch.no_grad()
def greedy_generate(model: nn.Module, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, pad_id: int,
                    eos_ids: Sequence[int] = (), batch_size: int = 16) -> list[list[int]]:
    """Greedy-decode ``max_new_tokens`` tokens after each prompt; a row stops after emitting a token in ``eos_ids``
    (that token is kept, as ``generate`` keeps it). Returns the new tokens per prompt, in the input order.

    Prompts are sorted by length (similar lengths share a batch, little padding) and left-padded; ``pad_id`` only
    fills the masked places. A batch stops when all its rows have stopped. Positions are not checked here: see
    ``fit_to_positions``.
    """
    n = len(prompt_ids)
    if any(len(p) == 0 for p in prompt_ids):
        raise ObliviateError("every prompt needs at least one token (got an empty one)")
    if max_new_tokens < 0 or batch_size < 1:
        raise ObliviateError(f"need max_new_tokens >= 0 and batch_size >= 1, got {max_new_tokens}, {batch_size}")
    out: list[list[int]] = [[] for _ in range(n)]
    if n == 0 or max_new_tokens == 0:
        return out
    device = next(model.parameters()).device
    eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
    order = sorted(range(n), key=lambda i: len(prompt_ids[i]))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            gen = _decode_batch(model, [prompt_ids[i] for i in idx], max_new_tokens, pad_id, eos)  # (B, steps)
            hit = torch.isin(gen, eos.cpu())
            for j, i in enumerate(idx):
                stops = hit[j].nonzero()
                out[i] = gen[j, : int(stops[0]) + 1].tolist() if stops.numel() else gen[j].tolist()
    finally:
        model.train(was_training)
    return out


def _decode_batch(model: nn.Module, prompts: list[Sequence[int]], max_new_tokens: int, pad_id: int,
                  eos: Tensor) -> Tensor:
    """Greedy tokens (B, steps) for one batch of prompts, left-padded; steps < max_new_tokens only when every
    row has emitted an EOS (tokens after a row's EOS are whatever the model produced; the caller drops them)."""
    device = eos.device
    B, P = len(prompts), max(len(p) for p in prompts)
    ids = torch.full((B, P), pad_id, dtype=torch.long)
    mask = torch.zeros((B, P), dtype=torch.long)
    for j, p in enumerate(prompts):
        ids[j, P - len(p) :] = torch.as_tensor(list(p), dtype=torch.long)
        mask[j, P - len(p) :] = 1
    ids, mask = ids.to(device), mask.to(device)
    pos = (mask.cumsum(1) - 1).clamp_min(0)  # (B, P): every real prompt starts at position 0
    extra = _forward_kwargs(model)
    res = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, **extra)
    past = res.past_key_values
    nxt = res.logits[:, -1].argmax(-1)  # (B,)
    steps = [nxt]
    done = torch.isin(nxt, eos)  # (B,) rows that have emitted an EOS
    last_pos = pos[:, -1]
    for _ in range(max_new_tokens - 1):
        if eos.numel() and bool(done.all()):  # (this check syncs with the device: skipped without EOS ids)
            break
        mask = torch.cat([mask, mask.new_ones((B, 1))], 1)  # (B, P + t)
        last_pos = last_pos + 1
        res = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                    past_key_values=past, use_cache=True, **extra)
        past = res.past_key_values
        nxt = res.logits[:, -1].argmax(-1)
        steps.append(nxt)
        done = done | torch.isin(nxt, eos)
    return torch.stack(steps, 1).cpu()


@torch.no_grad()
def generate_reference(model: nn.Module, prompt_ids: Sequence[Sequence[int]], max_new_tokens: int, pad_id: int,
                       eos_ids: Sequence[int] = ()) -> list[list[int]]:
    """One HF ``model.generate(do_sample=False)`` call per prompt, as MUSE runs it (the baseline for tests and
    benchmarks). Returns the new tokens per prompt."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    eos: int | list[int] | None = list(eos_ids) if eos_ids else None
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=eos)
    out = []
    for p in prompt_ids:
        ids = torch.as_tensor([list(p)], dtype=torch.long, device=device)
        g = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=cfg)
        out.append(g[0, ids.shape[1] :].tolist())
    return out


def cut_at_stop_strings(text: str, stop_strings: Sequence[str]) -> str:
    """Keep what precedes the first occurrence of each stop string, applied in the given order (MUSE KnowMem's
    ``split(s)[0]`` for s in order). No stripping."""
    for s in stop_strings:
        text = text.split(s)[0]
    return text


def encode_prompts(tokenizer: Any, prompts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
    """Token ids of each prompt, tokenised alone (``tokenizer(prompt, add_special_tokens=...)``, as MUSE does)."""
    for i, p in enumerate(prompts):
        if not isinstance(p, str):
            raise ObliviateError(f"prompt {i} is {type(p).__name__}, expected str")
    return [list(tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"]) for p in prompts]


def clean_up_tokenization_spaces(text: str) -> str:
    """The ``clean_up_tokenization_spaces=True`` rules of transformers 4.x (what MUSE ran): drop the space before
    ``. ? ! ,`` and English contractions, and turn `` ' `` into ``'``.

    transformers 5 skips this step for BPE tokenizers (GPT-2, Llama) with a warning, so we decode with it off and
    apply it here: the text then matches MUSE's, and ROUGE's tokeniser can see the difference ("do n't" -> do/n/t,
    "don't" -> don/t).
    """
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"), (" 'm", "'m"),
                 (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        text = text.replace(a, b)
    return text


def decode_tokens(tokenizer: Any, ids: Sequence[int], clean_up: bool = True) -> str:
    """``decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=clean_up)`` with transformers 4.x's
    clean-up (see ``clean_up_tokenization_spaces``), whatever the installed version does."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)
    return clean_up_tokenization_spaces(text) if clean_up else text


def resolve_pad_id(tokenizer: Any, eos_ids: Sequence[int]) -> int:
    """A token id to fill masked places with (its value never matters): pad, else EOS, else 0."""
    if getattr(tokenizer, "pad_token_id", None) is not None:
        return int(tokenizer.pad_token_id)
    if eos_ids:
        return int(eos_ids[0])
    return 0


def generate_texts(model: nn.Module, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, *,
                   add_special_tokens: bool = True, stop_at_eos: bool = True,
                   eos_token_id: int | Sequence[int] | None = None, stop_strings: Sequence[str] = (),
                   truncate: Truncate = "error", clean_up: bool = True, batch_size: int = 16) -> list[str]:
    """Greedy continuations of ``prompts`` as text: only the new tokens are decoded (``decode_tokens``: special
    tokens skipped, tokenization spaces cleaned up), then cut at ``stop_strings`` (in order).

    ``stop_at_eos``: stop a row at EOS as per-sample ``generate`` does; the ids are ``eos_token_id`` if given, else
    the model's ``generation_config.eos_token_id``. ``truncate``: see ``fit_to_positions``.
    """
    check_plain_greedy(model)
    if not stop_at_eos:
        eos: tuple[int, ...] = ()
    elif eos_token_id is None:
        eos = model_eos_ids(model)
    else:
        eos = (int(eos_token_id),) if isinstance(eos_token_id, int) else tuple(int(e) for e in eos_token_id)
    ids = encode_prompts(tokenizer, prompts, add_special_tokens)
    bos = getattr(tokenizer, "bos_token_id", None) if add_special_tokens else None
    ids = fit_to_positions(ids, max_new_tokens, max_positions(model), truncate, bos)
    new = greedy_generate(model, ids, max_new_tokens, resolve_pad_id(tokenizer, eos), eos, batch_size)
    texts = [decode_tokens(tokenizer, t, clean_up) for t in new]
    return [cut_at_stop_strings(t, stop_strings) for t in texts]

