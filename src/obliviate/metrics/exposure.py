"""Exposure and extraction of canaries (Carlini et al., 2019, "The Secret Sharer", arXiv 1802.08232).

Log-perplexity of a text = the sum over its tokens (all but the first, which has no context) of -log p(token |
earlier tokens), in nats (the unit does not change ranks or exposure). The canary's secret is ranked among all
candidate secrets r in R (the canary's text with r in the secret's place) by that score, lowest first:

    rank(secret) = 1 + #{r != secret : score(r) < score(secret)} + #{r != secret : score(r) == score(secret)} / 2
    exposure     = log2 |R| - log2 rank(secret)                       in [0, log2 |R|]

Ties count half (mid-rank): a model that scores every candidate alike (e.g. one ablated into uniform outputs) gets
rank ~|R|/2, exposure ~1 bit -- a random secret's expected exposure -- not the maximum. With |R| <= ``exact_limit``
every candidate is scored (exact). Otherwise, as the paper's §4.3 ("exposure via extrapolation"), ``samples``
candidates are drawn uniformly from R (seeded, the secret excluded), a skew-normal distribution is fitted to their
scores (scipy, maximum likelihood) and exposure = -log2 CDF(score(secret)), capped at log2 |R|; the plain sampling
estimate (the empirical CDF with the same mid-rank ties, which cannot exceed about log2(samples)) is reported
beside it as ``exposure_sampled``.

Extraction: greedy decoding from the canary's prefix reproduces the tokens of its secret exactly
(:func:`obliviate.metrics.generation.greedy_continue`).
"""

from __future__ import annotations

import itertools
import math
import zlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from obliviate.data.canaries import ALPHABETS, DEFAULT_EXACT_LIMIT, DEFAULT_SAMPLES, Canary
from obliviate.errors import ObliviateError

if TYPE_CHECKING:  # torch is imported where a model is used
    import torch
    from torch import nn

Scorer = Callable[[Sequence[str]], Sequence[float]]  # texts -> log-perplexity of each (nats, lower = more likely)


def rank_of(secret_score: float, other_scores: Sequence[float] | np.ndarray) -> float:
    """Mid-rank of the secret among the other candidates (1 = lowest log-perplexity; see the module docstring)."""
    o = np.asarray(other_scores, dtype=np.float64)
    return 1.0 + float((o < secret_score).sum()) + 0.5 * float((o == secret_score).sum())


def exposure_from_rank(rank: float, size: int) -> float:
    """log2 |R| - log2 rank."""
    if size < 1 or not 1 <= rank <= size:
        raise ObliviateError(f"rank must be in [1, |R|] = [1, {size}], got {rank}")
    return math.log2(size) - math.log2(rank)


def all_secrets(alphabet: str, length: int) -> list[str]:
    """Every string of ``length`` characters of ``ALPHABETS[alphabet]``, in lexicographic order."""
    return ["".join(t) for t in itertools.product(ALPHABETS[alphabet], repeat=length)]


def sample_secrets(alphabet: str, length: int, n: int, seed: int, exclude: str | None = None) -> list[str]:
    """``n`` uniform draws (with replacement) from alphabet^length, never ``exclude``; seeded."""
    chars = np.array(list(ALPHABETS[alphabet]))
    if len(chars) ** length < 2 and exclude is not None:
        raise ObliviateError("a secret space of one candidate has nothing to sample besides the secret")
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < n:
        draws = ["".join(row) for row in chars[rng.integers(0, len(chars), size=(n - len(out), length))]]
        out += [d for d in draws if d != exclude]
    return out


def sampled_exposure(secret_score: float, sample_scores: Sequence[float], size: int) -> float:
    """-log2 of the empirical P[score(r) <= score(secret)] over the samples (mid-rank ties; the secret itself counts
    once so the estimate stays finite), capped at log2 |R|."""
    s = np.asarray(sample_scores, dtype=np.float64)
    frac = (0.5 + float((s < secret_score).sum()) + 0.5 * float((s == secret_score).sum())) / (s.size + 1)
    return min(math.log2(size), -math.log2(frac))


def skewnorm_exposure(secret_score: float, sample_scores: Sequence[float], size: int) -> float:
    """Carlini et al.'s extrapolation: fit a skew-normal to the sampled candidates' scores, exposure = -log2 CDF at
    the secret's score, within [0, log2 |R|]. Samples with (almost) no spread fall back to :func:`sampled_exposure`."""
    from scipy import stats

    s = np.asarray(sample_scores, dtype=np.float64)
    if s.size < 3 or float(s.std()) <= 1e-9 * max(1.0, abs(float(s.mean()))):
        return sampled_exposure(secret_score, s, size)
    a, loc, scale = stats.skewnorm.fit(s)
    log_cdf = float(stats.skewnorm.logcdf(secret_score, a, loc=loc, scale=scale))
    if not math.isfinite(log_cdf):  # -inf: the secret lies beyond anything the fit can express
        return math.log2(size)
    return min(math.log2(size), max(0.0, -log_cdf / math.log(2)))


