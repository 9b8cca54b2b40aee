"""NLUL forget loss and KL / QKL retain penalties (Klochkov, 2025, "A mean teacher algorithm for unlearning of
language models", arXiv 2504.13388; code yklochkov-bytedance/mt-unlearn).

Spec: ``shared/specs/tinymem-and-mean-teacher.md`` Part 2 (§2.1 NLUL, §2.2 KL and QKL).

NLUL (negative log-unlikelihood), per scored token with p_t = p_theta(y_t | y_<t):

    NLUL = (1 / sum_t m_t) * sum_t m_t * ( -log(1 + tau - p_t) ),      tau = ``tol`` = 0.02 (paper runs, §2.4)

Its gradient is sum_t m_t w_t grad log p_t / sum_t m_t with w_t = p_t / (1 + tau - p_t): the weight stays large while
the token is still likely and goes to 0 only once p_t -> 0 (gradient ascent has w_t = 1 on every token; NPO
weights whole sequences by a factor that vanishes as the model leaves the reference). mt-unlearn implements it
through this gradient (:func:`nlul_surrogate_loss`); :func:`nlul_loss` returns the conceptual value with the same
gradient. Optional ``threshold``: tokens with p_t below it are treated as p_t = 0 (no unlearning; 0 in all paper runs).

Conventions (as ``losses/nll.py``): logits (B, T, V), labels (B, T) with -100 = not scored, position t predicts
labels[t+1]; the NLUL mean is a flat mean over all scored tokens of the batch [unconfirmed: the spec writes the
normaliser per sequence, sum_t m_t; mt-unlearn's batch reduction was not re-read]. Computed in float32.
"""

from __future__ import annotations

import torch
from torch import Tensor

from obliviate.losses.nll import shifted_nll

NLUL_TOL = 0.02  # mt-unlearn `tol`, all paper runs (spec §2.4)
NLUL_THRESHOLD = 0.0  # mt-unlearn `nlul_threshold`, 0 in all paper runs (spec §2.1)


def _scored_logp(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(log p_t, mask), both (B, T-1): log-probability of each shifted target and whether it is scored."""
    nll, mask = shifted_nll(logits, labels)
    return -nll, mask


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    m = mask.to(x.dtype)
    return (x * m).sum() / m.sum().clamp_min(1.0)


def nlul_token_weight(p: Tensor, tol: float = NLUL_TOL, threshold: float = NLUL_THRESHOLD) -> Tensor:
    """w = p / (1 + tol - p), the factor multiplying grad log p in NLUL's gradient; 0 where p < threshold."""
    p = torch.where(p < threshold, torch.zeros_like(p), p)
    return p / (1.0 + tol - p)


def nlul_loss(logits: Tensor, labels: Tensor, tol: float = NLUL_TOL, threshold: float = NLUL_THRESHOLD) -> Tensor:
    """NLUL = mean over scored tokens of -log(1 + tol - p_t) -> scalar (minimise it to unlearn).

    Defaults tol = 0.02, threshold = 0 (mt-unlearn paper runs). A token with p_t < threshold counts as p_t = 0: a
    constant -log(1 + tol), no gradient. d/dlog p_t of the summand = p_t / (1 + tol - p_t) (see module docstring).
    """
    logp, mask = _scored_logp(logits, labels)
    p = logp.exp()
    p = torch.where(p < threshold, torch.zeros_like(p), p)
    return _masked_mean(-torch.log1p(tol - p), mask)


def nlul_surrogate_loss(
    logits: Tensor, labels: Tensor, tol: float = NLUL_TOL, threshold: float = NLUL_THRESHOLD
) -> Tensor:
    """mt-unlearn's implementation: mean over scored tokens of stopgrad(w_t) * log p_t, w_t = p_t / (1 + tol - p_t).

    Same gradient as :func:`nlul_loss`, different value (it is not the NLUL value; use it only for its gradient).
    """
    logp, mask = _scored_logp(logits, labels)
    w = nlul_token_weight(logp.detach().exp(), tol, threshold)
    return _masked_mean(w * logp, mask)


def _position_mean(x: Tensor, mask: Tensor | None) -> Tensor:
    if mask is None:
        return x.mean()
    return _masked_mean(x, mask.bool())


def kl_penalty(logits: Tensor, ref_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """KL(p_ref || p_theta) over the full vocabulary, averaged over (batch x position) -> scalar.

    logits, ref_logits (B, T, V) at the same positions; ref_logits are detached (frozen reference / teacher).
    mask (B, T), optional: True (or 1) at positions that count (e.g. the attention mask); None = every position, as
    open-unlearning's KL retain loss (``kl_div(..., reduction="batchmean", log_target=True)`` on B*T rows).
    """
    logq = torch.log_softmax(logits.float(), dim=-1)
    logp_ref = torch.log_softmax(ref_logits.detach().float(), dim=-1)
    kl = (logp_ref.exp() * (logp_ref - logq)).sum(-1)  # (B, T)
    return _position_mean(kl, mask)


def qkl_penalty(logits: Tensor, ref_logits: Tensor, mask: Tensor | None = None) -> Tensor:
    """Quadratic KL (mt-unlearn): with d = logits - ref_logits and p = softmax(ref_logits), per position

        value = d . (F d.detach()),   F = diag(p) - p p^T   (the Fisher of softmax at the reference),

    so the value equals Var_p(d) = d^T F d and the gradient w.r.t. logits is F d (a Fisher-vector product) -- the
    gradient of the second-order expansion (1/2) d^T F d of KL(p_ref || p_theta). Hence for small d the value is
    ~ 2 * KL while the gradient matches KL's. Averaged over (batch x position) like :func:`kl_penalty`.
    """
    ref = ref_logits.detach().float()
    d = logits.float() - ref
    p = torch.softmax(ref, dim=-1)
    dd = d.detach()
    fd = p * dd - p * (p * dd).sum(-1, keepdim=True)  # F d.detach()
    q = (d * fd).sum(-1)  # (B, T)
    return _position_mean(q, mask)
