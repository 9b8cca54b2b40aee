"""The paper's model-selection score (Sakarvadia et al., 2024; figs/csv/toy_loc_avg.csv, best_pythia_unlearning_runs.csv).

score = (mem_after - mem_before) / mem_before + (cost_after - cost_before) / cost_before, lower is better, where
cost is perplexity (language) or *negative* accuracy (math): for accuracy the term is -(acc_after - acc_before)/acc_before.
"""

from __future__ import annotations

import math

from obliviate.metrics.base import register_metric
from obliviate.papers import TINYMEM


@register_metric("selection_score", higher_is_better=False, needs_model=False, paper=TINYMEM,
                 description="relative memorization change minus relative accuracy change (lower is better)")
def selection_score(mem_before: float, mem_after: float, acc_before: float | None = None,
                    acc_after: float | None = None, ppl_before: float | None = None,
                    ppl_after: float | None = None) -> float:
    """Give either accuracies (math) or perplexities (language). mem_before == 0 -> the memorization term is 0."""
    mem_term = _relative(mem_before, mem_after)
    if acc_before is not None and acc_after is not None:
        return mem_term - _relative(acc_before, acc_after)
    if ppl_before is not None and ppl_after is not None:
        return mem_term + _relative(ppl_before, ppl_after)
    raise ValueError("selection_score needs (acc_before, acc_after) or (ppl_before, ppl_after)")


def _relative(before: float, after: float) -> float:
    """(after - before) / before; 0 when before == 0 (nothing to lose or remove), NaN when either is NaN."""
    if math.isnan(before) or math.isnan(after):
        return math.nan
    return 0.0 if before == 0 else (after - before) / before


def is_better(score: float, best: float | None) -> bool:
    """Lower wins; a NaN never wins and never blocks a later finite score."""
    if math.isnan(score):
        return False
    return best is None or math.isnan(best) or score < best
