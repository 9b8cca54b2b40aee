"""Batched least squares on the probability simplex -- the per-word problem of RecoverL2 (Arora et al., 2013) and
the per-document problem of ``transform``.

Every row i solves  min_{c in simplex}  f_i(c) = c^T M c - 2 b_i^T c   with one shared (r, r) PSD matrix M and its
own b_i: RecoverL2's ||qbar_i - c^T X_S||^2 with M = X_S X_S^T, b_i = X_S qbar_i^T (the constant ||qbar_i||^2
dropped). The Hessian 2M is the same for every row, which is what makes a Newton unlearning step cheap.

Solver: exponentiated gradient with a per-row step (doubled after a successful step, halved and retried after a
failed one; the reference codes use the same Armijo-style rule), then an active-set "polish": on the support the
EG iterate found, the equality-constrained minimum is one (r+1)-dim KKT solve; accepted when it is feasible and
has a smaller Frank-Wolfe gap. Rows are independent: a row's result does not depend on which other rows are in
the batch (per-row steps, per-row stopping), so re-solving a subset reproduces the full solve.

The Frank-Wolfe gap  gap(c) = c.g - min_j g_j  (g the gradient) bounds f(c) - f* from above; with strong convexity
mu on the simplex's tangent space, ||c - c*|| <= sqrt(2 gap / mu) -- the certificate of ``certified`` deletion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SimplexSolution:
    c: np.ndarray  # (k, r) rows on the simplex
    gap: np.ndarray  # (k,) Frank-Wolfe gaps at c (>= f(c) - f*)
    iterations: int
    converged: bool


# einsum, not ``@``: BLAS picks kernels by batch size, so ``c @ M`` rounds a row differently depending on how many
# rows share the call; einsum's own loops give every row the same bits whatever the batch (tested)
def _times_m(c: np.ndarray, M: np.ndarray) -> np.ndarray:
    return np.einsum("kr,rs->ks", c, M)


def objective(c: np.ndarray, M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """f(c) = c^T M c - 2 b^T c per row. c, b: (k, r); M: (r, r) -> (k,)."""
    return np.einsum("kr,kr->k", _times_m(c, M), c) - 2.0 * np.einsum("kr,kr->k", b, c)


def gradient(c: np.ndarray, M: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 2.0 * (_times_m(c, M) - b)


def fw_gap(c: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Frank-Wolfe duality gap c.g - min_j g_j (>= 0 on the simplex; 0 iff c satisfies the KKT conditions)."""
    return np.maximum(np.einsum("kr,kr->k", c, g) - g.min(axis=1), 0.0)


def tangent_strong_convexity(M: np.ndarray) -> float:
    """mu: the smallest eigenvalue of the Hessian 2M on the simplex's tangent space {v : sum(v) = 0}."""
    r = M.shape[0]
    # orthonormal basis of the tangent space: the last r-1 columns of a Householder-like QR of [1, I]
    q, _ = np.linalg.qr(np.column_stack([np.ones(r), np.eye(r)[:, : r - 1]]))
    basis = q[:, 1:]  # (r, r-1), orthogonal to the all-ones vector
    return float(2.0 * np.linalg.eigvalsh(basis.T @ M @ basis).min())


RESIDUAL_TOL = 1e-12  # a converged row also has natural residual <= this (float noise is ~1e-16)


