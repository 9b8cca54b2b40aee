"""% memorized / % non-memorized-correct of TinyMem artifacts (Sakarvadia et al., 2024, spec 1.4).

For each artifact whose continuation differs from its clean counterpart, prompt the model with the CLEAN prefix
(first ``prompt_len`` tokens; 50 for noise, up to the trigger for backdoors), decode greedily ``k`` = 50 tokens and
call it memorized iff they equal the artifact's tokens [p, p+k) exactly; "correct" iff they equal the clean ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from obliviate.metrics.base import register_metric
from obliviate.metrics.generation import greedy_continue
from obliviate.papers import TINYMEM
from obliviate.types import MetricResult


@dataclass
class MemorizationScores:
    """Per-artifact outcomes. All tensors are (N,) bool/int."""

    eligible: Tensor  # artifact continuation differs from the clean one (others are discarded)
    memorized: Tensor
    correct: Tensor
    group: Tensor

    def percent(self, which: str = "memorized", group: int | None = None) -> float:
        sel = self.eligible if group is None else self.eligible & (self.group == group)
        n = int(sel.sum())
        if n == 0:
            return float("nan")
        hits = int(getattr(self, which)[sel].sum())
        return 100.0 * hits / n  # in Python floats: 36.0, not float32's 36.000001430511475


def eligible_artifacts(artifact: Tensor, clean: Tensor, prompt_len: Tensor, k: int) -> Tensor:
    """(N,) bool: the artifact's window [p, p+k) (its in-range part) differs from the clean row's there."""
    T = artifact.shape[1]
    pos = prompt_len[:, None] + torch.arange(k)[None, :]
    valid = pos < T
    pos_c = pos.clamp_max(T - 1)
    return ((artifact.gather(1, pos_c) != clean.gather(1, pos_c)) & valid).any(1)


def compare_continuations(generated: Tensor, artifact: Tensor, clean: Tensor, prompt_len: Tensor,
                          k: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pure scoring step. generated: (N, k) tokens decoded after each prompt; artifact/clean: (N, T) full rows.

    Returns (eligible, memorized, correct), each (N,) bool. Windows running past T are compared on their in-range
    part only (backdoor triggers late in a row).
    """
    T = artifact.shape[1]
    pos = prompt_len[:, None] + torch.arange(k)[None, :]  # (N, k) absolute positions
    valid = pos < T
    pos_c = pos.clamp_max(T - 1)
    art = artifact.gather(1, pos_c)
    cln = clean.gather(1, pos_c)
    eligible = ((art != cln) & valid).any(1)
    memorized = ((generated == art) | ~valid).all(1)
    correct = ((generated == cln) | ~valid).all(1)
    return eligible, memorized, correct


def score_memorization(model: nn.Module, artifacts: Tensor, clean: Tensor, prompt_len: Tensor, group: Tensor,
                       pad_id: int, k: int = 50, batch_size: int = 256,
                       banned_token: int | None = None) -> MemorizationScores:
    """Run the model on every artifact's clean prefix and score the continuation (no model state is changed).
    ``banned_token``: never decoded (the reference's ``min_length = max_ctx`` bans EOS)."""
    generated = greedy_continue(model, clean, prompt_len, k, pad_id, batch_size=batch_size,
                                banned_token=banned_token)
    eligible, memorized, correct = compare_continuations(generated, artifacts, clean, prompt_len, k)
    return MemorizationScores(eligible, memorized, correct, group)


@register_metric("percent_memorized", higher_is_better=False, paper=TINYMEM,
                 description="% of artifacts whose greedy continuation of the clean prefix reproduces the artifact")
def percent_memorized(model: nn.Module, artifacts: Tensor, clean: Tensor, prompt_len: Tensor, group: Tensor,
                      pad_id: int, group_names: tuple[str, ...] = (), k: int = 50, batch_size: int = 256,
                      eos_id: int | None = None,
                      reference_compatible: bool = False) -> tuple[MetricResult, MetricResult, MemorizationScores]:
    """(% memorized, % non-memorized-correct, per-item scores); breakdowns per duplication group.

    ``reference_compatible`` decodes as the reference does, with ``min_length = max_ctx``, which bans ``eos_id``:
    an artifact whose row ends inside the window can then never count as memorized or correct."""
    if reference_compatible and eos_id is None:
        raise ValueError("reference_compatible % memorized needs the EOS id it bans")
    s = score_memorization(model, artifacts, clean, prompt_len, group, pad_id, k, batch_size,
                           banned_token=eos_id if reference_compatible else None)
    names = group_names or tuple(f"group_{g}" for g in range(int(group.max()) + 1 if group.numel() else 0))
    mem = MetricResult(
        "percent_memorized", s.percent("memorized"), False,
        per_item=[float(m) if e else None for m, e in zip(s.memorized.tolist(), s.eligible.tolist())],
        breakdown={name: s.percent("memorized", g) for g, name in enumerate(names)},
    )
    cor = MetricResult(
        "percent_correct", s.percent("correct"), True,
        per_item=[float(c) if e else None for c, e in zip(s.correct.tolist(), s.eligible.tolist())],
        breakdown={name: s.percent("correct", g) for g, name in enumerate(names)},
    )
    return mem, cor, s
