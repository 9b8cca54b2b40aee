"""AnchorTopicModel: a provable (anchor-word) topic model with exact and certified deletion, in scikit-learn's
estimator conventions (Wei, Malladi, Arora, Sanyal, 2024, "Provable unlearning in topic modeling and downstream
tasks"; the learner is Arora et al. 2012/2013). Derivations: docs/topic-unlearning.md.

    model = AnchorTopicModel(n_topics=20).fit(X)             # X: documents x words counts (sparse or dense)
    theta = model.transform(X)                               # document-topic proportions
    model.unlearn(X[:10])                                    # exact: equals retraining on the rest
    model.unlearn(X[10:20], mode="certified", epsilon=1.0, delta=1e-5)   # Newton step + Gaussian noise
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from obliviate.errors import ObliviateError
from obliviate.models.simplex import simplex_lstsq
from obliviate.models.topic_learn import LearnerParams, TopicSolution, learn, relearn
from obliviate.models.topic_stats import CorpusStatistics, as_counts

MODES = ("exact", "certified")


class AnchorTopicModel(TransformerMixin, BaseEstimator):
    """Anchor-word topic model (FastAnchorWords + RecoverL2/KL) that can forget documents.

    Parameters: ``n_topics``; ``anchor_min_df`` documents a word needs to be an anchor candidate (int count or share
    of documents, like scikit-learn's ``min_df``); ``projection_dim`` random projection of the rows before the
    anchor search (None: exact rows); ``anchor_cleanup`` the 2013 clean-up pass; ``loss`` "L2" (RecoverL2; needed
    for certified deletion) or "KL"; ``topic_cooccurrence`` "anchor" (R = D^-1 Q_SS D^-1) or "pinv"; ``tol`` the
    Frank-Wolfe gap each word's simplex problem is solved to; ``dtype`` of the stored statistic G ("float32" halves
    its 8 n^2 bytes; deletions then equal retraining to float32 rounding, ~1e-7); ``random_state`` seeds the
    projection only.

    Fitted attributes: ``components_`` (n_topics, n_words) topic-word distributions (rows sum to 1; the released,
    noisy ones after a certified release), ``topic_cooccurrence_`` R, ``anchors_`` anchor word ids,
    ``word_topic_posterior_`` P(topic | word), ``n_docs_``, ``n_features_in_``, ``converged_``, ``privacy_``
    (None, or the noise record of certified releases) and ``deletions_`` (one record per unlearn call).
    """

    def __init__(self, n_topics: int = 10, *, anchor_min_df: float = 0.01, projection_dim: int | None = None,
                 anchor_cleanup: bool = True, loss: str = "L2", topic_cooccurrence: str = "anchor",
                 tol: float = 1e-15, max_iter: int = 1000, dtype: str = "float64", random_state: int = 0) -> None:
        self.n_topics = n_topics
        self.anchor_min_df = anchor_min_df
        self.projection_dim = projection_dim
        self.anchor_cleanup = anchor_cleanup
        self.loss = loss
        self.topic_cooccurrence = topic_cooccurrence
        self.tol = tol
        self.max_iter = max_iter
        self.dtype = dtype
        self.random_state = random_state

    # --- fitting ----------------------------------------------------------------------------------------------
    def _learner(self) -> LearnerParams:
        return LearnerParams(self.n_topics, self.anchor_min_df, self.projection_dim, self.anchor_cleanup, self.loss,
                             self.topic_cooccurrence, self.tol, self.max_iter, self.random_state)

    def fit(self, X: Any, y: Any = None, vocabulary: list[str] | None = None) -> AnchorTopicModel:
        """Fit on a documents x words count matrix (every document >= 2 tokens). ``vocabulary`` (optional) names
        the columns in messages, e.g. ``CountVectorizer.get_feature_names_out()``."""
        p = self._learner()
        if self.dtype not in ("float64", "float32"):
            raise ObliviateError(f"dtype={self.dtype!r} is not one of 'float64', 'float32'")
        counts = as_counts(X)
        if vocabulary is not None and len(vocabulary) != counts.shape[1]:
            raise ObliviateError(f"vocabulary has {len(vocabulary)} words but X has {counts.shape[1]} columns")
        stats = CorpusStatistics.from_counts(counts, np.dtype(self.dtype).type)
        self.vocabulary_ = list(vocabulary) if vocabulary is not None else None
        self._commit(stats, learn(stats, p), privacy=None, deletions=[])
        return self

    def fit_cooccurrence(self, Q: np.ndarray, n_docs: int = 1) -> AnchorTopicModel:
        """Fit from a word co-occurrence matrix Q (n x n, entries summing to 1), e.g. the population A R A^T: every
        word with mass is a candidate. No documents, so nothing to unlearn; for exactness checks."""
        Q = np.asarray(Q, dtype=np.float64)
        if Q.ndim != 2 or Q.shape[0] != Q.shape[1] or (Q < 0).any():
            raise ObliviateError(f"Q must be a non-negative square matrix, got shape {Q.shape}")
        mass = Q.sum(axis=1) > 0
        stats = CorpusStatistics(Q * n_docs, int(n_docs), np.where(mass, n_docs, 0).astype(np.int64))
        self.vocabulary_ = None
        self._commit(stats, learn(stats, self._learner()), privacy=None, deletions=[])
        return self

    def _commit(self, stats: CorpusStatistics, sol: TopicSolution, privacy: Any, deletions: list,
                released: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> None:
        """Replace the whole fitted state at once (a failed update raises before this and changes nothing)."""
        A, R, C = released if released is not None else (sol.A, sol.R, sol.C)
        stats.commit()
        self.statistics_ = stats
        self._solution = sol  # pre-noise: never publish it when the releases are certified
        self.components_ = A.T.copy()
        self.topic_cooccurrence_ = R
        self.word_topic_posterior_ = C
        self.anchors_ = sol.anchors.copy()
        self.n_docs_ = stats.m
        self.n_features_in_ = stats.n_words
        self.converged_ = sol.converged
        self.privacy_ = privacy
        self.deletions_ = deletions

    # --- use ----------------------------------------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """Document-topic proportions: argmin over the simplex of ||x/|x| - A theta||^2 per document."""
        check_is_fitted(self, "components_")
        counts = as_counts(X, self.n_features_in_)
        lengths = np.asarray(counts.sum(axis=1)).ravel().astype(np.float64)
        xbar = counts.multiply(1.0 / np.maximum(lengths, 1.0)[:, None]).tocsr()
        A = self.components_.T
        theta = simplex_lstsq(A.T @ A, np.asarray(xbar @ A), tol=self.tol, max_iter=self.max_iter).c
        theta[lengths == 0] = 1.0 / A.shape[1]
        return theta

    def top_words(self, k: int = 10, relevance: float = 1.0) -> list[list[str | int]]:
        """The ``k`` top words of each topic (names when a vocabulary was given to ``fit``), ranked by
        relevance = relevance * log P(w|t) + (1 - relevance) * log(P(w|t) / P(w)) (Sievert & Shirley, 2014):
        1.0 ranks by probability; ~0.6 lets distinctive words beat merely frequent ones."""
        check_is_fitted(self, "components_")
        if not 0.0 <= relevance <= 1.0:
            raise ObliviateError(f"relevance={relevance!r} must be in [0, 1]")
        A = np.maximum(self.components_, 1e-300)  # (r, n)
        prior = np.maximum(self.topic_cooccurrence_.sum(axis=1), 0.0)
        p_w = np.maximum(prior @ A / max(prior.sum(), 1e-300), 1e-300)
        score = relevance * np.log(A) + (1.0 - relevance) * (np.log(A) - np.log(p_w)[None, :])
        order = np.argsort(-score, axis=1, kind="stable")[:, :k]
        names = self.vocabulary_
        return [[names[j] if names else int(j) for j in row] for row in order]

    # --- deletion -------------------------------------------------------------------------------------------------
    def unlearn(self, X_forget: Any, mode: str = "exact", *, epsilon: float | None = None, delta: float | None = None,
                tolerance: float = 0.01, newton_steps: int = 1, fallback: bool = False,
                random_state: int | None = None) -> dict[str, Any]:
        """Delete documents (rows of counts, as given to ``fit``) and return the deletion record.

        ``mode="exact"``: refit from the updated statistics -- the same output as retraining on the remaining
        documents, at a cost independent of their number. ``mode="certified"``: one Newton step per word plus
        Gaussian noise calibrated so that, with probability 0.9, the noise moves the topic matrix by at most
        ``tolerance`` (Frobenius); the release is (epsilon, delta)-indistinguishable from retraining + the same
        noise. Refused (nothing changed) when the anchors would move, an anchor word loses all its documents, or
        the certificate exceeds the budget; ``fallback=True`` then does an exact recompute (noised the same way).
        ``newton_steps``: 1 is the paper's single step; more (active-set rounds on the shared Hessian) usually
        reach the retrained solution exactly, leaving only the solver-tolerance floor in the certificate.
        ``random_state`` seeds the noise (default: fresh OS entropy, as privacy needs)."""
        from obliviate.certified.deletion import CertificationRefused, PrivacyState, certified_update, release

        check_is_fitted(self, "components_")
        if mode not in MODES:
            raise ObliviateError(f"mode={mode!r} is not one of {', '.join(MODES)}")
        if not isinstance(newton_steps, (int, np.integer)) or newton_steps < 1:
            raise ObliviateError(f"newton_steps={newton_steps!r} must be an int >= 1")
        start = time.perf_counter()
        counts = as_counts(X_forget, self.n_features_in_, "X_forget")
        p = self._learner()
        privacy = copy.deepcopy(self.privacy_)
        if mode == "certified":
            if privacy is None:
                privacy = PrivacyState.create(epsilon, delta, tolerance, self.components_.size)
            else:
                privacy.check_same(epsilon, delta, tolerance)
        stats, touched = self.statistics_.without(counts)
        record: dict[str, Any] = {"mode": mode, "deleted": int(counts.shape[0]), "n_docs_before": self.n_docs_,
                                  "n_docs_after": stats.m, "words_touched": int(touched.size)}
        sol, refused = None, None
        if mode == "certified":
            try:
                sol, info = certified_update(stats, touched, self._solution, p, self.vocabulary_, newton_steps)
                record.update(info)
                if info["certificate"] > privacy.budget:
                    hint = ""
                    if newton_steps == 1 and info["support_changes"]:
                        hint = (f"; {info['support_changes']} word(s) changed which topics they belong to, which one "
                                f"Newton step does not follow -- newton_steps=3 usually lands on the retrained "
                                f"solution")
                    raise CertificationRefused(
                        f"the certificate {info['certificate']:.3g} exceeds the distance budget {privacy.budget:.3g} "
                        f"that the noise covers: the deletion capacity is spent ({privacy.deletions} documents "
                        f"deleted so far){hint}")
            except CertificationRefused as err:
                if not fallback:
                    raise CertificationRefused(f"{err} -- nothing was changed; pass fallback=True to recompute "
                                               f"exactly instead") from None
                sol, refused = None, str(err)
        if sol is None:
            sol, info = relearn(stats, touched, self._solution, p)
            record.update(info, certificate=0.0)
            if refused:
                record["fallback"] = refused
        released = None
        if privacy is not None:
            rng = np.random.default_rng(random_state)
            released = release(sol, stats, privacy.sigma, p.topic_cooccurrence, rng)
            privacy.deletions += int(counts.shape[0])
            privacy.releases += 1
            record.update(privacy.to_dict(), capacity_used=record["certificate"] / privacy.budget,
                          remaining_budget=privacy.budget - record["certificate"])
            record["remaining_capacity_estimate"] = _remaining(record, privacy)
            privacy.history.append({k: record[k] for k in ("deleted", "certificate", "capacity_used")})
        record["seconds"] = time.perf_counter() - start
        self._commit(stats, sol, privacy, [*self.deletions_, record], released)
        return record

    def certify(self, epsilon: float, delta: float, tolerance: float = 0.01,
                random_state: int | None = None) -> dict[str, Any]:
        """Release the current model with the noise of certified deletion and no deletion -- what the definition
        compares against (a model retrained without the documents, then released the same way). Call it before
        publishing a model whose later deletions will be certified."""
        return self.unlearn(np.zeros((0, self.n_features_in_), dtype=np.int64), mode="certified", epsilon=epsilon,
                            delta=delta, tolerance=tolerance, random_state=random_state)

    def exact_solution_without(self, X_forget: Any) -> TopicSolution:
        """The learner's (pre-noise) solution on the corpus minus ``X_forget`` -- retraining's -- without changing
        this model (what U_head uses). Cost independent of the corpus size."""
        check_is_fitted(self, "components_")
        stats, touched = self.statistics_.without(as_counts(X_forget, self.n_features_in_, "X_forget"))
        return relearn(stats, touched, self._solution, self._learner())[0] if touched.size else self._solution

    def unlearned(self, X_forget: Any, **kwargs: Any) -> AnchorTopicModel:
        """A copy with ``X_forget`` deleted (this model is untouched)."""
        twin = copy.deepcopy(self)
        twin.unlearn(X_forget, **kwargs)
        return twin


def _remaining(record: dict[str, Any], privacy: Any) -> int | None:
    """Documents that can still be deleted before the certificate reaches the budget, extrapolating linearly (the
    paper's sensitivity is linear in the deletions) from the part of the certificate above its floor. None when
    that part is still below 1% of the budget: nothing to extrapolate from (with one Newton step the certificate
    jumps when a word's active set changes, so a flat history says little about the next deletion)."""
    growth = record["certificate"] - record.get("certificate_floor", 0.0)
    if privacy.deletions == 0 or growth < 0.01 * privacy.budget:
        return None
    left = privacy.budget - record["certificate"]
    return max(0, math.floor(privacy.deletions * left / growth))
