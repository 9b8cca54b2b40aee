"""Train-time memorization regularizers (Sakarvadia et al., 2024, "Mitigating Memorization in Language Models",
§regularizers), hooked into the one pre-training loop (:func:`obliviate.train.pretrain.pretrain`).

A :class:`Regularizer` is attached to the model before training (it may install forward hooks), computes each
batch's loss (the plain loop's mean NLL plus or instead of its term), and is detached after training (hooks removed,
test-time behaviour baked into the weights, so the result is a plain model of the same architecture). Selected by
``train.regularizer.name``; ``none`` runs the loop exactly as without this module (same bits).

- ``spectral_norm`` (Yoshida & Miyato, 2017): loss + (lambda/2) * sum of the largest singular values of the weight
  matrices, each estimated by one power-iteration step per training step with its vector kept across steps.
- ``loss_truncation`` (Kang & Hashimoto, 2020): the highest-loss ``dropc`` fraction of each batch's sequences is
  dropped from the loss.
- ``example_tied_dropout`` (Maini et al., 2023): FFN neurons split into always-on "generalization" neurons and
  "memorization" neurons, each kept for a fixed, example-specific random subset of training examples; at test time
  the memorization neurons are dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMBatch, TokenData
from obliviate.losses.nll import mean_nll, sequence_nll

NAMES = ("none", "spectral_norm", "loss_truncation", "example_tied_dropout")


@dataclass(frozen=True)
class RegularizerConfig:
    """``train.regularizer``. Defaults: the middle of the paper's grids (spec 5: lambda in {1e-3, 1e-2, 1e-1}, dropc
    in {0.01, 0.05, 0.1}) and the reference's example-tied dropout defaults (p_fixed 0.2, p_mem 0.1)."""

    name: Literal["none", "spectral_norm", "loss_truncation", "example_tied_dropout"] = "none"
    spectral_lambda: float = 0.01  # lambda of (lambda/2) * sum sigma_max(W)
    dropc: float = 0.05  # fraction of each batch's sequences dropped (the highest losses)
    p_fixed: float = 0.2  # fraction of FFN neurons that are generalization neurons (always on)
    p_mem: float = 0.1  # probability that a memorization neuron is on for a given example
    # what an "example" is: "content" = identical rows (duplicates of one artifact) share their memorization neurons;
    # "row" = every training row is its own example (the reference: the index in the duplicated training set)
    tie: Literal["content", "row"] = "content"

    def __post_init__(self) -> None:
        check_values("train.regularizer", spectral_lambda=self.spectral_lambda, dropc=self.dropc, p_fixed=self.p_fixed,
                     p_mem=self.p_mem)


_VALID = {"spectral_lambda": ("(0, inf)", lambda v: 0 < v < math.inf), "dropc": ("[0, 1)", lambda v: 0 <= v < 1),
          "p_fixed": ("(0, 1]", lambda v: 0 < v <= 1), "p_mem": ("[0, 1]", lambda v: 0 <= v <= 1)}


def check_values(prefix: str, **values: float) -> None:
    """An error naming the field, its value and the valid range (``prefix``: where the field lives in the config)."""
    for field, value in values.items():
        valid, ok = _VALID[field]
        if not ok(value):
            raise ObliviateError(f"{prefix}.{field} must be in {valid}, got {value}")


