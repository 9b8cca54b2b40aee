"""The TinyMem suite (Sakarvadia et al., 2024): data -> model -> memorization -> unlearning -> metrics.

Splits: forget = artifacts the model currently memorizes (spec 1.5, ``mem_seq``); retain = all clean training rows
(main + auxiliary); tests = held-out clean rows per distribution. Metrics: % memorized / % correct per duplication
group, teacher-forced accuracy per test distribution, and the paper's selection score.
"""

from __future__ import annotations

import copy
import itertools
import sys
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from obliviate.config import from_dict
from obliviate.data.tinymem import PAD, TinyMemData, TinyMemDataConfig, generate
from obliviate.errors import ObliviateError
from obliviate.io import hash_model
from obliviate.methods import METHODS, build_method
from obliviate.metrics.lm_quality import accuracy
from obliviate.metrics.memorization import MemorizationScores, percent_memorized
from obliviate.metrics.selection import is_better, selection_score
from obliviate.models.gpt2 import TinyMemModelConfig, build_model
from obliviate.profiling import track
from obliviate.suites.base import SUITES
from obliviate.train.pretrain import TrainConfig
from obliviate.types import UnlearnData

VERSION = "1.0"
SUITES.register("tinymem")(sys.modules[__name__])


@dataclass(frozen=True)
class EvalConfig:
    k: int = 50  # continuation tokens compared (prompt length comes from the data: 50 for noise)
    batch_size: int = 256
    forget: Literal["memorized", "all"] = "memorized"  # forget set: artifacts memorized before unlearning, or all

    def __post_init__(self) -> None:
        if self.k <= 0 or self.batch_size <= 0:
            raise ObliviateError(f"eval.k and eval.batch_size must be > 0, got {self.k}, {self.batch_size}")