def canary_exposure(canary: Canary, scorer: Scorer, exact_limit: int = DEFAULT_EXACT_LIMIT,
                    samples: int = DEFAULT_SAMPLES, seed: int = 0) -> dict[str, Any]:
    """Exposure of ``canary`` under ``scorer``: exact rank when |R| <= ``exact_limit``, else the skew-normal estimate
    from ``samples`` candidates drawn with a seed derived from ``seed`` and the canary's id (so the same candidates
    are scored before and after unlearning)."""
    size = canary.space_size
    exact = size <= exact_limit
    if exact:
        others = [r for r in all_secrets(canary.alphabet, len(canary.secret)) if r != canary.secret]
    elif samples < 3:
        raise ObliviateError(f"estimating exposure needs >= 3 sampled candidates, got samples={samples}")
    else:
        others = sample_secrets(canary.alphabet, len(canary.secret), samples,
                                seed=zlib.crc32(f"{seed}:{canary.id}".encode()), exclude=canary.secret)
    # the secret is scored in the same call as the candidates (same batching, same arithmetic)
    all_scores = np.asarray(scorer([canary.text, *(canary.with_secret(r) for r in others)]), dtype=np.float64)
    secret_score, scores = float(all_scores[0]), all_scores[1:]
    out: dict[str, Any] = {"score": secret_score, "log2_space": math.log2(size)}
    if exact:
        rank = rank_of(secret_score, scores)
        return {**out, "exposure": exposure_from_rank(rank, size), "rank": rank, "method": "exact",
                "candidates": size}
    return {**out, "exposure": skewnorm_exposure(secret_score, scores, size), "rank": None, "method": "skewnorm",
            "exposure_sampled": sampled_exposure(secret_score, scores, size), "candidates": samples + 1}


# --- model-facing -------------------------------------------------------------------------------------------------


def _pad_id(tokenizer: Any) -> int:
    from obliviate.data.lm_files import pad_id_of

    return pad_id_of(tokenizer)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def common_prefix(seqs: Sequence[Sequence[int]]) -> int:
    """Length of the token prefix every row shares, leaving each row >= 1 token after it."""
    first, k = seqs[0], 0
    limit = min(len(x) for x in seqs) - 1
    while k < limit and all(x[k] == first[k] for x in seqs):
        k += 1
    return k


