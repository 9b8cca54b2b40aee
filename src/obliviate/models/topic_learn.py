"""The learner A of the unlearning paper (Alg. 3-5; Arora et al. 2012/2013): statistics -> anchors -> topics.

Deterministic given the statistics T(S) = (G, m, document frequencies): refitting from updated statistics *is*
retraining on the remaining documents (exact deletion), at a cost that does not depend on m.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from obliviate.errors import ObliviateError
from obliviate.models.anchors import fast_anchor_words, min_doc_threshold, random_projection, row_normalise
from obliviate.models.simplex import fw_gap, simplex_lstsq
from obliviate.models.topic_stats import CorpusStatistics


@dataclass(frozen=True)
class LearnerParams:
    n_topics: int
    anchor_min_df: float = 0.01
    projection_dim: int | None = None
    anchor_cleanup: bool = True
    loss: str = "L2"
    topic_cooccurrence: str = "anchor"
    tol: float = 1e-15
    max_iter: int = 1000
    random_state: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.n_topics, (int, np.integer)) or self.n_topics < 2:
            raise ObliviateError(f"n_topics={self.n_topics!r} must be an int >= 2")
        if self.loss not in ("L2", "KL"):
            raise ObliviateError(f"loss={self.loss!r} is not one of 'L2', 'KL'")
        if self.topic_cooccurrence not in ("anchor", "pinv"):
            raise ObliviateError(f"topic_cooccurrence={self.topic_cooccurrence!r} is not one of 'anchor', 'pinv'")
        if self.projection_dim is not None and self.projection_dim < self.n_topics:
            raise ObliviateError(f"projection_dim={self.projection_dim} must be None or >= n_topics")
        if not self.tol > 0 or self.max_iter < 1:
            raise ObliviateError(f"tol={self.tol} must be > 0 and max_iter={self.max_iter} >= 1")


@dataclass
class TopicSolution:
    anchors: np.ndarray  # (r,) word ids
    C: np.ndarray  # (n, r) P(topic | word), the per-word simplex solutions (pre-noise)
    gaps: np.ndarray  # (n,) Frank-Wolfe gap of each row for the current statistics
    exact: np.ndarray  # (n,) bool: the row is the learner's own output for the current statistics
    A: np.ndarray  # (n, r) topic-word matrix, columns sum to 1
    R: np.ndarray  # (r, r) topic co-occurrence
    converged: bool
    residuals: np.ndarray | None = None  # (n,) natural residual of rows a certified update left inexact


def candidates(stats: CorpusStatistics, p: LearnerParams) -> np.ndarray:
    thr = min_doc_threshold(p.anchor_min_df, stats.m)
    return np.flatnonzero((stats.doc_freq >= thr) & (stats.G.sum(axis=1) > 0))


def find_anchor_words(stats: CorpusStatistics, qbar: np.ndarray, p: LearnerParams) -> np.ndarray:
    cand = candidates(stats, p)
    rows = qbar[cand]
    if p.projection_dim is not None:
        rows = rows @ random_projection(qbar.shape[1], p.projection_dim, p.random_state)
    return cand[fast_anchor_words(rows, p.n_topics, cleanup=p.anchor_cleanup)]


def solve_words(qbar: np.ndarray, anchors: np.ndarray, rows: np.ndarray, p: LearnerParams
                ) -> tuple[np.ndarray, np.ndarray, bool]:
    """C rows (and their gaps) for the words ``rows``: argmin over the simplex of ||qbar_i - c^T X_S||^2 (or KL)."""
    XS = qbar[anchors]  # (r, n)
    M = XS @ XS.T
    b = qbar[rows] @ XS.T
    if p.loss == "L2":
        sol = simplex_lstsq(M, b, tol=p.tol, max_iter=p.max_iter)
        return sol.c, sol.gap, sol.converged
    C, gaps = _recover_kl(qbar[rows], XS, p)
    return C, gaps, bool((gaps <= solve_tol(p)).all())


def _recover_kl(Qrows: np.ndarray, XS: np.ndarray, p: LearnerParams) -> tuple[np.ndarray, np.ndarray]:
    """RecoverKL (Arora et al. 2013): min_c KL(qbar_i || c^T X_S) by exponentiated gradient. Costs O(n r) per word
    and iteration (L2 costs O(r^2)); no certified update (its Newton step is not exact)."""
    k, r = Qrows.shape[0], XS.shape[0]
    c = np.full((k, r), 1.0 / r)
    eps = 1e-300

    def obj(cc: np.ndarray, rows: np.ndarray) -> np.ndarray:
        mix = np.maximum(cc @ XS, eps)
        return -np.einsum("kn,kn->k", Qrows[rows], np.log(mix))

    def grad(cc: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return -(Qrows[rows] / np.maximum(cc @ XS, eps)) @ XS.T

    every = np.arange(k)
    f, eta = obj(c, every), np.ones(k)
    g = grad(c, every)
    gap = fw_gap(c, g)
    for _ in range(p.max_iter):
        a = np.flatnonzero(gap > solve_tol(p))
        if a.size == 0:
            break
        z = -eta[a, None] * g[a]
        step = c[a] * np.exp(z - z.max(axis=1, keepdims=True))
        step /= step.sum(axis=1, keepdims=True)
        f_new = obj(step, a)
        ok = f_new <= f[a]
        c[a[ok]], f[a[ok]] = step[ok], f_new[ok]
        eta[a[ok]] *= 2.0
        eta[a[~ok]] *= 0.5
        g[a] = grad(c[a], a)
        gap[a] = fw_gap(c[a], g[a])
    return c, gap


def recover_topics(stats: CorpusStatistics, anchors: np.ndarray, C: np.ndarray, how: str
                   ) -> tuple[np.ndarray, np.ndarray]:
    """A = colnormalise(diag(p_w) C) with p_w the word marginals (row sums of G: the 1/m cancels), and
    R = D^-1 Q_SS D^-1 with D = diag(A[s_k, k]) ("anchor", exact at the population level; docs derive it) or
    R = A^+ Q (A^+)^T ("pinv", Arora et al. 2013)."""
    weights = stats.G.sum(axis=1)
    A = weights[:, None] * C
    A = A / A.sum(axis=0, keepdims=True)
    R = topic_cooccurrence(stats, anchors, A, how)
    return A, R


def topic_cooccurrence(stats: CorpusStatistics, anchors: np.ndarray, A: np.ndarray, how: str) -> np.ndarray:
    if how == "anchor":
        # a noisy release can put an anchor entry at 0; the floor keeps R finite (post-processing only)
        d = np.maximum(A[anchors, np.arange(anchors.size)], 1e-12)
        Q_SS = stats.G[np.ix_(anchors, anchors)] / stats.m
        return Q_SS / np.outer(d, d)
    pinv = np.linalg.pinv(A)
    return pinv @ (stats.G / stats.m) @ pinv.T


def learn(stats: CorpusStatistics, p: LearnerParams) -> TopicSolution:
    """Fit from the statistics: anchors, every word's simplex solution, A and R."""
    qbar = row_normalise(stats.G)
    anchors = find_anchor_words(stats, qbar, p)
    rows = np.arange(stats.n_words)
    C, gaps, converged = solve_words(qbar, anchors, rows, p)
    A, R = recover_topics(stats, anchors, C, p.topic_cooccurrence)
    return TopicSolution(anchors, C, gaps, np.ones(stats.n_words, dtype=bool), A, R, converged)


