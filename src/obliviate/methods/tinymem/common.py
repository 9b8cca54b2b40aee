"""What the TinyMem train-time regularizers and fine-tuning methods share (Sakarvadia et al., 2024, spec 4-5).

Both run the one pre-training loop (:func:`obliviate.train.pretrain.pretrain`), never a loop of their own.

Data contract (documented in docs/methods.md):
- the pre-training recipe: ``data.recipe`` when ``data`` is a :class:`~obliviate.train.pretrain.PretrainedLMData`
  (the TinyMem suite passes its ``train`` config and row conventions); else the paper's recipe (AdamW lr 1e-3, wd 0.1,
  betas (0.9, 0.98), batch 128) with the rows as given. A method's own ``epochs`` / ``lr`` / ``batch_size`` override
  the recipe's where set.
- train-time methods retrain from scratch on ``data.extra["train"]`` (every row pre-training saw; the suite passes
  them) or, without it, on forget + retain.
- fine-tuning uses ``data.extra["clean"]`` (the clean versions of the artifacts; the suite passes them) or, without
  it, ``data.extra["alternate"]`` (a clean / alternate version of each forget row, what ``obliviate unlearn
  --forget`` builds from each record's "alternate" key), and/or ``data.retain`` (every clean training row).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from obliviate.config import to_dict
from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.losses.nll import IGNORE_INDEX
from obliviate.methods.base import method_seed
from obliviate.papers import TINYMEM
from obliviate.profiling import track
from obliviate.train.loop import seeded_rng
from obliviate.train.pretrain import PretrainRecipe, TrainConfig, pretrain
from obliviate.train.regularizers import RegularizerConfig
from obliviate.types import Paper, UnlearnResult


def check_common(epochs: int | None, lr: float | None, batch_size: int | None) -> None:
    if epochs is not None and epochs < 1:
        raise ObliviateError(f"method.epochs must be >= 1 (or null: the pre-training recipe's), got {epochs}")
    if lr is not None and not lr > 0:
        raise ObliviateError(f"method.lr must be > 0 (or null: the pre-training recipe's), got {lr}")
    if batch_size is not None and batch_size < 1:
        raise ObliviateError(f"method.batch_size must be >= 1 (or null: the pre-training recipe's), got {batch_size}")


def recipe_of(data: LMUnlearnData) -> PretrainRecipe | None:
    return getattr(data, "recipe", None)


def train_config(config: Any, recipe: PretrainRecipe | None, regularizer: RegularizerConfig) -> TrainConfig:
    """The recipe's (else the paper's) TrainConfig with the method's epochs / lr / batch_size and ``regularizer``."""
    base = recipe.train if recipe is not None else TrainConfig()
    own = {k: getattr(config, k) for k in ("epochs", "lr", "batch_size") if getattr(config, k) is not None}
    return dataclasses.replace(base, **own, regularizer=regularizer)


def concat_rows(splits: list[TokenData]) -> TokenData:
    """Row-wise union of splits, right-padded to the longest (pad: id 0, attention 0, label -100 -- never scored)."""
    T = max(s.input_ids.shape[1] for s in splits)

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, T - t.shape[1]), value=value)

    return TokenData(torch.cat([pad(s.input_ids, 0) for s in splits]),
                     torch.cat([pad(s.attention_mask, 0) for s in splits]),
                     torch.cat([pad(s.labels, IGNORE_INDEX) for s in splits]))


def check_lm_data(method: str, data: Any) -> LMUnlearnData:
    if not isinstance(data, LMUnlearnData):
        raise ObliviateError(f"{method} is an lm-family method: it takes LMUnlearnData, got {type(data).__name__}")
    return data


