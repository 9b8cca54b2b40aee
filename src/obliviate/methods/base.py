"""The unlearning-method contract and the method registry.

A method declares its ``family`` (what data and model it takes: "lm", "classifier", "topic") and ``kind``
("post_hoc" edits a trained model; "finetune", "train_time" and "certified" are the other kinds), has a frozen
``config_cls``, ``paper`` metadata, an ``__init__(config)`` that only stores, and
``unlearn(model, data, ctx) -> UnlearnResult``. LM methods that are a per-step loss subclass :class:`LossMethod`
and write ``loss`` (plus ``setup``/``teardown`` when they change what trains: masks, hooks, adapters).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from obliviate.config import from_dict
from obliviate.context import RunContext
from obliviate.errors import ObliviateError
from obliviate.families.lm import ForgetRetainBatch, LMUnlearnData
from obliviate.registry import Registry
from obliviate.train.checkpoint import Checkpointing, fingerprint
from obliviate.train.distributed import World, broadcast_parameters, current_world, shard_model
from obliviate.train.loop import LoopConfig, run_unlearning
from obliviate.types import Paper, UnlearnResult

Kind = Literal["post_hoc", "finetune", "train_time", "certified"]


@runtime_checkable
class UnlearningMethod(Protocol):
    family: ClassVar[str]
    kind: ClassVar[str]
    config_cls: ClassVar[type]
    paper: ClassVar[Paper | None]
    config: Any

    def unlearn(self, model: Any, data: Any, ctx: RunContext | None = None) -> UnlearnResult: ...


METHODS: Registry[type] = Registry("method")


def method_seed(config: Any, ctx: RunContext) -> int:
    """The config's own ``seed`` when set, else the run's (the documented seed hierarchy)."""
    seed = getattr(config, "seed", None)
    return ctx.seed if seed is None else int(seed)


class LossMethod:
    """Base for LM methods that are a per-step loss run through the one loop (``obliviate.train.loop``).

    ``setup`` returns the parameters to train (default: those with ``requires_grad``) and may change the model
    (attach masks, hooks); ``teardown`` undoes or bakes that, and runs even when the loop fails."""

    family: ClassVar[str] = "lm"
    kind: ClassVar[str] = "post_hoc"
    config_cls: ClassVar[type[LoopConfig]] = LoopConfig
    paper: ClassVar[Paper | None] = None
    needs_retain: ClassVar[bool] = False
    fsdp_compatible: ClassVar[bool] = True  # False: the method keeps parameter objects that FSDP would replace
    # config overrides for a few-epoch smoke run on the family's tiny fixture (the conformance suite uses them)
    smoke_config: ClassVar[dict[str, Any]] = {"epochs": 5, "lr": 3e-3, "batch_size": 8}

    def __init__(self, config: LoopConfig | None = None) -> None:
        self.config = config if config is not None else self.config_cls()

    def setup(self, model: nn.Module, data: LMUnlearnData, seed: int) -> list[nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def teardown(self, model: nn.Module, result: UnlearnResult | None) -> None:
        """Called after the loop (``result`` None when it raised)."""

    def loss(self, model: nn.Module, batch: ForgetRetainBatch) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def auxiliary_models(self) -> list[nn.Module]:
        """Models the method holds besides the one it trains (frozen copies of the original, a teacher): under FSDP
        they are sharded too."""
        return []

    def _shard(self, model: nn.Module, params: list[nn.Parameter], world: Any) -> list[nn.Parameter]:
        """FSDP: shard the model and the method's other models after ``setup``; the trained parameters are new
        objects afterwards, found again by name."""
        if not self.fsdp_compatible:
            raise ObliviateError(f"{type(self).__name__} edits parameters it keeps by reference (masks), which FSDP "
                                 "replaces: run it data parallel (MULTI_GPU) or on one process")
        names = {id(p): n for n, p in model.named_parameters()}
        missing = [p for p in params if id(p) not in names]
        if missing:
            raise ObliviateError(f"{type(self).__name__} trains parameters outside the model; FSDP cannot shard them")
        wanted = [names[id(p)] for p in params]
        shard_model(model, world.fsdp)
        for aux in self.auxiliary_models():
            shard_model(aux, world.fsdp, "reference model")
        named = dict(model.named_parameters())
        return [named[n] for n in wanted]

    def optimizer(self, model: nn.Module, params: list[nn.Parameter]) -> torch.optim.Optimizer | None:
        """The optimizer, when it is part of the method (the mean teacher); None = the config's (AdamW / SGD)."""
        return None

    def unlearn(self, model: nn.Module, data: LMUnlearnData, ctx: RunContext | None = None) -> UnlearnResult:
        ctx = ctx or RunContext()
        if not isinstance(data, LMUnlearnData):
            raise ObliviateError(f"{type(self).__name__} is an lm-family method: it takes LMUnlearnData, "
                                 f"got {type(data).__name__}")
        if self.needs_retain and not data.has_retain:
            raise ObliviateError(f"{type(self).__name__} needs a non-empty retain set")
        world = current_world()
        if ctx.device is not None and not world.sharded:  # sharded: the shards move after sharding (below)
            model.to(ctx.device)
        seed = method_seed(self.config, ctx)
        checkpointing = None
        if ctx.checkpoint_dir is not None:
            checkpointing = Checkpointing(Path(ctx.checkpoint_dir), run_fingerprint(self, model, data, seed, world),
                                          every=ctx.checkpoint_every, resume=ctx.resume)
        elif ctx.resume:
            raise ObliviateError("resume needs a checkpoint directory (RunContext.checkpoint_dir / --checkpoint-dir)")
        broadcast_parameters(model, world)
        params = self.setup(model, data, seed)
        if world.sharded:
            params = self._shard(model, params, world)
            if ctx.device is not None:
                for m in [model, *self.auxiliary_models()]:
                    m.to(ctx.device)
        result = None
        try:
            result = run_unlearning(model, params, self.loss, data, self.config, seed, use_retain=self.needs_retain,
                                    progress=ctx.progress, desc=type(self).__name__,
                                    optimizer=self.optimizer(model, params), evaluate=ctx.evaluate,
                                    checkpointing=checkpointing, state=self, world=world)
        finally:
            self.teardown(model, result)
        return result


