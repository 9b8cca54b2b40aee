"""U_head (Wei et al., 2024, Alg. 2): a linear head on topic features for a downstream task, and the deletion of
*pre-training* documents through the head only -- the base topic model stays as it is.

Features of a document x are phi(x) = n A^T x/|x| (linear in A; the public factor n, the vocabulary size, puts them
on the scale of topic proportions, ~1, instead of ~1/n), so the head's score is
    w . phi(x) + b = <n A w, x/|x|> + b = <B, x/|x|> + b,
and the released object is B = n A w (n numbers) plus the intercept. To delete pre-training documents, the head
computes A^F = A(S minus S_f) exactly from the updated statistics (never released), takes Newton steps on the
task loss with the new features from the old (w, b), and releases (A^F w^F + noise, b^F + noise). The task loss
is l2-strongly convex, so ||theta^F - theta*|| <= ||grad L(theta^F)|| / l2 -- the certificate, turned into a
bound on the released vector by ||A^F||_2 (docs/topic-unlearning.md).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from obliviate.errors import ObliviateError
from obliviate.models.topic_stats import as_counts

TASKS = ("classification", "regression")


def doc_features(A: np.ndarray, X: Any, n_words: int) -> np.ndarray:
    """phi(x) = n A^T x / |x| for every document, with a trailing 1 for the intercept. -> (N, r + 1)."""
    counts = as_counts(X, n_words)
    lengths = np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1).astype(np.float64)
    phi = np.asarray(counts.multiply(1.0 / lengths[:, None]).tocsr() @ A) * n_words
    return np.column_stack([phi, np.ones(phi.shape[0])])


def loss_grad_hess(theta: np.ndarray, F: np.ndarray, y: np.ndarray, task: str, l2: float
                   ) -> tuple[float, np.ndarray, np.ndarray]:
    """Mean task loss + (l2/2)||theta||^2 (intercept included, so the loss is l2-strongly convex), its gradient and
    Hessian. classification: logistic loss with y in {0, 1}; regression: squared error / 2."""
    z = F @ theta
    if task == "classification":
        p = 0.5 * (1.0 + np.tanh(0.5 * z))  # stable sigmoid
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z))
        resid, curv = p - y, p * (1.0 - p)
    else:
        resid = z - y
        loss, curv = float(0.5 * np.mean(resid**2)), np.ones_like(z)
    n = F.shape[0]
    grad = F.T @ resid / n + l2 * theta
    hess = (F * curv[:, None]).T @ F / n + l2 * np.eye(F.shape[1])
    return loss + 0.5 * l2 * float(theta @ theta), grad, hess


def newton(theta: np.ndarray, F: np.ndarray, y: np.ndarray, task: str, l2: float, steps: int, tol: float = 0.0
           ) -> np.ndarray:
    """``steps`` damped Newton steps (backtracking until the loss does not rise; a full step when it is already
    fine, as it is near the optimum), stopping early when the gradient norm is <= tol."""
    for _ in range(steps):
        loss, g, H = loss_grad_hess(theta, F, y, task, l2)
        if np.linalg.norm(g) <= tol:
            break
        d = np.linalg.solve(H, g)
        t = 1.0
        while t > 1e-10 and loss_grad_hess(theta - t * d, F, y, task, l2)[0] > loss:
            t *= 0.5
        theta = theta - t * d
    return theta


class TopicHead(BaseEstimator):
    """A linear head on an AnchorTopicModel's topic features (classification: logistic; regression: least squares,
    e.g. retrieval relevance scores), with certified deletion of the topic model's pre-training documents.

    Fitted: ``coef_`` (r,), ``intercept_``, ``product_`` = B = n A coef_ (n,), the released scoring vector (noisy
    after a certified release), ``privacy_`` and ``deletions_``."""

    def __init__(self, task: str = "classification", l2: float = 1e-2, tol: float = 1e-12, max_iter: int = 100):
        self.task = task
        self.l2 = l2
        self.tol = tol
        self.max_iter = max_iter

    def _check(self, y: Any, n: int) -> np.ndarray:
        if self.task not in TASKS:
            raise ObliviateError(f"task={self.task!r} is not one of {', '.join(TASKS)}")
        if not self.l2 > 0:
            raise ObliviateError(f"l2={self.l2!r} must be > 0 (the certificate needs a strongly convex loss)")
        y = np.asarray(y, dtype=np.float64).ravel()
        if y.shape[0] != n:
            raise ObliviateError(f"y has {y.shape[0]} labels for {n} documents")
        if self.task == "classification" and not np.isin(y, (0.0, 1.0)).all():
            raise ObliviateError(f"classification labels must be 0 or 1, got {sorted(set(y.tolist()))[:5]}")
        return y

    def fit(self, model: Any, X: Any, y: Any, components: str = "internal") -> TopicHead:
        """Fit on the downstream documents X (counts over the model's vocabulary) with labels y, on the model's
        internal (pre-noise) topics -- what U_head needs -- or on its ``"released"`` ones (``components_``, noisy
        after certified releases; fitting on them is post-processing and keeps their guarantee)."""
        check_is_fitted(model, "components_")
        if components not in ("internal", "released"):
            raise ObliviateError(f"components={components!r} is not one of 'internal', 'released'")
        A = model._solution.A if components == "internal" else model.components_.T
        F = doc_features(A, X, model.n_features_in_)
        y = self._check(y, F.shape[0])
        theta = newton(np.zeros(F.shape[1]), F, y, self.task, self.l2, self.max_iter, self.tol)
        self.components_source_ = components
        self.anchors_ = model.anchors_.copy()  # which topic each coefficient belongs to
        self._set(theta, A, None, [])
        return self

    def _set(self, theta: np.ndarray, A: np.ndarray, privacy: Any, deletions: list,
             released: np.ndarray | None = None) -> None:
        self.theta_ = theta  # pre-noise (coef, intercept): never publish it when releases are certified
        self.coef_, self.intercept_ = theta[:-1].copy(), float(theta[-1])
        self.product_ = A.shape[0] * (A @ self.coef_)
        if released is not None:
            self.product_, self.intercept_ = released[:-1], float(released[-1])
        self.privacy_ = privacy
        self.deletions_ = deletions

    def decision_function(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "product_")
        counts = as_counts(X, self.product_.shape[0])
        lengths = np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1).astype(np.float64)
        return np.asarray(counts.multiply(1.0 / lengths[:, None]).tocsr() @ self.product_).ravel() + self.intercept_

    def predict(self, X: Any) -> np.ndarray:
        s = self.decision_function(X)
        return (s > 0).astype(np.int64) if self.task == "classification" else s

    def score(self, X: Any, y: Any) -> float:
        """Accuracy (classification) or R^2 (regression)."""
        y = np.asarray(y, dtype=np.float64).ravel()
        pred = self.predict(X)
        if self.task == "classification":
            return float(np.mean(pred == y))
        return float(1.0 - np.sum((pred - y) ** 2) / max(np.sum((y - y.mean()) ** 2), 1e-300))

    def unlearn(self, model: Any, X_forget: Any, X: Any, y: Any, *, epsilon: float, delta: float,
                tolerance: float = 0.01, newton_steps: int = 1, fallback: bool = False,
                random_state: int | None = None) -> dict[str, Any]:
        """Delete pre-training documents ``X_forget`` of ``model`` through the head (``model`` is not modified);
        X, y: the head's downstream data (kept). Releases (A^F w^F, b^F) + Gaussian noise; refused (nothing changed)
        when the certificate exceeds the budget the noise covers, unless ``fallback`` (Newton to convergence)."""
        from obliviate.certified.deletion import CertificationRefused, PrivacyState

        check_is_fitted(self, "theta_")
        if getattr(self, "components_source_", "internal") != "internal":
            raise ObliviateError("this head was fitted on the released (noisy) topics; certified deletion through "
                                 "the head needs a head fitted on the internal ones (fit(..., components='internal'))")
        start = time.perf_counter()
        if newton_steps < 1:
            raise ObliviateError(f"newton_steps={newton_steps} must be >= 1")
        privacy = copy.deepcopy(self.privacy_)
        if privacy is None:
            privacy = PrivacyState.create(epsilon, delta, tolerance, self.product_.shape[0] + 1)
        else:
            privacy.check_same(epsilon, delta, tolerance)
        forget = as_counts(X_forget, model.n_features_in_, "X_forget")
        sol = model.exact_solution_without(forget)
        A, anchors = sol.A, sol.anchors
        F = doc_features(A, X, model.n_features_in_)
        y = self._check(y, F.shape[0])
        theta = self.theta_.copy()
        if not np.array_equal(anchors, self.anchors_) and set(anchors.tolist()) == set(self.anchors_.tolist()):
            # the same topics listed in another order: the coefficients follow their topics
            perm = np.array([int(np.flatnonzero(self.anchors_ == a)[0]) for a in anchors])
            theta[:-1] = theta[perm]
        theta = newton(theta, F, y, self.task, self.l2, newton_steps)
        record: dict[str, Any] = {"deleted": int(forget.shape[0]), "newton_steps": newton_steps}
        cert = self._certificate(theta, A, F, y)
        if cert > privacy.budget:
            msg = (f"head certificate {cert:.3g} exceeds the budget {privacy.budget:.3g} the noise covers "
                   f"({privacy.deletions} documents deleted so far)")
            if not fallback:
                raise CertificationRefused(msg + " -- nothing was changed; pass fallback=True to refit the head")
            theta = newton(theta, F, y, self.task, self.l2, self.max_iter, self.tol)
            cert = self._certificate(theta, A, F, y)
            record["fallback"] = msg
        rng = np.random.default_rng(random_state)
        exact = np.append(A.shape[0] * (A @ theta[:-1]), theta[-1])
        released = exact + rng.normal(0.0, privacy.sigma, size=exact.shape)
        privacy.deletions += int(forget.shape[0])
        privacy.releases += 1
        record.update(privacy.to_dict(), certificate=cert, capacity_used=cert / privacy.budget,
                      seconds=time.perf_counter() - start)
        self.anchors_ = anchors.copy()
        self._set(theta, A, privacy, [*self.deletions_, record], released)
        return record

    def _certificate(self, theta: np.ndarray, A: np.ndarray, F: np.ndarray, y: np.ndarray) -> float:
        """||(n A w, b) - (n A w*, b*)|| <= max(n ||A||_2, 1) ||theta - theta*|| <= max(n ||A||_2, 1) ||grad|| / l2."""
        _, g, _ = loss_grad_hess(theta, F, y, self.task, self.l2)
        return float(max(A.shape[0] * np.linalg.norm(A, 2), 1.0) * np.linalg.norm(g) / self.l2) + 1e-12
