"""Synthetic bag-of-words corpora with planted anchor words, for anchor-word topic models.

The generative model is the one analysed by Arora, Ge & Moitra (2012, "Learning Topic Models -- Going beyond SVD") and
Arora et al. (2013, "A Practical Algorithm for Topic Modeling with Provable Guarantees"):

* a topic matrix ``A`` (n words x r topics), each column a distribution over words, that is *p-separable*: every topic
  k owns ``anchors_per_topic`` anchor words that have probability 0 under every other topic and total probability
  ``anchor_mass`` under topic k (so with one anchor per topic, ``A`` is ``anchor_mass``-separable);
* per-document topic proportions ``W_d`` drawn from a prior -- Dirichlet(alpha) ("lda") or a logistic normal
  ("ctm", the correlated topic model) -- with population second moment ``R = E[W W^T]``;
* every token of document d draws a topic ``z ~ Cat(W_d)`` and then a word ``w ~ Cat(A[:, z])``.

Two tokens of one document are then distributed as ``Q = A R A^T`` (the word co-occurrence matrix the anchor
algorithm factorises), and a single token as ``A R 1 = A E[W]``.

Anchor placement: the ``r * anchors_per_topic`` anchor ids are the first entries of a seeded permutation of all
word ids, so anchors sit anywhere in the vocabulary (a learner cannot find them by position). Topic k's anchors are
``sorted(perm[k * p:(k + 1) * p])`` with ``p = anchors_per_topic``.

CTM prior: ``W_d = softmax(eta_d)`` with ``eta_d ~ N(0, Sigma)``, where ``Sigma`` (:func:`ctm_covariance`) has a
unit diagonal and 0.5 on the first off-diagonal band (neighbouring topics co-occur; tridiagonal Toeplitz, so it is
positive definite for every r). Its ``R`` has no closed form and is estimated by Monte Carlo with
``CTM_MONTE_CARLO_DRAWS`` draws from a generator seeded by ``(seed, CTM_STREAM)`` -- deterministic, and independent
of the corpus draws so the corpus does not change with the number of Monte Carlo draws.

Labels: a downstream binary task on the topic proportions. After everything else, ``theta ~ N(0, I_r)`` is drawn
from the same generator; ``score_d = W_d . theta + label_noise * N(0, 1)`` and ``label_d = score_d > median(score)``,
so labels are balanced and (for small noise) almost a linear function of ``W_d``.

Determinism and cost: one ``np.random.default_rng(seed)``, draws in a fixed order (topics, W, document lengths,
then tokens chunk by chunk, then labels). Tokens are sampled by inverse CDF in chunks of about ``TOKEN_CHUNK``
tokens, never materialising an (m, n) dense matrix. Measured on 2 CPU cores (n_words=1000, n_topics=10,
doc_length=10, prior="lda"): 1e4 docs 0.04 s, 1e5 docs 0.3 s, 1e6 docs 3 s (9.7M non-zeros), about 0.45 GB
peak resident memory (including the interpreter and numpy/scipy) at 1e6. "ctm" costs about the same (its 200,000
Monte Carlo draws add ~0.05 s).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import scipy.sparse

from obliviate.errors import ObliviateError, unknown_name_error

PRIORS = ("lda", "ctm")
CTM_BAND_CORRELATION = 0.5  # Sigma[k, k+1] of the CTM prior
CTM_MONTE_CARLO_DRAWS = 200_000
CTM_STREAM = 0xC7  # second seed word of the CTM Monte Carlo generator (keeps it apart from the corpus stream)
TOKEN_CHUNK = 1 << 18  # tokens sampled per chunk: bounds the (tokens x r) temporaries to a few tens of MB


@dataclass
class PlantedCorpus:
    """A sampled corpus together with the population parameters that generated it."""

    counts: scipy.sparse.csr_matrix  # (m, n) int64 word counts, one row per document
    topics: np.ndarray  # A, (n, r) float64, each column a distribution over the n words
    topic_cooccurrence: np.ndarray  # R = E[W W^T], (r, r), entries sum to 1 (population value)
    anchors: list[list[int]]  # planted anchor word ids of each topic
    doc_topics: np.ndarray  # W, (m, r) topic proportions used per document
    labels: np.ndarray  # (m,) int64 in {0, 1}, see the module docstring

    def population_cooccurrence(self) -> np.ndarray:
        """``Q = A R A^T`` (n, n): the joint distribution of two distinct tokens of one document."""
        return self.topics @ self.topic_cooccurrence @ self.topics.T

    def population_word_frequencies(self) -> np.ndarray:
        """``A R 1 = A E[W]`` (n,): the distribution of a single token (row sums of ``Q``)."""
        return self.topics @ self.topic_cooccurrence.sum(axis=1)


# --------------------------------------------------------------------------------------------- argument checks


def _check_int(name: str, value: object, minimum: int) -> int:
    # bool is an Integral; reject it so ``n_topics=True`` does not silently mean 1
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ObliviateError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_real(name: str, value: object, low: float, high: float | None = None, *, low_open: bool = True) -> float:
    ok = isinstance(value, Real) and not isinstance(value, bool) and np.isfinite(float(value))
    if ok:
        v = float(value)
        ok = (v > low if low_open else v >= low) and (high is None or v < high)
    if not ok:
        lo = f"{'>' if low_open else '>='} {low:g}"
        rng = lo if high is None else f"{lo} and < {high:g}"
        raise ObliviateError(f"{name} must be a finite number {rng}, got {value!r}")
    return float(value)


def _check_doc_length(doc_length: object) -> tuple[int, int]:
    """``doc_length`` as an inclusive (lo, hi) range; a single int L means (L, L)."""
    if isinstance(doc_length, Integral) and not isinstance(doc_length, bool):
        length = _check_int("doc_length", doc_length, 2)  # anchor algorithms need >= 2 tokens per document
        return length, length
    if isinstance(doc_length, (tuple, list)) and len(doc_length) == 2:
        lo = _check_int("doc_length[0]", doc_length[0], 2)
        hi = _check_int("doc_length[1]", doc_length[1], lo)
        return lo, hi
    raise ObliviateError(
        f"doc_length must be an integer >= 2 or a (lo, hi) pair with 2 <= lo <= hi, got {doc_length!r}"
    )


# --------------------------------------------------------------------------------------------- population model


def planted_topics(
    n_words: int,
    n_topics: int,
    anchors_per_topic: int,
    anchor_mass: float,
    beta: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[list[int]]]:
    """A separable topic matrix ``A`` (n_words, n_topics) and the anchor word ids of each topic.

    Topic k puts ``anchor_mass / anchors_per_topic`` on each of its anchors, 0 on other topics' anchors, and spreads
    ``1 - anchor_mass`` over all non-anchor words as ``Dirichlet(beta)``. Draws: one permutation, then one Dirichlet
    vector per topic in topic order.
    """
    n_words = _check_int("n_words", n_words, 3)
    n_topics = _check_int("n_topics", n_topics, 2)
    per = _check_int("anchors_per_topic", anchors_per_topic, 1)
    anchor_mass = _check_real("anchor_mass", anchor_mass, 0.0, 1.0)
    beta = _check_real("beta", beta, 0.0)
    n_anchors = n_topics * per
    if n_words < n_anchors + 1:
        raise ObliviateError(
            f"n_words={n_words} is too small: n_topics * anchors_per_topic + 1 = {n_anchors + 1} words are needed "
            "(the anchors plus at least one shared word)"
        )
    perm = rng.permutation(n_words)
    anchors = [sorted(int(w) for w in perm[k * per : (k + 1) * per]) for k in range(n_topics)]
    is_anchor = np.zeros(n_words, dtype=bool)
    is_anchor[perm[:n_anchors]] = True
    rest = np.flatnonzero(~is_anchor)

    topics = np.zeros((n_words, n_topics), dtype=np.float64)
    for k in range(n_topics):
        topics[anchors[k], k] = anchor_mass / per
        topics[rest, k] = (1.0 - anchor_mass) * _dirichlet_vector(beta, rest.size, rng)
    return topics, anchors


def _dirichlet_vector(beta: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """One symmetric Dirichlet(beta) draw of length ``size`` that sums to 1 to rounding."""
    vec = rng.dirichlet(np.full(size, beta))
    total = vec.sum()
    # tiny beta can underflow every gamma variate to 0; fall back to a uniform column rather than NaNs
    return vec / total if total > 0 else np.full(size, 1.0 / size)


def dirichlet_cooccurrence(alpha_vec: np.ndarray) -> np.ndarray:
    """Closed-form ``E[W W^T]`` for ``W ~ Dirichlet(alpha_vec)``.

    ``E[W_k W_l] = a_k a_l / (a0 (a0 + 1))`` off the diagonal and ``a_k (a_k + 1) / (a0 (a0 + 1))`` on it, with
    ``a0 = sum(a)``; i.e. ``(a a^T + diag(a)) / (a0 (a0 + 1))``.
    """
    a = np.asarray(alpha_vec, dtype=np.float64)
    if a.ndim != 1 or a.size < 2 or not np.all(np.isfinite(a)) or np.any(a <= 0):
        raise ObliviateError(f"alpha_vec must be a 1-D vector of >= 2 positive finite numbers, got {alpha_vec!r}")
    a0 = a.sum()
    return (np.outer(a, a) + np.diag(a)) / (a0 * (a0 + 1.0))


def ctm_covariance(n_topics: int) -> np.ndarray:
    """The CTM prior's ``Sigma``: unit diagonal, ``CTM_BAND_CORRELATION`` on the first off-diagonal band."""
    n_topics = _check_int("n_topics", n_topics, 2)
    sigma = np.eye(n_topics)
    band = np.arange(n_topics - 1)
    sigma[band, band + 1] = sigma[band + 1, band] = CTM_BAND_CORRELATION
    return sigma


