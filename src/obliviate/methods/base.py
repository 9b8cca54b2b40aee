"""The unlearning-method contract and the method registry.

A method has a frozen ``config_cls``, ``paper`` metadata, an ``__init__(config)`` that only stores, and
``unlearn(model, data) -> UnlearnResult``. Per-step-loss methods subclass :class:`LossMethod` and only write
``loss``; the shared loop (``train/loop.py``) does the rest. Methods that own their loop implement ``unlearn``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.registry import Registry
from obliviate.types import ForgetRetainBatch, Paper, UnlearnData, UnlearnResult


@runtime_checkable
class UnlearningMethod(Protocol):
    config_cls: ClassVar[type]
    paper: ClassVar[Paper | None]
    config: Any

    def unlearn(self, model: nn.Module, data: UnlearnData) -> UnlearnResult: ...


METHODS: Registry[type] = Registry("method")


@dataclass(frozen=True)
class LoopConfig:
    """Fields every loop-driven method shares. One epoch = one pass over the forget set in ``batch_size`` rows;
    each step also draws ``retain_batch_size`` retain rows (0 = none) from a reshuffled stream of the retain set."""

    epochs: int = 10
    batch_size: int = 32
    retain_batch_size: int = 32
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.01
    momentum: float = 0.9  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    grad_clip: float | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"method.{name} must be > 0, got {getattr(self, name)}")
        if self.retain_batch_size < 0:
            raise ObliviateError(f"method.retain_batch_size must be >= 0, got {self.retain_batch_size}")
        if self.lr <= 0:
            raise ObliviateError(f"method.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ObliviateError(f"method.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ObliviateError(f"method.grad_clip must be > 0 or null, got {self.grad_clip}")


class LossMethod:
    """Base for methods that are a per-step loss run through the shared loop (``obliviate.train.loop``)."""

    config_cls: ClassVar[type[LoopConfig]] = LoopConfig
    paper: ClassVar[Paper | None] = None
    needs_retain: ClassVar[bool] = False

    def __init__(self, config: LoopConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def trainable_parameters(self, model: nn.Module) -> Iterable[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def unlearn(self, model: nn.Module, data: UnlearnData) -> UnlearnResult:
        from obliviate.train.loop import run_loop

        if self.needs_retain and data.retain.shape[0] == 0:
            raise ObliviateError(f"{type(self).__name__} needs a non-empty retain set")
        return run_loop(model, list(self.trainable_parameters(model)), self.loss, data, self.config,
                        use_retain=self.needs_retain)


def build_method(name: str, params: dict[str, Any] | None = None) -> UnlearningMethod:
    """Look up ``name`` in METHODS and build it from a plain dict of config values (validated)."""
    from obliviate.config import from_dict

    cls = METHODS.get(name)
    return cls(from_dict(cls.config_cls, params or {}, path=f"methods.{name}"))
