"""Classifier-unlearning comparisons of LoTUS (Spartalis et al., 2025): the JSDiv helper (faithful to the reference
code, quirks included, or the textbook Jensen-Shannon divergence), RF-JSD (retrain-free JSD), the entropy
membership-inference attack and Avg Gap. Pure functions of softmax outputs (NumPy), so they can be recomputed from
stored per-sample probabilities.

Reference quirks (cspartalis/LoTUS ``helpers/eval.py``, see ../shared/specs/metric-references.md): JSDiv clamps to
[1e-8, 1], normalises each matrix by its *total* sum (rows then sum to 1/N), and uses torch's
``kl_div(log P, M, 'batchmean')``, which is KL(M || P) summed over the matrix divided by N -- so the result is
(1/N) mean_i 1/2 [KL(M_i || P_i) + KL(M_i || Q_i)]: KL *from* the mixture, and an extra 1/N. Tables report it x 1e4.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from obliviate.errors import ObliviateError


def _check_probs(P: np.ndarray, name: str) -> np.ndarray:
    P = np.asarray(P, dtype=np.float64)
    if P.ndim != 2 or P.shape[0] == 0:
        raise ObliviateError(f"{name} must be a non-empty (N, classes) matrix of probabilities, got shape {P.shape}")
    if (P < 0).any() or not np.isfinite(P).all():
        raise ObliviateError(f"{name} holds negative or non-finite probabilities")
    return P


def js_divergence(P: np.ndarray, Q: np.ndarray, faithful: bool = True) -> float:
    """Divergence between two (N, C) row-stochastic matrices. ``faithful=True``: the LoTUS reference's JSDiv (see the
    module docstring; it scales as 1/N). ``faithful=False``: the mean over rows of the textbook
    JS(P_i, Q_i) = 1/2 KL(P_i || M_i) + 1/2 KL(Q_i || M_i), natural log, in [0, ln 2]."""
    P, Q = _check_probs(P, "P"), _check_probs(Q, "Q")
    if P.shape != Q.shape:
        raise ObliviateError(f"P and Q must have the same shape, got {P.shape} and {Q.shape}")
    n = P.shape[0]
    if faithful:
        P = np.clip(P, 1e-8, 1.0)
        Q = np.clip(Q, 1e-8, 1.0)
        P, Q = P / P.sum(), Q / Q.sum()
        M = 0.5 * (P + Q)
        kl_m_p = float(np.sum(M * (np.log(M) - np.log(P)))) / n
        kl_m_q = float(np.sum(M * (np.log(M) - np.log(Q)))) / n
        return 0.5 * (kl_m_p + kl_m_q)
    P = P / P.sum(axis=1, keepdims=True)
    Q = Q / Q.sum(axis=1, keepdims=True)
    M = 0.5 * (P + Q)

    def kl(A: np.ndarray) -> np.ndarray:  # KL(A_i || M_i), 0 log 0 = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(A > 0, A * (np.log(A) - np.log(M)), 0.0)
        return terms.sum(axis=1)

    return float(np.mean(0.5 * kl(P) + 0.5 * kl(Q)))


def class_means(probs: np.ndarray, labels: Sequence[int] | np.ndarray) -> dict[int, np.ndarray]:
    """Mean softmax vector per class (renormalised to sum 1), as the reference's log_js_proxy computes them."""
    probs = _check_probs(probs, "probs")
    labels = np.asarray(labels)
    if labels.shape != (probs.shape[0],):
        raise ObliviateError(f"{probs.shape[0]} probability rows but labels of shape {labels.shape}")
    out = {}
    for c in np.unique(labels):
        mean = probs[labels == c].mean(axis=0)
        out[int(c)] = mean / mean.sum()
    return out


def rf_jsd(forget_probs: np.ndarray, forget_labels: Sequence[int] | np.ndarray, test_probs: np.ndarray,
           test_labels: Sequence[int] | np.ndarray, faithful: bool = True) -> float:
    """RF-JSD (LoTUS): JSDiv between the class means of the *unlearned* model on the forget set and those of the
    *original* model on the test set, over the classes present in the forget set (sorted by class). 0 when they
    coincide; no retrained model needed."""
    f = class_means(forget_probs, forget_labels)
    t = class_means(test_probs, test_labels)
    missing = sorted(set(f) - set(t))
    if missing:
        raise ObliviateError(f"forget classes {missing[:5]} have no test samples: RF-JSD compares class means")
    classes = sorted(f)
    return js_divergence(np.stack([f[c] for c in classes]), np.stack([t[c] for c in classes]), faithful)


def entropy(probs: np.ndarray) -> np.ndarray:
    """-sum p log p per row, terms with p = 0 dropped (the reference's MIA feature)."""
    probs = _check_probs(probs, "probs")
    with np.errstate(divide="ignore", invalid="ignore"):
        return -np.where(probs > 0, probs * np.log(probs), 0.0).sum(axis=1)


def entropy_mia(retain_probs: np.ndarray, heldout_probs: np.ndarray, forget_probs: np.ndarray) -> float:
    """Share of forget samples a logistic regression on the softmax entropy calls members, trained on retain
    (members, 1) vs held-out test+val samples (0) with balanced class weights, lbfgs, random_state 42 (reference
    settings; the reference's ``multi_class='multinomial'`` is dropped: scikit-learn >= 1.8 refuses it and a binary
    problem does not need it)."""
    from sklearn.linear_model import LogisticRegression

    x = np.concatenate([entropy(retain_probs), entropy(heldout_probs)])[:, None]
    y = np.concatenate([np.ones(len(retain_probs)), np.zeros(len(heldout_probs))])
    clf = LogisticRegression(class_weight="balanced", solver="lbfgs", random_state=42).fit(x, y)
    return float(clf.predict(entropy(forget_probs)[:, None]).mean())


def avg_gap(method: Mapping[str, float], gold: Mapping[str, float],
            keys: Sequence[str] = ("mia", "forget", "retain", "test")) -> float:
    """Mean absolute gap to the retrained ("gold") model over MIA and forget/retain/test accuracy (validation
    excluded), each averaged over seeds first (pass seed means)."""
    absent = [k for k in keys if k not in method or k not in gold]
    if absent:
        raise ObliviateError(f"avg_gap needs {', '.join(keys)}; missing {absent}")
    return float(np.mean([abs(float(method[k]) - float(gold[k])) for k in keys]))
