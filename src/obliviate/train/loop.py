"""The one training loop: batches -> loss -> backward -> (clip) -> optimizer step, epoch after epoch.

Pre-training (``train/pretrain.py``) and unlearning (:func:`run_unlearning`) both run :func:`run_epochs`; they
differ only in the batches they feed it and the loss. Plain PyTorch, readable top to bottom. Deterministic: batch
order is a pure function of (seed, epoch). Per-step statistics stay on the device and are read once per epoch
(no host sync per step).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, TypeVar

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData
from obliviate.profiling import track
from obliviate.train.batching import RetainStream, forget_retain_batches, group_batches
from obliviate.train.checkpoint import Checkpointing, restore, snapshot
from obliviate.train.checkpoint_shards import load_sharded, save_sharded
from obliviate.train.distributed import (
    World,
    all_reduce_gradients,
    all_reduce_min,
    all_reduce_sum,
    barrier,
    broadcast_object,
    current_world,
    dist_backend_is_nccl,
    local_device,
)
from obliviate.train.stop import threshold_stop
from obliviate.types import UnlearnResult

B = TypeVar("B")
StepLoss = Callable[[nn.Module, Any], tuple[Tensor, dict[str, Tensor]]]


@dataclass(frozen=True)
class OptimConfig:
    """Optimizer fields shared by every loop-driven method and by pre-training."""

    section: ClassVar[str] = "method"  # names the config section in error messages
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = 1e-5
    weight_decay: float = 0.01
    momentum: float = 0.9  # SGD only
    betas: tuple[float, float] = (0.9, 0.999)  # AdamW only
    grad_clip: float | None = None

    def __post_init__(self) -> None:
        s = self.section
        if self.lr <= 0:
            raise ObliviateError(f"{s}.lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ObliviateError(f"{s}.weight_decay must be >= 0, got {self.weight_decay}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ObliviateError(f"{s}.grad_clip must be > 0 or null, got {self.grad_clip}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ObliviateError(f"{s}.betas must be in [0, 1), got {self.betas}")


@dataclass(frozen=True)
class LoopConfig(OptimConfig):
    """One epoch = one pass over the forget set in ``batch_size`` rows; each step also draws ``retain_batch_size``
    retain rows (0 = none) from a reshuffled stream of the retain set. ``seed: null`` = the run's seed."""

    epochs: int = 10
    batch_size: int = 32
    retain_batch_size: int = 32
    seed: int | None = None
    grad_accum: int = 1  # batches per optimizer step
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # autocast of the forward pass (fp16: CUDA, scaled)
    # keep the last model whose metric (RunContext.evaluate, after every epoch) is >= stop_below; stop once it falls
    # below -- a collapse guard on a utility metric, or a paper's early stop on a forgetting metric
    stop_metric: str | None = None
    stop_below: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "batch_size", "grad_accum"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"method.{name} must be > 0, got {getattr(self, name)}")
        if self.retain_batch_size < 0:
            raise ObliviateError(f"method.retain_batch_size must be >= 0, got {self.retain_batch_size}")
        if (self.stop_metric is None) != (self.stop_below is None):
            raise ObliviateError("method.stop_metric and method.stop_below go together (both set or both null)")


def make_optimizer(params: Iterable[nn.Parameter], cfg: OptimConfig, fused: bool = False) -> torch.optim.Optimizer:
    """The config's optimizer. ``fused``: torch's fused AdamW kernel where it applies (CPU / CUDA float parameters,
    FSDP's DTensor shards included; not with the fp16 gradient scaler): the same update, ~7x faster than the
    per-parameter loop on CPU (benchmarks/README.md), with different float rounding (not bit-equal to ``fused=False``).
    The unlearning loop uses it; pre-training and the classifier recipes keep the loop (their published bits)."""
    params = list(params)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    use_fused = fused and getattr(cfg, "precision", "fp32") != "fp16" and bool(params) and all(
        p.device.type in ("cpu", "cuda")
        and p.dtype in (torch.float32, torch.bfloat16, torch.float64) for p in params)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas,
                             **({"fused": True} if use_fused else {}))


def make_scaler(precision: str, device_type: str) -> torch.amp.GradScaler | None:
    """A gradient scaler for fp16 autocast (None otherwise)."""
    return torch.amp.GradScaler(device_type) if autocast_dtype(precision, device_type) == torch.float16 else None


