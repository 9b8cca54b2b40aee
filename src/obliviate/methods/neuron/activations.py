"""Activations (Sakarvadia et al., 2024, §neuron-level; reference ``largest_act``): attribution[l, j] =
|mean activation of neuron j over the forget rows' predicting positions| x L2 norm of its outgoing weights.

Predicting positions are those whose next token is a scored target (the reference: t in [prompt_len - 1, T - 2],
i.e. the positions that produce the continuation); the mean pools every such (row, position) of the forget set.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.methods.base import METHODS
from obliviate.methods.neuron.base import (
    Attribution,
    NeuronConfig,
    NeuronMethod,
    NeuronSite,
    forget_batches,
    model_device,
    patched,
    predicting,
)


@torch.no_grad()
def mean_activations(model: nn.Module, split: TokenData, sites: list[NeuronSite], batch_size: int) -> list[Tensor]:
    """(inner,) per site: each neuron's mean value over the split's predicting positions."""
    sums = [torch.zeros(s.inner, dtype=torch.float64, device=model_device(model)) for s in sites]
    where: dict[str, Tensor] = {}

    def record(i: int) -> Any:
        def fn(x: Tensor) -> Tensor:  # x (B, T, inner)
            sums[i] += (x.double() * where["pred"][..., None]).sum((0, 1))
            return x

        return fn

    count = 0
    for batch in forget_batches(split, batch_size, model_device(model)):
        where["pred"] = predicting(batch.labels).double()
        with patched(sites, {s.index: record(s.index) for s in sites}):
            batch.scored_logits(model)
        count += int(where["pred"].sum())
    return [(s / max(count, 1)).float().cpu() for s in sums]


def activation_scores(means: list[Tensor], sites: list[NeuronSite]) -> list[Tensor]:
    """|mean activation| x ||outgoing weights||_2, per neuron."""
    return [m.abs() * s.outgoing_norms().cpu() for m, s in zip(means, sites)]


@METHODS.register("activations")
class Activations(NeuronMethod):
    config_cls = NeuronConfig
    smoke_config: ClassVar[dict[str, Any]] = {"ratio": 0.25}

    def attribute(self, model: nn.Module, data: LMUnlearnData, sites: list[NeuronSite], seed: int) -> Attribution:
        scores = activation_scores(mean_activations(model, data.forget, sites, self.config.batch_size), sites)
        return Attribution(scores, logs=[{"max_attribution": max(float(s.max()) for s in scores)}])