class Regularizer:
    """The hook interface of the pre-training loop (the base class is the plain loss)."""

    def attach(self, model: nn.Module, data: TokenData, seed: int) -> None:
        """Before training: the training rows (``batch.index`` holds row numbers into them), the run's seed."""

    def loss(self, model: nn.Module, batch: LMBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """This batch's training loss (scalar) and statistics to log."""
        return mean_nll(*batch.scored_logits(model)), {}

    def detach(self, model: nn.Module) -> None:
        """After training (also when it failed): remove hooks, bake test-time behaviour into the weights."""

    def state_dict(self) -> dict[str, Tensor]:
        """State that changes during training (saved in checkpoints so a resumed run equals an uninterrupted one)."""
        return {}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        """Restore :meth:`state_dict` (a resumed run)."""


def make_regularizer(cfg: RegularizerConfig) -> Regularizer | None:
    """The regularizer ``cfg`` names; None for ``none`` (the loop then runs its plain loss)."""
    if cfg.name == "none":
        return None
    if cfg.name == "spectral_norm":
        return SpectralNorm(cfg.spectral_lambda)
    if cfg.name == "loss_truncation":
        return LossTruncation(cfg.dropc)
    return ExampleTiedDropout(cfg.p_fixed, cfg.p_mem, cfg.tie)


# --- spectral norm regularization -------------------------------------------------------------------------------


def power_iteration(blocks: Tensor, u: Tensor, eps: float = 1e-12) -> tuple[Tensor, Tensor]:
    """One power-iteration step on K matrices. blocks (K, m, n), u (K, m) -> (sigma (K,), new u (K, m)).

    v = normalize(W^T u), u' = normalize(W v) without gradient; sigma = u'^T W v with gradient through W only, whose
    gradient is u' v^T (Yoshida & Miyato, 2017). Repeated steps converge to the largest singular value."""
    with torch.no_grad():
        v = nn.functional.normalize(torch.einsum("kmn,km->kn", blocks, u), dim=1, eps=eps)
        u = nn.functional.normalize(torch.einsum("kmn,kn->km", blocks, v), dim=1, eps=eps)
    return torch.einsum("km,kmn,kn->k", u, blocks, v), u


def weight_blocks(name: str, weight: Tensor, n_head: int) -> Tensor:
    """The matrices whose spectral norms are penalised, as (K, m, n). GPT-2 attention (``attn.c_attn``: q, k and v of
    every head; ``attn.c_proj``) is split into ``3 * n_head`` / ``n_head`` column blocks as the reference does
    (spec 5; for c_proj these are blocks of output columns); every other weight is one matrix."""
    blocks = 3 * n_head if name.endswith("attn.c_attn.weight") else n_head if name.endswith("attn.c_proj.weight") else 1
    m, n = weight.shape
    return weight.reshape(m, blocks, n // blocks).permute(1, 0, 2)


def spectral_targets(model: nn.Module) -> list[tuple[str, Tensor]]:
    """Trainable weight matrices of Linear / Conv1D layers, embeddings excluded (the reference skips ``wte``, ``wpe``,
    layer norms and biases; a tied or untied output embedding is skipped too)."""
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    seen = {id(out_emb.weight)} if out_emb is not None else set()  # also: a weight shared by two modules once
    found = []
    for mod_name, mod in model.named_modules():
        if isinstance(mod, (nn.Linear, Conv1D)) and mod.weight.requires_grad and id(mod.weight) not in seen:
            seen.add(id(mod.weight))
            found.append((f"{mod_name}.weight", mod.weight))
    if not found:
        raise ObliviateError(f"spectral_norm: {type(model).__name__} has no trainable Linear / Conv1D weights")
    return found


class SpectralNorm(Regularizer):
    """loss = mean NLL + (lambda/2) * sum over weight blocks of sigma_max, one power step per training step."""

    def __init__(self, lam: float) -> None:
        self.lam = lam
        self.targets: list[tuple[str, Tensor]] = []
        self.u: dict[str, Tensor] = {}
        self.n_head = 1

    def attach(self, model: nn.Module, data: TokenData, seed: int) -> None:
        self.n_head = int(getattr(getattr(model, "config", None), "n_head", 1) or 1)
        self.targets = spectral_targets(model)
        g = torch.Generator().manual_seed(seed)  # the power vectors' start: random, seeded, the global RNG untouched
        for name, w in self.targets:
            k, m, _ = weight_blocks(name, w, self.n_head).shape
            self.u[name] = nn.functional.normalize(torch.randn(k, m, generator=g), dim=1).to(w.device, w.dtype)

    def penalty(self) -> Tensor:
        """sum of sigma_max over every block, advancing each power vector by one step."""
        total = []
        for name, w in self.targets:
            sigma, self.u[name] = power_iteration(weight_blocks(name, w, self.n_head), self.u[name])
            total.append(sigma.sum())
        return torch.stack(total).sum()

    def loss(self, model: nn.Module, batch: LMBatch) -> tuple[Tensor, dict[str, Tensor]]:
        nll = mean_nll(*batch.scored_logits(model))
        sigma = self.penalty()
        return nll + (self.lam / 2) * sigma, {"nll": nll.detach(), "sum_sigma": sigma.detach()}

    def state_dict(self) -> dict[str, Tensor]:
        return {f"u.{name}": u for name, u in self.u.items()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        for name in self.u:
            self.u[name] = state[f"u.{name}"].to(self.u[name].device, self.u[name].dtype)


# --- loss truncation --------------------------------------------------------------------------------------------


def truncation_mask(per_example: Tensor, dropc: float) -> Tensor:
    """(B,) float mask, 0 at the round(dropc * B) highest losses (ties broken by position), 1 elsewhere."""
    b = per_example.shape[0]
    k = min(math.floor(dropc * b + 0.5), b)
    mask = torch.ones_like(per_example)
    if k > 0:
        mask[torch.topk(per_example.detach(), k).indices] = 0
    return mask


def truncated_loss(per_example: Tensor, dropc: float) -> Tensor:
    """Mean over the batch of the masked per-sequence losses (dropped ones count as 0, as the reference averages
    ``loss * mask`` over every row)."""
    return (per_example * truncation_mask(per_example, dropc)).mean()


class LossTruncation(Regularizer):
    """Drop the highest-loss ``dropc`` fraction of each batch. Deviation: the reference (Kang & Hashimoto's
    LossDropper) takes the cut-off from a rolling history of 10,000 losses after 10,000 warm-up examples; here it is
    the batch's own quantile (no warm-up, no state) -- see docs/methods.md."""

    def __init__(self, dropc: float) -> None:
        self.dropc = dropc

    def loss(self, model: nn.Module, batch: LMBatch) -> tuple[Tensor, dict[str, Tensor]]:
        per = sequence_nll(*batch.scored_logits(model))  # (B,) mean NLL of each sequence
        mask = truncation_mask(per, self.dropc)
        return (per * mask).mean(), {"dropped": (1 - mask).sum().detach()}


# --- example-tied dropout ---------------------------------------------------------------------------------------

_FFN_OUT = ("mlp.c_proj", "mlp.down_proj", "mlp.dense_4h_to_h", "mlp.fc2", "mlp.fc_out")


def ffn_out_projections(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The FFN output projections, whose inputs are the FFN neurons (GPT-2 ``mlp.c_proj``, Llama ``mlp.down_proj``,
    GPT-NeoX ``mlp.dense_4h_to_h``)."""
    found = [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Linear, Conv1D)) and n.endswith(_FFN_OUT)]
    if not found:
        raise ObliviateError(f"example_tied_dropout: no FFN output projection found in {type(model).__name__} "
                             f"(module names ending in {', '.join(_FFN_OUT)})")
    return found


def neuron_count(proj: nn.Module) -> int:
    return int(proj.weight.shape[0] if isinstance(proj, Conv1D) else proj.in_features)


def example_masks(ids: Tensor, width: int, n_fixed: int, p_mem: float, seed: int) -> Tensor:
    """Training masks (B, width): the first ``n_fixed`` neurons on; each other neuron on with probability ``p_mem``,
    drawn once per example from a generator seeded by (seed, example id), so an example always gets the same set."""
    out = torch.zeros(len(ids), width)
    out[:, :n_fixed] = 1
    g = torch.Generator()
    for row, i in enumerate(ids.tolist()):
        g.manual_seed(seed * 1_000_003 + int(i))
        out[row, n_fixed:] = (torch.rand(width - n_fixed, generator=g) < p_mem).float()
    return out


def row_keys(data: TokenData) -> Tensor:
    """(N,) int64 key per row: two polynomial hashes of its tokens and labels (+101: never negative) modulo primes
    below 2**31 (no int64 overflow for token ids below 2**31), packed in one integer; equal rows get equal keys,
    different rows collide with probability ~2**-62 per pair. Memory O(N) (``torch.unique(rows, dim=0)`` would sort
    the whole (N, T) corpus)."""
    width = 2 * data.input_ids.shape[1]
    keys = torch.zeros(len(data), dtype=torch.int64)
    for mod, mult in ((2_147_483_647, 1_000_003), (2_147_483_629, 999_983)):
        # sum_j (token_j * mult**j mod p) mod p: each product < 2**62 for ids below 2**31, each reduced term < 2**31
        pows = torch.tensor([pow(mult, j, mod) for j in range(width)], dtype=torch.int64)
        for s in range(0, len(data), 1 << 15):
            rows = torch.cat([data.input_ids[s : s + (1 << 15)], data.labels[s : s + (1 << 15)] + 101], 1)
            keys[s : s + (1 << 15)] = keys[s : s + (1 << 15)] * (1 << 31) + (rows * pows % mod).sum(1) % mod
    return keys


def content_ids(data: TokenData) -> Tensor:
    """(N,) for each row, the number of the first row with the same tokens and labels (duplicates share it)."""
    _, inverse = torch.unique(row_keys(data), return_inverse=True)
    first = torch.full((int(inverse.max()) + 1 if len(inverse) else 0,), len(inverse), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(inverse)), reduce="amin")
    return first[inverse]


def eval_scale(width: int, n_fixed: int, p_fixed: float, p_mem: float) -> Tensor:
    """Test-time multiplier (width,): memorization neurons dropped, generalization neurons scaled by
    (p_fixed + p_mem) / p_fixed (the reference's "drop" mode)."""
    s = torch.zeros(width)
    s[:n_fixed] = (p_fixed + p_mem) / p_fixed
    return s


class ExampleTiedDropout(Regularizer):
    """Masks the inputs of every FFN output projection (forward pre-hooks): per-example masks in training, the
    :func:`eval_scale` in eval mode (checkpoint evaluations); :meth:`detach` bakes the eval scale into the
    projection's weights. The same mask in every layer (the reference seeds each layer's mask by the example id)."""

    def __init__(self, p_fixed: float, p_mem: float, tie: str = "content") -> None:
        self.p_fixed, self.p_mem, self.tie = p_fixed, p_mem, tie
        self.example_id: Tensor | None = None  # row number -> example id (tie="content": first row with that content)
        self.handles: list[Any] = []
        self.projs: list[nn.Module] = []
        self.ids: Tensor | None = None
        self.seed = 0
        self.width = 0

    def attach(self, model: nn.Module, data: TokenData, seed: int) -> None:
        self.example_id = content_ids(data) if self.tie == "content" else None
        self.projs = [m for _, m in ffn_out_projections(model)]
        widths = {neuron_count(m) for m in self.projs}
        if len(widths) != 1:
            raise ObliviateError(f"example_tied_dropout: FFN widths differ across layers ({sorted(widths)})")
        self.width, self.seed = widths.pop(), seed
        self.n_fixed = int(self.p_fixed * self.width)
        if self.n_fixed < 1:
            raise ObliviateError(f"train.regularizer.p_fixed={self.p_fixed} keeps no generalization neuron of "
                                 f"{self.width} (valid: p_fixed >= {1 / self.width:.3g} for this model)")
        self.scale = eval_scale(self.width, self.n_fixed, self.p_fixed, self.p_mem)
        self.handles = [m.register_forward_pre_hook(self._hook) for m in self.projs]

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        x = args[0]  # (B, T, width) FFN activations
        if module.training:
            if self.ids is None:
                raise ObliviateError("example_tied_dropout: a training forward pass without example ids (only the "
                                     "pre-training loop may run the model in train mode while it is attached)")
            mask = example_masks(self.ids, self.width, self.n_fixed, self.p_mem, self.seed)
            x = x * mask.to(x.device, x.dtype)[:, None, :]
        else:
            x = x * self.scale.to(x.device, x.dtype)
        return (x, *args[1:])

    def loss(self, model: nn.Module, batch: LMBatch) -> tuple[Tensor, dict[str, Tensor]]:
        self.ids = batch.index if self.example_id is None else self.example_id[batch.index]
        try:
            return mean_nll(*batch.scored_logits(model)), {}
        finally:
            self.ids = None

    def detach(self, model: nn.Module) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        with torch.no_grad():
            for m in self.projs:
                s = self.scale.to(m.weight.device, m.weight.dtype)
                m.weight.mul_(s[:, None] if isinstance(m, Conv1D) else s[None, :])
        self.projs = []
