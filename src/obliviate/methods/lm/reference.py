"""The original model, for losses that compare against it (NPO, UNDIAL, RMU, the KL / QKL retain penalties): made in
``setup``, dropped in ``teardown``. A LoRA-wrapped model is its own reference -- run with the adapter disabled (the
base weights never train and the adapter starts as a no-op), so no second copy is held in memory; any other model
gets a frozen deep copy."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn


def frozen_copy(model: nn.Module) -> nn.Module:
    """The model as it is now, in eval mode, with no parameter requiring gradients."""
    ref = copy.deepcopy(model)
    ref.eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


class AdapterDisabled(nn.Module):
    """Calls a PEFT model with its adapters disabled and in eval mode (restoring its mode after): the base model."""

    def __init__(self, peft_model: nn.Module) -> None:
        super().__init__()
        object.__setattr__(self, "model", peft_model)  # not a submodule: no second registration of its parameters

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        model = self.model
        was = model.training
        model.eval()
        try:
            with model.disable_adapter():
                return model(*args, **kwargs)
        finally:
            model.train(was)


class AdapterView(nn.Module):
    """Calls a PEFT model through one named adapter (in eval mode, restoring its mode after): a second model that
    shares the base weights, e.g. the mean teacher as a second adapter."""

    def __init__(self, peft_model: nn.Module, adapter: str) -> None:
        super().__init__()
        object.__setattr__(self, "model", peft_model)
        self.adapter = adapter

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        model = self.model
        ids = kwargs.get("input_ids", args[0] if args else None)
        was = model.training
        model.eval()  # peft takes per-row adapter names in eval mode only
        try:
            return model(*args, adapter_names=[self.adapter] * int(ids.shape[0]), **kwargs)
        finally:
            model.train(was)


def adapter_copy(peft_model: nn.Module, name: str) -> tuple[AdapterView, dict[str, str]]:
    """Add adapter ``name`` to a PEFT model as a frozen copy of its active adapter; returns a view that runs the
    model through it and a map (parameter name of the active adapter -> name of its copy), names in the model."""
    import copy as _copy

    active = peft_model.active_adapter
    peft_model.add_adapter(name, _copy.deepcopy(peft_model.peft_config[active]))
    params = dict(peft_model.named_parameters())
    twins: dict[str, str] = {}
    with torch.no_grad():
        for n, p in params.items():
            if f".{active}." in n:
                twins[n] = n.replace(f".{active}.", f".{name}.")
                twin = params[twins[n]]
                twin.copy_(p)
                twin.requires_grad_(False)
    return AdapterView(peft_model, name), twins


def reference_of(model: nn.Module) -> nn.Module:
    """The original model to compare against: the LoRA model itself with the adapter disabled, else a frozen copy."""
    from obliviate.lora import is_lora

    return AdapterDisabled(model) if is_lora(model) else frozen_copy(model)


class ComparesWithOriginal:
    """Mixin for loss methods that compare with the original model: ``self._ref`` (see :func:`reference_of`) lives
    from ``setup`` to ``teardown``. List it before LossMethod: ``class NPO(ComparesWithOriginal, LossMethod)``."""

    _ref: nn.Module

    def setup(self, model: nn.Module, data: Any, seed: int) -> list[nn.Parameter]:
        self._ref = reference_of(model)
        return super().setup(model, data, seed)  # type: ignore[misc]

    def auxiliary_models(self) -> list[nn.Module]:
        own = [] if isinstance(self._ref, AdapterDisabled) else [self._ref]  # the LoRA reference is the model
        return own + super().auxiliary_models()  # type: ignore[misc]

    def teardown(self, model: nn.Module, result: Any) -> None:
        self.__dict__.pop("_ref", None)
        super().teardown(model, result)  # type: ignore[misc]
