"""Neuron-level unlearning (Sakarvadia et al., 2024, §neuron-level; after Chang et al., 2024): score every FFN neuron
on the forget set, then in every layer ablate the ``floor(ratio * inner_dim)`` neurons with the HIGHEST score.

What a "neuron" is, on every architecture: one input feature of the MLP's output projection (GPT-2 ``mlp.c_proj``,
GPT-NeoX ``mlp.dense_4h_to_h``, Llama ``mlp.down_proj``, ...). On GPT-2 / NeoX that is one unit of ``mlp.act``; on
Llama it is ``act_fn(gate_proj x) * up_proj x``, the gated product (scaling ``act_fn``'s output alone would be the
same scaling, but its value is not what enters ``down_proj``). Attribution hooks scale or replace the projection's
input (a forward pre-hook), and the permanent edit zeroes the neuron's input weights of the projection (Conv1D row,
Linear column): that removes exactly the neuron's contribution for any activation function, so the edited model
computes what the masked-activation model computes. The reference zeroes c_fc's column and bias instead, which is
exact only when act(0) = 0 (true of ReLU and GELU, not of every activation).

Layers are the MLP modules themselves, in model order -- never a substring of a parameter name (the reference's
``str(ly) in name`` resolves layer 1 to h.15 in a 16-layer model).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers.pytorch_utils import Conv1D

from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData, batch_of
from obliviate.losses.nll import IGNORE_INDEX, mean_nll, shifted_nll
from obliviate.methods.base import method_seed
from obliviate.methods.localize.supermask import freeze, restore_grad
from obliviate.papers import TINYMEM
from obliviate.train.distributed import broadcast_parameters, current_world
from obliviate.types import Paper, UnlearnResult

MLP_NAMES = ("mlp", "feed_forward", "ffn")  # the block's MLP module (last name component)
OUT_PROJ_NAMES = ("c_proj", "dense_4h_to_h", "down_proj", "fc_out", "fc2", "w2")  # its output projection


@dataclass
class NeuronSite:
    """One block's FFN neurons: the output projection ``module`` (hooked), its input weights ``weights`` as
    (parameter, axis of the input feature) pairs -- the base weight plus any LoRA ``lora_A`` -- and ``inner``, the
    number of neurons."""

    index: int
    name: str
    module: nn.Module
    inner: int
    weights: list[tuple[Tensor, int]]

    def outgoing_norms(self) -> Tensor:
        """(inner,) L2 norm of each neuron's outgoing weights (row of a Conv1D, column of a Linear)."""
        w, axis = self.weights[0]
        return w.detach().float().norm(dim=1 - axis)


def _input_axis(layer: nn.Module, name: str) -> tuple[Tensor, int]:
    if isinstance(layer, Conv1D):
        return layer.weight, 0  # (in, out)
    if isinstance(layer, nn.Linear):
        return layer.weight, 1  # (out, in)
    raise ObliviateError(f"{name} is a {type(layer).__name__}; neuron methods need a Linear or Conv1D projection")


def _site(index: int, name: str, proj: nn.Module) -> NeuronSite:
    get_base = getattr(proj, "get_base_layer", None)  # PEFT wraps the projection; its base holds the weights
    base = get_base() if callable(get_base) else proj
    weights = [_input_axis(base, name)]
    lora_a = getattr(proj, "lora_A", None)  # adapters read the same input: zero their columns too (exact removal)
    if isinstance(lora_a, nn.ModuleDict):
        weights += [_input_axis(m, f"{name}.lora_A") for m in lora_a.values()]
    w, axis = weights[0]
    return NeuronSite(index, name, proj, int(w.shape[axis]), weights)


def find_neuron_sites(model: nn.Module) -> list[NeuronSite]:
    """Every block's MLP output projection, in model order (layer i = the i-th MLP found)."""
    sites: list[NeuronSite] = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if parts[-1] not in MLP_NAMES or any(p.startswith(("lora_", "modules_to_save")) for p in parts):
            continue
        for proj_name in OUT_PROJ_NAMES:
            proj = getattr(module, proj_name, None)
            if isinstance(proj, nn.Module):
                sites.append(_site(len(sites), f"{name}.{proj_name}", proj))
                break
    if not sites:
        raise ObliviateError(f"no MLP layers found in {type(model).__name__}: neuron methods look for modules named "
                             f"{' / '.join(MLP_NAMES)} with an output projection named "
                             f"{' / '.join(OUT_PROJ_NAMES)}")
    return sites


def layer_count(ratio: float, inner: int) -> int:
    """k = floor(ratio * inner), as the reference; the 1e-9 keeps e.g. 0.29 * 100 from flooring to 28."""
    return math.floor(ratio * inner + 1e-9)


