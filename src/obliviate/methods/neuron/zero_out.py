"""Zero-Out (Sakarvadia et al., 2024, §neuron-level; Chang et al., 2024): attribution[l, j] = the forget-set LM loss
with neuron j of layer l zeroed minus the original loss -- how much the memorized continuations need that neuron.

Batched: a forward holds ``batch_size`` rows, i.e. ``batch_size // rows`` masked copies of a block of forget rows
stacked along the batch dimension (copy c zeroes one neuron), so a layer costs about inner_dim / copies forwards per
block instead of inner_dim.

Deviations from the reference (``fast_zero_out_vector``), with ``reference_compatible=True`` giving its behaviour:
- its patch vector is one-hot at j and multiplies the activations, so it KEEPS only neuron j and zeroes the rest of
  the layer -- the inverse of the "zero neuron j" the paper describes; we zero neuron j;
- its loss is over every token of the row (PAD included); ours is over the scored targets (labels != -100).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData
from obliviate.methods.base import METHODS
from obliviate.methods.neuron.base import (
    Attribution,
    NeuronConfig,
    NeuronMethod,
    NeuronSite,
    forget_batches,
    model_device,
    nll_sum,
    patched,
)


@dataclass(frozen=True)
class ZeroOutConfig(NeuronConfig):
    """``batch_size``: rows per forward (masked copies x forget rows). ``reference_compatible``: the reference's
    keep-only-j patch and all-token loss (module doc)."""

    reference_compatible: bool = False


def _all_tokens(batch: LMBatch) -> LMBatch:
    """Every position scored, padding included (the reference's ``labels=input_ids``)."""
    return LMBatch(batch.input_ids, batch.attention_mask, batch.input_ids.clone(), batch.index)


@torch.no_grad()
def zero_out_scores(model: nn.Module, split: TokenData, sites: list[NeuronSite], batch_size: int,
                    keep_only: bool = False, all_tokens: bool = False) -> list[Tensor]:
    """(inner,) per site: mean NLL over the split's scored targets with one neuron zeroed (``keep_only``: all but
    one) minus the unpatched mean NLL."""
    device = model_device(model)
    rows = min(len(split), batch_size)
    copies = max(1, batch_size // rows)
    blocks = list(forget_batches(split, rows, device, trim=not all_tokens))
    if all_tokens:
        blocks = [_all_tokens(b) for b in blocks]
    base_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for b in blocks:
        s, c = nll_sum(model, b)
        base_sum, count = base_sum + s.double().sum(), count + int(c.sum())
    base = base_sum / max(count, 1)
    scores = []
    for site in sites:
        total = torch.zeros(site.inner, dtype=torch.float64, device=device)
        for b in blocks:
            r = b.input_ids.shape[0]
            for j0 in range(0, site.inner, copies):
                js = torch.arange(j0, min(j0 + copies, site.inner), device=device)
                m = len(js)
                scale = torch.full((m, site.inner), float(not keep_only), device=device)
                scale[torch.arange(m, device=device), js] = float(keep_only)
                scale = scale.repeat_interleave(r, 0)[:, None, :]  # (m*r, 1, inner): copy-major, like .repeat below
                stacked = LMBatch(b.input_ids.repeat(m, 1), b.attention_mask.repeat(m, 1), b.labels.repeat(m, 1),
                                  b.index.repeat(m))
                with patched(sites, {site.index: lambda x, s=scale: x * s.to(x.dtype)}):
                    s, _ = nll_sum(model, stacked)
                total[js] += s.double().view(m, r).sum(1)
        scores.append((total / max(count, 1) - base).float().cpu())
    return scores


@METHODS.register("zero_out")
class ZeroOut(NeuronMethod):
    config_cls = ZeroOutConfig
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.25, "batch_size": 640}

    def attribute(self, model: nn.Module, data: LMUnlearnData, sites: list[NeuronSite], seed: int) -> Attribution:
        ref = self.config.reference_compatible
        scores = zero_out_scores(model, data.forget, sites, self.config.batch_size, keep_only=ref, all_tokens=ref)
        top = max(float(s.max()) for s in scores)
        return Attribution(scores, logs=[{"max_loss_increase": top}])
