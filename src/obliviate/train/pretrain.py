"""Training a causal LM from scratch (TinyMem), with periodic checkpoints and resume after an interruption."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn
from tqdm.auto import tqdm

from obliviate.errors import ObliviateError
from obliviate.io import load_causal_lm, load_tensors, read_json, save_pretrained_atomic
from obliviate.losses.nll import mean_nll
from obliviate.train.batching import epoch_permutation, trim_padding

_CKPT = re.compile(r"^epoch_(\d{6})$")


@dataclass(frozen=True)
class TrainConfig:
    """Paper defaults (spec 1.2): AdamW lr 1e-3, wd 0.1, betas (0.9, 0.98), batch 128; 3500 epochs (math noise)."""

    epochs: int = 3500
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    checkpoint_every: int = 50  # epochs
    keep_checkpoints: int = 2  # older periodic checkpoints are deleted after a newer one is safely written

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"train.{name} must be > 0, got {getattr(self, name)}")
        if self.lr <= 0:
            raise ObliviateError(f"train.lr must be > 0, got {self.lr}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ObliviateError(f"train.betas must be in [0, 1), got {self.betas}")


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)


def _optimizer_bytes(opt: torch.optim.Optimizer) -> bytes:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    return save({k: v.contiguous() for k, v in tensors.items()}, metadata={"param_groups": json.dumps(sd["param_groups"])})


def _load_optimizer(opt: torch.optim.Optimizer, path: Path) -> None:
    from safetensors import safe_open

    tensors = load_tensors(path)
    with safe_open(path, "pt") as f:
        groups = json.loads(f.metadata()["param_groups"])
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    opt.load_state_dict({"state": state, "param_groups": groups})


def run_fingerprint(*parts: Any) -> str:
    """What must match for a checkpoint to be resumed: everything but the epoch budget and checkpoint cadence."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def checkpoints(out_dir: Path) -> list[Path]:
    """Complete periodic checkpoints in ``out_dir/checkpoints``, oldest first."""
    root = out_dir / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if _CKPT.match(p.name) and (p / "trainer_state.json").is_file())


@dataclass
class TrainStats:
    epochs_run: int
    resumed_from_epoch: int
    final_loss: float
    wall_s: float
    tokens: int
    tokens_per_s: float
    history: list[dict[str, float]]


def pretrain(
    model: nn.Module,
    rows: torch.Tensor,
    cfg: TrainConfig,
    seed: int,
    pad_id: int,
    out_dir: Path | None = None,
    progress: bool = True,
    on_checkpoint: Callable[[int, nn.Module], dict[str, float]] | None = None,
    fingerprint: str = "",
    discard_mismatched: bool = False,
) -> TrainStats:
    """Train ``model`` on token ``rows`` (N, T) with the causal-LM loss over every position, PAD targets included
    (as the reference; all-PAD trailing columns of a batch are skipped, see ``trim_padding``).

    With ``out_dir``, writes ``checkpoints/epoch_XXXXXX`` every ``checkpoint_every`` epochs and resumes from the
    newest complete one. Batches are a pure function of (seed, epoch), so a resumed run equals an uninterrupted one.
    ``fingerprint`` identifies the run (data, model, optimiser, seed); checkpoints with another fingerprint are an
    error, or are deleted when ``discard_mismatched`` (the user asked to overwrite).
    """
    if rows.ndim != 2 or rows.shape[0] == 0:
        raise ObliviateError(f"training data must be a non-empty (N, T) token tensor, got shape {tuple(rows.shape)}")
    device = next(model.parameters()).device
    opt = make_optimizer(model, cfg)
    start_epoch = 0
    history: list[dict[str, float]] = []
    if out_dir is not None:
        found = checkpoints(out_dir)
        if found and read_json(found[-1] / "trainer_state.json").get("fingerprint", "") != fingerprint:
            if not discard_mismatched:
                raise ObliviateError(
                    f"{str(out_dir / 'checkpoints')!r} holds checkpoints of a different run (config changed); "
                    "choose another output directory or pass --overwrite"
                )
            import shutil

            for old in found:
                shutil.rmtree(old)
            found = []
        if found:
            last = found[-1]
            state = read_json(last / "trainer_state.json")
            loaded = load_causal_lm(last, device=device)
            model.load_state_dict(loaded.state_dict())
            _load_optimizer(opt, last / "optimizer.safetensors")
            start_epoch = int(state["epoch"])
            history = list(state.get("history", []))
    model.train()
    n = rows.shape[0]
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    tokens = 0
    loss_val = float("nan")
    t0 = time.perf_counter()
    bar = tqdm(range(start_epoch, cfg.epochs), desc="train", unit="epoch", disable=not progress,
               initial=start_epoch, total=cfg.epochs, dynamic_ncols=True)
    for epoch in bar:
        perm = epoch_permutation(n, seed, epoch)
        total = 0.0
        for s in range(steps_per_epoch):
            batch = trim_padding(rows[perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]], pad_id).to(device)
            logits = model(input_ids=batch).logits  # (B, T, V)
            loss = mean_nll(logits, batch, pad_id=None)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()
            tokens += batch.numel()
        loss_val = total / steps_per_epoch
        bar.set_postfix(loss=f"{loss_val:.4f}")
        done = epoch + 1
        if out_dir is not None and (done % cfg.checkpoint_every == 0 or done == cfg.epochs):
            entry: dict[str, float] = {"epoch": done, "train_loss": loss_val}
            if on_checkpoint is not None:
                model.eval()
                entry.update(on_checkpoint(done, model))
                model.train()
            history.append(entry)
            _write_checkpoint(model, opt, out_dir, done, seed, history, cfg.keep_checkpoints, fingerprint)
    model.eval()
    wall = time.perf_counter() - t0
    return TrainStats(
        epochs_run=cfg.epochs - start_epoch,
        resumed_from_epoch=start_epoch,
        final_loss=loss_val,
        wall_s=wall,
        tokens=tokens,
        tokens_per_s=tokens / wall if wall > 0 else 0.0,
        history=history,
    )


def _write_checkpoint(model: nn.Module, opt: torch.optim.Optimizer, out_dir: Path, epoch: int, seed: int,
                      history: list[dict[str, float]], keep: int, fingerprint: str) -> None:
    root = out_dir / "checkpoints"
    state = {"epoch": epoch, "seed": seed, "fingerprint": fingerprint, "history": history}
    save_pretrained_atomic(
        model,
        root / f"epoch_{epoch:06d}",
        overwrite=True,
        extra_files={
            "optimizer.safetensors": _optimizer_bytes(opt),
            "trainer_state.json": json.dumps(state, indent=2).encode(),
        },
    )
    import shutil

    for old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