def _softmax_rows(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)  # shift for overflow safety
    np.exp(x, out=x)
    x /= x.sum(axis=1, keepdims=True)
    return x


def logistic_normal(sigma: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` draws of ``softmax(N(0, sigma))``, shape (size, r)."""
    chol = np.linalg.cholesky(sigma)
    return _softmax_rows(rng.standard_normal((size, sigma.shape[0])) @ chol.T)


def ctm_cooccurrence(n_topics: int, seed: int, n_draws: int = CTM_MONTE_CARLO_DRAWS) -> np.ndarray:
    """Monte Carlo ``E[W W^T]`` of the CTM prior, symmetric and summing to 1; deterministic in ``seed``."""
    n_draws = _check_int("n_draws", n_draws, 1)
    rng = np.random.default_rng([_check_int("seed", seed, 0), CTM_STREAM])
    w = logistic_normal(ctm_covariance(n_topics), n_draws, rng)
    r = w.T @ w / n_draws
    r = (r + r.T) / 2.0  # exact symmetry despite rounding
    return r / r.sum()  # rows of W sum to 1, so the sum is 1 up to rounding; make it exact


# --------------------------------------------------------------------------------------------- sampling


def _draw_doc_topics(prior: str, alpha: float, n_docs: int, n_topics: int, rng: np.random.Generator) -> np.ndarray:
    if prior == "lda":
        return rng.dirichlet(np.full(n_topics, alpha), size=n_docs)
    return logistic_normal(ctm_covariance(n_topics), n_docs, rng)


def _last_positive(prob_rows: np.ndarray) -> np.ndarray:
    """Index of the last strictly positive entry of each row (an inverse-CDF draw must never go past it)."""
    return prob_rows.shape[1] - 1 - np.argmax(prob_rows[:, ::-1] > 0, axis=1)


def _sample_chunk(
    doc_topics: np.ndarray,
    lengths: np.ndarray,
    cum_topics: np.ndarray,
    last_word: np.ndarray,
    rng: np.random.Generator,
) -> scipy.sparse.csr_matrix:
    """Counts (docs of the chunk, n) for the documents whose proportions are ``doc_topics``."""
    n_docs, n_topics = doc_topics.shape
    n_words = cum_topics.shape[0]
    doc = np.repeat(np.arange(n_docs), lengths)
    u_topic = rng.random(doc.size)
    u_word = rng.random(doc.size)

    # topic of each token: inverse CDF of its document's row, i.e. the number of cumulative weights <= u
    cum_w = np.cumsum(doc_topics, axis=1)
    u_topic *= cum_w[doc, -1]
    z = (cum_w[doc] <= u_topic[:, None]).sum(axis=1)
    z = np.minimum(z, _last_positive(doc_topics)[doc])  # rounding guard: stay on a topic of positive weight

    # word of each token: group tokens by topic and search that topic's cumulative column
    word = np.empty(doc.size, dtype=np.int64)
    # small-int keys let numpy's stable sort use radix sort (several times faster than on int64)
    order = np.argsort(z.astype(np.int16) if n_topics < 2**15 else z, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(z, minlength=n_topics))])
    for k in range(n_topics):
        idx = order[bounds[k] : bounds[k + 1]]
        if idx.size:
            col = cum_topics[:, k]
            # side="right" picks the first word whose cumulative mass exceeds u, so zero-mass words are never drawn
            hit = np.searchsorted(col, u_word[idx] * col[-1], side="right")
            word[idx] = np.minimum(hit, last_word[k])
    ones = np.ones(doc.size, dtype=np.int64)
    coo = scipy.sparse.coo_matrix((ones, (doc, word)), shape=(n_docs, n_words))
    return coo.tocsr()  # tocsr sums duplicate (doc, word) entries into counts


def _chunk_bounds(lengths: np.ndarray) -> list[tuple[int, int]]:
    """Document ranges holding about ``TOKEN_CHUNK`` tokens each (at least one document per range)."""
    ends = np.searchsorted(np.cumsum(lengths), np.arange(TOKEN_CHUNK, int(lengths.sum()), TOKEN_CHUNK), side="left")
    cuts = np.unique(np.concatenate([[0], ends + 1, [lengths.size]]))  # ends < size: targets < total tokens
    return [(int(a), int(b)) for a, b in itertools.pairwise(cuts)]


def sample_counts(
    doc_topics: np.ndarray, topics: np.ndarray, lengths: np.ndarray, rng: np.random.Generator
) -> scipy.sparse.csr_matrix:
    """Word counts (m, n) int64 for documents with proportions ``doc_topics`` (m, r) and token counts ``lengths``."""
    cum_topics = np.cumsum(topics, axis=0)
    last_word = _last_positive(topics.T)
    blocks = [
        _sample_chunk(doc_topics[a:b], lengths[a:b], cum_topics, last_word, rng) for a, b in _chunk_bounds(lengths)
    ]
    counts = scipy.sparse.vstack(blocks, format="csr")
    counts.data = counts.data.astype(np.int64, copy=False)
    return counts


def downstream_labels(doc_topics: np.ndarray, label_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Balanced binary labels ``W theta + noise > median`` (see the module docstring)."""
    theta = rng.standard_normal(doc_topics.shape[1])
    score = doc_topics @ theta + label_noise * rng.standard_normal(doc_topics.shape[0])
    return (score > np.median(score)).astype(np.int64)


def planted_corpus(
    n_docs: int,
    n_words: int,
    n_topics: int,
    doc_length: int | tuple[int, int] = 10,
    prior: str = "lda",
    alpha: float = 0.3,
    anchors_per_topic: int = 1,
    anchor_mass: float = 0.1,
    beta: float = 0.1,
    label_noise: float = 0.1,
    seed: int = 0,
) -> PlantedCorpus:
    """Sample a corpus from the separable topic model described in the module docstring.

    ``doc_length`` is a fixed token count L >= 2 (the anchor papers' analysis uses L = 2) or an inclusive range
    ``(lo, hi)`` with ``2 <= lo <= hi`` (uniform integer lengths). ``prior`` is "lda" (``W ~ Dirichlet(alpha 1_r)``,
    ``R`` in closed form) or "ctm" (logistic normal, ``R`` by Monte Carlo; ``alpha`` unused).
    """
    n_docs = _check_int("n_docs", n_docs, 1)
    n_topics = _check_int("n_topics", n_topics, 2)
    n_words = _check_int("n_words", n_words, 3)
    lo, hi = _check_doc_length(doc_length)
    if prior not in PRIORS:
        raise unknown_name_error("prior", str(prior), PRIORS)
    alpha = _check_real("alpha", alpha, 0.0)
    label_noise = _check_real("label_noise", label_noise, 0.0, low_open=False)
    seed = _check_int("seed", seed, 0)

    rng = np.random.default_rng(seed)
    topics, anchors = planted_topics(n_words, n_topics, anchors_per_topic, anchor_mass, beta, rng)
    if prior == "lda":
        cooc = dirichlet_cooccurrence(np.full(n_topics, alpha))
    else:
        cooc = ctm_cooccurrence(n_topics, seed)
    doc_topics = _draw_doc_topics(prior, alpha, n_docs, n_topics, rng)
    lengths = np.full(n_docs, lo, dtype=np.int64) if lo == hi else rng.integers(lo, hi + 1, size=n_docs)
    counts = sample_counts(doc_topics, topics, lengths, rng)
    labels = downstream_labels(doc_topics, label_noise, rng)
    return PlantedCorpus(counts, topics, cooc, anchors, doc_topics, labels)