def fresh_like(model: nn.Module, seed: int) -> nn.Module:
    """A newly initialised model of ``model``'s architecture (a Hugging Face model, rebuilt from its config with
    torch seeded by ``seed``: the TinyMem suite builds its base model the same way, so the same seed gives the same
    initial weights), on ``model``'s device and dtype; the caller's RNG state is left as it was."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(type(model), "_from_config"):
        raise ObliviateError(f"a train-time method retrains the model from scratch and needs a Hugging Face "
                             f"PreTrainedModel to rebuild; got {type(model).__name__}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = type(model)._from_config(config, attn_implementation=getattr(config, "_attn_implementation", None))
    p = next(model.parameters())
    return fresh.to(device=p.device, dtype=p.dtype)


def result_of(model: nn.Module, stats: Any, cost: Any, info: dict[str, Any]) -> UnlearnResult:
    logs = [{"epoch": float(h["epoch"]), "loss": float(h["train_loss"])} for h in stats.history]
    return UnlearnResult(model=model, logs=logs, info={**info, "epochs_run": stats.epochs_run,
                                                       "final_loss": stats.final_loss, "tokens": stats.tokens},
                         wall_s=cost.wall_s, peak_rss_mb=cost.peak_rss_mb)


@dataclass(frozen=True)
class FinetuneConfig:
    """Spec 4: 5 more epochs with the pre-training optimizer (AdamW lr 1e-3, wd 0.1, betas (0.9, 0.98), batch 128).
    ``lr`` / ``batch_size``: null = the pre-training recipe's. ``optimizer_state``: a pre-training checkpoint
    directory (``.../checkpoints/epoch_XXXXXX``) or its ``optimizer.safetensors``, to continue the AdamW moments as
    the reference does; null = a fresh AdamW state (the trained model's optimizer state does not travel with it).
    ``seed``: null = the run's (batch order)."""

    epochs: int = 5
    lr: float | None = None
    batch_size: int | None = None
    optimizer_state: str | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        check_common(self.epochs, self.lr, self.batch_size)


def check_checkpoint_weights(model: nn.Module, optimizer_state: str) -> None:
    """Adam moments belong to the weights they were accumulated on: refuse a checkpoint of other weights."""
    from obliviate.io import load_tensors

    path = Path(optimizer_state)
    weights = (path if path.is_dir() else path.parent) / "model.safetensors"
    if not weights.is_file():
        return
    saved = load_tensors(weights)
    for k, v in model.state_dict().items():
        if k in saved and not torch.equal(saved[k], v.detach().to("cpu", saved[k].dtype)):
            raise ObliviateError(f"optimizer_state {optimizer_state!r}: the checkpoint's weights ({str(weights)!r}) "
                                 f"differ from the model's ({k}); give the checkpoint the model was saved from")


class TinyMemTrainMethod:
    """Shared class attributes of the six methods (lm family, TinyMem paper, config stored by ``__init__``)."""

    family: ClassVar[str] = "lm"
    kind: ClassVar[str] = "train_time"
    paper: ClassVar[Paper | None] = TINYMEM
    config_cls: ClassVar[type]
    needs_retain: ClassVar[bool] = False
    smoke_config: ClassVar[dict[str, Any]] = {}

    def __init__(self, config: Any = None) -> None:
        self.config = config if config is not None else self.config_cls()


class TrainTimeMethod(TinyMemTrainMethod):
    """Retrain a freshly initialised copy of the architecture on the training rows with a regularizer, through the
    pre-training loop, and copy the result into ``model`` (``result.model is model``). Parameters the caller froze
    keep the caller's values (they are frozen in the retrained copy too)."""

    lora_compatible: ClassVar[bool] = False  # it replaces every base weight, not an adapter
    # a few steps on forget + retain (the conformance fixture has no extra["train"])
    smoke_config: ClassVar[dict[str, Any]] = {"epochs": 1, "batch_size": 64, "lr": 1e-3}

    def regularizer(self) -> RegularizerConfig:
        raise NotImplementedError

    def unlearn(self, model: nn.Module, data: LMUnlearnData, ctx: RunContext | None = None) -> UnlearnResult:
        ctx = ctx or RunContext()
        name = type(self).__name__
        data = check_lm_data(name, data)
        if ctx.device is not None:
            model.to(ctx.device)
        seed = method_seed(self.config, ctx)
        recipe = recipe_of(data)
        cfg = train_config(self.config, recipe, self.regularizer())
        train = data.extra.get("train")
        rows = train if train is not None else concat_rows([data.forget, *([data.retain] if data.has_retain else [])])
        fresh = fresh_like(model, seed)
        given = dict(model.named_parameters())
        with torch.no_grad():
            for n, p in fresh.named_parameters():
                if n in given and not given[n].requires_grad:
                    p.copy_(given[n])
                    p.requires_grad_(False)
        # seeded: a model with dropout draws the same masks for the same seed; the caller's RNG is left as it was
        with track(name) as cost, seeded_rng(seed, next(fresh.parameters()).device):
            stats = pretrain(fresh, rows, cfg, seed, progress=ctx.progress, trim=recipe.trim() if recipe else None)
        with torch.no_grad():
            missing, unexpected = model.load_state_dict(fresh.state_dict(), strict=False)
        if unexpected or missing:
            raise ObliviateError(f"{name}: the retrained model does not fit the given one (missing {missing[:3]}, "
                                 f"unexpected {unexpected[:3]})")
        model.eval()
        info = {"seed": seed, "train_rows": len(rows), "rows": "extra['train']" if train is not None else
                "forget + retain", "recipe": "data.recipe" if recipe else "paper defaults",
                "regularizer": to_dict(cfg.regularizer), "epochs": cfg.epochs, "lr": cfg.lr,
                "batch_size": cfg.batch_size}
        return result_of(model, stats, cost, info)


class FinetuneMethod(TinyMemTrainMethod):
    """Continue training the trained model on clean data (``uses_clean``) and/or the clean training rows
    (``uses_retain``) through the pre-training loop, with the pre-training optimizer state when
    ``config.optimizer_state`` names it (else a fresh AdamW state)."""

    kind: ClassVar[str] = "finetune"
    config_cls: ClassVar[type] = FinetuneConfig
    uses_clean: ClassVar[bool] = False
    uses_retain: ClassVar[bool] = False
    smoke_config: ClassVar[dict[str, Any]] = {"epochs": 3, "lr": 3e-3, "batch_size": 8}

    def splits(self, data: LMUnlearnData) -> tuple[list[TokenData], list[str]]:
        name = type(self).__name__
        out, names = [], []
        if self.uses_clean:
            for key in ("clean", "alternate"):
                if key in data.extra:
                    out.append(data.extra[key])
                    names.append(f"extra['{key}']")
                    break
            else:
                raise ObliviateError(f"{name} fine-tunes on clean versions of the memorized rows: give them as "
                                     "LMUnlearnData.extra['clean'] (any clean rows) or extra['alternate'] (one per "
                                     "forget row; `obliviate unlearn --forget` builds it from each record's "
                                     "'alternate' key)")
        if self.uses_retain:
            if not data.has_retain:
                raise ObliviateError(f"{name} needs a non-empty retain set (the clean training rows)")
            out.append(data.retain)
            names.append("retain")
        return out, names

    def unlearn(self, model: nn.Module, data: LMUnlearnData, ctx: RunContext | None = None) -> UnlearnResult:
        ctx = ctx or RunContext()
        name = type(self).__name__
        data = check_lm_data(name, data)
        if ctx.device is not None:
            model.to(ctx.device)
        seed = method_seed(self.config, ctx)
        recipe = recipe_of(data)
        cfg = train_config(self.config, recipe, RegularizerConfig())
        splits, names = self.splits(data)
        if recipe is not None:
            splits = [recipe.rows(s) for s in splits]
        rows = splits[0] if len(splits) == 1 else concat_rows(splits)
        if self.config.optimizer_state is not None:
            check_checkpoint_weights(model, self.config.optimizer_state)
        with track(name) as cost, seeded_rng(seed, next(model.parameters()).device):
            stats = pretrain(model, rows, cfg, seed, progress=ctx.progress, trim=recipe.trim() if recipe else None,
                             optimizer_state=self.config.optimizer_state)
        info = {"seed": seed, "train_rows": len(rows), "rows": " + ".join(names),
                "recipe": "data.recipe" if recipe else "paper defaults", "epochs": cfg.epochs, "lr": cfg.lr,
                "batch_size": cfg.batch_size, "optimizer_state": self.config.optimizer_state or "fresh"}
        return result_of(model, stats, cost, info)
