"""Is it really gone? What greedy exact match (% memorized) does not see, per duplication group.

Greedy exact match can read 0 % while the artifact is still in the model: its continuation keeps a lower loss than
artifacts of the same distribution the model never saw. Next to % memorized, for the artifacts (trained) and a
held-out set of same-distribution artifacts (never trained; ``TinyMemData.heldout``):

- **loss AUC**: ROC-AUC of the continuation loss, P(held-out loss > trained loss) (ties count 1/2). 0.5 = the
  trained artifacts look like unseen ones (gone); 1 = every trained artifact has a lower loss than every unseen one.
- **sampled extraction**: % of artifacts for which any of ``n_samples`` continuations sampled at ``temperature``
  (1 = the model's own distribution) from the clean prefix reproduces the artifact's window exactly (the window and
  the clean prefix of % memorized).
- **token rank**: the mean over the window of the rank (1 = the model's top choice) of the artifact's next token
  under teacher forcing; and the mean continuation loss (nats/token).

The teacher-forced numbers run on the artifact row as trained; their window is the % memorized window
[prompt_len, prompt_len + k) with PAD targets dropped. Only eligible artifacts (window differs from the clean row)
count, as for % memorized.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.metrics.generation import greedy_continue
from obliviate.metrics.memorization import compare_continuations, eligible_artifacts


def window_targets(rows: Tensor, prompt_len: Tensor, k: int, pad_id: int) -> Tensor:
    """(N, T) bool: target positions j with prompt_len <= j < prompt_len + k and rows[:, j] != PAD."""
    pos = torch.arange(rows.shape[1])[None, :]
    return (pos >= prompt_len[:, None]) & (pos < prompt_len[:, None] + k) & (rows != pad_id)


def token_loss_and_rank(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Per position: NLL of ``targets`` under ``logits`` (..., V) and its 1-based rank (1 + #tokens scored higher)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    true = logp.gather(-1, targets[..., None])
    return -true[..., 0], 1 + (logp > true).sum(-1)


@torch.no_grad()
def continuation_stats(model: nn.Module, rows: Tensor, prompt_len: Tensor, k: int, pad_id: int,
                       batch_size: int = 256) -> tuple[Tensor, Tensor]:
    """Per row: (mean NLL, mean token rank) over its window targets (teacher forced). NaN for an empty window."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    n = rows.shape[0]
    loss, rank = torch.full((n,), float("nan")), torch.full((n,), float("nan"))
    try:
        for start in range(0, n, batch_size):
            ids = rows[start:start + batch_size]
            win = window_targets(ids, prompt_len[start:start + batch_size], k, pad_id)[:, 1:]
            last = int(win.any(0).nonzero().max()) + 2 if win.any() else 1  # columns needed up to the last target
            logits = model(input_ids=ids[:, :last].to(device)).logits[:, :-1].cpu()
            nll, rk = token_loss_and_rank(logits, ids[:, 1:last])
            w = win[:, : last - 1].float()
            count = w.sum(1)
            ok = count > 0
            loss[start:start + batch_size][ok] = ((nll * w).sum(1) / count.clamp_min(1))[ok]
            rank[start:start + batch_size][ok] = ((rk.float() * w).sum(1) / count.clamp_min(1))[ok]
    finally:
        model.train(was)
    return loss, rank


def sampled_extraction(model: nn.Module, artifact: Tensor, clean: Tensor, prompt_len: Tensor, k: int, pad_id: int,
                       n_samples: int, temperature: float = 1.0, seed: int = 0,
                       batch_size: int = 256) -> Tensor:
    """(N,) bool: any of ``n_samples`` sampled continuations of the clean prefix equals the artifact's window."""
    if n_samples < 1 or temperature <= 0:
        raise ObliviateError(f"n_samples must be >= 1 and temperature > 0, got {n_samples}, {temperature}")
    device = next(model.parameters()).device
    gen = torch.Generator(device=device).manual_seed(seed)
    rep = lambda x: x.repeat_interleave(n_samples, dim=0)  # row i's samples are adjacent
    out = greedy_continue(model, rep(clean), rep(prompt_len), k, pad_id, batch_size=batch_size,
                          temperature=temperature, generator=gen)
    _, hit, _ = compare_continuations(out, rep(artifact), rep(clean), rep(prompt_len), k)
    return hit.view(-1, n_samples).any(1)


def auc_lower_is_member(member: Tensor, nonmember: Tensor) -> float:
    """P(nonmember score > member score) + P(tie) / 2 (Mann-Whitney), NaN when either side is empty."""
    a, b = member[~member.isnan()].double(), nonmember[~nonmember.isnan()].double()
    if a.numel() == 0 or b.numel() == 0:
        return float("nan")
    greater = (b[None, :] > a[:, None]).double().mean()
    ties = (b[None, :] == a[:, None]).double().mean()
    return float(greater + 0.5 * ties)


