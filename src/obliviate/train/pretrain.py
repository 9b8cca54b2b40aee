"""Training a causal LM from scratch (TinyMem) through the one loop, with periodic checkpoints and resume.

Resume rules (a silently wrong model is worse than an error):
- checkpoints carry a fingerprint of everything that shapes the weights (data, model, optimiser, seed, suite
  VERSION and the code's source hash); another fingerprint is refused, never resumed;
- a checkpoint past ``epochs`` is refused (the smaller budget cannot be honoured without retraining);
- ``fresh=True`` (the CLI's ``--overwrite``) deletes the checkpoints and starts from epoch 0.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save
from torch import nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMBatch, LMUnlearnData, TokenData, batch_of, drop_trailing_token_columns
from obliviate.io import load_tensors, read_json, save_pretrained_atomic
from obliviate.losses.nll import mean_nll
from obliviate.train.batching import epoch_permutation
from obliviate.train.loop import OptimConfig, make_optimizer, run_epochs
from obliviate.train.regularizers import RegularizerConfig, make_regularizer

_CKPT = re.compile(r"^epoch_(\d{6})$")


@dataclass(frozen=True)
class TrainConfig(OptimConfig):
    """Paper defaults (spec 1.2): AdamW lr 1e-3, wd 0.1, betas (0.9, 0.98), batch 128; 3500 epochs (math noise)."""

    section = "train"
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    epochs: int = 3500
    batch_size: int = 128
    checkpoint_every: int = 50  # epochs
    keep_checkpoints: int = 2  # older periodic checkpoints are deleted after a newer one is safely written
    # suites with PAD-padded rows (TinyMem): skip a batch's trailing all-PAD columns (faster; the loss then averages
    # fewer PAD->PAD positions). False: the reference's loss, the mean over all max_ctx - 1 positions of every row
    trim_padding: bool = True
    # a train-time memorization regularizer (train/regularizers.py); "none" = the plain loss, same bits as without
    regularizer: RegularizerConfig = field(default_factory=RegularizerConfig)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("epochs", "batch_size", "checkpoint_every", "keep_checkpoints"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"train.{name} must be > 0, got {getattr(self, name)}")


def _optimizer_bytes(opt: torch.optim.Optimizer) -> bytes:
    sd = opt.state_dict()
    tensors = {f"state.{i}.{k}": v for i, st in sd["state"].items() for k, v in st.items() if torch.is_tensor(v)}
    return save({k: v.contiguous().cpu() for k, v in tensors.items()},
                metadata={"param_groups": json.dumps(sd["param_groups"])})


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


def continue_optimizer(opt: torch.optim.Optimizer, path: Path, cfg: OptimConfig) -> None:
    """Load the optimizer state of an earlier run (``path``: its ``optimizer.safetensors`` or the checkpoint directory
    holding it) into ``opt``; the hyper-parameters stay ``cfg``'s (fine-tuning continues the moments, not the lr)."""
    path = path / "optimizer.safetensors" if path.is_dir() else path
    if not path.is_file():
        raise ObliviateError(f"optimizer state {str(path)!r} does not exist (give a pre-training checkpoint directory "
                             "checkpoints/epoch_XXXXXX or its optimizer.safetensors)")
    try:
        _load_optimizer(opt, path)
    except (ValueError, KeyError) as exc:
        raise ObliviateError(f"optimizer state {str(path)!r} does not fit this model's trainable parameters: "
                             f"{exc}") from None
    for group in opt.param_groups:
        group.update(lr=cfg.lr, weight_decay=cfg.weight_decay)
        if "betas" in group:
            group["betas"] = tuple(cfg.betas)
        if "momentum" in group:
            group["momentum"] = cfg.momentum


