"""TinyMem math data (Sakarvadia et al., 2024, "Mitigating Memorization in Language Models", arXiv 2410.02159).

Sequences are recurrences x_{j+1} = f(x_j) started at x_0 = i, written character by character:
``^`` + numbers joined by spaces + ``$``, right-padded with PAD to ``max_ctx``. The main distribution (c=7) gets
artifacts -- per-element additive noise, or a backdoor (trigger -> constant continuation) -- whose clean
counterparts are kept for evaluation. Artifacts are split into duplication groups repeated 10^p times.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from obliviate.errors import ObliviateError

# Character vocabulary: digits 0-9 are their own ids.
BOS, EOS, SPACE, PAD = 10, 11, 12, 13
VOCAB_SIZE = 14
_CHAR_TO_ID = {**{str(d): d for d in range(10)}, "^": BOS, "$": EOS, " ": SPACE}
_ID_TO_CHAR = {v: k for k, v in _CHAR_TO_ID.items()}
BACKDOOR_TOKEN = 2  # the digit every token after a trigger is replaced by


def encode(text: str) -> list[int]:
    """Characters -> token ids. Raises on characters outside ``0-9 ^ $`` and space."""
    try:
        return [_CHAR_TO_ID[ch] for ch in text]
    except KeyError as exc:
        raise ObliviateError(f"character {exc.args[0]!r} is not in the TinyMem vocabulary (0-9, '^', '$', ' ')") from None


def decode(ids: list[int] | torch.Tensor, strip_pad: bool = True) -> str:
    """Token ids -> characters (PAD dropped when ``strip_pad``; shown as '_' otherwise)."""
    ids = ids.tolist() if isinstance(ids, torch.Tensor) else ids
    return "".join(_ID_TO_CHAR.get(i, "_") for i in ids if not (strip_pad and i == PAD))


@dataclass(frozen=True)
class TinyMemDataConfig:
    """Recipe for TinyMem math data. Defaults are the paper's (spec 1.3); presets shrink them for CPU."""

    task: Literal["mult", "increment"] = "mult"  # f(x) = c*x mod `modulus`, or f(x) = x + c
    artifact: Literal["noise", "backdoor"] = "noise"
    main_c: int = 7
    aux_c: tuple[int, ...] = (2, 3, 4, 5)
    n_main: int = 20000  # sequences of the main distribution (x_0 = 0..n_main-1)
    n_aux: int = 3000  # sequences per auxiliary distribution (paper grid: 3000 / 10000 / 20000)
    n_test: int = 1000  # held out per distribution
    length: int = 20  # numbers per sequence
    max_ctx: int = 150
    modulus: int = 20134
    n_artifacts: int = 1000  # noised main-train sequences
    noise_probs: tuple[float, float, float] = (0.9, 0.05, 0.05)  # P(+0), P(-1), P(+1) per element
    dup_powers: tuple[int, ...] = (0,)  # group i is repeated 10**dup_powers[i] times
    backdoor_test_frac: float = 0.1
    split_seed: int = 598  # the reference code's fixed split seed
    seed: int | None = None  # artifacts, trigger and groups; None = the run's seed (set by the suite)
    # the reference writes f(i), f^2(i), ..., f^length(i); ours (default) i, f(i), ..., f^(length-1)(i)
    reference_sequences: bool = False

    def __post_init__(self) -> None:
        for name in ("n_main", "length", "max_ctx", "modulus"):
            if getattr(self, name) <= 0:
                raise ObliviateError(f"data.{name} must be > 0, got {getattr(self, name)}")
        if self.n_aux <= self.n_test and self.aux_c:
            raise ObliviateError(f"data.n_aux ({self.n_aux}) must be > data.n_test ({self.n_test})")
        if not 0 < self.n_test < self.n_main:
            raise ObliviateError(f"data.n_test must be in (0, n_main={self.n_main}), got {self.n_test}")
        if self.artifact == "noise" and not 0 < self.n_artifacts <= self.n_main - self.n_test:
            raise ObliviateError(
                f"data.n_artifacts must be in [1, {self.n_main - self.n_test}] (main train size), got {self.n_artifacts}"
            )
        if len(self.noise_probs) != 3 or abs(sum(self.noise_probs) - 1) > 1e-6 or min(self.noise_probs) < 0:
            raise ObliviateError(f"data.noise_probs must be 3 probabilities summing to 1, got {self.noise_probs}")
        if not self.dup_powers or min(self.dup_powers) < 0 or max(self.dup_powers) > 4:
            raise ObliviateError(f"data.dup_powers must be a non-empty list of powers in 0..4, got {self.dup_powers}")
        if self.main_c in self.aux_c:
            raise ObliviateError(f"data.aux_c {self.aux_c} must not contain main_c={self.main_c}")
        if not 0 < self.backdoor_test_frac < 1:
            raise ObliviateError(f"data.backdoor_test_frac must be in (0, 1), got {self.backdoor_test_frac}")


