"""PDU -- primal-dual unlearning (Entesari et al., 2025, "Constrained Entropic Unlearning: A Primal-Dual Framework for
Large Language Models", arXiv 2506.05314), as open-unlearning's PDU trainer (the authors' own code; spec
``shared/specs/ou-extra-methods.md`` §1): minimise the logit-margin flattening loss on the forget set subject to
NLL(retain) <= eps, by descent on gamma * L_f + lambda * (L_r - eps) in the weights and projected ascent in lambda.

Defaults: open-unlearning's TOFU runs (community/methods/PDU/run.sh: lambda_0 = alpha = 100, eta = 5, 5 warm-up
epochs, per-micro-batch updates, gamma 1), its TOFU optimiser setting (AdamW lr 1e-5, weight decay 0.01, 10 epochs).
eps is mandatory there and tuned per model; here ``retain_loss_eps: null`` measures the starting model's retain NLL
in ``setup`` and uses (1 + ``retain_loss_tolerance``) times it (docs/methods.md).

The multiplier lambda is the method's state: it lives from ``setup`` on, is logged per epoch (``dual_lambda``: the
mean over the epoch's steps of the lambda each step used; ``result.info["dual_lambda_by_epoch"]``: its value at each
epoch's end) and round-trips through ``state_dict()`` / ``load_state_dict()`` for checkpoint and resume.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch, LMUnlearnData, TokenData, batch_of
from obliviate.losses.nll import mean_nll, shift_labels, token_nll
from obliviate.losses.pdu import (
    PDU_ALPHA,
    PDU_DUAL_STEP,
    PDU_GAMMA,
    PDU_WARMUP_EPOCHS,
    dual_update,
    pdu_forget_loss,
    pdu_loss,
)
from obliviate.methods.base import METHODS, LossMethod
from obliviate.train.loop import LoopConfig
from obliviate.types import Paper, UnlearnResult

DUAL_MODES = ("step", "epoch")


@dataclass(frozen=True)
class PDUConfig(LoopConfig):
    gamma: float = PDU_GAMMA  # fixed weight of the forget (margin) loss
    alpha: float = PDU_ALPHA  # lambda_0, the multiplier's starting value
    retain_loss_eps: float | None = None  # eps; null = (1 + retain_loss_tolerance) x the starting retain NLL
    retain_loss_tolerance: float = 0.1  # a in eps = (1 + a) L_r(start), used only when retain_loss_eps is null
    eps_rows: int = 256  # retain rows (a seeded sample) that measure the starting retain NLL
    primal_dual: bool = True  # False: lambda stays alpha (a fixed scalarisation)
    dual_step_size: float = PDU_DUAL_STEP  # eta
    dual_update_upon: Literal["step", "epoch"] = "step"  # every micro-batch, or once per epoch
    dual_warmup_epochs: int = PDU_WARMUP_EPOCHS  # epochs with lambda frozen at alpha
    faithful_mask: bool = True  # open-unlearning's unshifted answer mask (quirk Q1); False = the shifted mask

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gamma", "alpha", "retain_loss_tolerance", "dual_step_size"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ObliviateError(f"method.{name} must be a finite number >= 0, got {v!r}")
        eps = self.retain_loss_eps
        if eps is not None and not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
            raise ObliviateError(f"method.retain_loss_eps must be a finite number >= 0 (a retain NLL level) or null "
                                 f"(measured from the starting model), got {eps!r}")
        if self.eps_rows < 1:
            raise ObliviateError(f"method.eps_rows must be >= 1, got {self.eps_rows}")
        if self.dual_update_upon not in DUAL_MODES:
            raise ObliviateError(f"method.dual_update_upon must be one of {', '.join(DUAL_MODES)}, got "
                                 f"{self.dual_update_upon!r}")
        if self.dual_warmup_epochs < 0:
            raise ObliviateError(f"method.dual_warmup_epochs must be >= 0, got {self.dual_warmup_epochs}")
        if self.retain_batch_size == 0:
            raise ObliviateError("method.retain_batch_size must be > 0 for pdu (the retain NLL is its constraint)")


@dataclass
class DualState:
    """What changes during a PDU run (and what a checkpoint must keep)."""

    dual_lambda: float  # the multiplier the next step uses
    eps: float | None  # the constraint level in use (None: not measured yet)
    epochs_done: int = 0  # finished epochs (warm-up and epoch-mode updates count them)
    calls_in_epoch: int = 0  # micro-batches (loss calls) seen in the current epoch
    updates: int = 0  # dual updates made
    start_retain_nll: float | None = None  # the measured starting retain NLL (when eps came from it)
    lambda_by_epoch: list[float] = field(default_factory=list)  # lambda at the end of each finished epoch

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> DualState:
        names = {f.name for f in dataclasses.fields(cls)}
        missing = {"dual_lambda", "eps"} - set(state)
        unknown = set(state) - names
        if missing or unknown:
            raise ObliviateError(f"not a PDU state: missing {sorted(missing)}, unknown {sorted(unknown)} (valid keys: "
                                 f"{', '.join(sorted(names))})")
        return cls(**{**state, "lambda_by_epoch": list(state.get("lambda_by_epoch", []))})


@torch.no_grad()
def retain_nll(model: nn.Module, retain: TokenData, idx: Tensor, batch_size: int,
               per_batch: bool = False) -> float:
    """NLL of ``model`` (in eval mode; its mode is restored) on retain rows ``idx``: the mean over all scored tokens,
    or with ``per_batch`` the mean of the batches' token means (open-unlearning's epoch-end average)."""
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    try:
        sums, counts, means = 0.0, 0, []
        for s in range(0, len(idx), batch_size):
            b = batch_of(retain, idx[s:s + batch_size]).to(device)
            logits, labels = b.scored_logits(model)
            targets, mask = shift_labels(labels)
            nll = token_nll(logits[:, :-1], targets)
            total, n = float((nll * mask).sum()), int(mask.sum())
            sums, counts = sums + total, counts + n
            means.append(total / max(n, 1))
    finally:
        model.train(was)
    return sum(means) / max(len(means), 1) if per_batch else sums / max(counts, 1)


@METHODS.register("pdu")
class PDU(LossMethod):
    config_cls = PDUConfig
    paper = Paper("Constrained Entropic Unlearning: A Primal-Dual Framework for Large Language Models", "2506.05314",
                  2025, "Entesari, Hatami, Khaziev, Ramakrishna, Fazlyab")
    needs_retain = True
    # the smoke run is 5 epochs: one warm-up epoch lets lambda move in it
    smoke_config: ClassVar[dict[str, Any]] = {**LossMethod.smoke_config, "dual_warmup_epochs": 1}

    # --- state (checkpoint / resume) ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """The dual state (lambda, eps, micro-batches seen, ...): plain Python values. Before any run: the start."""
        st = self.__dict__.get("_dual") or self.__dict__.get("_loaded")
        if st is None:
            c = self.config
            st = DualState(float(c.alpha), None if c.retain_loss_eps is None else float(c.retain_loss_eps))
        return dataclasses.asdict(st)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`: during a run it takes effect at once; before one, ``setup`` uses it (and
        does not measure eps again)."""
        st = DualState.from_dict(state)
        if "_steps_per_epoch" in self.__dict__:
            self._dual = st
        else:
            self._loaded = st

    # --- life cycle -----------------------------------------------------------------------------------------------
    def setup(self, model: nn.Module, data: LMUnlearnData, seed: int) -> list[nn.Parameter]:
        c = self.config
        if data.retain is None or len(data.retain) == 0:
            raise ObliviateError("pdu needs a non-empty retain set (its constraint is the retain NLL)")
        self._retain = data.retain
        self._seed = seed
        self._n_forget = len(data.forget)
        loaded = self.__dict__.pop("_loaded", None)
        if loaded is not None and loaded.eps is not None:
            self._dual = loaded
        else:
            self._dual = self._start_state(model, data.retain, seed, loaded)
        self._steps_per_epoch = -(-len(data.forget) // c.batch_size)
        return super().setup(model, data, seed)

    def _start_state(self, model: nn.Module, retain: TokenData, seed: int, loaded: DualState | None) -> DualState:
        c = self.config
        st = loaded or DualState(float(c.alpha), None)
        if c.retain_loss_eps is not None:
            st.eps = float(c.retain_loss_eps)
            return st
        g = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(retain), generator=g)[:c.eps_rows]
        start = retain_nll(model, retain, idx, c.retain_batch_size)
        st.start_retain_nll = start
        st.eps = (1.0 + c.retain_loss_tolerance) * start
        return st

    def teardown(self, model: nn.Module, result: UnlearnResult | None) -> None:
        st: DualState = self._dual
        if st.calls_in_epoch > 0:  # the last epoch ended with the run: no later step saw its end
            st.lambda_by_epoch.append(st.dual_lambda)
            st.epochs_done += 1
            st.calls_in_epoch = 0
        if result is not None:
            result.info.update({"dual_lambda": st.dual_lambda, "dual_lambda_by_epoch": list(st.lambda_by_epoch),
                                "dual_updates": st.updates, "retain_loss_eps": st.eps,
                                "start_retain_nll": st.start_retain_nll})
        for name in ("_retain", "_seed", "_n_forget", "_steps_per_epoch", "_told_epochs"):
            self.__dict__.pop(name, None)  # the state stays: state_dict() after the run gives its end

    # --- epochs -------------------------------------------------------------------------------------------------
    def on_epoch_end(self, epoch: int, model: nn.Module) -> None:
        """Epoch ``epoch`` (1-based) is over. A loop that calls this tells the method its epochs; otherwise it counts
        micro-batches (ceil(forget rows / batch_size) per epoch: one process)."""
        self._told_epochs = True
        if epoch > self._dual.epochs_done:
            self._finish_epoch(model, epoch)

    def _finish_epoch(self, model: nn.Module, finished: int) -> None:
        """Record lambda at the end of epoch ``finished``; in epoch mode, once warm-up is over, update it from the
        retain NLL of the model now, in eval mode (its mode restored), on one seeded random retain row per forget row
        (what open-unlearning's forget-anchored loader holds), averaged over batches as open-unlearning."""
        c, st = self.config, self._dual
        st.lambda_by_epoch.append(st.dual_lambda)
        st.epochs_done, st.calls_in_epoch = finished, 0
        if c.primal_dual and c.dual_update_upon == "epoch" and finished >= c.dual_warmup_epochs:
            g = torch.Generator().manual_seed(self._seed + 104729 * finished)
            idx = torch.randint(len(self._retain), (self._n_forget,), generator=g)
            mean = retain_nll(model, self._retain, idx, c.retain_batch_size, per_batch=True)
            st.dual_lambda = dual_update(st.dual_lambda, mean, st.eps, c.dual_step_size)
            st.updates += 1

    # --- the loss -----------------------------------------------------------------------------------------------
    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Any]]:
        c, st = self.config, self._dual
        if st.calls_in_epoch >= self._steps_per_epoch and not self.__dict__.get("_told_epochs"):
            self._finish_epoch(model, st.epochs_done + 1)  # the first micro-batch of the next epoch
        lam = st.dual_lambda
        forget = pdu_forget_loss(*batch.forget.scored_logits(model), c.faithful_mask)
        nll_r = mean_nll(*batch.retain.scored_logits(model))
        loss = pdu_loss(forget, nll_r, lam, st.eps, c.gamma)
        if c.primal_dual and c.dual_update_upon == "step" and st.epochs_done >= c.dual_warmup_epochs:
            # per micro-batch, after the loss was built with the old lambda (simultaneous descent-ascent, Q2)
            st.dual_lambda = dual_update(lam, float(nll_r.detach()), st.eps, c.dual_step_size)
            st.updates += 1
        st.calls_in_epoch += 1
        return loss, {"pdu_forget": forget.detach(), "retain_nll": nll_r.detach(), "dual_lambda": lam}
