"""PDU -- primal-dual unlearning (Entesari, Hatami, Khaziev, Ramakrishna, Fazlyab, 2025, "Constrained Entropic
Unlearning: A Primal-Dual Framework for Large Language Models", arXiv 2506.05314), as open-unlearning implements it
(``src/trainer/unlearn/pdu.py``; spec ``shared/specs/ou-extra-methods.md`` §1).

Problem: minimise L_f(theta) subject to L_r(theta) <= eps, solved by simultaneous gradient descent on the
Lagrangian in theta and projected gradient ascent in the multiplier lambda:

    loss      = gamma * L_f + lambda * (L_r - eps)                (eps shifts the value, never the theta-gradient)
    lambda   <- max(0, lambda + eta * (L_r - eps))                (after the loss was built with the old lambda)

L_f is the "logit-margin flattening" loss: per scored position the margin m = max_v z_v - mean_v z_v over the full
vocabulary of the LM head, squared, and averaged over the scored positions of the micro-batch (a flat token mean).
It is >= 0, zero exactly when every scored logit row is constant (a uniform softmax), invariant to adding a constant
to a row, convex in the logits, and its gradient 2m (e_argmax - 1/V) shrinks only linearly near uniform (entropy
gradients vanish there).
"""

from __future__ import annotations

from torch import Tensor

from obliviate.losses.nll import IGNORE_INDEX, scored_rows

# open-unlearning community/methods/PDU/run.sh, TOFU runs (the configs/trainer/PDU.yaml values differ: see docs)
PDU_ALPHA = 100.0  # initial multiplier lambda_0 (the README: start it at 50 or 100; the quadratic loss is large)
PDU_DUAL_STEP = 5.0  # eta
PDU_WARMUP_EPOCHS = 5  # epochs with lambda frozen at lambda_0
PDU_GAMMA = 1.0  # fixed forget weight


def logit_margin(logits: Tensor) -> Tensor:
    """max_v z_v - (1/V) sum_v z_v over the last dimension, in float32. (..., V) -> (...).

    Ties in the max take one index (torch's ``max``), as open-unlearning."""
    z = logits.float()
    return z.max(dim=-1).values - z.mean(dim=-1)


def pdu_forget_loss(logits: Tensor, labels: Tensor, faithful_mask: bool = True) -> Tensor:
    """L_f = mean over scored positions of logit_margin(z)^2. logits (B, T, V), labels (B, T) -> scalar.

    ``faithful_mask=True`` (open-unlearning, quirk Q1): the logit row at position t is scored when labels[t] !=
    -100, with no causal shift. Row t predicts token t+1, so this scores the rows that predict answer tokens 2..n
    plus the row after the last scored token, and leaves out the row that predicts the first answer token.
    ``faithful_mask=False``: the shifted mask (row t scored when labels[t+1] != -100), i.e. exactly the rows that
    predict scored tokens, as every other loss here. A batch with no scored position gives 0 (with a gradient path).
    """
    if faithful_mask:
        picked = logits[labels != IGNORE_INDEX]  # (N, V): only the scored rows are widened to float32
    else:
        picked = scored_rows(logits, labels[:, 1:] != IGNORE_INDEX)  # rows t with labels[t+1] scored
    m = logit_margin(picked)  # (N,)
    return (m * m).sum() / max(int(picked.shape[0]), 1)


def pdu_loss(forget_loss: Tensor, retain_loss: Tensor, dual_lambda: float, eps: float,
             gamma: float = PDU_GAMMA) -> Tensor:
    """The Lagrangian gamma * L_f + lambda * (L_r - eps); lambda is a number (no gradient flows into it)."""
    return gamma * forget_loss + dual_lambda * (retain_loss - eps)


def dual_update(dual_lambda: float, retain_loss: float, eps: float, step_size: float) -> float:
    """One projected ascent step on the multiplier: max(0, lambda + eta * (L_r - eps)). There is no upper clip and no
    momentum; eta is constant (the learning-rate schedule does not touch it)."""
    return max(0.0, float(dual_lambda) + float(step_size) * (float(retain_loss) - float(eps)))

