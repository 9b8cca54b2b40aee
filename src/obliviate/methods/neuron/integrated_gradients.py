"""Integrated Gradients (Sakarvadia et al., 2024, §neuron-level; knowledge-neuron style, Dai et al., 2022).

For each forget row, layer l and predicting position t (its next token is a scored target), scale layer l's whole
neuron vector a at position t by alpha in ``steps`` points linspace(0, 1) and take the gradient of the softmax
probability of the true next token; IG_j = a_j * sum_alpha grad_j / steps (baseline 0). Average over the row's
positions, then over rows.

Batched: the reference runs the prefix x[:t+1] once per (row, layer, position) and, in effect, per step. Here every
(row, position, alpha) is one row of a batch, ``batch_size`` (row, position) pairs x ``steps`` rows per forward, one
backward for all of them (each row's probability depends only on its own patched vector). Positions before t are
unpatched, so each row is run as the single token at t on the key/value cache of one clean forward of its forget
row (Hugging Face models: the cost of a patched row is one token, not t + 1); without a usable cache the full row
is run with the patch at t (under causal attention the logits at t do not see later positions: same value).
:func:`integrated_gradients_naive` is the per-step loop, kept as the check (tests, ``benchmarks/bench_neuron_ig.py``).

Defaults: ``steps`` 20 (the reference's ``ig_full_data`` hard-codes 20 and ignores its ``ig_steps`` sweep
{1, 10, 20}; ours honours ``steps``); ``ratio`` 0.01 -- every IG row of the TinyMem tables (details §1a, §1c)
picked 0.01.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from transformers import DynamicCache, PreTrainedModel

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData, batch_of
from obliviate.losses.nll import IGNORE_INDEX
from obliviate.methods.base import METHODS
from obliviate.methods.neuron.base import (
    Attribution,
    NeuronConfig,
    NeuronMethod,
    NeuronSite,
    model_device,
    patched,
    predicting,
)

try:  # transformers >= 4.56: per-layer cache objects (older versions run the full rows)
    from transformers.cache_utils import DynamicLayer
except ImportError:  # pragma: no cover
    DynamicLayer = None


@dataclass(frozen=True)
class IntegratedGradientsConfig(NeuronConfig):
    """``batch_size``: (row, position) pairs per forward, each bringing ``steps`` rows. ``steps``: points of the
    path from 0 to the activation (both ends included, as the reference's linspace). ``kv_cache``: run each patched
    position as one token on the clean rows' key/value cache (Hugging Face models with a plain ``DynamicCache``;
    others, or False, run the full rows)."""

    ratio: float = 0.01
    batch_size: int = 16
    steps: int = 20
    kv_cache: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.steps < 1:
            raise ObliviateError(f"method.steps must be >= 1, got {self.steps}")


def _replace_at(rows: Tensor, pos: Tensor, alphas: Tensor, hold: dict[str, Tensor]) -> Any:
    """A patch that replaces x[r, pos[r]] by alphas[r] * x[r, pos[r]] through a leaf ``hold['z']`` (grad wanted);
    ``hold['a']`` keeps the unscaled vectors."""

    def fn(x: Tensor) -> Tensor:  # x (R, T, inner)
        a = x[rows, pos].detach()
        z = (alphas[:, None].to(a.dtype) * a).requires_grad_(True)
        hold["a"], hold["z"] = a, z
        x = x.clone()
        x[rows, pos] = z
        return x

    return fn


@dataclass
class _Clean:
    """The clean block's per-layer (keys, values), the attention mask and position ids it was run with."""

    kv: list[tuple[Tensor, Tensor]]
    mask: Tensor
    positions: Tensor


@torch.no_grad()
def _clean_cache(model: nn.Module, block: LMBatch) -> _Clean | None:
    """One clean forward of the block, keeping its key/value cache; None when the model gives no plain
    ``DynamicCache`` (then the full rows are run)."""
    get_base = getattr(model, "get_base_model", None)  # PEFT: the wrapped model
    lm = get_base() if callable(get_base) else model
    if DynamicLayer is None or not isinstance(lm, PreTrainedModel):
        return None
    inputs = block.model_inputs()
    body = getattr(lm, "base_model", lm)  # the decoder without the LM head: no (B, T, V) logits
    cache = getattr(body(**inputs, use_cache=True), "past_key_values", None)
    layers = getattr(cache, "layers", None)
    if type(cache) is not DynamicCache or not layers or any(type(layer) is not DynamicLayer for layer in layers):
        return None
    B, T = block.input_ids.shape
    pos = inputs.get("position_ids", torch.arange(T, device=block.input_ids.device).expand(B, T))
    return _Clean([(layer.keys, layer.values) for layer in layers], inputs["attention_mask"], pos)


def _grad_at(model: nn.Module, sites: list[NeuronSite], site: NeuronSite, patch: Any, hold: dict[str, Tensor],
             targets: Tensor, run: Any) -> Tensor:
    """d p(target) / d z for every row, where ``run()`` returns the (R, V) logits at the patched positions."""
    with torch.enable_grad(), patched(sites, {site.index: patch}):
        prob = run().float().softmax(-1).gather(1, targets[:, None])
        (grad,) = torch.autograd.grad(prob.sum(), hold["z"])
    return grad