def relearn(stats: CorpusStatistics, touched: np.ndarray, old: TopicSolution, p: LearnerParams
            ) -> tuple[TopicSolution, dict]:
    """Exact deletion: the learner's output on the updated statistics. Anchors are recomputed (cost independent of
    m); when they are unchanged and no anchor word was touched, only the touched words' rows are re-solved (every
    other word's problem is identical, and rows are solved independently)."""
    qbar = row_normalise(stats.G)
    anchors = find_anchor_words(stats, qbar, p)
    same = np.array_equal(anchors, old.anchors) and not np.isin(anchors, touched).any()
    # rows a certified (Newton) update left inexact are re-solved too, so the result is the learner's own
    rows = np.union1d(touched, np.flatnonzero(~old.exact)) if same else np.arange(stats.n_words)
    C, gaps = old.C.copy(), old.gaps.copy()
    C_rows, gap_rows, _ = solve_words(qbar, anchors, rows, p)
    C[rows], gaps[rows] = C_rows, gap_rows
    A, R = recover_topics(stats, anchors, C, p.topic_cooccurrence)
    exact = old.exact.copy() if same else np.ones(stats.n_words, dtype=bool)
    exact[rows] = True
    converged = bool((gaps <= solve_tol(p)).all())
    info = {"anchors_changed": not np.array_equal(anchors, old.anchors), "rows_resolved": int(rows.size),
            "converged": converged}
    return TopicSolution(anchors, C, gaps, exact, A, R, converged), info


def solve_tol(p: LearnerParams) -> float:
    """The gap every row is solved to (KL's exponentiated gradient alone cannot reach L2's active-set precision)."""
    return p.tol if p.loss == "L2" else max(p.tol, 1e-9)

