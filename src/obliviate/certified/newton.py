"""Certified deletion for the anchor-word topic model: one Newton step per word and a certificate that bounds the
distance of the result to what retraining on the remaining documents would output (docs/topic-unlearning.md).

Per word, RecoverL2 solves min_{c in simplex} c^T M c - 2 b_i^T c. It is a quadratic, so one Newton step on the
face the old solution lies on (the affine hull of its support) lands on that face's exact minimum; when the
deletion does not change which coordinates are zero, it *is* the retrained solution. When it does, the step is
clipped to the simplex and the Frank-Wolfe gap bounds the error: with mu the strong convexity of the objective on
the simplex's tangent space, ||c - c*|| <= sqrt(2 gap / mu), and, linearly in the natural residual
R(c) = c - P(c - g/L), ||c - c*|| <= (2L/mu) ||R(c)||. Retraining stops at gap <= tol and ||R|| <= RESIDUAL_TOL,
so its own answer obeys the same bounds; the triangle inequality bounds ||c_newton - c_retrain|| per word.
"""

from __future__ import annotations

import math

import numpy as np

from obliviate.models.simplex import RESIDUAL_TOL, active_set_rounds, objective, solve_on_support

# per-word float slack for rows whose solution is the learner's own for the same problem: retraining rebuilds the
# statistics in another summation order, so its right-hand side can differ in the last bits
FLOAT_SLACK = 1e-10


def newton_step(C_old: np.ndarray, M: np.ndarray, b: np.ndarray, steps: int = 1,
                support_tol: float = 1e-9) -> np.ndarray:
    """Newton steps per row. The first is on the face of the old solution, clipped to >= 0 and renormalised (the
    paper's single step); each further one is an active-set round: drop coordinates that went negative or add the
    one that most violates the optimality conditions, and step to the new face's minimum (kept only if it lowers
    the objective). (k, r) -> (k, r). A row whose face system is singular keeps its old value (its gap, and so the
    certificate, says how far off)."""
    if steps < 1:
        raise ValueError(f"newton_steps={steps} must be >= 1")
    step = solve_on_support(M, b, C_old > support_tol)
    bad = ~np.isfinite(step).all(axis=1)
    step[bad] = C_old[bad]
    step = np.maximum(step, 0.0)
    total = step.sum(axis=1, keepdims=True)
    step = np.divide(step, total, out=np.full_like(step, 1.0 / step.shape[1]), where=total > 0)
    if steps > 1:
        active_set_rounds(step, objective(step, M, b), np.arange(step.shape[0]), M, b, rounds=steps - 1)
    return step


def word_error_bounds(gap: np.ndarray, residual: np.ndarray, exact: np.ndarray, mu: float, factor: float,
                      tol: float) -> np.ndarray:
    """beta_i >= ||c_i - c_i^retrain||. Rows that are the learner's own output for the current problem: FLOAT_SLACK.
    Otherwise our distance to the optimum, min(sqrt(2 gap_i / mu), K residual_i) -- both bounds hold; the second is
    linear in the residual and is the tight one near the optimum -- plus retraining's, whose stopping rule
    guarantees gap <= tol and residual <= RESIDUAL_TOL: min(sqrt(2 tol / mu), K RESIDUAL_TOL)."""
    if mu <= 0:
        return np.full(gap.shape, np.inf)
    ours = np.minimum(np.sqrt(2.0 * np.maximum(gap, 0.0) / mu), factor * residual)
    theirs = min(math.sqrt(2.0 * tol / mu), factor * RESIDUAL_TOL)
    return np.where(exact, FLOAT_SLACK, ours + theirs + FLOAT_SLACK)


def column_normalised_bound(weights: np.ndarray, C: np.ndarray, beta: np.ndarray) -> float:
    """Frobenius bound on ||colnorm(w * C) - colnorm(w * C')|| when |C_ik - C'_ik| <= beta_i for every k.

    With u = w * c_k, e_i = w_i beta_i: ||u/|u|_1 - u'/|u'|_1||_2 <= (||e||_2 + sum(e)) / |u|_1, because
    ||u'||_2 <= |u'|_1 (derivation in docs/topic-unlearning.md)."""
    e = weights * beta
    col = weights @ C  # (r,) = |u_k|_1
    if not np.isfinite(e).all() or (col <= 0).any():
        return math.inf
    per_topic = (np.sqrt(e @ e) + e.sum()) / col
    return float(np.sqrt(per_topic @ per_topic))
