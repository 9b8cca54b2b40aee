"""Checkpoints of a sharded (FSDP) unlearning run: every rank writes its own shards, a manifest commits them.

Under FSDP each rank holds 1/N of every parameter, of the optimizer state, of the stop rule's kept model and of the
mean teacher (DTensors). A checkpoint is then N rank files plus a manifest:

* every rank writes ``DIR/unlearn_checkpoint.shards/e{epoch}.rank{r}.pt`` (temp file, fsync, rename): its snapshot
  with each DTensor replaced by its local shard and its layout (the placement and the global shape and stride);
* after a barrier rank 0 replaces ``DIR/unlearn_checkpoint.pt`` atomically with a manifest naming the epoch and the
  N files; after a second barrier each rank deletes its files of other epochs.

A kill at any moment leaves a manifest that names a complete set (the old one until the new manifest is renamed
in, and the old files are deleted only after that). Resuming needs the same number of processes and the same
sharding (the run fingerprint holds the process count; the manifest records that the run was sharded), and ``DIR``
on a file system every rank sees. Each rank rebuilds its DTensors from its file on the current device mesh.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError

SHARD_DIR = "unlearn_checkpoint.shards"
_TAG = "__dtensor__"


def _dtensor_cls() -> type | None:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover -- torch without distributed
        return None
    return DTensor


def _placement_code(p: Any) -> str:
    from torch.distributed.tensor import Replicate, Shard

    if isinstance(p, Shard):
        return f"S{p.dim}"
    if isinstance(p, Replicate):
        return "R"
    raise ObliviateError(f"cannot checkpoint a DTensor placed as {p!r} (only Shard and Replicate)")


def _placement(code: str) -> Any:
    from torch.distributed.tensor import Replicate, Shard

    return Replicate() if code == "R" else Shard(int(code[1:]))


def localize(obj: Any) -> Any:
    """``obj`` (nested dicts / lists / tuples) with every DTensor replaced by a plain record of its local shard and
    layout, loadable with ``torch.load(weights_only=True)``."""
    dt = _dtensor_cls()
    if dt is not None and isinstance(obj, dt):
        return {_TAG: obj.to_local().detach().clone(), "placements": [_placement_code(p) for p in obj.placements],
                "shape": list(obj.shape), "stride": list(obj.stride())}
    if isinstance(obj, dict):
        return {k: localize(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(localize(v) for v in obj)
    return obj


def globalize(obj: Any, mesh: Any, device: torch.device) -> Any:
    """Inverse of :func:`localize` on ``mesh``: each record becomes a DTensor again (its local shard on ``device``)."""
    if isinstance(obj, dict) and _TAG in obj:
        from torch.distributed.tensor import DTensor

        local: Tensor = obj[_TAG].to(device)
        return DTensor.from_local(local, mesh, [_placement(c) for c in obj["placements"]], run_check=False,
                                  shape=torch.Size(obj["shape"]), stride=tuple(obj["stride"]))
    if isinstance(obj, dict):
        return {k: globalize(v, mesh, device) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(globalize(v, mesh, device) for v in obj)
    return obj


def model_mesh(model: nn.Module) -> Any:
    """The device mesh of the model's sharded parameters."""
    dt = _dtensor_cls()
    for p in model.parameters():
        if dt is not None and isinstance(p, dt):
            return p.device_mesh
    raise ObliviateError("the run is sharded but the model has no DTensor parameter")


def _atomic_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_sharded(directory: Path, state: dict[str, Any], world: Any, write_manifest: Any) -> None:
    """Every rank writes its shard file; then rank 0 commits the manifest (``write_manifest(dict)``, atomic); then
    every rank drops its files of other epochs."""
    from obliviate.train.distributed import barrier

    shards = directory / SHARD_DIR
    if world.main:
        shards.mkdir(parents=True, exist_ok=True)
    barrier(world)
    epoch = int(state["epoch"])
    name = f"e{epoch}.rank{world.rank}.pt"
    _atomic_save({"rank": world.rank, "world_size": world.size, "epoch": epoch, **localize(state)}, shards / name)
    barrier(world)
    if world.main:
        write_manifest({"epoch": epoch, "logs": state["logs"], "sharded": {
            "world_size": world.size, "files": [f"{SHARD_DIR}/e{epoch}.rank{r}.pt" for r in range(world.size)]}})
    barrier(world)
    for old in shards.glob(f"e*.rank{world.rank}.pt"):
        if old.name != name:
            old.unlink(missing_ok=True)


def load_sharded(directory: Path, manifest: dict[str, Any], world: Any, model: nn.Module,
                 device: torch.device) -> dict[str, Any]:
    """This rank's snapshot of the checkpoint ``manifest`` names, with its DTensors rebuilt on the model's mesh."""
    info = manifest.get("sharded")
    if info is None:
        raise ObliviateError("the checkpoint is of an unsharded run; this run is sharded (FSDP): resume it the way it "
                             "was started, or start over in another checkpoint directory")
    if int(info["world_size"]) != world.size:
        raise ObliviateError(f"the checkpoint was written by {info['world_size']} sharded processes, this run has "
                             f"{world.size}: resume with the same number")
    path = directory / info["files"][world.rank]
    try:
        shard = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 -- any unreadable file gets the same clear error
        raise ObliviateError(f"{str(path)!r}, rank {world.rank}'s part of the checkpoint, is missing or unreadable "
                             f"({exc})") from None
    if int(shard.get("epoch", -1)) != int(manifest["epoch"]) or int(shard.get("rank", -1)) != world.rank:
        raise ObliviateError(f"{str(path)!r} does not match the checkpoint's manifest (epoch {manifest['epoch']}, "
                             f"rank {world.rank})")
    return globalize(shard, model_mesh(model), device)
