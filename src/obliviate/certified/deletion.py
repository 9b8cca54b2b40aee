"""U_base, the certified deletion of the unlearning paper (Alg. 1), as built here (docs/topic-unlearning.md):

1. update the statistics in closed form (G minus the deleted documents' pair counts);
2. keep the anchors -- checked: the learner run on the updated statistics must pick the same anchor words, else the
   deletion is refused (or, if allowed, done by exact recompute); an anchor word left in no document is named;
3. one Newton step per affected word on the shared r x r Hessian (all words when an anchor row moved);
4. recompute A (and R); bound ||A_newton - A_retrain||_F by the certificate of ``newton.py``;
5. release A + N(0, sigma^2) projected back onto the simplex, when the certificate is within the distance budget
   that sigma covers at (epsilon, delta); R and P(topic | word) are computed from the released A and the remaining
   documents' statistics -- a function the retrained side applies identically, so they add nothing to the bound.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from obliviate.certified.mechanism import check_privacy, classic_budget, distance_budget, noise_scale
from obliviate.certified.newton import column_normalised_bound, newton_step, word_error_bounds
from obliviate.errors import ObliviateError
from obliviate.models.anchors import row_normalise
from obliviate.models.simplex import (
    fw_gap,
    gradient,
    natural_residual,
    project_simplex_columns,
    residual_factor,
    tangent_strong_convexity,
)
from obliviate.models.topic_learn import (
    LearnerParams,
    TopicSolution,
    find_anchor_words,
    recover_topics,
    solve_tol,
    topic_cooccurrence,
)
from obliviate.models.topic_stats import CorpusStatistics


class CertificationRefused(ObliviateError):
    """The certified update cannot be certified (anchors moved, an anchor lost its documents, or the budget is
    spent). Nothing was changed."""


@dataclass
class PrivacyState:
    """The noise every release carries, fixed for the model's life so that a release after deletions and a
    release of a model retrained without them are comparable (the definition compares them with equal noise)."""

    epsilon: float
    delta: float
    tolerance: float
    sigma: float  # per-entry noise standard deviation
    budget: float  # the largest ||A_newton - A_retrain||_F that sigma covers at (epsilon, delta)
    classic_budget: float  # the textbook Gaussian-mechanism value, for comparison (eps < 1 only)
    deletions: int = 0
    releases: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(cls, epsilon: float | None, delta: float | None, tolerance: float, dim: int) -> PrivacyState:
        eps, dlt = check_privacy(epsilon, delta)
        sigma = noise_scale(tolerance, dim)
        return cls(eps, dlt, float(tolerance), sigma, distance_budget(sigma, eps, dlt),
                   classic_budget(sigma, eps, dlt) if eps < 1 else float("nan"))

    def check_same(self, epsilon: float | None, delta: float | None, tolerance: float) -> None:
        eps, dlt = check_privacy(epsilon, delta)
        if (eps, dlt, float(tolerance)) != (self.epsilon, self.delta, self.tolerance):
            raise ObliviateError(f"this model releases with epsilon={self.epsilon}, delta={self.delta}, "
                                 f"tolerance={self.tolerance}; got epsilon={eps}, delta={dlt}, tolerance={tolerance}. "
                                 f"The noise must stay the same for the guarantee to hold")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        return d


def certified_update(stats: CorpusStatistics, touched: np.ndarray, old: TopicSolution, p: LearnerParams,
                     vocabulary: list[str] | None = None, newton_steps: int = 1
                     ) -> tuple[TopicSolution, dict[str, Any]]:
    """Steps 2-4: the Newton update of the solution for the updated ``stats`` and its certificate."""
    if p.loss != "L2":
        raise ObliviateError(f"certified deletion needs loss='L2' (its Newton step is exact on a face); this model "
                             f"uses loss={p.loss!r} -- use mode='exact'")
    qbar = row_normalise(stats.G)
    lost = [int(a) for a in old.anchors if stats.doc_freq[a] == 0]
    if lost:
        names = [vocabulary[a] if vocabulary else f"word {a}" for a in lost]
        raise CertificationRefused(f"every document containing the anchor word(s) {names} was deleted: those topics "
                                   f"are no longer identifiable from the data")
    anchors = find_anchor_words(stats, qbar, p)
    old_C = old.C
    if not np.array_equal(anchors, old.anchors) and set(anchors.tolist()) == set(old.anchors.tolist()):
        # the same anchor words in another order: retraining would list the topics in that order, so ours follow
        perm = np.array([int(np.flatnonzero(old.anchors == a)[0]) for a in anchors])
        old_C = old.C[:, perm]
    if not np.array_equal(np.sort(anchors), np.sort(old.anchors)):
        moved = sorted(set(old.anchors.tolist()) ^ set(anchors.tolist()))
        raise CertificationRefused(f"retraining on the remaining documents would pick other anchor words (changed: "
                                   f"{moved[:6]}): the Newton update cannot be certified")
    XS = qbar[anchors]
    M = XS @ XS.T
    anchor_touched = bool(np.isin(anchors, touched).any())
    rows = np.arange(stats.n_words) if anchor_touched else touched
    b = qbar[rows] @ XS.T
    C, gaps, exact = old_C.copy(), old.gaps.copy(), old.exact.copy()
    C[rows] = newton_step(old_C[rows], M, b, steps=newton_steps)
    gaps[rows] = fw_gap(C[rows], gradient(C[rows], M, b))
    exact[rows] = False
    mu = tangent_strong_convexity(M)
    factor = residual_factor(M, mu)
    resid = old.residuals.copy() if old.residuals is not None else np.zeros(stats.n_words)
    resid[rows] = natural_residual(C[rows], M, b)
    beta = word_error_bounds(gaps, resid, exact, mu, factor, solve_tol(p))
    weights = stats.G.sum(axis=1)
    bound = column_normalised_bound(weights, C, beta)
    # the part that does not grow with deletions (retraining's own stopping tolerance): for capacity estimates
    zero = np.zeros_like(gaps)
    floor = column_normalised_bound(weights, C, word_error_bounds(zero, zero, exact, mu, factor, solve_tol(p)))
    A, R = recover_topics(stats, anchors, C, p.topic_cooccurrence)
    support_changed = int(((old_C[rows] > 1e-9) != (C[rows] > 1e-9)).any(axis=1).sum())
    info = {"certificate": bound, "certificate_floor": floor, "mu": mu, "rows_updated": int(rows.size), "anchor_rows_touched": anchor_touched,
            "support_changes": support_changed, "max_gap": float(gaps.max())}
    return TopicSolution(anchors, C, gaps, exact, A, R, old.converged, resid), info


def release(solution: TopicSolution, stats: CorpusStatistics, sigma: float, how: str,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Step 5: the noisy topic-word matrix (columns projected onto the simplex: non-expansive post-processing) and
    R and P(topic | word) computed from it and the remaining documents' statistics."""
    A = project_simplex_columns(solution.A + rng.normal(0.0, sigma, size=solution.A.shape))
    R = topic_cooccurrence(stats, solution.anchors, A, how)
    prior = np.maximum(R.sum(axis=1), 0.0)
    post = A * prior[None, :]
    total = post.sum(axis=1, keepdims=True)
    C = np.divide(post, total, out=np.full_like(post, 1.0 / A.shape[1]), where=total > 0)
    return A, R, C
