"""FastAnchorWords (Arora et al., ICML 2013, Alg. 4 "Recover Anchors" of the unlearning paper): the anchor words
are the vertices of the convex hull of the row-normalised co-occurrence rows, found greedily.

1. the candidate row farthest from the origin is the first anchor; every row is translated so it is the origin;
2. the row farthest from it is the second anchor and the first basis direction;
3. r-2 times: project the last basis direction out of every row (stabilised Gram-Schmidt) and take the row with
   the largest residual.
Ties go to the lowest word id (``np.argmax``), so refitting the same statistics is reproducible. An optional
clean-up pass (the 2013 paper) replaces each anchor by the row farthest from the span of the others.
"""

from __future__ import annotations

import math

import numpy as np

from obliviate.errors import ObliviateError


def min_doc_threshold(min_df: float, m: int) -> int:
    """Documents a word needs to be an anchor candidate: a value in (0, 1) is a share of the m documents, a value
    >= 1 a count (an integer, possibly written as a float, as config files do); at least 1 either way."""
    if isinstance(min_df, bool) or not isinstance(min_df, (int, float, np.integer, np.floating)) or not min_df > 0:
        raise ObliviateError(f"anchor_min_df={min_df!r} must be a share in (0, 1) or a document count >= 1")
    if min_df < 1:
        return max(1, math.ceil(min_df * m))
    if float(min_df) != int(min_df):
        raise ObliviateError(f"anchor_min_df={min_df!r}: values >= 1 are document counts and must be integers")
    return int(min_df)


def row_normalise(G: np.ndarray) -> np.ndarray:
    """Q-bar: each row divided by its sum (all-zero rows stay zero)."""
    s = G.sum(axis=1, keepdims=True)
    return np.divide(G, s, out=np.zeros_like(G, dtype=np.float64), where=s > 0)


def random_projection(n: int, dim: int, seed: int) -> np.ndarray:
    """The sparse +-sqrt(3) projection of the reference codes (Achlioptas): entries +-sqrt(3) w.p. 1/6 each, else 0."""
    rng = np.random.default_rng(seed)
    u = rng.random((n, dim))
    return np.sqrt(3.0) * ((u < 1 / 6).astype(np.float64) - (u > 5 / 6).astype(np.float64))


def fast_anchor_words(rows: np.ndarray, r: int, cleanup: bool = True) -> np.ndarray:
    """Indices (into ``rows``) of ``r`` anchor rows. rows: (k, dim) candidate rows of Q-bar (maybe projected)."""
    k = rows.shape[0]
    if k < r:
        raise ObliviateError(f"only {k} words are anchor candidates but n_topics={r}: lower anchor_min_df or "
                             f"n_topics, or use a larger corpus")
    X = np.array(rows, dtype=np.float64)
    anchors = np.zeros(r, dtype=np.int64)
    anchors[0] = int(np.argmax(np.einsum("kd,kd->k", X, X)))
    X -= X[anchors[0]]
    norms = np.einsum("kd,kd->k", X, X)
    anchors[1] = int(np.argmax(norms))
    basis = X[anchors[1]] / math.sqrt(norms[anchors[1]]) if norms[anchors[1]] > 0 else None
    for j in range(2, r):
        if basis is None:
            raise ObliviateError(f"the candidate rows span fewer than {r} directions: the corpus cannot separate "
                                 f"{r} topics (lower n_topics)")
        X -= np.outer(X @ basis, basis)
        norms = np.einsum("kd,kd->k", X, X)
        anchors[j] = int(np.argmax(norms))
        basis = X[anchors[j]] / math.sqrt(norms[anchors[j]]) if norms[anchors[j]] > 1e-300 else None
    if len(set(anchors.tolist())) < r:
        raise ObliviateError(f"the candidate rows do not have {r} distinct extreme points (lower n_topics)")
    if cleanup:
        anchors = _cleanup(np.asarray(rows, dtype=np.float64), anchors)
    return anchors


def _cleanup(rows: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """Replace each anchor by the row farthest from the affine span of the other anchors (Arora et al. 2013).

    Distances via ||y||^2 - ||Q^T y||^2 (Q an orthonormal basis of the span's directions), never forming the
    (k, dim) residual matrix: r products of the rows with an r-column matrix."""
    anchors = anchors.copy()
    sq = np.einsum("kd,kd->k", rows, rows)
    for j in range(anchors.size):
        others = np.delete(anchors, j)
        origin = rows[others[0]]
        span = (rows[others[1:]] - origin).T  # (dim, r-2)
        q = np.linalg.qr(span)[0] if span.shape[1] else np.zeros((rows.shape[1], 0))
        prod = rows @ np.column_stack([origin, q])  # (k, r-1): y.origin, y.q
        proj = prod[:, 1:] - origin @ q  # (y - origin).q
        dist = sq - 2.0 * prod[:, 0] + origin @ origin - np.einsum("kr,kr->k", proj, proj)
        dist[others] = -np.inf
        anchors[j] = int(np.argmax(dist))
    return anchors
