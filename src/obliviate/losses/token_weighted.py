"""Token-level forget losses from open-unlearning: WGA, SatImp (reweighted gradient ascent) and UNDIAL (self-distillation
to a reference whose gold logit is lowered).

Spec: ``shared/specs/ceu-and-tofu.md`` §2 (baseline table), implemented as open-unlearning ``src/trainer/utils.py``
(``compute_wga_loss``, ``compute_satimp_loss``, ``compute_undial_loss``) with the defaults of ``configs/trainer/
{WGA,SatImp,UNDIAL}.yaml``. These are the *forget* terms: the trainer MINIMISES ``gamma * term + alpha * NLL(retain)``,
so WGA and SatImp carry a minus sign (minimising them raises the forget cross-entropy, like gradient ascent), while
UNDIAL is a positive cross-entropy to a target that puts less mass on the gold token.

Conventions (as ``losses/nll.py``): logits (B, T, V), labels (B, T) with -100 = not scored, position t predicts
labels[t+1]. With CE_t = -log p_t(y_t) and p_t = softmax(z_t)[y_t] at scored positions, all maths in float32.
WGA and SatImp are flat means over the scored tokens of the batch (not per-sequence means); their weights are
detached, so d(term)/dz_t = -(w_t / N) * dCE_t/dz_t = -(w_t / N) * (softmax(z_t) - onehot(y_t)).
"""

from __future__ import annotations

import torch
from torch import Tensor

from obliviate.losses.nll import shift_labels, shifted_nll

WGA_BETA = 1.0  # configs/trainer/WGA.yaml
SATIMP_BETA1 = 5.0  # configs/trainer/SatImp.yaml
SATIMP_BETA2 = 1.0  # configs/trainer/SatImp.yaml
UNDIAL_BETA = 10.0  # configs/trainer/UNDIAL.yaml


