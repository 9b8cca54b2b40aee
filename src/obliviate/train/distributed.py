"""Data parallelism for the one loop: N processes (``torchrun`` / ``accelerate launch``), each holding the whole model.

How it works, and why not a ``DistributedDataParallel`` wrapper:

* every optimizer step covers ``world * grad_accum`` chunks of ``batch_size`` forget rows (fewer in an epoch's last
  step); chunk ``c`` of a step goes to rank ``c % world``, so N processes see exactly the rows one process sees with
  ``grad_accum * N`` -- the retain rows too (each chunk takes its own draw of one shared retain stream: different
  rows on every rank, the same rows as one process);
* each rank back-propagates its chunks' losses divided by the step's global chunk count; at the step the gradients
  are summed across ranks in flat buckets (one all-reduce per bucket), so every rank holds the mean gradient over
  the step's chunks, clips and steps identically, and the weights stay equal on all ranks;
* a method may run any number of forward / backward passes per chunk (two-pass losses, gradient accumulation,
  gradient edits by hooks): gradients are only combined at the step, which a DDP wrapper's per-backward hooks
  cannot promise. The price is no overlap of communication with the backward pass.

A rank that has no chunk in a short last step still joins the all-reduce with zero gradients. A non-finite loss on
any rank stops every rank at the same step (the flag travels in the gradient bucket). The process group comes from
the launcher's environment (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``...): NCCL on CUDA, gloo on CPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError

BUCKET_ELEMENTS = 1 << 24  # float32 elements per all-reduce bucket (64 MB)


@dataclass(frozen=True)
class FSDPSettings:
    """Fully sharded data parallel (torch FSDP2, ``fully_shard``): each decoder layer (``layer_classes``; default: the
    model's ``_no_split_modules``) and then the whole model are sharded across the processes; ``reshard_after_forward``
    = FULL_SHARD (True) or SHARD_GRAD_OP (False); ``offload_params`` keeps the shards in CPU memory."""

    layer_classes: tuple[str, ...] = ()
    reshard_after_forward: bool = True
    offload_params: bool = False


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (``size`` 1 = a single process); ``fsdp`` set = the
    model is sharded (FSDP) rather than replicated."""

    rank: int = 0
    size: int = 1
    fsdp: FSDPSettings | None = None

    @property
    def sharded(self) -> bool:
        return self.fsdp is not None and self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def launched_world_size() -> int:
    """WORLD_SIZE as a launcher (torchrun, accelerate launch) set it; 1 when not launched that way."""
    raw = os.environ.get("WORLD_SIZE", "1")
    try:
        n = int(raw)
    except ValueError:
        raise ObliviateError(f"WORLD_SIZE={raw!r} is not an integer (set by torchrun / accelerate launch)") from None
    if n < 1:
        raise ObliviateError(f"WORLD_SIZE={n} must be >= 1")
    return n


_FSDP: FSDPSettings | None = None  # the sharding this process group was set up with (init_from_env)

_TRUE = ("1", "true", "yes")
_STRATEGIES = {"1": "FULL_SHARD", "2": "SHARD_GRAD_OP", "3": "NO_SHARD", "4": "HYBRID_SHARD", "5": "HYBRID_SHARD_ZERO2"}


def current_world() -> World:
    """The initialised process group's rank and size (and sharding), else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size(), _FSDP)
    return World()


def fsdp_settings(fsdp_config: dict[str, Any], source: str) -> FSDPSettings:
    """FSDP settings from an accelerate ``fsdp_config`` mapping (keys as in accelerate's YAML, ``fsdp_`` prefix
    optional). Strategies that do not shard the model are refused: run them as plain data parallel."""
    cfg = {k.removeprefix("fsdp_"): v for k, v in fsdp_config.items()}
    strategy = str(cfg.get("sharding_strategy", "FULL_SHARD")).upper()
    strategy = _STRATEGIES.get(strategy, strategy)
    if strategy not in ("FULL_SHARD", "SHARD_GRAD_OP"):
        raise ObliviateError(f"{source}: FSDP sharding strategy {strategy!r} is not supported (valid: FULL_SHARD, "
                             "SHARD_GRAD_OP; for no sharding use distributed_type MULTI_GPU / MULTI_CPU)")
    reshard = cfg.get("reshard_after_forward")
    reshard = strategy == "FULL_SHARD" if reshard is None else str(reshard).lower() in _TRUE
    policy = str(cfg.get("auto_wrap_policy", "TRANSFORMER_BASED_WRAP") or "TRANSFORMER_BASED_WRAP").upper()
    if policy not in ("TRANSFORMER_BASED_WRAP", "NO_WRAP", "NONE"):
        raise ObliviateError(f"{source}: FSDP auto_wrap_policy {policy!r} is not supported (valid: "
                             "TRANSFORMER_BASED_WRAP, which shards each decoder layer)")
    layers = cfg.get("transformer_layer_cls_to_wrap") or ()
    if isinstance(layers, str):
        layers = [x.strip() for x in layers.split(",") if x.strip()]
    return FSDPSettings(tuple(layers), reshard, str(cfg.get("offload_params", False)).lower() in _TRUE)


def settings_from_env() -> FSDPSettings | None:
    """The FSDP settings ``accelerate launch`` puts in the environment (None when it asks for no FSDP). DeepSpeed is
    refused with a clear error rather than silently run as something else."""
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() in _TRUE:
        raise ObliviateError("the accelerate config asks for DeepSpeed, which obliviate's loop does not run: use an "
                             "accelerate config with distributed_type FSDP (sharded), MULTI_GPU or MULTI_CPU")
    if os.environ.get("ACCELERATE_USE_FSDP", "").lower() not in _TRUE:
        return None
    env = {k.removeprefix("FSDP_").lower(): v for k, v in os.environ.items() if k.startswith("FSDP_")}
    return fsdp_settings(env, "the accelerate FSDP environment")


def settings_from_file(path: str | os.PathLike[str]) -> FSDPSettings | None:
    """The parallel settings of a standard accelerate config file (``accelerate config`` writes one): FSDP settings
    for ``distributed_type: FSDP``, None for plain data parallel (MULTI_GPU, MULTI_CPU, NO); DeepSpeed and other
    types are refused."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise ObliviateError(f"accelerate config {str(p)!r} does not exist")
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ObliviateError(f"accelerate config {str(p)!r} is not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ObliviateError(f"accelerate config {str(p)!r} must be a mapping")
    kind = str(doc.get("distributed_type", "NO")).upper()
    if kind == "FSDP":
        return fsdp_settings(doc.get("fsdp_config") or {}, f"accelerate config {str(p)!r}")
    if kind in ("NO", "MULTI_GPU", "MULTI_CPU"):
        return None
    raise ObliviateError(f"accelerate config {str(p)!r}: distributed_type {kind} is not supported by obliviate's "
                         "loop (valid: FSDP, MULTI_GPU, MULTI_CPU, NO)")


def init_from_env(device: torch.device | None = None, config_file: str | os.PathLike[str] | None = None) -> World:
    """Join the process group described by the launcher's environment (a no-op for a single process or when one is
    already initialised). Sharding (FSDP) comes from ``config_file`` (a standard accelerate config) when given, else
    from what ``accelerate launch`` put in the environment; without either the model is replicated."""
    import torch.distributed as dist

    global _FSDP
    settings = settings_from_file(config_file) if config_file is not None else settings_from_env()
    if launched_world_size() == 1:
        return current_world()
    if not dist.is_available():
        raise ObliviateError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        cuda = (device is not None and device.type == "cuda") or (device is None and torch.cuda.is_available())
        backend = "nccl" if cuda and dist.is_nccl_available() else "gloo"
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=backend)
    _FSDP = settings
    return current_world()


def shard_model(model: nn.Module, settings: FSDPSettings, what: str = "model") -> None:
    """Shard ``model`` in place with FSDP2: every module whose class is in ``settings.layer_classes`` (default: the
    model's ``_no_split_modules``, its decoder layers), then the root. Its parameters become DTensors (new objects:
    look them up again by name)."""
    from torch.distributed.fsdp import CPUOffloadPolicy, fully_shard

    classes = set(settings.layer_classes or _no_split(model))
    if not classes:
        raise ObliviateError(f"cannot tell the decoder layers of this {type(model).__name__} to shard: set "
                             "fsdp_transformer_layer_cls_to_wrap in the accelerate config")
    layers = [m for m in model.modules() if type(m).__name__ in classes]
    if not layers:
        raise ObliviateError(f"no module of class {', '.join(sorted(classes))} in the {what} "
                             f"({type(model).__name__}) to shard: check fsdp_transformer_layer_cls_to_wrap")
    kw: dict[str, Any] = {"reshard_after_forward": settings.reshard_after_forward}
    if settings.offload_params:
        kw["offload_policy"] = CPUOffloadPolicy()
    for layer in layers:
        fully_shard(layer, **kw)
    fully_shard(model, **{**kw, "reshard_after_forward": True})  # also after a no-grad forward (reference models)


def _no_split(model: nn.Module) -> list[str]:
    for m in model.modules():
        names = getattr(m, "_no_split_modules", None)
        if names:
            return list(names)
    return []


def full_state_dict(model: nn.Module, world: World) -> dict[str, Tensor]:
    """The model's whole state dict on the CPU: gathered from the shards on rank 0 (empty on other ranks) when the
    model is sharded, else its own state dict (detached CPU copies). Every rank must call it."""
    if world.sharded:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def local_device() -> torch.device:
    """The device this rank should use: ``cuda:LOCAL_RANK`` when CUDA is there, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def broadcast_parameters(model: nn.Module, world: World) -> None:
    """Rank 0's parameters and buffers on every rank (the runs start from identical weights)."""
    if not world.distributed:
        return
    import torch.distributed as dist

    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(t.data, src=0)


def all_reduce_gradients(params: list[nn.Parameter], world: World, extra: Tensor | None = None) -> Tensor | None:
    """Sum every parameter's gradient (None = zeros) and ``extra`` (a small float tensor, e.g. flags) across ranks,
    in flat buckets. Returns the summed ``extra``."""
    if not world.distributed:
        return extra
    import torch.distributed as dist

    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    tensors: list[Tensor] = [p.grad for p in params] + ([extra] if extra is not None else [])
    start = 0
    while start < len(tensors):
        end, size = start, 0
        while end < len(tensors) and (end == start or size + tensors[end].numel() <= BUCKET_ELEMENTS) \
                and tensors[end].dtype == tensors[start].dtype and tensors[end].device == tensors[start].device:
            size += tensors[end].numel()
            end += 1
        group = tensors[start:end]
        flat = torch.cat([t.reshape(-1) for t in group])
        dist.all_reduce(flat)
        offset = 0
        for t in group:
            t.copy_(flat[offset : offset + t.numel()].view_as(t))
            offset += t.numel()
        start = end
    return extra


def all_reduce_sum(values: Tensor, world: World) -> Tensor:
    """``values`` summed over ranks (a copy for a single process too)."""
    out = values.clone()
    if world.distributed:
        import torch.distributed as dist

        dist.all_reduce(out)
    return out


def all_reduce_min(value: int, world: World) -> int:
    if not world.distributed:
        return value
    import torch.distributed as dist

    t = torch.tensor([value], dtype=torch.long, device=_comm_device())
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return int(t.item())


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` (picklable) on every rank: decisions (stop rules) must be the same everywhere."""
    if not world.distributed:
        return obj
    import torch.distributed as dist

    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(world: World) -> None:
    if world.distributed:
        import torch.distributed as dist

        dist.barrier()


def _comm_device() -> torch.device:
    import torch.distributed as dist

    return local_device() if dist.get_backend() == "nccl" else torch.device("cpu")


def shard(n: int, world: World) -> range:
    """The item indices of ``n`` this rank evaluates (strided: rank, rank + size, ...)."""
    return range(world.rank, n, world.size)


def dist_backend_is_nccl() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized() and dist.get_backend() == "nccl"


def gather_objects(obj: Any, world: World) -> list[Any]:
    """Every rank's ``obj`` in rank order (on every rank); ``[obj]`` for a single process."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def shutdown() -> None:
    """Leave the process group (if one was joined): every rank waits for the others, then the group is destroyed.
    Exiting with a live gloo group can abort the process ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()