def run_epochs(
    model: nn.Module,
    params: list[nn.Parameter],
    opt: torch.optim.Optimizer,
    loss_fn: StepLoss,
    epoch_batches: Callable[[int], Iterable[B]],
    epochs: int,
    start_epoch: int = 0,
    grad_clip: float | None = None,
    on_epoch_end: Callable[[int, dict[str, float]], None] | None = None,
    progress: bool = False,
    desc: str = "train",
    before_epoch: Callable[[int], bool] | None = None,
    grad_accum: int = 1,
    check_finite: bool = False,
    precision: str = "fp32",
    world: World | None = None,
    scaler: torch.amp.GradScaler | None = None,
    stop_hint: str = "",
) -> list[dict[str, float]]:
    """Epochs ``start_epoch .. epochs-1``: for each step, loss -> backward over its batches -> clip -> step. Returns
    one log entry per epoch (``epoch`` = epochs done, ``loss`` and every statistic the loss returned, averaged over
    batches -- over every process's batches when several run). ``before_epoch(epoch)`` (optional) runs first in
    each epoch (it may evaluate the model); returning False stops the run there (a stop rule).

    Steps: ``epoch_batches`` yields batches, ``grad_accum`` of them per optimizer step (the epoch's last step may
    have fewer); or it yields :class:`StepGroup` s (data parallel: this process's share of each step). Each batch's
    loss is divided by its step's batch count, so a step's gradient is the mean over its batches; with several
    processes (``world``) the gradients are summed across them at the step (:mod:`obliviate.train.distributed`).
    ``check_finite``: a NaN/inf loss stops the run with an error naming the epoch and batch (plus ``stop_hint``)
    before that step changes the weights (one host sync per batch). ``precision``: "fp32"; "bf16" = the forward
    pass and loss under ``torch.autocast`` in bfloat16 (CPU and CUDA); "fp16" = autocast in float16 with a gradient
    scaler (CUDA only; ``scaler`` to keep its state across calls). Weights and optimizer state stay float32.
    """
    if not params:
        raise ObliviateError("nothing to train: every parameter is frozen")
    world = world or World()
    logs: list[dict[str, float]] = []
    device_type = params[0].device.type
    amp_dtype = autocast_dtype(precision, device_type)
    if scaler is None:
        scaler = make_scaler(precision, device_type)
    bar = tqdm(range(start_epoch, epochs), desc=desc, unit="epoch", disable=not progress or not world.main,
               initial=start_epoch, total=epochs, dynamic_ncols=True, leave=False)
    for epoch in bar:
        if before_epoch is not None and not before_epoch(epoch):
            break
        model.train()
        sums: dict[str, Tensor] = {}
        count = 0
        for group in group_batches(epoch_batches(epoch), grad_accum):
            opt.zero_grad(set_to_none=True)
            bad = 0  # number (1-based, in the epoch) of the first batch with a non-finite loss; 0 = none
            weights = group.weights or [None] * len(group.batches)  # None: divide by the step's batch count
            for number, batch, weight in zip(group.numbers, group.batches, weights):
                if amp_dtype is None:
                    loss, stats = loss_fn(model, batch)
                else:
                    with torch.autocast(device_type, dtype=amp_dtype):
                        loss, stats = loss_fn(model, batch)
                    loss = loss.float()
                if check_finite and weight != 0 and not bool(torch.isfinite(loss.detach())):
                    bad = bad or number
                    if not world.sharded:
                        break
                    # sharded: every rank must run the same forwards and backwards (they hold collectives); the
                    # step is refused below, so the non-finite gradients never reach the weights
                if weight is None:
                    scaled = loss if group.total == 1 else loss / group.total
                else:
                    scaled = loss * weight
                (scaler.scale(scaled) if scaler is not None else scaled).backward()
                if weight == 0:
                    continue  # a stand-in batch (sharded model, rank without a batch in this step): no statistics
                for k, v in {"loss": loss, **stats}.items():
                    v = v.detach().float() if isinstance(v, Tensor) else torch.tensor(float(v))
                    sums[k] = sums[k] + v if k in sums else v
                count += 1
            if world.sharded and check_finite:  # FSDP already reduced the gradients in the backward pass
                flag = all_reduce_sum(torch.tensor([float(bad > 0)], device=params[0].device), world)
                if float(flag) > 0:
                    bad = all_reduce_min(bad if bad > 0 else 1 << 62, world)
            elif world.distributed:
                flag = torch.tensor([float(bad > 0)], device=params[0].device)
                all_reduce_gradients(params, world, extra=flag if check_finite else None)
                if check_finite and float(flag) > 0:
                    bad = all_reduce_min(bad if bad > 0 else 1 << 62, world)
            if bad:
                raise ObliviateError(f"{desc}: the loss is not finite at epoch {epoch + 1}, batch {bad}; stopped "
                                     "before that step reached the weights (they are as after the last finite "
                                     f"step){stop_hint}. Lower the learning rate or check the data")
            if scaler is not None:
                scaler.unscale_(opt)
            if grad_clip is not None:
                torch.nn.utils.clip_grad_norm_(params, grad_clip)
            if scaler is not None:
                scaler.step(opt)
                scaler.update()
            else:
                opt.step()
        entry = {"epoch": float(epoch + 1), **epoch_means(sums, count, world)}
        logs.append(entry)
        bar.set_postfix(loss=f"{entry.get('loss', float('nan')):.4f}")
        if on_epoch_end is not None:
            on_epoch_end(epoch + 1, entry)
    model.eval()
    for p in params:
        p.grad = None
    return logs


