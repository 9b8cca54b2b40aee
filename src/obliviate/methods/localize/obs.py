"""Second-Order Unlearning, "OBS" (Sakarvadia et al., 2024, §weight-level unlearning; Optimal Brain Surgeon, Hassibi
& Stork, 1993, with the block-diagonal empirical Fisher of oBERT, Kurtic et al., 2022).

The forget-set loss L is modelled around the trained weights by the empirical Fisher F = damp * I + (1/m) sum_j g_j
g_j^T of m forget-set gradients, restricted to blocks of ``block_size`` consecutive entries of each MLP tensor (zero
padded). F^-1 is built block-wise by Sherman-Morrison rank-1 updates (all blocks at once; chunks of gradients as the
equivalent rank-k Woodbury update). Removing w_q with the OBS update delta = -(w_q / [F^-1]_qq) F^-1 e_q changes L by
the saliency s_q = w_q^2 / (2 [F^-1]_qq); the weights with the *largest* saliency -- whose removal the model can least
compensate on the forget set -- are zeroed, the top k = floor(ratio * n) of each tensor, with the joint OBS update
of all zeroed entries of a block applied to the rest of the block.

``reference_compatible``: the reference code instead uses m = 1 gradient (the sum over the forget set of the batch-
mean gradients, loss over every position incl. padding), float32, and no compensating update (details §6).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData, batch_of
from obliviate.methods.base import METHODS
from obliviate.methods.localize.weight_mask import (
    Target,
    WeightEdit,
    WeightMethod,
    batch_loss,
    check_ratio,
    forget_gradient,
    model_device,
    prune_count,
    round_share,
    top_mask,
    zero_,
)

GRAD_CHUNK = 16  # gradients per Woodbury update: one pass over F^-1 per chunk instead of per gradient


class BlockLayout:
    """Tensors of ``numels`` entries, each flattened and zero-padded to whole blocks of ``block_size``, side by side:
    (num_blocks, block_size). Blocks never straddle two tensors (the reference builds one Fisher per tensor)."""

    def __init__(self, numels: list[int], block_size: int) -> None:
        self.numels, self.B = numels, block_size
        self.padded = [math.ceil(n / block_size) * block_size for n in numels]
        self.num_blocks = sum(self.padded) // block_size

    def blocks(self, tensors: list[Tensor], dtype: torch.dtype) -> Tensor:
        flat = torch.zeros(sum(self.padded), dtype=dtype, device=tensors[0].device)
        for t, off in zip(tensors, self._offsets()):
            flat[off:off + t.numel()] = t.detach().flatten().to(dtype)
        return flat.view(self.num_blocks, self.B)

    def split(self, blocks: Tensor) -> list[Tensor]:
        flat = blocks.reshape(-1)
        return [flat[off:off + n] for n, off in zip(self.numels, self._offsets())]

    def _offsets(self) -> list[int]:
        return [sum(self.padded[:i]) for i in range(len(self.padded))]


def init_fisher_inverse(num_blocks: int, block_size: int, damp: float, dtype: torch.dtype = torch.float64,
                        device: Any = None) -> Tensor:
    """(num_blocks, B, B) copies of I / damp: the inverse of the damping term alone."""
    eye = torch.eye(block_size, dtype=dtype, device=device) / damp
    return eye.expand(num_blocks, block_size, block_size).clone()


def fisher_inverse_update_(F_inv: Tensor, G: Tensor, m: float) -> Tensor:
    """In place: F^-1 <- (F + sum_j g_j g_j^T / m)^-1 for the k gradients G (k, num_blocks, B), every block at once.

    k = 1 is Sherman-Morrison, F^-1 - (F^-1 g)(F^-1 g)^T / (m + g^T F^-1 g), written as the reference does (scale by
    the square root, one batched rank-1 update). k > 1 is the same update for k gradients at once (Woodbury):
    U = F^-1 G^T, S = m I + G U = L L^T, F^-1 - (U L^-T)(U L^-T)^T -- equal to k rank-1 updates in turn."""
    if G.shape[0] == 1:
        g = G[0]
        u = torch.einsum("bij,bj->bi", F_inv, g)
        u /= (m + torch.einsum("bi,bi->b", g, u)).sqrt().unsqueeze(1)
        return F_inv.baddbmm_(u.unsqueeze(2), u.unsqueeze(1), alpha=-1)
    Gb = G.permute(1, 2, 0)  # (nb, B, k)
    U = torch.bmm(F_inv, Gb)  # (nb, B, k)
    S = torch.bmm(Gb.transpose(1, 2), U)  # (nb, k, k)
    S.diagonal(dim1=1, dim2=2).add_(m)
    L = torch.linalg.cholesky(S)
    V = torch.linalg.solve_triangular(L, U.transpose(1, 2), upper=False).transpose(1, 2)  # U L^-T
    return F_inv.baddbmm_(V, V.transpose(1, 2), alpha=-1)


def block_fisher_inverse(grads: Tensor, block_size: int, damp: float, chunk: int = GRAD_CHUNK) -> Tensor:
    """F^-1 blocks (num_blocks, B, B) of damp I + (1/m) sum_j g_j g_j^T for the m gradients ``grads`` (m, d)."""
    m, d = grads.shape
    layout = BlockLayout([d], block_size)
    F_inv = init_fisher_inverse(layout.num_blocks, block_size, damp, grads.dtype, grads.device)
    G = torch.stack([layout.blocks([g], grads.dtype) for g in grads])  # (m, nb, B)
    for c in G.split(chunk):
        fisher_inverse_update_(F_inv, c, float(m))
    return F_inv


def obs_saliency(w: Tensor, F_inv: Tensor) -> Tensor:
    """s = w^2 / (2 diag F^-1): the forget-loss increase of removing each weight alone, with compensation.
    w: (nb, B), F_inv: (nb, B, B) -> (nb, B)."""
    return w.pow(2) / (2 * F_inv.diagonal(dim1=1, dim2=2))


def obs_compensation(F_inv: Tensor, w: Tensor, prune: Tensor) -> Tensor:
    """The OBS update delta (nb, B) that zeroes the entries ``prune`` (bool, (nb, B)) of each block at the least
    quadratic cost 1/2 delta^T F delta: delta = -F^-1 E_Q (E_Q^T F^-1 E_Q)^-1 w_Q, cost 1/2 w_Q^T [F^-1_QQ]^-1 w_Q.
    One weight: delta = -(w_q / [F^-1]_qq) F^-1 e_q. Blocks without pruned entries get 0."""
    delta = torch.zeros_like(w)
    rows = prune.any(1).nonzero().squeeze(1)
    if rows.numel() == 0:
        return delta
    Fi, p = F_inv[rows], prune[rows].to(w.dtype)
    A = Fi * p[:, :, None] * p[:, None, :]  # F^-1_QQ on the pruned entries, identity elsewhere
    A.diagonal(dim1=1, dim2=2).add_(1 - p)
    x = torch.linalg.solve(A, w[rows] * p)  # (F^-1_QQ)^-1 w_Q, zero off Q
    delta[rows] = -torch.bmm(Fi, x.unsqueeze(2)).squeeze(2)
    return delta


def group_gradients(model: nn.Module, split: TokenData, params: list[Tensor], m: int) -> Iterator[list[Tensor]]:
    """m gradients of the forget loss: the rows in order, split into m near-equal groups (one row each when m is the
    number of rows), each group's mean-NLL gradient."""
    device = model_device(model)
    for idx in torch.arange(len(split)).tensor_split(m):
        loss = batch_loss(model, batch_of(split, idx).to(device))
        grads = torch.autograd.grad(loss, params, allow_unused=True)
        yield [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]