@dataclass(frozen=True)
class PretrainRecipe:
    """How a model was pre-trained, for the methods that retrain it (train-time regularizers) or continue training
    it (fine-tuning): the config, and the rows' conventions -- ``score_pad``: every position is scored, PAD included
    (TinyMem, as the reference); ``pad_id``: trailing all-PAD columns are skipped (the suite's speed deviation)."""

    train: TrainConfig
    pad_id: int | None = None
    score_pad: bool = False

    def trim(self) -> Callable[[LMBatch], LMBatch] | None:
        pad = self.pad_id if self.train.trim_padding else None
        return None if pad is None else (lambda b: drop_trailing_token_columns(b, pad, keep=1))

    def rows(self, split: TokenData) -> TokenData:
        """``split`` labelled as pre-training labelled its rows (``score_pad``: every position attended and scored)."""
        if not self.score_pad:
            return split
        return TokenData(split.input_ids, torch.ones_like(split.input_ids), split.input_ids.clone())


@dataclass
class PretrainedLMData(LMUnlearnData):
    """:class:`LMUnlearnData` plus the pre-training recipe of the model to edit (the TinyMem suite passes it, with
    the training rows in ``extra["train"]``); methods that do not retrain ignore both."""

    recipe: PretrainRecipe | None = None


def _load_weights(model: nn.Module, path: Path) -> None:
    """Load a checkpoint's safetensors weights straight into ``model`` (no second model in memory)."""
    tensors = load_tensors(path)
    missing, unexpected = model.load_state_dict(tensors, strict=False)
    tied = getattr(model, "_tied_weights_keys", None) or []
    if unexpected or set(missing) - set(tied):
        raise ObliviateError(f"checkpoint {str(path)!r} does not fit the model (missing {sorted(missing)[:3]}, "
                             f"unexpected {sorted(unexpected)[:3]})")
    if hasattr(model, "tie_weights"):
        model.tie_weights()


def run_fingerprint(*parts: Any) -> str:
    """What must match for a checkpoint to be resumed."""
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


def _find_resumable(out_dir: Path, epochs: int, fingerprint: str, fresh: bool) -> Path | None:
    """The checkpoint to resume from (None = start at epoch 0), after the checks in the module docstring."""
    for tmp in (out_dir / "checkpoints").glob(".*.tmp"):  # a checkpoint write cut short (kill -9): never complete
        shutil.rmtree(tmp, ignore_errors=True)
    found = checkpoints(out_dir)
    if fresh:
        shutil.rmtree(out_dir / "checkpoints", ignore_errors=True)
        return None
    if not found:
        return None
    last = found[-1]
    state = read_json(last / "trainer_state.json")
    if state.get("fingerprint", "") != fingerprint:
        raise ObliviateError(
            f"{str(out_dir / 'checkpoints')!r} holds checkpoints of a different run (config or code changed); "
            "pass --overwrite to start fresh or choose another output directory")
    if int(state["epoch"]) > epochs:
        raise ObliviateError(
            f"the newest checkpoint ({last.name}) is past train.epochs={epochs}; a smaller budget cannot be resumed: "
            "pass --overwrite to train from scratch, or raise train.epochs")
    return last