def _scored_ce(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """(CE of the scored targets (N,), float32; the same logits' graph) after the causal shift."""
    ce, mask = shifted_nll(logits, labels)  # (B, T-1)
    return ce[mask], mask


def _weighted_ascent(ce: Tensor, weight: Tensor, logits: Tensor) -> Tensor:
    if ce.numel() == 0:
        return logits.float().sum() * 0.0  # no scored token: 0 with a graph
    return -(weight.detach() * ce).mean()


def wga_weight(ce: Tensor, beta: float = WGA_BETA) -> Tensor:
    """WGA's token weight p^beta = exp(-beta * CE), detached. ce: any shape -> same shape."""
    return torch.exp(-beta * ce.detach().float())


def satimp_weight(ce: Tensor, beta1: float = SATIMP_BETA1, beta2: float = SATIMP_BETA2) -> Tensor:
    """SatImp's token weight p^beta1 * (1 - p)^beta2 with p = exp(-CE), detached; 1 - p = -expm1(-CE) (no
    cancellation when p ~ 1)."""
    c = ce.detach().float()
    return torch.exp(-beta1 * c) * (-torch.expm1(-c)).clamp_min(0.0) ** beta2


def wga_loss(logits: Tensor, labels: Tensor, beta: float = WGA_BETA) -> Tensor:
    """WGA, weighted gradient ascent (Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient Perspective
    and Go Beyond", arXiv 2502.19301), as open-unlearning ``compute_wga_loss``:

        L = - mean_{scored t}  sg(p_t^beta) * CE_t          (sg = stop-gradient)

    beta = 1 (WGA.yaml). Tokens the model already gets wrong (p_t -> 0) stop being pushed, unlike gradient ascent
    (beta = 0 gives plain GA's -mean CE). -> scalar; 0 (with a graph) when no token is scored.
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    ce, _ = _scored_ce(logits, labels)
    return _weighted_ascent(ce, wga_weight(ce, beta), logits)


def satimp_loss(logits: Tensor, labels: Tensor, beta1: float = SATIMP_BETA1, beta2: float = SATIMP_BETA2) -> Tensor:
    """SatImp, saturation x importance reweighting (Yang et al. 2025, "Exploring Criteria of Loss Reweighting to
    Enhance LLM Unlearning", arXiv 2505.11953), as open-unlearning ``compute_satimp_loss``:

        L = - mean_{scored t}  sg(p_t^beta1 * (1 - p_t)^beta2) * CE_t

    beta1 = 5, beta2 = 1 (SatImp.yaml; the method's gamma = 0.1 is applied by the method, not here). Small for
    tokens already forgotten (p -> 0, "saturation") and for tokens the model is certain of (p -> 1); largest at
    p = beta1 / (beta1 + beta2). -> scalar; 0 (with a graph) when no token is scored.
    """
    if beta1 < 0 or beta2 < 0:
        raise ValueError(f"beta1 and beta2 must be >= 0, got {beta1}, {beta2}")
    ce, _ = _scored_ce(logits, labels)
    return _weighted_ascent(ce, satimp_weight(ce, beta1, beta2), logits)


def undial_target(ref_logits: Tensor, targets: Tensor, beta: float = UNDIAL_BETA,
                  adjust: Tensor | None = None) -> Tensor:
    """UNDIAL's soft target softmax(z_ref - beta * onehot(y)) (..., V), float32, detached.

    ref_logits (..., V), targets (...) gold token ids. ``adjust`` (...) bool: where False the reference logits are
    left as they are (plain distillation); default all True. With q = softmax(z_ref) and s = 1 - q_y + q_y e^-beta:
    target_y = q_y e^-beta / s and target_i = q_i / s for i != y (beta = 0: q itself; beta -> inf: target_y -> 0 and
    target_i -> q_i / (1 - q_y), CE-U's target built from the reference).
    """
    z = ref_logits.detach().float()
    onehot = torch.zeros_like(z).scatter_(-1, targets.unsqueeze(-1), 1.0)
    if adjust is not None:
        onehot = onehot * adjust.unsqueeze(-1).to(z.dtype)
    return torch.softmax(z - beta * onehot, dim=-1)


def undial_loss(logits: Tensor, ref_logits: Tensor, labels: Tensor, beta: float = UNDIAL_BETA,
                mask_unscored: bool = False) -> Tensor:
    """UNDIAL (Dong et al. 2024, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in Large
    Language Models", arXiv 2402.10052), as open-unlearning ``compute_undial_loss``:

        L = mean_t  H( softmax(sg(z_ref,t) - beta * onehot(y_t)),  softmax(z_t) )
          = mean_t  - sum_i target_t,i * log softmax(z_t)_i

    logits / ref_logits (B, T, V) of the student and of a frozen reference (the original model); beta = 10
    (UNDIAL.yaml). The student is distilled to the reference with the gold token's logit lowered by beta, so it
    stays close to the reference everywhere except on the tokens to forget (bounded, no ascent).

    Which positions are averaged: open-unlearning takes a plain ``CrossEntropyLoss(reduction="none").mean()`` with
    *soft* targets, to which ``ignore_index`` does not apply, so it averages over ALL B*(T-1) shifted positions,
    prompt and padding included (spec table). That is the default here. At an unscored position (label -100) there
    is no gold token: we leave the reference logits unadjusted (plain distillation to the reference). open-unlearning
    instead writes the mask at index -100, which wraps to vocabulary entry V-100 -- an indexing artefact we do not
    copy. ``mask_unscored=True`` averages over the scored positions only (0 with a graph when there are none).
    """
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    targets, mask = shift_labels(labels)
    z = logits[:, :-1].float()
    tgt = undial_target(ref_logits[:, :-1], targets, beta, adjust=mask)
    h = -(tgt * torch.log_softmax(z, dim=-1)).sum(-1)  # (B, T-1)
    if mask_unscored:
        h = h[mask]
    if h.numel() == 0:
        return logits.float().sum() * 0.0
    return h.mean()
