"""Batched greedy decoding with a KV cache, for prompts of different lengths (left padding + position ids)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError


def max_positions(model: nn.Module) -> int | None:
    """The longest position a model can embed (GPT-2 ``n_positions``, Llama ``max_position_embeddings``)."""
    cfg = getattr(model, "config", None)
    for name in ("n_positions", "max_position_embeddings"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def _next_token(logits: Tensor, temperature: float, generator: torch.Generator | None,
                banned: int | None = None) -> Tensor:
    """argmax (temperature 0), else one draw from softmax(logits / temperature) per row; never ``banned``."""
    if banned is not None:
        logits = logits.clone()
        logits[:, banned] = float("-inf")
    if temperature == 0:
        return logits.argmax(-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)


@torch.no_grad()
def greedy_continue(
    model: nn.Module,
    rows: Tensor,
    prompt_len: Tensor,
    max_new_tokens: int,
    pad_id: int,
    batch_size: int = 256,
    temperature: float = 0.0,
    generator: torch.Generator | None = None,
    banned_token: int | None = None,
) -> Tensor:
    """Greedy continuation of ``rows[i, :prompt_len[i]]`` for up to ``max_new_tokens`` tokens each (with
    ``temperature`` > 0: ancestral sampling at that temperature, drawn from ``generator`` on the model's device).
    ``banned_token`` is never produced (HF's ``min_length`` bans EOS that way).

    rows: (N, T) token ids; prompt_len: (N,) -> (N, max_new_tokens). Prompts are sorted by length and left-padded
    within a batch; position ids skip the padding, so every row decodes exactly as it would alone.
    Decoding stops at absolute position T (the row length): a token there has nothing to be compared with. Places
    not decoded hold ``pad_id``. The model must embed positions up to T - 2 (raises otherwise).
    """
    n, T = rows.shape
    out = torch.full((n, max_new_tokens), pad_id, dtype=torch.long)
    if n == 0 or max_new_tokens == 0:
        return out
    if int(prompt_len.min()) < 1:
        raise ValueError("every prompt needs at least one token")
    if temperature < 0:
        raise ObliviateError(f"temperature must be >= 0 (0 = greedy), got {temperature}")
    limit = max_positions(model)
    if limit is not None and T - 1 > limit:
        raise ObliviateError(f"rows of {T} tokens need {T - 1} positions but the model embeds only {limit}")
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = torch.argsort(prompt_len, stable=True)
    for start in range(0, n, batch_size):
        idx = order[start : start + batch_size]
        lens = prompt_len[idx]
        p_max = int(lens.max())
        B = idx.numel()
        ids = torch.full((B, p_max), pad_id, dtype=torch.long)
        mask = torch.zeros((B, p_max), dtype=torch.long)
        for j, (i, p) in enumerate(zip(idx.tolist(), lens.tolist())):
            ids[j, p_max - p :] = rows[i, :p]
            mask[j, p_max - p :] = 1
        ids, mask = ids.to(device), mask.to(device)
        steps = min(max_new_tokens, T - int(lens.min()))  # no row needs a token at position >= T
        if steps <= 0:
            continue
        pos = (mask.cumsum(1) - 1).clamp_min(0)  # (B, P)
        result = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True)
        past = result.past_key_values
        nxt = _next_token(result.logits[:, -1], temperature, generator, banned_token)  # (B,)
        gen = [nxt]
        last_pos = pos[:, -1]
        for _ in range(steps - 1):
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=device)], 1)
            # rows with longer prompts pass position T - 1 first; what they decode there is never compared,
            # so their position is held at T - 2 instead of indexing past the embedding table
            last_pos = (last_pos + 1).clamp_max(T - 2)
            result = model(input_ids=nxt[:, None], attention_mask=mask, position_ids=last_pos[:, None],
                           past_key_values=past, use_cache=True)
            past = result.past_key_values
            nxt = _next_token(result.logits[:, -1], temperature, generator, banned_token)
            gen.append(nxt)
        gen_t = torch.stack(gen, 1).cpu()  # (B, steps)
        beyond = (lens[:, None] + torch.arange(steps)[None, :]) >= T  # positions past the row: not decoded
        out[idx, :steps] = gen_t.masked_fill(beyond, pad_id)
    model.train(was_training)
    return out


@torch.no_grad()
def greedy_continue_reference(model: nn.Module, rows: Tensor, prompt_len: Tensor, max_new_tokens: int,
                              pad_id: int) -> Tensor:
    """One ``model.generate`` call per sequence (the slow baseline the benchmark compares against)."""
    from transformers import GenerationConfig

    device = next(model.parameters()).device
    gen_cfg = GenerationConfig(max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id, eos_token_id=None)
    out = torch.full((rows.shape[0], max_new_tokens), pad_id, dtype=torch.long)
    for i in range(rows.shape[0]):
        p = int(prompt_len[i])
        ids = rows[i : i + 1, :p].to(device)
        g = model.generate(ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
        new = g[0, p:].cpu()
        out[i, : new.numel()] = new
    return out