@dataclass(frozen=True)
class OBSConfig:
    """``ratio``: fraction of each MLP tensor zeroed. ``num_grads``: gradients m in the empirical Fisher (capped
    at the number of forget rows; paper 512). ``block_size`` (paper 50) and ``damp`` (paper lambda 1e-7): the Fisher
    blocks and damping. ``batch_size``: rows per batch of the reference's accumulated gradient and of the forget
    NLL. ``epochs``: pruning rounds, each rebuilding the Fisher at the edited weights (1 = one shot, as the paper).
    ``reference_compatible``: the reference's m = 1, float32, no compensation (module doc)."""

    ratio: float = 0.05
    num_grads: int = 512
    block_size: int = 50
    damp: float = 1e-7
    batch_size: int = 64
    epochs: int = 1
    reference_compatible: bool = False

    def __post_init__(self) -> None:
        check_ratio(self.ratio)
        for name in ("num_grads", "block_size", "batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ObliviateError(f"method.{name} must be >= 1, got {getattr(self, name)}")
        if not self.damp > 0:
            raise ObliviateError(f"method.damp must be > 0 (the Fisher damping lambda), got {self.damp}")


@METHODS.register("obs")
class OBS(WeightMethod):
    config_cls = OBSConfig
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.05, "num_grads": 8}

    def fisher_inverse(self, model: nn.Module, split: TokenData, params: list[Tensor],
                       layout: BlockLayout) -> tuple[Tensor, int]:
        """The block Fisher inverse at the current weights and the number of gradients m it holds."""
        cfg = self.config
        dtype = torch.float32 if cfg.reference_compatible else torch.float64
        F_inv = init_fisher_inverse(layout.num_blocks, layout.B, cfg.damp, dtype, model_device(model))
        if cfg.reference_compatible:
            g, _ = forget_gradient(model, split, params, cfg.batch_size, all_positions=True)
            fisher_inverse_update_(F_inv, layout.blocks(g, dtype)[None], 1.0)
            return F_inv, 1
        m = min(cfg.num_grads, len(split))
        chunk: list[Tensor] = []
        for j, g in enumerate(group_gradients(model, split, params, m)):
            chunk.append(layout.blocks(g, dtype))
            if len(chunk) == GRAD_CHUNK or j == m - 1:
                fisher_inverse_update_(F_inv, torch.stack(chunk), float(m))
                chunk = []
        return F_inv, m

    def edit(self, model: nn.Module, data: LMUnlearnData, targets: list[Target], seed: int) -> WeightEdit:
        cfg = self.config
        params = [t.param for t in targets]
        for p in params:
            p.requires_grad_(True)
        layout = BlockLayout([p.numel() for p in params], cfg.block_size)
        chosen = [torch.zeros(p.shape, dtype=torch.bool, device=p.device) for p in params]
        logs = []
        m = 0
        for r in range(1, cfg.epochs + 1):
            F_inv, m = self.fisher_inverse(model, data.forget, params, layout)
            w = layout.blocks([p.detach() for p in params], F_inv.dtype)
            saliency = layout.split(obs_saliency(w, F_inv))
            for i, (s, c) in enumerate(zip(saliency, chosen)):
                k = round_share(prune_count(cfg.ratio, s.numel()), r, cfg.epochs) - int(c.sum())
                chosen[i] = c | top_mask(s, k, c.flatten()).view_as(c)
            moved = 0.0
            if not cfg.reference_compatible:
                delta = obs_compensation(F_inv, w, layout.blocks(chosen, torch.bool))
                with torch.no_grad():
                    for p, d in zip(params, layout.split(delta)):
                        p.add_(d.view_as(p).to(p.dtype))
                moved = float(delta.norm())
            zero_(targets, chosen)
            logs.append({"round": float(r), "num_grads": float(m), "update_norm": moved,
                         "zeroed": float(sum(int(c.sum()) for c in chosen))})
        info = {"num_grads": m, "rounds": cfg.epochs, "compensated": not cfg.reference_compatible,
                "fisher_blocks": layout.num_blocks}
        return WeightEdit(zeroed=chosen, logs=logs, info=info)
