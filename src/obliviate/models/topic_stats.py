"""The sufficient statistic of the anchor-word topic model and its closed-form update under deletion.

For a document d with count vector h_d and length L_d >= 2, the unbiased word-pair estimate is
    g_d = (h_d h_d^T - diag(h_d)) / (L_d (L_d - 1))          (Arora et al., 2013; every g_d sums to exactly 1)
and the learner keeps the unnormalised sum G = sum_d g_d together with m (Q-hat = G / m), the number of documents
each word occurs in (anchor candidates) and a multiset of document content hashes (to refuse deleting a document
that was never in the corpus, or deleting it twice). Deleting documents subtracts their g_d: the cost depends on
the deleted documents only, never on m.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from obliviate.errors import ObliviateError


def as_counts(X: object, n_words: int | None = None, name: str = "X") -> sp.csr_matrix:
    """Documents x words counts as an int64 CSR matrix; refuses negative, non-integer or mis-shaped input."""
    if sp.issparse(X):
        m = sp.csr_matrix(X)
    else:
        arr = np.asarray(X)
        if arr.ndim != 2:
            raise ObliviateError(f"{name} must be a 2-D documents x words count matrix, got shape {arr.shape}")
        m = sp.csr_matrix(arr)
    if n_words is not None and m.shape[1] != n_words:
        raise ObliviateError(f"{name} has {m.shape[1]} words (columns) but the model was fitted on {n_words}: "
                             f"use the same vocabulary (e.g. the fitted CountVectorizer's transform)")
    data = m.data
    if data.size and not np.issubdtype(data.dtype, np.number):
        raise ObliviateError(f"{name} must hold numeric counts, got dtype {data.dtype}")
    if data.size and (data < 0).any():
        r, c = (m < 0).nonzero()
        raise ObliviateError(f"{name} holds a negative count ({m[r[0], c[0]]} at document {r[0]}, word {c[0]})")
    if data.size and not np.issubdtype(data.dtype, np.integer):
        frac = data != np.round(data)
        if frac.any() or not np.isfinite(data).all():
            bad = np.flatnonzero(frac | ~np.isfinite(data))[0]
            row = int(np.searchsorted(m.indptr, bad, side="right") - 1)
            raise ObliviateError(f"{name} holds a non-integer count ({data[bad]} in document {row}): the model needs "
                                 f"word counts (use CountVectorizer, not TfidfVectorizer)")
    out = sp.csr_matrix(m, dtype=np.int64)
    out.eliminate_zeros()
    out.sort_indices()
    return out


def doc_lengths(X: sp.csr_matrix) -> np.ndarray:
    return np.asarray(X.sum(axis=1)).ravel()


def check_lengths(X: sp.csr_matrix, name: str = "X") -> None:
    """Every document needs >= 2 tokens: the pair estimate divides by L(L-1)."""
    short = np.flatnonzero(doc_lengths(X) < 2)
    if short.size:
        shown = ", ".join(str(i) for i in short[:5]) + (" ..." if short.size > 5 else "")
        raise ObliviateError(f"{name}: {short.size} document(s) have fewer than 2 tokens (rows {shown}); the "
                             f"co-occurrence estimate needs >= 2 per document -- drop them first")


def cooccurrence_sum(X: sp.csr_matrix, dtype: type = np.float64) -> np.ndarray:
    """G = sum_d (h_d h_d^T - diag h_d) / (L_d (L_d - 1)) as a dense (n, n) array."""
    lengths = doc_lengths(X).astype(np.float64)
    w = 1.0 / (lengths * (lengths - 1.0))
    weighted = sp.diags(w) @ X.astype(np.float64)
    G = (X.T.astype(np.float64) @ weighted).toarray()
    G[np.diag_indices_from(G)] -= np.asarray(weighted.sum(axis=0)).ravel()
    # C order always: row sums (Q-bar) then add up in the same order for a fitted and an updated statistic
    return np.ascontiguousarray(G, dtype=dtype)


def doc_frequency(X: sp.csr_matrix) -> np.ndarray:
    """(n,) number of documents each word occurs in."""
    return np.bincount(X.indices, minlength=X.shape[1]).astype(np.int64)


_MIX1, _MIX2 = np.uint64(0x9E3779B97F4A7C15), np.uint64(0xD6E8FEB86659FD93)


def _splitmix(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x ^= x >> np.uint64(30)
    x *= np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def doc_hash_arrays(X: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """A 128-bit content hash per document (order-free over its (word, count) pairs), vectorised: two (m,) uint64."""
    with np.errstate(over="ignore"):
        key = (X.indices.astype(np.uint64) << np.uint64(32)) ^ X.data.astype(np.uint64)
        h1, h2 = _splitmix(key ^ _MIX1), _splitmix(key * _MIX2 + np.uint64(1))
        starts = X.indptr[:-1]
        nonempty = np.diff(X.indptr) > 0
        s1 = np.zeros(X.shape[0], dtype=np.uint64)
        s2 = np.zeros(X.shape[0], dtype=np.uint64)
        if h1.size:
            s1[nonempty] = np.add.reduceat(h1, starts[nonempty])
            s2[nonempty] = np.add.reduceat(h2, starts[nonempty])
    return s1, s2


def doc_hashes(X: sp.csr_matrix) -> list[tuple[int, int]]:
    """The content hash of every document as (int, int) pairs."""
    s1, s2 = doc_hash_arrays(X)
    return list(zip(s1.tolist(), s2.tolist()))


class HashMultiset:
    """Document hashes with multiplicities, as sorted arrays (16 bytes + a count per distinct document, instead of
    ~170 bytes in a dict of tuples; copying it is a memcpy). Lookups by binary search. Read like a mapping
    hash -> count of the documents still held (zero counts are kept in place after deletions)."""

    def __init__(self, h1: np.ndarray, h2: np.ndarray, count: np.ndarray) -> None:
        self.h1, self.h2, self.count = h1, h2, count

    @classmethod
    def of(cls, h1: np.ndarray, h2: np.ndarray) -> HashMultiset:
        if h1.size == 0:
            return cls(np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int64))
        keys, count = np.unique(np.column_stack([h1, h2]), axis=0, return_counts=True)  # sorted by (h1, h2)
        return cls(np.ascontiguousarray(keys[:, 0]), np.ascontiguousarray(keys[:, 1]), count.astype(np.int64))

    def index(self, h: tuple[int, int]) -> int:
        """Position of ``h``, or -1."""
        a, b = np.uint64(h[0]), np.uint64(h[1])
        lo, hi = np.searchsorted(self.h1, a, "left"), np.searchsorted(self.h1, a, "right")
        if hi > lo:
            j = lo + int(np.searchsorted(self.h2[lo:hi], b))
            if j < hi and self.h2[j] == b:
                return int(j)
        return -1

    def get(self, h: tuple[int, int], default: int = 0) -> int:
        j = self.index(h)
        return int(self.count[j]) if j >= 0 else default

    def items(self) -> list[tuple[tuple[int, int], int]]:
        live = np.flatnonzero(self.count > 0)
        return [((int(self.h1[j]), int(self.h2[j])), int(self.count[j])) for j in live]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(h for h, _ in self.items())

    def keys(self) -> list[tuple[int, int]]:
        return [h for h, _ in self.items()]

    def __getitem__(self, h: tuple[int, int]) -> int:
        return self.get(h)

    def values(self) -> list[int]:
        return [int(c) for c in self.count[self.count > 0]]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, HashMultiset):
            return dict(self.items()) == dict(other.items())
        return NotImplemented

    def __len__(self) -> int:
        return int((self.count > 0).sum())


@dataclass
class CorpusStatistics:
    """T(S): everything the learner needs, of a size that does not grow with the number of documents (except the
    hash multiset, 24 bytes a distinct document, kept only to validate deletion requests)."""

    G: np.ndarray  # (n, n) unnormalised co-occurrence sum
    m: int  # documents
    doc_freq: np.ndarray  # (n,) documents containing each word
    hashes: HashMultiset = field(default_factory=lambda: HashMultiset.of(np.zeros(0, np.uint64), np.zeros(0, np.uint64)))
    # deletions validated against ``hashes`` but not yet applied to it: ``without`` shares the multiset with its
    # parent instead of copying it (a copy costs O(m)); ``commit`` applies them once the new state is adopted
    pending: Counter | None = None

    @classmethod
    def from_counts(cls, X: sp.csr_matrix, dtype: type = np.float64) -> CorpusStatistics:
        check_lengths(X)
        return cls(cooccurrence_sum(X, dtype), int(X.shape[0]), doc_frequency(X), HashMultiset.of(*doc_hash_arrays(X)))

    @property
    def n_words(self) -> int:
        return int(self.G.shape[0])

    def contains(self, h: tuple[int, int]) -> int:
        """How many copies of the document with hash ``h`` these statistics hold."""
        return self.hashes.get(h, 0) - (self.pending.get(h, 0) if self.pending else 0)

    def without(self, X_forget: sp.csr_matrix) -> tuple[CorpusStatistics, np.ndarray]:
        """The statistics of the corpus minus ``X_forget`` and the ids of the words whose co-occurrence rows
        changed. ``self`` is untouched until the result is ``commit``-ted. Cost: O(n^2) for the copy of G plus the
        deleted documents' pairs -- never O(m). Refuses documents that are not (or no longer) in the corpus."""
        check_lengths(X_forget, "X_forget")
        if X_forget.shape[0] == 0:
            return self, np.zeros(0, dtype=np.int64)
        if X_forget.shape[0] >= self.m:
            raise ObliviateError(f"cannot delete {X_forget.shape[0]} of the corpus's {self.m} documents: at least one "
                                 f"must remain")
        hashes = doc_hashes(X_forget)
        want = Counter(hashes)
        missing = {h for h, k in want.items() if self.contains(h) < k}
        if missing:
            rows = [i for i, h in enumerate(hashes) if h in missing]
            raise ObliviateError(f"X_forget row(s) {rows[:5]} are not in the corpus (never fitted, already deleted, "
                                 f"or requested more times than they occur): nothing was changed")
        touched = np.unique(X_forget.indices)
        G = self.G.copy()
        # only the touched words' block changes: the deleted documents' pairs, over their own words
        G[np.ix_(touched, touched)] -= cooccurrence_sum(X_forget[:, touched].tocsr(), self.G.dtype)
        stats = CorpusStatistics(G, self.m - int(X_forget.shape[0]), self.doc_freq - doc_frequency(X_forget),
                                 self.hashes, want + (self.pending or Counter()))
        return stats, touched

    def commit(self) -> None:
        """Apply the pending deletions to the hash multiset, which is shared with the statistics this object was
        derived from: O(deleted documents). Only the owner adopting these statistics (the model) calls it; the
        parent is stale afterwards."""
        if not self.pending:
            return
        for h, k in self.pending.items():
            self.hashes.count[self.hashes.index(h)] -= k
        self.pending = None