def _ig_chunk(model: nn.Module, sites: list[NeuronSite], site: NeuronSite, block: LMBatch, clean: _Clean | None,
              b: Tensor, t: Tensor, alphas: Tensor) -> Tensor:
    """(n, inner) IG of the (block row b[k], position t[k]) pairs at ``site``, all steps in one forward + backward."""
    n, steps = len(b), len(alphas)
    rb, rt = b.repeat_interleave(steps), t.repeat_interleave(steps)
    R = len(rb)
    rows = torch.arange(R, device=rb.device)
    targets = block.labels[rb, rt + 1]
    hold: dict[str, Tensor] = {}
    if clean is not None:  # one token per row: position t on the clean cache of positions < t
        T = block.input_ids.shape[1]
        past = clean.mask[rb] * (torch.arange(T, device=rb.device)[None, :] < rt[:, None])
        mask = torch.cat([past, past.new_ones(R, 1)], 1)
        cache = DynamicCache([(k[rb], v[rb]) for k, v in clean.kv])
        patch = _replace_at(rows, torch.zeros_like(rt), alphas.repeat(n), hold)

        def run() -> Tensor:
            return model(input_ids=block.input_ids[rb, rt][:, None], attention_mask=mask, past_key_values=cache,
                         position_ids=clean.positions[rb, rt][:, None], use_cache=True).logits[:, -1]
    else:  # the full row up to the last target column, patched at t (later columns cannot change logits at t)
        width = int(t.max()) + 2
        labels = torch.full_like(block.labels[rb, :width], IGNORE_INDEX)
        labels[rows, rt + 1] = targets
        full = LMBatch(block.input_ids[rb, :width], block.attention_mask[rb, :width], labels, rb)
        patch = _replace_at(rows, rt, alphas.repeat(n), hold)

        def run() -> Tensor:
            return full.scored_logits(model)[0][:, 0]  # window column 0 is position t, predicting t + 1

    grad = _grad_at(model, sites, site, patch, hold, targets, run)
    a = hold["a"].view(n, steps, -1)[:, 0].double()
    return a * grad.double().view(n, steps, -1).sum(1) / steps


def _row_blocks(counts: Tensor, pairs: int) -> list[Tensor]:
    """Consecutive rows grouped until a group holds >= ``pairs`` predicting positions (or ``pairs`` rows)."""
    blocks, cur, held = [], [], 0
    for i, c in enumerate(counts.tolist()):
        if c == 0:
            continue
        cur.append(i)
        held += c
        if held >= pairs or len(cur) >= pairs:
            blocks.append(torch.tensor(cur))
            cur, held = [], 0
    if cur:
        blocks.append(torch.tensor(cur))
    return blocks


def integrated_gradients(model: nn.Module, split: TokenData, sites: list[NeuronSite], steps: int,
                         pairs_per_forward: int, kv_cache: bool = True) -> list[Tensor]:
    """(inner,) per site: IG averaged over each row's predicting positions, then over rows (batched)."""
    device = model_device(model)
    counts = predicting(split.labels).sum(1)
    alphas = torch.linspace(0, 1, steps, device=device)
    per_row = [torch.zeros(len(split), s.inner, dtype=torch.float64, device=device) for s in sites]
    for rows in _row_blocks(counts, pairs_per_forward):
        block = batch_of(split, rows).to(device)
        b_all, t_all = predicting(block.labels).nonzero(as_tuple=True)  # (row, position) pairs, row-major
        clean = _clean_cache(model, block) if kv_cache else None
        for site in sites:
            for start in range(0, len(b_all), pairs_per_forward):
                b, t = b_all[start:start + pairs_per_forward], t_all[start:start + pairs_per_forward]
                per_row[site.index].index_add_(0, rows.to(device)[b], _ig_chunk(model, sites, site, block, clean,
                                                                                  b, t, alphas))
    used = (counts > 0).to(device)
    return [(p[used] / counts.to(device)[used][:, None]).mean(0).float().cpu() for p in per_row]


def integrated_gradients_naive(model: nn.Module, split: TokenData, sites: list[NeuronSite],
                               steps: int) -> list[Tensor]:
    """The same attributions by the reference's loop: per row, layer, position and step, one forward of the prefix
    x[:t+1] with the last position's vector scaled. Slow; for checks and the benchmark."""
    device = model_device(model)
    pred = predicting(split.labels)
    out = []
    for site in sites:
        rows = []
        for i in range(len(split)):
            per_pos = []
            for t in pred[i].nonzero().flatten().tolist():
                sl = slice(i, i + 1)
                prefix = LMBatch(split.input_ids[sl, :t + 1], split.attention_mask[sl, :t + 1],
                                 split.labels[sl, :t + 1], torch.tensor([i])).to(device)
                target = int(split.labels[i, t + 1])
                gsum: Tensor | float = 0.0
                for alpha in torch.linspace(0, 1, steps).tolist():
                    hold: dict[str, Tensor] = {}
                    last = torch.tensor([t], device=device)
                    fn = _replace_at(torch.zeros(1, dtype=torch.long, device=device), last,
                                     torch.tensor([alpha], device=device), hold)
                    with torch.enable_grad(), patched(sites, {site.index: fn}):
                        prob = model(**prefix.model_inputs()).logits[0, -1].float().softmax(-1)[target]
                        (grad,) = torch.autograd.grad(prob, hold["z"])
                    gsum = gsum + grad[0].double()
                per_pos.append(hold["a"][0].double() * gsum / steps)
            if per_pos:
                rows.append(torch.stack(per_pos).mean(0))
        out.append(torch.stack(rows).mean(0).float().cpu())
    return out


@METHODS.register("integrated_gradients")
class IntegratedGradients(NeuronMethod):
    config_cls = IntegratedGradientsConfig
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.25, "steps": 2, "batch_size": 256}

    def attribute(self, model: nn.Module, data: LMUnlearnData, sites: list[NeuronSite], seed: int) -> Attribution:
        cfg = self.config
        scores = integrated_gradients(model, data.forget, sites, cfg.steps, cfg.batch_size, cfg.kv_cache)
        return Attribution(scores, logs=[{"max_attribution": max(float(s.max()) for s in scores)}])
