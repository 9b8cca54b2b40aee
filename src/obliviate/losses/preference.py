"""Preference-style unlearning losses: NPO, SimNPO and DPO (IdkDPO) as in open-unlearning.

Spec: ``shared/specs/ceu-and-tofu.md`` §2, implemented as open-unlearning ``src/trainer/utils.py``
(``compute_batch_nll``, ``compute_dpo_loss``), ``src/trainer/unlearn/{npo,simnpo,dpo}.py`` and ``configs/trainer/*.yaml``.

All functions take **per-sequence summed NLLs** (B,), NLL_seq = -log pi(y | x) = sum over scored answer tokens of the
token cross-entropy (open-unlearning's ``compute_batch_nll``; see :func:`sequence_nll_sum`), not per-token means;
SimNPO divides by the answer length itself. Each loss is a mean over the batch of sequences. "Log-ratio" is
log pi_theta(y) - log pi_ref(y) = NLL_ref - NLL_theta. Reference NLLs are detached.

Only the forget terms are here; the methods add alpha * NLL(retain) (alpha = 1 in all three configs).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from obliviate.losses.nll import shifted_nll

NPO_BETA = 0.1  # configs/trainer/NPO.yaml (Zhang et al. 2024 default)
SIMNPO_BETA = 4.5  # configs/trainer/SimNPO.yaml
SIMNPO_DELTA = 0.0  # configs/trainer/SimNPO.yaml
DPO_BETA = 0.1  # configs/trainer/DPO.yaml


def sequence_nll_sum(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(summed NLL, number of scored tokens), both (B,): NLL_seq = sum_t -log p(labels[t+1]) over labels != -100.

    logits (B, T, V), labels (B, T), causal shift as ``losses/nll.py``. The count is of shifted scored targets (what
    SimNPO divides by; open-unlearning counts labels != -100 before the shift, which is the same whenever
    labels[:, 0] == -100, i.e. the sequence starts with a prompt/BOS).
    """
    nll, mask = shifted_nll(logits, labels)
    m = mask.to(nll.dtype)
    return (nll * m).sum(1), m.sum(1)


def npo_loss(forget_nll: Tensor, ref_forget_nll: Tensor, beta: float = NPO_BETA) -> Tensor:
    """NPO (Zhang, Lin, Bai, Mei 2024, "Negative Preference Optimization"), open-unlearning form:

        L = mean_batch  -(2 / beta) * log sigmoid( -beta * (log pi_theta(y) - log pi_ref(y)) )
          = mean_batch  -(2 / beta) * log sigmoid( beta * (NLL_theta - NLL_ref) )

    forget_nll, ref_forget_nll (B,) summed sequence NLLs; beta = 0.1 (NPO.yaml). dL/dNLL_theta = -w / B with
    w = 2 sigmoid(beta * (log pi_theta - log pi_ref)) = 2 pi_theta^b / (pi_theta^b + pi_ref^b): gradient ascent's
    direction (GA: dL/dNLL = -1/B) reweighted by w, which is 1 at theta = ref and -> 0 as pi_theta / pi_ref -> 0. As
    beta -> 0, L - (2/beta) log 2 -> mean(-NLL_theta + NLL_ref), i.e. GA up to a constant (NPO paper).
    """
    log_ratio = ref_forget_nll.detach() - forget_nll
    return (-2.0 / beta * F.logsigmoid(-beta * log_ratio)).mean()


def npo_weight(forget_nll: Tensor, ref_forget_nll: Tensor, beta: float = NPO_BETA) -> Tensor:
    """NPO's per-sequence gradient weight w = 2 sigmoid(beta * (log pi_theta - log pi_ref)) (B,), in (0, 2)."""
    return 2.0 * F.sigmoid(beta * (ref_forget_nll - forget_nll))


def simnpo_loss(forget_nll: Tensor, n_tokens: Tensor, beta: float = SIMNPO_BETA, delta: float = SIMNPO_DELTA) -> Tensor:
    """SimNPO (Fan et al. 2024, "Simplicity Prevails: Rethinking Negative Preference Optimization"), no reference:

        L = mean_batch  -(2 / beta) * log sigmoid( beta * (NLL_theta / |y| - delta) )

    forget_nll (B,) summed NLLs, n_tokens (B,) answer lengths |y| (clamped to >= 1). Defaults beta = 4.5, delta = 0
    (open-unlearning SimNPO.yaml; the method's gamma = 0.125 forget weight is applied by the trainer, not here).
    """
    avg = forget_nll / n_tokens.to(forget_nll.dtype).clamp_min(1.0)
    return (-2.0 / beta * F.logsigmoid(beta * (avg - delta))).mean()


def dpo_loss(
    win_nll: Tensor, ref_win_nll: Tensor, lose_nll: Tensor, ref_lose_nll: Tensor, beta: float = DPO_BETA
) -> Tensor:
    """DPO (Rafailov et al. 2023) as open-unlearning's ``compute_dpo_loss`` (IdkDPO: win = an "I don't know" answer,
    lose = the forget answer; Maini et al. 2024 TOFU / open-unlearning DPO.yaml):

        L = mean_batch  -(2 / beta) * log sigmoid( beta * [ (NLL_ref(w) - NLL_theta(w)) - (NLL_ref(l) - NLL_theta(l)) ] )

    All inputs (B,) summed sequence NLLs; reference ones detached. beta = 0.1 (DPO.yaml). NPO is this loss without
    the win term: ``npo_loss(l, ref_l) == dpo_loss(x, x, l, ref_l)`` for any x.
    """
    win = ref_win_nll.detach() - win_nll
    lose = ref_lose_nll.detach() - lose_nll
    return (-2.0 / beta * F.logsigmoid(beta * (win - lose))).mean()
