"""Batch order and step grouping shared by the training and unlearning loops, and the unlearning loop's forget /
retain batch streams (one process or several)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

import torch
from torch import Tensor

from obliviate.families.lm import ForgetRetainBatch, LMUnlearnData, TokenData, batch_of
from obliviate.train.distributed import World

if TYPE_CHECKING:
    from obliviate.train.loop import LoopConfig

B = TypeVar("B")


def epoch_permutation(n: int, seed: int, epoch: int) -> Tensor:
    """The order of one epoch; a pure function of (seed, epoch) so resumed runs replay the same batches."""
    g = torch.Generator()
    g.manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)


@dataclass
class StepGroup(Generic[B]):
    """The batches of one optimizer step that this process runs, and how many the step has across all processes
    (``total``: each batch's loss is divided by it, so the summed gradient is the mean over the step's batches).
    ``numbers``: each batch's 1-based number within the epoch (for error messages)."""

    batches: list[B]
    total: int
    numbers: list[int]
    weights: list[float] | None = None  # each batch's loss multiplier (None: 1 / total); 0 = a stand-in batch


def group_batches(batches: Iterable[B], grad_accum: int) -> Iterator[StepGroup[B]]:
    """A single process's steps: ``grad_accum`` consecutive batches each (the epoch's last step may have fewer)."""
    group: list[B] = []
    n = 0
    for batch in batches:
        if isinstance(batch, StepGroup):  # the caller grouped them already (several processes)
            yield batch
            continue
        group.append(batch)
        n += 1
        if len(group) == grad_accum:
            yield StepGroup(group, len(group), list(range(n - len(group) + 1, n + 1)))
            group = []
    if group:
        yield StepGroup(group, len(group), list(range(n - len(group) + 1, n + 1)))


class RetainStream:
    """Endless reshuffled stream over the retain rows; the k-th pass uses permutation (seed, k)."""

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed, self.pass_no, self.pos = n, seed, 0, 0
        self.perm = epoch_permutation(n, seed, 0) if n else torch.empty(0, dtype=torch.long)

    def seek(self, pass_no: int, pos: int) -> None:
        """Continue from a saved position (``pass_no``, ``pos``): the permutation is recomputed from the seed."""
        self.pass_no, self.pos = int(pass_no), int(pos)
        if self.n:
            self.perm = epoch_permutation(self.n, self.seed, self.pass_no)

    def take(self, k: int) -> Tensor:
        """The next ``k`` row indices (wrapping into a fresh permutation at the end of each pass)."""
        if k == 0 or self.n == 0:
            return torch.empty(0, dtype=torch.long)
        parts, need = [], k
        while need > 0:
            if self.pos >= self.n:
                self.pass_no += 1
                self.perm = epoch_permutation(self.n, self.seed, self.pass_no)
                self.pos = 0
            take = min(need, self.n - self.pos)
            parts.append(self.perm[self.pos : self.pos + take])
            self.pos += take
            need -= take
        return torch.cat(parts)


def forget_retain_batches(data: LMUnlearnData, cfg: LoopConfig, seed: int, use_retain: bool,
                          device: torch.device, world: World | None = None,
                          stream: RetainStream | None = None) -> Callable[[int], Iterator[StepGroup[ForgetRetainBatch]]]:
    """Epoch -> its steps: the forget set in (seed, epoch) order cut into chunks of ``batch_size`` rows, each chunk
    with the next ``retain_batch_size`` rows of a retain stream (seeded apart from the forget order, so the two
    orders are not correlated); ``grad_accum * world.size`` chunks per optimizer step, chunk ``c`` of a step on
    rank ``c % world.size``. Every rank walks the whole stream, so the rows each chunk gets do not depend on the
    number of processes: N processes see exactly what one process sees with ``grad_accum * N``. ``stream``: the
    retain stream to continue (a resumed run), else a fresh one."""
    world = world or World()
    retain: TokenData | None = data.retain if use_retain and cfg.retain_batch_size > 0 else None
    if stream is None:
        stream = RetainStream(len(retain) if retain is not None else 0, seed + 7919)
    n = len(data.forget)
    per_step = cfg.grad_accum * world.size

    def epoch_batches(epoch: int) -> Iterator[StepGroup[ForgetRetainBatch]]:
        perm = epoch_permutation(n, seed, epoch)
        starts = list(range(0, n, cfg.batch_size))
        for g in range(0, len(starts), per_step):
            chunk_starts = starts[g : g + per_step]
            mine: list[ForgetRetainBatch] = []
            numbers: list[int] = []
            ridxs = [stream.take(cfg.retain_batch_size) if retain is not None else None for _ in chunk_starts]
            total = len(chunk_starts)
            mine_j = list(range(world.rank, total, world.size))
            weights = None
            if world.sharded:  # FSDP averages over ranks in every backward: scale by size / total, and every rank
                slots = -(-total // world.size)  # runs the same number of batches (stand-ins weigh 0)
                weights = [world.size / total] * len(mine_j) + [0.0] * (slots - len(mine_j))
                mine_j += [0] * (slots - len(mine_j))
            for j in mine_j:
                forget = batch_of(data.forget, perm[chunk_starts[j] : chunk_starts[j] + cfg.batch_size]).to(device)
                ridx = ridxs[j]
                rb = batch_of(retain, ridx).to(device) if retain is not None and ridx is not None else None
                mine.append(ForgetRetainBatch(forget, rb))
                numbers.append(g + j + 1)
            yield StepGroup(mine, total, numbers, weights)

    epoch_batches.stream = stream  # type: ignore[attr-defined]  # its position goes into checkpoints
    return epoch_batches
