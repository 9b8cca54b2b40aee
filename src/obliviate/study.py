"""The two units of work every command is made of, for any suite: train a base model for one seed (and measure it),
and run one method configuration on it (and measure the result). ``obliviate train/unlearn/demo`` call them in
this process; ``obliviate bench`` calls them as jobs on an executor. Each returns a JSON-ready record."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from obliviate.config import to_dict
from obliviate.context import RunContext
from obliviate.methods import build_method
from obliviate.profiling import track
from obliviate.suites.base import Evaluation


def train_base(suite: Any, cfg: Any, seed: int, device: Any, out_dir: Path | None = None, fresh: bool = False,
               progress: bool = False) -> tuple[Any, Any, dict[str, Any]]:
    """Build the data and train the model to edit for ``seed``; evaluate it ("before"). -> (model, data, record)."""
    with track("generate_data") as data_cost:
        data = suite.build_data(cfg, seed)
    model = suite.new_model(cfg, seed, device)
    with track("train") as train_cost:
        info = suite.train(model, data, cfg, seed, out_dir, fresh, progress)
    with track("eval") as eval_cost:
        before = suite.evaluate(model, data, cfg)
    record = {
        "seed": seed,
        "train": {**info, "cost": train_cost.to_dict()},
        "before": before.to_dict(),
        "data_hash": suite.data_hash(data),
        "model_hash": suite.model_hash(model),
        "cost": {"generate_data": data_cost.to_dict(), "train": train_cost.to_dict(), "eval": eval_cost.to_dict()},
    }
    return model, data, record


def run_trial(suite: Any, cfg: Any, data: Any, model: Any, before: dict[str, Any], method: str,
              params: dict[str, Any], seed: int, device: Any, progress: bool = False,
              copy_model: bool = True) -> tuple[Any, dict[str, Any]]:
    """Unlearn with ``method`` at ``params`` (the run seed fills an unset method seed) and evaluate the result.

    ``before`` is the base model's stored evaluation ({"metrics", "scalars"}). -> (edited model, record)."""
    m = build_method(method, params, run_seed=seed)
    edited = copy.deepcopy(model) if copy_model else model
    udata = suite.unlearn_data(data, before["metrics"], cfg)
    epoch_metrics = getattr(suite, "epoch_metrics", None)  # optional: the suite's metrics after every epoch
    if not getattr(getattr(cfg, "eval", None), "trajectory", True):  # the suite's ``eval.trajectory: false``
        epoch_metrics = None
    evaluate = None if epoch_metrics is None else (lambda mod: epoch_metrics(mod, data, cfg))
    with track(method) as cost:
        result = m.unlearn(edited, udata, RunContext(seed=seed, device=device, progress=progress, evaluate=evaluate))
    with track(f"eval_{method}") as eval_cost:
        after: Evaluation = suite.evaluate(edited, data, cfg)
    record = {
        "method": method,
        "params": to_dict(m.config),
        "paper": to_dict(m.paper) if m.paper else None,
        "forget_rows": len(udata.forget),
        "scalars": after.scalars,
        "metrics": after.metrics,
        "score": suite.score(before["scalars"], after.scalars),
        "info": result.info,
        "logs": with_trajectory(result.logs, result.info.get("trajectory")),
        "cost": {**cost.to_dict(), "eval": eval_cost.to_dict()},
        "model_hash": suite.model_hash(edited),
    }
    return edited, record


def with_trajectory(logs: list[dict[str, float]], trajectory: list[dict[str, float]] | None) -> list[dict[str, float]]:
    """Epoch logs with the metrics evaluated after each epoch merged in (epoch e's evaluation into log e; a name the
    training log already has keeps the training value); the evaluation before the first epoch stays in
    ``info["trajectory"]``."""
    if not trajectory:
        return logs
    after = {int(t["epoch"]): t for t in trajectory}
    return [{**{k: v for k, v in after.get(int(entry.get("epoch", -1)), {}).items() if k != "epoch"}, **entry}
            for entry in logs]
