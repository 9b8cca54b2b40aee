"""The one shared unlearning loop: forget batches (+ retain batches) -> loss -> optimizer step.

Plain PyTorch, readable top to bottom. Deterministic: batch order is a pure function of (seed, epoch).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from obliviate.errors import ObliviateError
from obliviate.methods.base import LoopConfig
from obliviate.profiling import track
from obliviate.train.batching import epoch_permutation, trim_padding
from obliviate.types import ForgetRetainBatch, UnlearnData, UnlearnResult

LossFn = Callable[[nn.Module, ForgetRetainBatch], tuple[Tensor, dict[str, float]]]


def make_optimizer(params: list[nn.Parameter], cfg: LoopConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=cfg.betas)


class RetainStream:
    """Endless reshuffled stream over the retain rows; the k-th pass uses permutation (seed, k)."""

    def __init__(self, rows: Tensor, seed: int) -> None:
        self.rows, self.seed, self.pass_no, self.pos = rows, seed, 0, 0
        self.perm = epoch_permutation(rows.shape[0], seed, 0) if rows.shape[0] else torch.empty(0, dtype=torch.long)

    def take(self, n: int) -> Tensor:
        if n == 0 or self.rows.shape[0] == 0:
            return self.rows[:0]
        idx = []
        while len(idx) < n:
            if self.pos >= self.perm.numel():
                self.pass_no += 1
                self.perm = epoch_permutation(self.rows.shape[0], self.seed, self.pass_no)
                self.pos = 0
            take = min(n - len(idx), self.perm.numel() - self.pos)
            idx.extend(self.perm[self.pos : self.pos + take].tolist())
            self.pos += take
        return self.rows[torch.tensor(idx)]


def run_loop(
    model: nn.Module,
    params: list[nn.Parameter],
    loss_fn: LossFn,
    data: UnlearnData,
    cfg: LoopConfig,
    use_retain: bool = True,
    progress: bool = False,
    desc: str = "unlearn",
) -> UnlearnResult:
    """Optimise ``params`` of ``model`` on ``loss_fn`` for ``cfg.epochs`` passes over ``data.forget``."""
    if not params:
        raise ObliviateError("the method has no trainable parameters (all frozen?)")
    device = next(model.parameters()).device
    opt = make_optimizer(params, cfg)
    retain = RetainStream(data.retain, cfg.seed + 7919) if use_retain else None
    n = data.forget.shape[0]
    steps_per_epoch = (n + cfg.batch_size - 1) // cfg.batch_size
    logs: list[dict[str, float]] = []
    model.train()
    with track("unlearn") as cost:
        bar = tqdm(range(cfg.epochs), desc=desc, unit="epoch", disable=not progress, dynamic_ncols=True, leave=False)
        for epoch in bar:
            perm = epoch_permutation(n, cfg.seed, epoch)
            sums: dict[str, float] = {}
            for s in range(steps_per_epoch):
                forget = trim_padding(data.forget[perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]], data.pad_id)
                rb = retain.take(cfg.retain_batch_size) if retain is not None else data.retain[:0]
                batch = ForgetRetainBatch(forget.to(device), trim_padding(rb, data.pad_id).to(device), data.pad_id)
                loss, stats = loss_fn(model, batch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
                opt.step()
                for k, v in {"loss": loss.item(), **stats}.items():
                    sums[k] = sums.get(k, 0.0) + v
            entry = {"epoch": float(epoch + 1), **{k: v / steps_per_epoch for k, v in sums.items()}}
            logs.append(entry)
            bar.set_postfix(loss=f"{entry['loss']:.4f}")
    model.eval()
    for p in params:
        p.grad = None
    return UnlearnResult(model=model, logs=logs, info={"steps": cfg.epochs * steps_per_epoch},
                         wall_s=cost.wall_s, peak_rss_mb=cost.peak_rss_mb)