@dataclass(frozen=True)
class TinyMemConfig:
    """A whole TinyMem run. ``methods``: name -> config values; ``selection``: name -> {field: [grid values]}."""

    seed: int = 0
    threads: int = 0  # torch intra-op threads (0 = torch's default)
    device: str = "auto"  # "auto" (cuda if available, else cpu), "cpu", "cuda", "cuda:1", "mps"
    data: TinyMemDataConfig = field(default_factory=TinyMemDataConfig)
    model: TinyMemModelConfig = field(default_factory=TinyMemModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    methods: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection: dict[str, dict[str, list[Any]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        resolve_device(self.device)  # validates
        if self.model.n_positions < self.data.max_ctx:
            raise ObliviateError(f"model.n_positions ({self.model.n_positions}) < data.max_ctx ({self.data.max_ctx})")
        for name, params in self.methods.items():
            cls = METHODS.get(name)  # did-you-mean on unknown names
            from_dict(cls.config_cls, params, path=f"methods.{name}")
        for name, grid in self.selection.items():
            cls = METHODS.get(name)
            for key, values in grid.items():
                if not isinstance(values, list) or not values:
                    raise ObliviateError(f"selection.{name}.{key} must be a non-empty list, got {values!r}")
                for v in values:
                    from_dict(cls.config_cls, {**self.methods.get(name, {}), key: v}, path=f"selection.{name}")


def build_data(cfg: TinyMemConfig) -> TinyMemData:
    return generate(cfg.data)


def resolve_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; anything else must be a device torch understands."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise ObliviateError(f"unknown device {name!r} (valid: auto, cpu, cuda, cuda:N, mps)") from None


def new_model(cfg: TinyMemConfig) -> nn.Module:
    return build_model(cfg.model, seed=cfg.seed).to(resolve_device(cfg.device))


@dataclass
class Evaluation:
    metrics: dict[str, Any]  # JSON-ready
    scores: MemorizationScores

    @property
    def memorized(self) -> float:
        return float(self.metrics["percent_memorized"]["value"])

    @property
    def mean_accuracy(self) -> float:
        return float(self.metrics["accuracy"]["mean"])


def evaluate(model: nn.Module, data: TinyMemData, cfg: TinyMemConfig) -> Evaluation:
    """% memorized (overall and per duplication group), % correct, accuracy per test distribution."""
    mem, cor, scores = percent_memorized(model, data.artifacts, data.artifacts_clean, data.prompt_len,
                                         data.artifact_group, PAD, data.group_names, k=cfg.eval.k,
                                         batch_size=cfg.eval.batch_size)
    accs = {name: accuracy(model, rows, PAD, batch_size=cfg.eval.batch_size) for name, rows in data.tests.items()}
    metrics = {
        "percent_memorized": {"value": mem.value, "by_group": mem.breakdown, "per_item": mem.per_item,
                              "eligible": int(scores.eligible.sum())},
        "percent_correct": {"value": cor.value, "by_group": cor.breakdown},
        "accuracy": {
            "by_test": {k: v.value for k, v in accs.items()},
            "by_test_non_pad": {k: v.breakdown["non_pad"] for k, v in accs.items()},
            "mean": sum(v.value for v in accs.values()) / max(len(accs), 1),
        },
    }
    return Evaluation(metrics, scores)


def unlearn_data(data: TinyMemData, before: Evaluation, cfg: TinyMemConfig) -> UnlearnData:
    """Forget = artifacts memorized before unlearning (or all eligible artifacts); retain = clean training rows."""
    s = before.scores
    sel = s.eligible & s.memorized if cfg.eval.forget == "memorized" else s.eligible
    return UnlearnData(forget=data.artifacts[sel], retain=data.clean_train, pad_id=PAD,
                       prompt_len=data.prompt_len[sel])


def run_method(model: nn.Module, data: TinyMemData, cfg: TinyMemConfig, before: Evaluation, name: str,
               params: dict[str, Any]) -> tuple[nn.Module, dict[str, Any]]:
    """Unlearn with ``name`` on a copy of ``model``; returns (edited model, JSON record with metrics and cost)."""
    method = build_method(name, params)
    edited = copy.deepcopy(model)
    udata = unlearn_data(data, before, cfg)
    with track(name) as cost:
        result = method.unlearn(edited, udata)
    with track(f"eval_{name}") as eval_cost:
        after = evaluate(edited, data, cfg)
    score = selection_score(before.memorized, after.memorized, before.mean_accuracy, after.mean_accuracy)
    from obliviate.config import to_dict

    record = {
        "method": name,
        "params": to_dict(method.config),
        "paper": to_dict(method.paper) if method.paper else None,
        "forget_rows": int(udata.forget.shape[0]),
        "after": after.metrics,
        "selection_score": score,
        "info": result.info,
        "logs": result.logs,
        "cost": {"unlearn": cost.to_dict(), "eval": eval_cost.to_dict()},
        "model_hash": hash_model(edited),
    }
    return edited, record


def grid_points(grid: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(grid)
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def select(model: nn.Module, data: TinyMemData, cfg: TinyMemConfig, before: Evaluation, name: str,
           progress: Any = None) -> tuple[nn.Module, dict[str, Any]]:
    """Run every grid point of ``cfg.selection[name]`` and keep the one with the lowest selection score (paper)."""
    base = dict(cfg.methods.get(name, {}))
    points = grid_points(cfg.selection.get(name, {})) or [{}]
    best_model, best, trials = None, None, []
    for point in points:
        edited, rec = run_method(model, data, cfg, before, name, {**base, **point})
        trials.append({"point": point, "selection_score": rec["selection_score"],
                       "percent_memorized": rec["after"]["percent_memorized"]["value"],
                       "mean_accuracy": rec["after"]["accuracy"]["mean"],
                       "wall_s": rec["cost"]["unlearn"]["wall_s"]})
        if progress is not None:
            progress(name, point, rec)
        if best is None or is_better(rec["selection_score"], best["selection_score"]):
            best_model, best = edited, rec
    assert best is not None and best_model is not None  # points is never empty
    best["selection"] = {"grid": cfg.selection.get(name, {}), "trials": trials,
                         "rule": "min (mem_after-mem_before)/mem_before - (acc_after-acc_before)/acc_before"}
    return best_model, best


def set_threads(cfg: TinyMemConfig) -> None:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
