"""Mean teacher (Klochkov, 2025, "A mean teacher algorithm for unlearning of language models", arXiv 2504.13388):
alpha * NLUL(forget) + beta * D(teacher || student) on retain rows (D = KL or QKL), optimised by
:class:`~obliviate.optim.mean_teacher.MeanTeacherSGD` -- clipped SGD with momentum, a proximal pull ``damp`` of the
student towards the teacher, and the teacher an EMA (``delta``) of the student. The teacher starts as the original
model; with delta = damp = 0 it stays the original and this is the paper's "NLUL-KL" baseline under clipped SGD.

Defaults: the paper's MT-NLUL News run (SGD lr 5e-4, momentum 0.95, clip 1.0, damp 5.0, delta 0.005, alpha 0.05,
beta 1.0, tol 0.02; spec section 2.4). Early stop as the paper: with ``stop_metric`` and ``stop_below`` the run
evaluates after every epoch (``RunContext.evaluate``), keeps the last model whose metric is still >= the threshold,
and stops once it falls below (the paper: VerbMem_f < 21.8 or KnowMem_f < 35.0 on MUSE News). Not yet: the paper's
gradient accumulation (4 x 10 micro-batches per step) -- one step per batch here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch, LMUnlearnData
from obliviate.lora import is_lora
from obliviate.methods.base import METHODS, LossMethod
from obliviate.methods.lm.nlul import NLULConfig, nlul_with_penalty
from obliviate.methods.lm.reference import adapter_copy, frozen_copy
from obliviate.optim.mean_teacher import MeanTeacherSGD
from obliviate.types import Paper, UnlearnResult


@dataclass(frozen=True)
class MeanTeacherConfig(NLULConfig):
    """The loss fields (alpha, beta, penalty, tol, threshold) as ``nlul``'s; ``optimizer``, ``weight_decay``,
    ``betas`` and ``grad_clip`` of the shared loop do not apply: the update is MeanTeacherSGD's (``lr``,
    ``momentum``, ``clip``, ``damp``, ``delta``)."""

    lr: float = 5e-4
    momentum: float = 0.95
    weight_decay: float = 0.0
    clip: float | None = 1.0
    damp: float = 5.0
    delta: float = 0.005

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.momentum < 1 or self.damp < 0 or not 0 <= self.delta <= 1:
            raise ObliviateError(f"method.momentum={self.momentum} must be in [0, 1), damp={self.damp} >= 0, "
                                 f"delta={self.delta} in [0, 1]")
        if self.clip is not None and self.clip <= 0:
            raise ObliviateError(f"method.clip must be > 0 or null, got {self.clip}")
        if self.grad_clip is not None:
            raise ObliviateError("method.grad_clip does not apply to the mean teacher: its clipping is method.clip")


TEACHER_ADAPTER = "mean_teacher"


@METHODS.register("mean_teacher")
class MeanTeacher(LossMethod):
    config_cls = MeanTeacherConfig
    paper = Paper("A mean teacher algorithm for unlearning of language models", "2504.13388", 2025, "Klochkov")
    needs_retain = True
    smoke_config: ClassVar[dict[str, Any]] = {"epochs": 5, "lr": 0.05, "batch_size": 8, "alpha": 1.0}

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        return nlul_with_penalty(model, self._teacher, batch, self.config)

    def setup(self, model: nn.Module, data: LMUnlearnData, seed: int) -> list[nn.Parameter]:
        # the teacher starts as the original; the optimizer moves it (EMA of the student). Under LoRA it is a second
        # adapter on the same base weights (no second copy of the model); otherwise a frozen deep copy.
        # Teacher parameters are paired with the student's by name when the optimizer is made (after FSDP, if any,
        # has replaced the parameter objects).
        if is_lora(model):
            self._teacher, self._twins = adapter_copy(model, TEACHER_ADAPTER)
            self._teacher_params = model
        else:
            self._teacher = self._teacher_params = frozen_copy(model)
            self._twins = {n: n for n, _ in model.named_parameters()}
        return super().setup(model, data, seed)

    def auxiliary_models(self) -> list[nn.Module]:
        return [] if self._teacher_params is not self._teacher else [self._teacher]

    def optimizer(self, model: nn.Module, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        c = self.config
        names = {id(p): n for n, p in model.named_parameters()}
        teacher = dict(self._teacher_params.named_parameters())
        self._opt = MeanTeacherSGD(params, [teacher[self._twins[names[id(p)]]] for p in params], lr=c.lr,
                                   momentum=c.momentum, clip=c.clip, damp=c.damp, delta=c.delta)
        return self._opt

    def teardown(self, model: nn.Module, result: UnlearnResult | None) -> None:
        if result is not None and "_opt" in self.__dict__:
            result.info["last_clip"] = self._opt.last_clip
        if is_lora(model) and TEACHER_ADAPTER in getattr(model, "peft_config", {}):
            model.delete_adapter(TEACHER_ADAPTER)  # the saved adapter is the student's only
        for name in ("_teacher", "_teacher_params", "_twins", "_opt"):
            self.__dict__.pop(name, None)