def lm_scorer(model: nn.Module, tokenizer: Any, batch_size: int = 64, share_prefix: bool = True) -> Scorer:
    """A :data:`Scorer` from a causal LM: texts tokenized as training text is (``add_special_tokens=True``), the
    sum of every next-token NLL (float64). Candidates of one canary share their prompt tokens: with
    ``share_prefix`` the shared prefix runs once and its KV cache is reused for every row (the same numbers as
    scoring each row whole, up to float rounding; about half the work for a short prompt)."""
    import copy

    import torch
    from torch.nn.functional import cross_entropy

    def rows(seqs: Sequence[Sequence[int]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Right-padded (B, T) ids and mask."""
        T = max(len(x) for x in seqs)
        ids = torch.full((len(seqs), T), _pad_id(tokenizer), dtype=torch.long)
        mask = torch.zeros((len(seqs), T), dtype=torch.long)
        for i, x in enumerate(seqs):
            ids[i, :len(x)], mask[i, :len(x)] = torch.tensor(list(x)), 1
        return ids.to(device), mask.to(device)

    def tail_nll(logits: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B,) sum of the NLL of ids[:, 1:] under logits[:, :-1] where the target is real."""
        nll = cross_entropy(logits[:, :-1].float().transpose(1, 2), ids[:, 1:], reduction="none")
        return (nll.double() * mask[:, 1:]).sum(1)

    def whole(seqs: list[list[int]], device: torch.device) -> list[float]:
        out: list[float] = []
        for s in range(0, len(seqs), batch_size):
            ids, mask = rows(seqs[s:s + batch_size], device)
            out += tail_nll(model(input_ids=ids, attention_mask=mask).logits, ids, mask).tolist()
        return out

    def shared(seqs: list[list[int]], P: int, device: torch.device) -> list[float] | None:
        pre = torch.tensor([seqs[0][:P]], device=device)  # (1, P)
        res = model(input_ids=pre, use_cache=True)
        cache = getattr(res, "past_key_values", None)
        if cache is None or not hasattr(cache, "batch_repeat_interleave"):
            return None  # a model without a reusable cache: score whole rows
        logp = res.logits[0].float().log_softmax(-1)  # (P, V)
        pre_nll = -logp[:-1].gather(1, pre[0, 1:, None]).double().sum()
        out: list[float] = []
        for s in range(0, len(seqs), batch_size):
            ids, mask = rows([x[P:] for x in seqs[s:s + batch_size]], device)  # (B, L) continuations
            B, L = ids.shape
            c = copy.deepcopy(cache)
            c.batch_repeat_interleave(B)
            full_mask = torch.cat([torch.ones((B, P), dtype=mask.dtype, device=device), mask], 1)
            pos = torch.arange(P, P + L, device=device)[None].expand(B, L)
            logits = model(input_ids=ids, attention_mask=full_mask, position_ids=pos, past_key_values=c,
                           use_cache=True).logits  # (B, L, V)
            first = -logp[-1, ids[:, 0]].double()  # the prefix's last position predicts each row's first token
            out += (pre_nll + first + tail_nll(logits, ids, mask)).tolist()
        return out

    @torch.no_grad()
    def score(texts: Sequence[str]) -> list[float]:
        seqs = [list(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]
        if not seqs:
            return []
        was = model.training
        model.eval()
        device = _device(model)
        try:
            P = common_prefix(seqs) if share_prefix and len(seqs) > 1 else 0
            out = shared(seqs, P, device) if P >= 2 else None
            return whole(seqs, device) if out is None else out
        finally:
            model.train(was)

    return score


def secret_span(tokenizer: Any, canary: Canary) -> tuple[list[int], int, int]:
    """(token ids of the canary text, b, e): tokens [b, e) cover the secret's characters (the first may also hold
    text just before the secret, e.g. a leading space); the prompt is tokens [0, b). Needs a fast tokenizer's
    offsets; without them b = the tokens shared with the tokenized prefix and e = the end of the text."""
    start, end = canary.secret_start, canary.secret_start + len(canary.secret)
    try:
        enc = tokenizer(canary.text, add_special_tokens=True, return_offsets_mapping=True,
                        return_special_tokens_mask=True)
        offsets, special = enc["offset_mapping"], enc["special_tokens_mask"]
    except (NotImplementedError, TypeError, ValueError, KeyError):
        offsets = None
    ids = list(tokenizer(canary.text, add_special_tokens=True)["input_ids"])
    if offsets is None:
        pre = list(tokenizer(canary.prefix, add_special_tokens=True)["input_ids"])
        b = next((i for i, (x, y) in enumerate(zip(ids, pre)) if x != y), min(len(ids), len(pre)))
        e = len(ids)
    else:
        real = [i for i in range(len(ids)) if not special[i]]
        b = next((i for i in real if offsets[i][1] > start), len(ids))
        e = next((i for i in real if i > b and offsets[i][0] >= end), len(ids))
    if b < 1 or b >= e:
        raise ObliviateError(f"canary {canary.id!r}: the tokenizer merges its prefix and secret into one token (or "
                             "drops the secret), so there is no prompt to extract it from")
    return ids, b, e


def extraction(model: nn.Module, tokenizer: Any, canaries: Sequence[Canary],
               batch_size: int = 64) -> list[dict[str, Any]]:
    """Per canary: ``extracted`` (greedy decoding from the prefix reproduces the secret's tokens exactly) and the
    decoded ``continuation`` (as many tokens as the secret spans)."""
    import torch

    from obliviate.metrics.generation import greedy_continue

    if not canaries:
        return []
    spans = [secret_span(tokenizer, c) for c in canaries]
    pad = _pad_id(tokenizer)
    T = max(len(ids) for ids, _, _ in spans)
    rows = torch.full((len(spans), T), pad, dtype=torch.long)
    for i, (ids, _, _) in enumerate(spans):
        rows[i, :len(ids)] = torch.tensor(ids)
    prompt_len = torch.tensor([b for _, b, _ in spans])
    gen = greedy_continue(model, rows, prompt_len, max(e - b for _, b, e in spans), pad, batch_size=batch_size)
    out = []
    for (ids, b, e), g in zip(spans, gen):
        got = g[:e - b].tolist()
        out.append({"extracted": got == ids[b:e], "continuation": tokenizer.decode(got)})
    return out


def _summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(rows)
    return {"canaries": n,
            "extraction_pct": 100.0 * sum(r["extracted"] for r in rows) / n if n else math.nan,
            "exposure_mean": float(np.mean([r["exposure"] for r in rows])) if n else math.nan}


def measure_canaries(model: nn.Module, tokenizer: Any, canaries: Sequence[Canary],
                     exact_limit: int = DEFAULT_EXACT_LIMIT, samples: int = DEFAULT_SAMPLES, seed: int = 0,
                     batch_size: int = 64) -> dict[str, Any]:
    """Extraction and exposure of every canary, and summaries: ``by_group`` (by copies, most first; "0" = held
    out), ``planted`` (copies > 0) and ``held_out`` (copies == 0)."""
    scorer = lm_scorer(model, tokenizer, batch_size)
    ext = extraction(model, tokenizer, canaries, batch_size)
    per = []
    for c, x in zip(canaries, ext):
        e = canary_exposure(c, scorer, exact_limit, samples, seed)
        per.append({"id": c.id, "copies": c.copies, "secret": c.secret, **x, **e})
    groups = sorted({c.copies for c in canaries}, reverse=True)
    return {"per_canary": per,
            "by_group": {str(g): _summary([r for r in per if r["copies"] == g]) for g in groups},
            "planted": _summary([r for r in per if r["copies"] > 0]),
            "held_out": _summary([r for r in per if r["copies"] == 0])}