def run_fingerprint(method: Any, model: nn.Module, data: LMUnlearnData, seed: int, world: World) -> str:
    """What a checkpoint of this run must match to be resumed (see :mod:`obliviate.train.checkpoint`): the method,
    its config except ``epochs``, the seed, the data, the starting model and the number of processes."""
    from obliviate.config import to_dict
    from obliviate.io import hash_model, hash_tensors

    splits = {"forget": data.forget, "retain": data.retain, **data.extra}
    tensors = [(f"{name}.{k}", getattr(split, k)) for name, split in sorted(splits.items()) if split is not None
               for k in ("input_ids", "attention_mask", "labels")]
    config = {k: v for k, v in to_dict(method.config).items() if k != "epochs"}
    return fingerprint({"method": type(method).__name__, "config": config, "seed": seed,
                        "data": hash_tensors(tensors), "model": hash_model(model), "processes": world.size})


def build_method(name: str, params: dict[str, Any] | None = None, run_seed: int | None = None) -> UnlearningMethod:
    """Look up ``name`` in METHODS and build it from a plain dict of config values (validated). With ``run_seed``,
    a config with a ``seed`` field that ``params`` leaves unset gets the run's seed (recorded in its config)."""
    cls = METHODS.get(name)
    params = dict(params or {})
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    if run_seed is not None and "seed" in fields and params.get("seed") is None:
        params["seed"] = run_seed
    return cls(from_dict(cls.config_cls, params, path=f"methods.{name}"))


def check_family(name: str, family: str) -> None:
    """A method of another family is a clear error, not a crash deep inside its loop."""
    cls = METHODS.get(name)
    if cls.family != family:
        same = [n for n in METHODS.names() if METHODS.get(n).family == family]
        raise ObliviateError(f"method {name!r} is for the {cls.family} family; this suite takes {family} methods "
                             f"(valid: {', '.join(same) or 'none'})")