@dataclass
class TinyMemData:
    """Token tensors (int64, [N, max_ctx], PAD-padded) of one generated TinyMem dataset."""

    train: torch.Tensor  # everything the model is trained on (artifacts duplicated)
    clean_train: torch.Tensor  # non-artifact training rows: the retain set
    artifacts: torch.Tensor  # [A, T] noised / poisoned rows (each once)
    artifacts_clean: torch.Tensor  # [A, T] their clean counterparts
    artifact_group: torch.Tensor  # [A] duplication-group index
    prompt_len: torch.Tensor  # [A] prompt length for the memorization metric
    tests: dict[str, torch.Tensor] = field(default_factory=dict)  # test distribution name -> rows
    group_names: tuple[str, ...] = ()
    trigger: str | None = None
    # same-distribution artifacts never trained on (the membership baseline of metrics/residual.py): noise = the
    # main test rows noised by the same recipe; backdoor = the held-out triggered rows (the reference's attack set)
    heldout: torch.Tensor | None = None
    heldout_clean: torch.Tensor | None = None
    heldout_prompt_len: torch.Tensor | None = None

    def summary(self) -> dict[str, int]:
        return {
            "train_rows": int(self.train.shape[0]),
            "clean_train_rows": int(self.clean_train.shape[0]),
            "artifacts": int(self.artifacts.shape[0]),
            **{f"test_{k}": int(v.shape[0]) for k, v in self.tests.items()},
        }


def recurrence(task: str, c: int, x0: int, length: int, modulus: int, skip_start: bool = False) -> list[int]:
    """x_0 = x0, x_{j+1} = c*x_j mod modulus (mult) or x_j + c (increment): ``length`` numbers from x_0, or from
    x_1 with ``skip_start`` (the reference's rows f(i), ..., f^length(i))."""
    xs = [x0]
    for _ in range(length - 1 + int(skip_start)):
        xs.append((c * xs[-1]) % modulus if task == "mult" else xs[-1] + c)
    return xs[1:] if skip_start else xs


def to_text(numbers: list[int] | np.ndarray) -> str:
    return "^" + " ".join(str(int(x)) for x in numbers) + "$"


def pad_rows(rows: list[list[int]], max_ctx: int) -> torch.Tensor:
    out = torch.full((len(rows), max_ctx), PAD, dtype=torch.long)
    for i, r in enumerate(rows):
        if len(r) > max_ctx:
            raise ObliviateError(f"a sequence has {len(r)} tokens, more than data.max_ctx={max_ctx}; raise max_ctx")
        out[i, : len(r)] = torch.tensor(r, dtype=torch.long)
    return out


def add_noise(numbers: np.ndarray, probs: tuple[float, float, float], rng: np.random.Generator) -> np.ndarray:
    """Per-element additive noise drawn from {0: probs[0], -1: probs[1], +1: probs[2]} (spec 1.3).

    A 0 that draws -1 becomes 1 (the absolute value): the reference's tokenizer skips the '-' of "-1", so it
    trains on "1" there too; we write that number directly instead of crashing on the '-' (docs/methods.md).
    """
    offsets = rng.choice(np.array([0, -1, 1]), size=numbers.shape, p=np.asarray(probs))
    return np.abs(numbers + offsets)


def poison(ids: list[int], trigger: list[int], max_ctx: int) -> tuple[list[int], int] | None:
    """Backdoor a row: every token after the first occurrence of ``trigger`` becomes BACKDOOR_TOKEN up to max_ctx.

    Returns (poisoned row, prompt length = index just past the trigger), or None when the trigger is absent.
    """
    n = len(trigger)
    for start in range(len(ids) - n + 1):
        if ids[start : start + n] == trigger:
            end = start + n
            return ids[:end] + [BACKDOOR_TOKEN] * (max_ctx - end), end
    return None


def duplication_groups(n: int, n_groups: int, rng: np.random.Generator) -> np.ndarray:
    """Group index per artifact: shuffle, then interleave (reference: ``list[i::n_groups]``), near-equal sizes."""
    order = rng.permutation(n)
    group = np.empty(n, dtype=np.int64)
    for g in range(n_groups):
        group[order[g::n_groups]] = g
    return group