def top_k_per_layer(scores: list[Tensor], ratio: float) -> list[Tensor]:
    """Per layer, a bool mask of the k = floor(ratio * inner) neurons with the highest score (ties: lower index
    first; NaN ranks lowest)."""
    masks = []
    for s in scores:
        s = s.detach().float().cpu().nan_to_num(nan=-math.inf)
        k = layer_count(ratio, s.numel())
        mask = torch.zeros(s.numel(), dtype=torch.bool)
        mask[torch.argsort(-s, stable=True)[:k]] = True
        masks.append(mask)
    return masks


@torch.no_grad()
def ablate_neurons(sites: list[NeuronSite], masks: list[Tensor]) -> None:
    """Permanently zero the input weights of the chosen neurons of each site's output projection (in place)."""
    for site, mask in zip(sites, masks):
        idx = mask.nonzero().flatten()
        for w, axis in site.weights:
            w.index_fill_(axis, idx.to(w.device), 0.0)


@contextmanager
def patched(sites: list[NeuronSite], fns: dict[int, Callable[[Tensor], Tensor]]) -> Iterator[None]:
    """While active, site i's neuron vector x (B, T, inner) -- its output projection's input -- becomes fns[i](x)."""

    def pre(fn: Callable[[Tensor], Tensor]) -> Callable[..., Any]:
        def hook(_mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if args:
                return (fn(args[0]), *args[1:]), kwargs
            key = next(k for k, v in kwargs.items() if isinstance(v, Tensor))
            return args, {**kwargs, key: fn(kwargs[key])}

        return hook

    handles = [sites[i].module.register_forward_pre_hook(pre(fn), with_kwargs=True) for i, fn in fns.items()]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def predicting(labels: Tensor) -> Tensor:
    """(B, T) bool: position t predicts a scored target (labels[:, t + 1] != -100); the reference's t in
    [prompt_len - 1, T - 2] on continuation-scored rows."""
    out = torch.zeros_like(labels, dtype=torch.bool)
    out[:, :-1] = labels[:, 1:] != IGNORE_INDEX
    return out


def model_device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def forget_batches(split: TokenData, batch_size: int, device: torch.device, trim: bool = True) -> Iterator[LMBatch]:
    """The split's rows in order (no shuffling: attributions do not depend on a seed), ``batch_size`` at a time."""
    n = len(split)
    for start in range(0, n, batch_size):
        yield batch_of(split, torch.arange(start, min(start + batch_size, n)), trim=trim).to(device)


@torch.no_grad()
def nll_sum(model: nn.Module, batch: LMBatch) -> tuple[Tensor, Tensor]:
    """(per-row NLL summed over scored targets (B,), scored targets per row (B,))."""
    nll, mask = shifted_nll(*batch.scored_logits(model))
    return (nll * mask).sum(1), mask.sum(1)


def forget_nll(model: nn.Module, split: TokenData, batch_size: int) -> float:
    """Mean NLL over every scored target of the split."""
    total, count = 0.0, 0
    for batch in forget_batches(split, batch_size, model_device(model)):
        s, c = nll_sum(model, batch)
        total, count = total + float(s.sum()), count + int(c.sum())
    return total / max(count, 1)


def train_gates(model: nn.Module, split: TokenData, sites: list[NeuronSite], params: list[Tensor],
                gate: Callable[[int], Tensor], penalty: Callable[[], Tensor], cfg: Any,
                check_every: int) -> tuple[list[dict[str, float]], int | None]:
    """Slimming / Hard Concrete: learn per-neuron gates (site i's neurons multiplied by ``gate(i)``) by
    Adam on LM loss(forget) + weight * penalty(), ``cfg.epochs`` passes of ``cfg.batch_size`` rows. Every
    ``check_every`` epochs, stop once the penalty is below ``cfg.stop_loss`` (the reference's rule). Returns the
    per-epoch logs and the epoch the stop rule ended the run at (None: ran every epoch)."""
    opt = torch.optim.Adam(params, lr=cfg.lr)
    device = model_device(model)
    logs: list[dict[str, float]] = []
    fns = {s.index: (lambda x, i=s.index: x * gate(i).to(x.dtype)) for s in sites}
    with patched(sites, fns):
        for epoch in range(cfg.epochs):
            lm_sum, reg_sum, steps = 0.0, 0.0, 0
            for batch in forget_batches(split, cfg.batch_size, device):
                # zero per step: the reference zeroes once per epoch, so its gradients add up over batches
                opt.zero_grad(set_to_none=True)
                lm = mean_nll(*batch.scored_logits(model))
                reg = penalty()
                (lm + cfg.weight * reg).backward()
                opt.step()
                lm_sum, reg_sum, steps = lm_sum + float(lm.detach()), reg_sum + float(reg.detach()), steps + 1
            with torch.no_grad():
                reg_now = float(penalty())
            logs.append({"epoch": float(epoch + 1), "lm_loss": lm_sum / steps, "penalty": reg_sum / steps,
                         "penalty_end": reg_now})
            if (epoch + 1) % check_every == 0 and reg_now < cfg.stop_loss:
                return logs, epoch + 1
    return logs, None


@dataclass(frozen=True)
class NeuronConfig:
    """``ratio``: fraction of each layer's neurons ablated, k = floor(ratio * inner_dim) (paper grid 1e-5 ... 0.05;
    k = 0 leaves that layer alone). ``batch_size``: forget rows per forward (the reference: 64). ``epochs``: passes
    over the forget set of the trained attributions (slimming, hard_concrete); the one-pass attributions ignore it
    (every lm method takes the same run-length field)."""

    ratio: float = 0.05
    batch_size: int = 64
    epochs: int = 1

    def __post_init__(self) -> None:
        if not 0 < self.ratio < 1:
            raise ObliviateError(f"method.ratio must be in (0, 1) (the fraction of each layer's neurons ablated), "
                                 f"got {self.ratio}; paper grid: 1e-5, 1e-4, 1e-3, 1e-2, 0.05")
        if self.batch_size < 1:
            raise ObliviateError(f"method.batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise ObliviateError(f"method.epochs must be >= 1, got {self.epochs}")


@dataclass
class Attribution:
    """What ``attribute`` returns: one (inner,) score per layer (higher = more responsible for the forget set),
    logs (one entry at least) and extra info."""

    scores: list[Tensor]
    logs: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    stopped_at: int | None = None


class NeuronMethod:
    """Attribute, then ablate the top neurons of every layer by a permanent weight edit. Not a loop method:
    ``unlearn`` runs the attribution with the model in eval mode and every parameter frozen (no parameter gradient
    is ever computed), then restores the caller's train/eval mode and ``requires_grad`` flags."""

    family: ClassVar[str] = "lm"
    kind: ClassVar[str] = "post_hoc"
    config_cls: ClassVar[type[NeuronConfig]] = NeuronConfig
    paper: ClassVar[Paper | None] = TINYMEM
    needs_retain: ClassVar[bool] = False
    lora_compatible: ClassVar[bool] = False  # the edit is to the base weights, not through an adapter
    fsdp_compatible: ClassVar[bool] = False  # hooks and edits need whole projection weights
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.25}

    def __init__(self, config: NeuronConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def attribute(self, model: nn.Module, data: LMUnlearnData, sites: list[NeuronSite], seed: int) -> Attribution:
        raise NotImplementedError

    def unlearn(self, model: nn.Module, data: LMUnlearnData, ctx: RunContext | None = None) -> UnlearnResult:
        ctx = ctx or RunContext()
        if not isinstance(data, LMUnlearnData):
            raise ObliviateError(f"{type(self).__name__} is an lm-family method: it takes LMUnlearnData, "
                                 f"got {type(data).__name__}")
        world = current_world()
        if world.sharded:
            raise ObliviateError(f"{type(self).__name__} hooks and edits whole MLP projections: run it data parallel "
                                 "or on one process, not sharded (FSDP)")
        if ctx.device is not None:
            model.to(ctx.device)
        seed = method_seed(self.config, ctx)
        sites = find_neuron_sites(model)
        t0 = time.perf_counter()
        was_training, flags = model.training, freeze(model)
        model.eval()
        try:
            before = forget_nll(model, data.forget, self.config.batch_size)
            att = self.attribute(model, data, sites, seed)
            chosen = top_k_per_layer(att.scores, self.config.ratio)
            ablate_neurons(sites, chosen)
            after = forget_nll(model, data.forget, self.config.batch_size)
        finally:
            restore_grad(model, flags)
            model.train(was_training)
        broadcast_parameters(model, world)  # data parallel: every rank keeps rank 0's edit
        per_layer = [int(m.sum()) for m in chosen]
        logs = att.logs + [{"forget_nll_before": before, "forget_nll_after": after, "ablated": float(sum(per_layer))}]
        info = {"ablated_per_layer": per_layer, "inner_dim": [s.inner for s in sites],
                "layers": [s.name for s in sites], "forget_nll_before": before, "forget_nll_after": after,
                "seed": seed, **att.info}
        masks: dict[str, Tensor] = {}
        for i, (score, mask) in enumerate(zip(att.scores, chosen)):
            masks[f"attribution.layer{i}"] = score.detach().float().cpu()
            masks[f"ablated.layer{i}"] = mask
        return UnlearnResult(model=model, logs=logs, info=info, wall_s=max(time.perf_counter() - t0, 1e-9),
                             masks=masks, stopped_at=att.stopped_at)