def epoch_means(sums: dict[str, Tensor], count: int, world: World) -> dict[str, float]:
    """Per-batch means of the epoch's statistics; with several processes, over every process's batches (the keys
    are rank 0's; a process that ran no batch contributes nothing)."""
    if not world.distributed:
        return {k: float(v) / max(count, 1) for k, v in sums.items()}
    keys = broadcast_object(list(sums), world)
    device = next(iter(sums.values())).device if sums else torch.device("cpu")
    if dist_backend_is_nccl():
        device = local_device()
    vec = torch.stack([sums[k].to(device).reshape(()) if k in sums else torch.zeros((), device=device)
                       for k in keys] + [torch.tensor(float(count), device=device)])
    total = all_reduce_sum(vec, world)
    n = max(float(total[-1]), 1.0)
    return {k: float(total[i]) / n for i, k in enumerate(keys)}


PRECISIONS = ("fp32", "bf16", "fp16")


def autocast_dtype(precision: str, device_type: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device_type`` (None = fp32, no autocast); an error where the device
    has no such mode."""
    if precision == "fp32":
        return None
    if precision == "bf16":
        if device_type == "cuda" and not torch.cuda.is_bf16_supported():
            raise ObliviateError("precision=bf16: this GPU does not support bfloat16 (valid here: fp32, fp16)")
        return torch.bfloat16
    if precision == "fp16":
        if device_type != "cuda":
            raise ObliviateError(f"precision=fp16 needs a CUDA device (float16 autocast with a gradient scaler); on "
                                 f"{device_type} use bf16 or fp32")
        return torch.float16
    raise ObliviateError(f"unknown precision {precision!r} (valid: {', '.join(PRECISIONS)})")


@contextmanager
def seeded_rng(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the body with torch's global generator(s) seeded from ``seed`` and restore them after: dropout (on in
    train mode, e.g. Hugging Face GPT-2's 0.1) draws from them, so the same seed gives the same bits, and the
    caller's random state is left as it was."""
    devices = [device.index or 0] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def run_unlearning(model: nn.Module, params: list[nn.Parameter], loss_fn: StepLoss, data: LMUnlearnData,
                   cfg: LoopConfig, seed: int, use_retain: bool, progress: bool = False,
                   desc: str = "unlearn", optimizer: torch.optim.Optimizer | None = None,
                   evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
                   checkpointing: Checkpointing | None = None, state: Any = None,
                   world: World | None = None) -> UnlearnResult:
    """Optimise ``params`` on ``loss_fn`` for ``cfg.epochs`` passes over the forget set (``cfg.grad_accum`` batches
    per step; a non-finite loss is an error; with ``cfg.stop_metric`` the last model above the threshold is kept).

    ``checkpointing``: write a checkpoint every ``every`` epochs and, with ``resume``, continue from the one there
    (:mod:`obliviate.train.checkpoint`); ``state``: an object with ``state_dict()`` / ``load_state_dict()`` whose
    state changes during training (the method) and goes into checkpoints; its ``on_epoch_end(epoch, model)``, if
    any, runs after each epoch on every rank. ``world``: the data-parallel processes
    (:mod:`obliviate.train.distributed`; default: the initialised process group, or a single process). With
    several, only rank 0 writes checkpoints, evaluation results are rank 0's (every rank runs ``evaluate``, so an
    evaluator may shard its work and gather it), and dropout draws differ per rank."""
    world = world or current_world()
    device = next(model.parameters()).device
    opt = optimizer if optimizer is not None else make_optimizer(params, cfg, fused=True)
    scaler = make_scaler(cfg.precision, device.type)
    stream = RetainStream(len(data.retain) if use_retain and data.retain is not None else 0, seed + 7919)
    batches = forget_retain_batches(data, cfg, seed, use_retain, device, world, stream)
    if evaluate is not None and world.distributed:
        local_evaluate = evaluate

        def evaluate(m: nn.Module) -> dict[str, float]:
            return broadcast_object(local_evaluate(m), world)

    guard = threshold_stop(model, cfg, evaluate, desc)
    rank_seed = seed if world.rank == 0 else seed + 104_729 * world.rank  # dropout: other masks on other ranks
    start_epoch, logs = 0, []
    resumed = None
    if checkpointing is not None:
        resumed = checkpointing.load(cfg.epochs)
        if resumed is not None and world.sharded:
            resumed = load_sharded(checkpointing.directory, resumed, world, model, device)
        elif resumed is not None and resumed.get("sharded") is not None:
            raise ObliviateError(f"{str(checkpointing.path)!r} is the checkpoint of a sharded (FSDP) run: resume it "
                                 "with the same FSDP configuration and number of processes")
    with track("unlearn") as cost, seeded_rng(rank_seed, device):
        if resumed is not None:
            start_epoch, logs = restore(resumed, model, opt, scaler, stream, guard, state, world, device)
        hint = ""
        if checkpointing is not None:
            hint = f"; the last checkpoint is {str(checkpointing.path)!r}"

        logs_so_far = list(logs)

        def on_epoch_end(done: int, entry: dict[str, float]) -> None:
            logs_so_far.append(entry)
            if state is not None and hasattr(state, "on_epoch_end"):  # e.g. PDU's per-epoch dual update
                state.on_epoch_end(done, model)
            if checkpointing is None or not (done % checkpointing.every == 0 or done == cfg.epochs):
                return
            state_now = snapshot(done, logs_so_far, model, opt, scaler, stream, guard, state, world)
            if world.sharded:  # every rank writes its shards, rank 0 commits them (train/checkpoint_shards.py)
                save_sharded(checkpointing.directory, state_now, world, checkpointing.save)
                return
            if world.main:
                checkpointing.save(state_now)
            barrier(world)

        logs = logs + run_epochs(model, params, opt, loss_fn, batches, cfg.epochs, start_epoch=start_epoch,
                                 grad_clip=cfg.grad_clip, progress=progress, desc=desc, before_epoch=guard,
                                 grad_accum=cfg.grad_accum, check_finite=True, precision=cfg.precision,
                                 world=world, scaler=scaler, stop_hint=hint, on_epoch_end=on_epoch_end)
        if guard is not None and guard.stopped_at is None:
            guard.finish(len(logs))
    per_step = cfg.grad_accum * world.size
    per_epoch = -(-len(data.forget) // cfg.batch_size)
    info: dict[str, Any] = {"steps": len(logs) * -(-per_epoch // per_step), "seed": seed, "epochs_run": len(logs)}
    if world.distributed:
        info["processes"] = world.size
    if checkpointing is not None:
        info["resumed_from_epoch"] = start_epoch
        info["checkpoint"] = str(checkpointing.path)
    if guard is not None:
        info.update(guard.info())
    return UnlearnResult(model=model, logs=logs, info=info, wall_s=cost.wall_s, peak_rss_mb=cost.peak_rss_mb,
                         stopped_at=guard.stopped_at if guard is not None else None)
