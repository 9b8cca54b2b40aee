"""The loop's stop rule: keep the last model whose metric is still above a threshold (a collapse guard on a utility
metric, or a paper's early stop on a forgetting metric)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from obliviate.errors import ObliviateError


class KeepAboveThreshold:
    """The stop rule "keep the last model whose metric is still >= threshold; stop once it falls below", evaluated
    at the start of every epoch (= after the previous one) and once more at the end (:meth:`finish`). Used as
    ``run_epochs(before_epoch=...)``. The state kept is a copy of ``model.state_dict()``."""

    def __init__(self, model: nn.Module, evaluate: Callable[[nn.Module], dict[str, float]], metric: str | None,
                 threshold: float) -> None:
        self.model, self.evaluate, self.metric, self.threshold = model, evaluate, metric, threshold
        self.kept_epoch: int | None = None
        self.kept_value: float | None = None
        self.stopped_at: int | None = None
        self._state: dict[str, Tensor] | None = None
        self.trace: list[dict[str, float]] = []
        self.trajectory: list[dict[str, float]] = []  # every evaluated metric, before the first epoch and after each

    def __call__(self, epoch: int) -> bool:
        if self.stopped_at is not None:
            return False
        scores = self.evaluate(self.model)
        self.trajectory.append({"epoch": float(epoch), **{k: float(v) for k, v in scores.items()}})
        if self.metric is None:  # no stop rule: the evaluations are only recorded
            return True
        if self.metric not in scores:
            raise ObliviateError(f"stop_metric {self.metric!r} is not among the evaluated metrics "
                                 f"({', '.join(sorted(scores)) or 'none'})")
        value = float(scores[self.metric])
        self.trace.append({"epoch": float(epoch), self.metric: value})
        if value < self.threshold and self._state is not None:
            self.model.load_state_dict(self._state)
            self.stopped_at = epoch
            return False
        self._state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.kept_epoch, self.kept_value = epoch, value
        return True

    def finish(self, epochs_done: int) -> None:
        self(epochs_done)

    def state_dict(self) -> dict[str, Any]:
        return {"kept_epoch": self.kept_epoch, "kept_value": self.kept_value, "stopped_at": self.stopped_at,
                "trace": self.trace, "state": self._state, "trajectory": self.trajectory}

    def load_state_dict(self, st: dict[str, Any]) -> None:
        self.kept_epoch, self.kept_value, self.stopped_at = st["kept_epoch"], st["kept_value"], st["stopped_at"]
        self.trace, self._state = list(st["trace"]), st["state"]
        self.trajectory = list(st.get("trajectory", []))

    def info(self) -> dict[str, Any]:
        if self.metric is None:
            return {"trajectory": self.trajectory}
        return {"stop_metric": self.metric, "stop_below": self.threshold, "kept_epoch": self.kept_epoch,
                "kept_value": self.kept_value, "stopped_at": self.stopped_at, "stop_trace": self.trace,
                "trajectory": self.trajectory}


def threshold_stop(model: nn.Module, cfg: Any, evaluate: Callable[[nn.Module], dict[str, float]] | None,
                   desc: str) -> KeepAboveThreshold | None:
    """The config's stop rule (``stop_metric`` / ``stop_below``); without one, a recorder of ``evaluate``'s metrics
    before the first epoch and after each (``info["trajectory"]``) when an evaluator is given, else None; an error
    when a stop rule has no evaluator."""
    if getattr(cfg, "stop_metric", None) is None:
        return None if evaluate is None else KeepAboveThreshold(model, evaluate, None, float("-inf"))
    if evaluate is None:
        raise ObliviateError(f"{desc}: method.stop_metric={cfg.stop_metric!r} needs an evaluation callback "
                             "(RunContext.evaluate) to measure it after each epoch")
    return KeepAboveThreshold(model, evaluate, cfg.stop_metric, float(cfg.stop_below))
