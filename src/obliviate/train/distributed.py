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
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError

BUCKET_ELEMENTS = 1 << 24  # float32 elements per all-reduce bucket (64 MB)


@dataclass(frozen=True)
class World:
    """This process's place among the data-parallel processes (``size`` 1 = a single process)."""

    rank: int = 0
    size: int = 1

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


def current_world() -> World:
    """The initialised process group's rank and size, else a single process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def init_from_env(device: torch.device | None = None) -> World:
    """Join the process group described by the launcher's environment (a no-op for a single process or when one is
    already initialised). Refuses accelerate configs this loop does not implement (FSDP, DeepSpeed) rather than
    silently running them as plain data parallelism."""
    import torch.distributed as dist

    for var, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "").lower() in ("1", "true", "yes"):
            raise ObliviateError(f"the accelerate config asks for {what}; obliviate's loop runs data parallel "
                                 "(every process holds the whole model): use an accelerate config with "
                                 "distributed_type MULTI_GPU or MULTI_CPU, or --lora to fit a large model")
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
    return current_world()


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
