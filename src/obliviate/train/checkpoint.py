"""Checkpoints of an unlearning run, so a killed run resumes where it stopped and ends with the same bits.

One file, ``DIR/unlearn_checkpoint.pt``, replaced atomically after every ``every`` epochs (the previous one stays
until the new one is complete, so the last good checkpoint is always on disk). It holds everything the next epoch
depends on: the model's state dict (trained weights and anything a method attached: masks, adapters), the
optimizer's state (for the mean teacher: the teacher too), the gradient scaler, the method's own state (e.g. a dual
variable), the stop rule's kept model and trace, the retain stream's position, each rank's random generator
state (dropout) and the epoch logs. Batch order is a pure function of (seed, epoch), so nothing else is needed.

A checkpoint belongs to one run: its fingerprint (method, config except ``epochs``, seed, data and starting-model
hashes, number of processes and accumulation) must match, else resuming is refused with the reason -- a resumed
run never silently mixes two configurations. ``epochs`` may grow (train longer) but not shrink below the epochs
already done.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from obliviate.errors import ObliviateError

FILENAME = "unlearn_checkpoint.pt"
FORMAT = "obliviate-unlearn-checkpoint/1"


@dataclass
class Checkpointing:
    """Where and how often the loop checkpoints. ``resume``: continue from ``directory``'s checkpoint when there is
    one (a fresh start when there is none); without it an existing checkpoint is an error (pass ``resume`` or
    remove it), so two runs never write over each other's state."""

    directory: Path
    fingerprint: str
    every: int = 1
    resume: bool = False

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if self.every < 1:
            raise ObliviateError(f"checkpoint every must be >= 1 epoch, got {self.every}")

    @property
    def path(self) -> Path:
        return self.directory / FILENAME

    def load(self, epochs: int) -> dict[str, Any] | None:
        """The checkpoint to resume from, after the checks in the module docstring (None = start at epoch 0)."""
        if not self.path.exists():
            return None
        if not self.resume:
            raise ObliviateError(f"{str(self.path)!r} holds a checkpoint of an earlier run: pass --resume "
                                 "(resume=True) to continue it, or remove it / choose another directory")
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 -- any unreadable file gets the same clear error
            raise ObliviateError(f"{str(self.path)!r} is not a readable obliviate checkpoint ({exc})") from None
        if not isinstance(state, dict) or state.get("format") != FORMAT:
            raise ObliviateError(f"{str(self.path)!r} is not an obliviate unlearning checkpoint")
        if state["fingerprint"] != self.fingerprint:
            diff = describe_difference(state.get("fingerprint_fields", {}), FINGERPRINT_FIELDS.get(self.fingerprint, {}))
            raise ObliviateError(f"{str(self.path)!r} belongs to a different run ({diff}); resuming it would mix "
                                 "two configurations: remove it or choose another checkpoint directory")
        if int(state["epoch"]) > epochs:
            raise ObliviateError(f"the checkpoint is at epoch {state['epoch']}, past method.epochs={epochs}: raise "
                                 "epochs, or remove the checkpoint to start over")
        return state

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` (plus format and fingerprint) atomically: a temp file in the same directory, fsync'd,
        then renamed over the old checkpoint."""
        self.directory.mkdir(parents=True, exist_ok=True)
        full = {"format": FORMAT, "fingerprint": self.fingerprint,
                "fingerprint_fields": FINGERPRINT_FIELDS.get(self.fingerprint, {}), **state}
        fd, tmp = tempfile.mkstemp(prefix=".ckpt-", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(full, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


# fingerprint -> the fields it was made from (for the error message that says what differs)
FINGERPRINT_FIELDS: dict[str, dict[str, Any]] = {}


def fingerprint(fields: dict[str, Any]) -> str:
    """A stable hash of a run's identity (JSON-able ``fields``); remembered so a mismatch can be explained."""
    from obliviate.io import hash_json

    key = hash_json(fields)
    FINGERPRINT_FIELDS[key] = fields
    return key


def describe_difference(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
    if not keys:
        return "fingerprints differ"
    parts = []
    for k in keys[:4]:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            sub = sorted(x for x in set(a) | set(b) if a.get(x) != b.get(x))
            parts.append(f"{k}: " + ", ".join(f"{x} {a.get(x)!r} -> {b.get(x)!r}" for x in sub[:4]))
        else:
            parts.append(f"{k} {_short(a)} -> {_short(b)}")
    return "; ".join(parts)


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 40 else s[:37] + "..."


# --- what goes into a checkpoint, and back -------------------------------------------------------------------------


def rng_state(device: torch.device) -> dict[str, Tensor]:
    out = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def snapshot(done: int, logs: list[dict[str, float]], model: nn.Module, opt: torch.optim.Optimizer,
              scaler: Any, stream: Any, guard: Any, state: Any,
              world: Any) -> dict[str, Any]:
    rng = rng_state(next(model.parameters()).device)
    from obliviate.train.distributed import gather_objects

    rngs = gather_objects(rng, world)  # every rank's dropout state (rank order)
    return {
        "epoch": done,
        "logs": logs,
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "method": state.state_dict() if state is not None and hasattr(state, "state_dict") else None,
        "guard": guard.state_dict() if guard is not None else None,
        "retain_stream": [stream.pass_no, stream.pos],
        "rng": rngs,
        "world_size": world.size,
    }


def restore(ck: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer, scaler: Any, stream: Any,
             guard: Any, state: Any, world: Any, device: torch.device) -> tuple[int, list]:
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    if scaler is not None and ck.get("scaler") is not None:
        scaler.load_state_dict(ck["scaler"])
    if state is not None and ck.get("method") is not None:
        state.load_state_dict(ck["method"])
    if guard is not None and ck.get("guard") is not None:
        guard.load_state_dict(ck["guard"])
    stream.seek(*ck["retain_stream"])
    rng = ck["rng"][world.rank]
    torch.set_rng_state(rng["cpu"])
    if "cuda" in rng and device.type == "cuda":
        torch.cuda.set_rng_state(rng["cuda"], device)
    return int(ck["epoch"]), list(ck["logs"])