def _mean(x: Tensor) -> float:
    x = x[~x.isnan()].double()
    return float(x.mean()) if x.numel() else float("nan")


def _pct(x: Tensor) -> float:
    return 100.0 * float(x.double().mean()) if x.numel() else float("nan")


@dataclass(frozen=True)
class ResidualConfig:
    k: int = 50
    n_samples: int = 10  # sampled continuations per artifact (extraction under sampling)
    temperature: float = 1.0
    seed: int = 0  # the sampling generator's seed
    batch_size: int = 256


def residual_memorization(model: nn.Module, artifacts: Tensor, clean: Tensor, prompt_len: Tensor, group: Tensor,
                          heldout: Tensor, heldout_clean: Tensor, heldout_prompt_len: Tensor,
                          group_names: tuple[str, ...], pad_id: int, cfg: ResidualConfig) -> dict[str, Any]:
    """Loss AUC, sampled extraction, token rank and continuation loss, overall and per duplication group, for the
    eligible artifacts against the eligible held-out ones; per-item values kept (None = not eligible)."""
    el = eligible_artifacts(artifacts, clean, prompt_len, cfg.k)
    hel = eligible_artifacts(heldout, heldout_clean, heldout_prompt_len, cfg.k)
    if not bool(hel.any()):
        raise ObliviateError("no held-out artifact differs from its clean row inside the window: nothing to compare")
    loss, rank = continuation_stats(model, artifacts, prompt_len, cfg.k, pad_id, cfg.batch_size)
    h_loss, h_rank = continuation_stats(model, heldout, heldout_prompt_len, cfg.k, pad_id, cfg.batch_size)
    sampled = sampled_extraction(model, artifacts, clean, prompt_len, cfg.k, pad_id, cfg.n_samples, cfg.temperature,
                                 cfg.seed, cfg.batch_size)
    h_sampled = sampled_extraction(model, heldout, heldout_clean, heldout_prompt_len, cfg.k, pad_id, cfg.n_samples,
                                   cfg.temperature, cfg.seed + 1, cfg.batch_size)
    h_greedy = greedy_continue(model, heldout_clean, heldout_prompt_len, cfg.k, pad_id, batch_size=cfg.batch_size)
    _, h_mem, _ = compare_continuations(h_greedy, heldout, heldout_clean, heldout_prompt_len, cfg.k)
    hl, hr = h_loss[hel], h_rank[hel]

    def summary(sel: Tensor) -> dict[str, float]:
        return {"loss_auc": auc_lower_is_member(loss[sel], hl), "sampled_extraction": _pct(sampled[sel]),
                "token_rank": _mean(rank[sel]), "continuation_loss": _mean(loss[sel])}

    overall = summary(el)
    by_group = {name: summary(el & (group == g)) for g, name in enumerate(group_names)}

    def items(x: Tensor, keep: Tensor) -> list[float | None]:
        return [float(v) if e and not np.isnan(float(v)) else None for v, e in zip(x.tolist(), keep.tolist())]

    return {**overall, "by_group": by_group,
            "heldout": {"sampled_extraction": _pct(h_sampled[hel]), "token_rank": _mean(hr),
                        "continuation_loss": _mean(hl), "percent_memorized": _pct(h_mem[hel]),
                        "eligible": int(hel.sum())},
            "n_samples": cfg.n_samples, "temperature": cfg.temperature, "k": cfg.k,
            "per_item": {"continuation_loss": items(loss, el), "token_rank": items(rank, el),
                         "sampled": items(sampled.float(), el),
                         "heldout_continuation_loss": items(h_loss, hel), "heldout_token_rank": items(h_rank, hel)}}


def residual_for_data(model: nn.Module, data: Any, eval_cfg: Any, pad_id: int) -> dict[str, Any]:
    """:func:`residual_memorization` of a TinyMem-style dataset (artifacts, held-out artifacts, groups) with a suite's
    eval section (``k``, ``n_samples``, ``temperature``, ``sample_seed``, ``batch_size``)."""
    e = eval_cfg
    return residual_memorization(model, data.artifacts, data.artifacts_clean, data.prompt_len, data.artifact_group,
                                 data.heldout, data.heldout_clean, data.heldout_prompt_len, data.group_names, pad_id,
                                 ResidualConfig(k=e.k, n_samples=e.n_samples, temperature=e.temperature,
                                                seed=e.sample_seed, batch_size=e.batch_size))


def residual_scalars(res: dict[str, Any]) -> dict[str, float]:
    """The flat numbers of a :func:`residual_memorization` record (overall, ``<key>_<group>``, held-out)."""
    out: dict[str, float] = {}
    for key in ("loss_auc", "sampled_extraction", "token_rank", "continuation_loss"):
        out[key] = res[key]
        out.update({f"{key}_{g}": v[key] for g, v in res["by_group"].items()})
    out["heldout_memorized"] = res["heldout"]["percent_memorized"]
    out["heldout_continuation_loss"] = res["heldout"]["continuation_loss"]
    return out