def natural_residual(c: np.ndarray, M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """||c - P(c - g/L)|| per row, P the projection onto the simplex, L = 2 lambda_max(M) the gradient's Lipschitz
    constant. Zero exactly at the optimum; it bounds the distance to it linearly (``residual_factor``)."""
    lip = max(2.0 * float(np.linalg.eigvalsh(M).max()), 1e-300)
    step = project_simplex_columns((c - gradient(c, M, b) / lip).T).T
    return np.sqrt(np.einsum("kr,kr->k", c - step, c - step))


def residual_factor(M: np.ndarray, mu: float) -> float:
    """K with ||c - c*|| <= K ||c - P(c - g/L)|| for mu-strong convexity on the simplex: K = (1 + tL)/(t mu) at
    t = 1/L, i.e. 2L/mu (derivation in docs/topic-unlearning.md)."""
    lip = 2.0 * float(np.linalg.eigvalsh(M).max())
    return 2.0 * lip / mu if mu > 0 else float("inf")


def solve_on_support(M: np.ndarray, b: np.ndarray, support: np.ndarray) -> np.ndarray:
    """The minimum of f on the affine hull of each row's support face {c : c_j = 0 off support, sum c = 1}.

    For a quadratic this is also one Newton step from any point of that face. Rows whose KKT system is singular
    come back as NaN. support: (k, r) bool -> (k, r)."""
    k, r = b.shape
    kkt = np.zeros((k, r + 1, r + 1))
    rhs = np.zeros((k, r + 1))
    on = support.astype(float)
    kkt[:, :r, :r] = 2.0 * M[None] * on[:, :, None] * on[:, None, :]
    kkt[:, :r, r] = on
    kkt[:, r, :r] = on
    # off-support coordinates: identity rows pin them to 0
    idx = np.arange(r)
    kkt[:, idx, idx] += 1.0 - on
    rhs[:, :r] = 2.0 * b * on
    rhs[:, r] = 1.0
    out = np.full((k, r), np.nan)
    try:
        out = np.linalg.solve(kkt, rhs[..., None])[..., :r, 0]
    except np.linalg.LinAlgError:  # some singular rows: solve one at a time so the others still polish
        for i in range(k):
            try:
                out[i] = np.linalg.solve(kkt[i], rhs[i])[:r]
            except np.linalg.LinAlgError:
                pass
    return out


def simplex_lstsq(M: np.ndarray, b: np.ndarray, tol: float = 1e-12, max_iter: int = 1000,
                  polish_every: int = 20) -> SimplexSolution:
    """Minimise c^T M c - 2 b_i^T c over the simplex for every row of b, to Frank-Wolfe gap <= ``tol``.

    Starts at the uniform point (as the reference RecoverL2 codes); every ``polish_every`` EG steps the rows not yet
    converged try the active-set finish. Deterministic, and row-independent."""
    b = np.asarray(b, dtype=np.float64)
    k, r = b.shape
    c = np.full((k, r), 1.0 / r)
    if k == 0:
        return SimplexSolution(c, np.zeros(0), 0, True)
    f = objective(c, M, b)
    gap = fw_gap(c, gradient(c, M, b))
    eta = np.ones(k)
    it = 0
    for it in range(1, max_iter + 1):
        a = np.flatnonzero(gap > tol)
        if a.size == 0:
            break
        ga = gradient(c[a], M, b[a])
        # multiplicative update; subtracting the row max keeps exp() in range (it cancels in the normalisation)
        z = -eta[a, None] * ga
        step = c[a] * np.exp(z - z.max(axis=1, keepdims=True))
        step /= step.sum(axis=1, keepdims=True)
        f_new = objective(step, M, b[a])
        ok = f_new <= f[a]
        acc = a[ok]
        c[acc], f[acc] = step[ok], f_new[ok]
        eta[acc] *= 2.0
        eta[a[~ok]] *= 0.5
        if it % polish_every == 0:
            active_set_rounds(c, f, a, M, b)
        gap[a] = fw_gap(c[a], gradient(c[a], M, b[a]))
    rest = np.flatnonzero(gap > tol)
    active_set_rounds(c, f, rest, M, b)
    gap[rest] = fw_gap(c[rest], gradient(c[rest], M, b[rest]))
    converged = bool((gap <= tol).all()) and bool((natural_residual(c, M, b) <= RESIDUAL_TOL).all())
    return SimplexSolution(c, gap, it, converged)


def active_set_rounds(c: np.ndarray, f: np.ndarray, rows: np.ndarray, M: np.ndarray, b: np.ndarray,
                      rounds: int | None = None) -> None:
    """Primal active-set rounds from the EG iterate's support: solve on the support; drop coordinates that come out
    negative; add the off-support coordinate that most violates KKT. A row takes the result only when it is feasible
    and does not raise f (so the EG progress is never lost)."""
    if rows.size == 0:
        return
    r = b.shape[1]
    support = c[rows] > 1e-9
    live = np.ones(rows.size, dtype=bool)
    for _ in range(rounds or 3 * r):
        idx = np.flatnonzero(live)
        if idx.size == 0:
            break
        cand = solve_on_support(M, b[rows[idx]], support[idx])
        bad = ~np.isfinite(cand).all(axis=1)
        live[idx[bad]] = False  # singular face: leave the row to EG
        neg = (cand < 0.0) & ~bad[:, None]
        has_neg = neg.any(axis=1)
        if has_neg.any():
            sup = support[idx[has_neg]] & ~neg[has_neg]
            empty = ~sup.any(axis=1)
            sup[empty, np.argmax(cand[has_neg][empty], axis=1)] = True
            support[idx[has_neg]] = sup
        feas = ~bad & ~has_neg
        if not feas.any():
            continue
        fi = idx[feas]
        cf = cand[feas]
        g = gradient(cf, M, b[rows[fi]])
        lam = np.where(support[fi], g, np.inf).min(axis=1)
        viol = np.where(support[fi], np.inf, g) < (lam - 1e-14 * (1.0 + np.abs(lam)))[:, None]
        grow = viol.any(axis=1)
        if grow.any():
            gi = fi[grow]
            support[gi, np.argmin(np.where(support[gi], np.inf, g[grow]), axis=1)] = True
        done = fi[~grow]
        f_cand = objective(cf[~grow], M, b[rows[done]])
        keep = f_cand <= f[rows[done]] + 1e-15 * (1.0 + np.abs(f[rows[done]]))
        c[rows[done[keep]]] = np.maximum(cf[~grow][keep], 0.0)
        f[rows[done[keep]]] = f_cand[keep]
        live[done] = False


def project_simplex_columns(x: np.ndarray) -> np.ndarray:
    """Euclidean projection of every column of x onto the probability simplex (Held et al. / Duchi et al. 2008).

    Non-expansive, so it can only move a noisy release closer to any matrix whose columns are distributions."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[0]
    u = -np.sort(-x, axis=0)  # descending per column
    css = np.cumsum(u, axis=0) - 1.0
    ind = np.arange(1, n + 1)[:, None]
    cond = u - css / ind > 0
    rho = n - 1 - np.argmax(cond[::-1], axis=0)  # last index where cond holds
    theta = css[rho, np.arange(x.shape[1])] / (rho + 1.0)
    return np.maximum(x - theta[None, :], 0.0)