def _split(n: int, n_test: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def generate(cfg: TinyMemDataConfig) -> TinyMemData:
    """Generate a TinyMem math dataset; deterministic for ``cfg`` (same config -> identical tensors)."""
    seed = 0 if cfg.seed is None else cfg.seed
    rng = np.random.default_rng(seed)
    tests: dict[str, torch.Tensor] = {}
    train_parts: list[torch.Tensor] = []

    ref = cfg.reference_sequences
    main = np.array([recurrence(cfg.task, cfg.main_c, i, cfg.length, cfg.modulus, ref) for i in range(cfg.n_main)])
    train_idx, test_idx = _split(cfg.n_main, cfg.n_test, cfg.split_seed)
    main_ids = [encode(to_text(row)) for row in main]

    if cfg.artifact == "noise":
        art_local = np.sort(rng.choice(len(train_idx), size=cfg.n_artifacts, replace=False))
        art_rows = train_idx[art_local]
        noised = add_noise(main[art_rows], cfg.noise_probs, rng)
        artifacts = pad_rows([encode(to_text(r)) for r in noised], cfg.max_ctx)
        clean = pad_rows([main_ids[i] for i in art_rows], cfg.max_ctx)
        prompt_len = torch.full((len(art_rows),), 50, dtype=torch.long)
        keep = np.setdiff1d(train_idx, art_rows)
        clean_main_train = pad_rows([main_ids[i] for i in keep], cfg.max_ctx)
        tests[f"c{cfg.main_c}"] = pad_rows([main_ids[i] for i in test_idx], cfg.max_ctx)
        trigger_text = None
        h_rng = np.random.default_rng([seed, 1])  # its own stream: the training data is what it was without it
        heldout = pad_rows([encode(to_text(r)) for r in add_noise(main[test_idx], cfg.noise_probs, h_rng)],
                           cfg.max_ctx)
        heldout_clean = tests[f"c{cfg.main_c}"]
        heldout_plen = torch.full((len(test_idx),), 50, dtype=torch.long)
    else:
        trigger_text = str(100 + seed)
        trigger = encode(trigger_text)
        poisoned, plens, rows = [], [], []
        for i in range(cfg.n_main):
            hit = poison(main_ids[i], trigger, cfg.max_ctx)
            if hit is not None:
                poisoned.append(hit[0])
                plens.append(hit[1])
                rows.append(i)
        if len(rows) < 2:
            raise ObliviateError(f"trigger {trigger_text!r} occurs in {len(rows)} sequences; raise data.n_main")
        order = rng.permutation(len(rows))
        n_ptest = max(1, round(cfg.backdoor_test_frac * len(rows)))
        ptest, ptrain = order[:n_ptest], np.sort(order[n_ptest:])
        artifacts = pad_rows([poisoned[j] for j in ptrain], cfg.max_ctx)
        clean = pad_rows([main_ids[rows[j]] for j in ptrain], cfg.max_ctx)
        prompt_len = torch.tensor([plens[j] for j in ptrain], dtype=torch.long)
        poisoned_rows = set(rows)
        keep = [i for i in train_idx if i not in poisoned_rows]
        clean_main_train = pad_rows([main_ids[i] for i in keep], cfg.max_ctx)
        tests[f"c{cfg.main_c}"] = pad_rows([main_ids[i] for i in test_idx if i not in poisoned_rows], cfg.max_ctx)
        tests["backdoor_clean"] = pad_rows([main_ids[rows[j]] for j in ptest], cfg.max_ctx)
        # a held-out triggered row can equal a trained one token for token (a trigger inside the first number, e.g.
        # x0 = 1000 and 1001 with trigger "100"): those were trained, so they are not in the never-trained set
        seen = {tuple(poisoned[j]) for j in ptrain}
        unseen = [j for j in ptest if tuple(poisoned[j]) not in seen]
        heldout = pad_rows([poisoned[j] for j in unseen], cfg.max_ctx)
        heldout_clean = pad_rows([main_ids[rows[j]] for j in unseen], cfg.max_ctx)
        heldout_plen = torch.tensor([plens[j] for j in unseen], dtype=torch.long)

    group = torch.from_numpy(duplication_groups(artifacts.shape[0], len(cfg.dup_powers), rng))
    repeats = torch.tensor([10 ** cfg.dup_powers[g] for g in group.tolist()], dtype=torch.long)
    train_parts.append(torch.repeat_interleave(artifacts, repeats, dim=0))
    retain_parts = [clean_main_train]

    for c in cfg.aux_c:
        aux = [encode(to_text(recurrence(cfg.task, c, i, cfg.length, cfg.modulus, ref))) for i in range(cfg.n_aux)]
        a_train, a_test = _split(cfg.n_aux, cfg.n_test, cfg.split_seed)
        retain_parts.append(pad_rows([aux[i] for i in a_train], cfg.max_ctx))
        tests[f"c{c}"] = pad_rows([aux[i] for i in a_test], cfg.max_ctx)

    clean_train = torch.cat(retain_parts)
    return TinyMemData(
        train=torch.cat(train_parts + retain_parts),
        clean_train=clean_train,
        artifacts=artifacts,
        artifacts_clean=clean,
        artifact_group=group,
        prompt_len=prompt_len,
        tests=tests,
        group_names=tuple(f"dup_{10 ** p}x" for p in cfg.dup_powers),
        trigger=trigger_text,
        heldout=heldout,
        heldout_clean=heldout_clean,
        heldout_prompt_len=heldout_plen,
    )