def pretrain(
    model: nn.Module,
    data: TokenData,
    cfg: TrainConfig,
    seed: int,
    out_dir: Path | None = None,
    progress: bool = True,
    fingerprint: str = "",
    fresh: bool = False,
    trim: Callable[[LMBatch], LMBatch] | None = None,
    on_checkpoint: Callable[[int, nn.Module], dict[str, float]] | None = None,
    optimizer_state: Path | None = None,
) -> TrainStats:
    """Train ``model`` on ``data`` with the mean NLL over its scored labels (TinyMem scores every position, PAD
    included, as the reference). ``trim`` may shorten each batch (TinyMem: trailing PAD columns).

    With ``out_dir``, writes ``checkpoints/epoch_XXXXXX`` every ``checkpoint_every`` epochs and resumes from the
    newest one that passes the resume rules. Batches are a pure function of (seed, epoch), so a resumed run equals
    an uninterrupted one bit for bit.

    ``cfg.regularizer`` (not "none") hooks a train-time regularizer into the loop (:mod:`obliviate.train.regularizers`;
    its state goes into checkpoints). ``optimizer_state``: an ``optimizer.safetensors`` of an earlier run to continue
    from (fine-tuning a pre-trained model; its parameters must be this model's trainable ones, in order; learning
    rate, weight decay and betas are then this config's).
    """
    if len(data) == 0:
        raise ObliviateError("the training data is empty")
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, cfg)
    if optimizer_state is not None:
        continue_optimizer(opt, Path(optimizer_state), cfg)
    start_epoch, history = 0, []
    last = _find_resumable(out_dir, cfg.epochs, fingerprint, fresh) if out_dir is not None else None
    if last is not None:
        state = read_json(last / "trainer_state.json")
        _load_weights(model, last / "model.safetensors")
        _load_optimizer(opt, last / "optimizer.safetensors")
        start_epoch, history = int(state["epoch"]), list(state.get("history", []))
    n = len(data)
    reg = make_regularizer(cfg.regularizer)
    if reg is not None:  # attached last: nothing below raises before the `finally` that detaches it
        reg.attach(model, data, seed)
        if last is not None and (last / "regularizer.safetensors").is_file():
            reg.load_state_dict(load_tensors(last / "regularizer.safetensors"))
    tokens = [0]

    def epoch_batches(epoch: int) -> Iterator[LMBatch]:
        perm = epoch_permutation(n, seed, epoch)
        for s in range(0, n, cfg.batch_size):
            batch = batch_of(data, perm[s : s + cfg.batch_size], trim=trim is None)
            batch = (trim(batch) if trim is not None else batch).to(device)
            tokens[0] += batch.input_ids.numel()
            yield batch

    def loss_fn(m: nn.Module, batch: LMBatch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if reg is not None:
            return reg.loss(m, batch)
        return mean_nll(*batch.scored_logits(m)), {}

    def on_epoch_end(done: int, entry: dict[str, float]) -> None:
        if out_dir is None or not (done % cfg.checkpoint_every == 0 or done == cfg.epochs):
            return
        record: dict[str, float] = {"epoch": done, "train_loss": entry["loss"]}
        if on_checkpoint is not None:
            model.eval()
            record.update(on_checkpoint(done, model))
            model.train()
        history.append(record)
        _write_checkpoint(model, opt, out_dir, done, seed, history, cfg.keep_checkpoints, fingerprint,
                          reg.state_dict() if reg is not None else {})

    t0 = time.perf_counter()
    try:
        logs = run_epochs(model, params, opt, loss_fn, epoch_batches, cfg.epochs, start_epoch=start_epoch,
                          grad_clip=cfg.grad_clip, on_epoch_end=on_epoch_end, progress=progress, desc="train")
    finally:
        if reg is not None:
            reg.detach(model)  # hooks off, test-time behaviour baked in: a plain model again
    wall = time.perf_counter() - t0
    return TrainStats(
        epochs_run=cfg.epochs - start_epoch,
        resumed_from_epoch=start_epoch,
        final_loss=logs[-1]["loss"] if logs else (history[-1]["train_loss"] if history else float("nan")),
        wall_s=wall,
        tokens=tokens[0],
        tokens_per_s=tokens[0] / wall if wall > 0 else 0.0,
        history=history if out_dir is not None else [{"epoch": e["epoch"], "train_loss": e["loss"]} for e in logs],
    )


def _write_checkpoint(model: nn.Module, opt: torch.optim.Optimizer, out_dir: Path, epoch: int, seed: int,
                      history: list[dict[str, float]], keep: int, fingerprint: str,
                      reg_state: dict[str, torch.Tensor]) -> None:
    root = out_dir / "checkpoints"
    state = {"epoch": epoch, "seed": seed, "fingerprint": fingerprint, "history": history}
    files = {"optimizer.safetensors": _optimizer_bytes(opt), "trainer_state.json": json.dumps(state, indent=2).encode()}
    if reg_state:  # e.g. spectral_norm's power vectors (weights are saved as trained: example-tied dropout unbaked)
        files["regularizer.safetensors"] = save({k: v.contiguous().cpu() for k, v in reg_state.items()})
    save_pretrained_atomic(model, root / f"epoch_{epoch:06d}", overwrite=True, extra_files=files)
    for old in checkpoints(out_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
