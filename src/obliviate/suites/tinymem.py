"""The TinyMem suite (Sakarvadia et al., 2024): data -> model -> memorization -> unlearning -> metrics.

Splits: forget = artifacts the model currently memorizes (spec 1.5, ``mem_seq``); retain = all clean training rows
(main + auxiliary); tests = held-out clean rows per distribution. Metrics: % memorized / % correct per duplication
group, teacher-forced accuracy per test distribution; hyper-parameters are selected by the paper's score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from obliviate.config import to_dict
from obliviate.data.tinymem import EOS, PAD, TinyMemData, TinyMemDataConfig, generate
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.io import hash_model, hash_tensors, load_causal_lm, save_pretrained_atomic, source_hash
from obliviate.metrics.lm_quality import accuracy
from obliviate.metrics.memorization import percent_memorized
from obliviate.metrics.selection import selection_score
from obliviate.models.gpt2 import TinyMemModelConfig, build_model
from obliviate.papers import TINYMEM
from obliviate.suites.base import SUITES, Column, Evaluation
from obliviate.train.pretrain import PretrainedLMData, PretrainRecipe, TrainConfig, pretrain, run_fingerprint

NOISE_PROMPT_LEN = 50  # noise artifacts are prompted with their first 50 clean tokens (spec 1.4)


@dataclass(frozen=True)
class EvalConfig:
    k: int = 50  # continuation tokens compared (prompt length comes from the data: 50 for noise)
    batch_size: int = 256
    forget: Literal["memorized", "all"] = "memorized"  # forget set: artifacts memorized before unlearning, or all
    # retain set: the clean training rows (main + auxiliary), or as the reference: those plus every artifact row
    # (once each, as trained: noised / triggered) -- the reference's retain list includes its noise data
    retain: Literal["clean", "reference"] = "clean"
    # "is it really gone?" (metrics/residual.py): loss AUC vs held-out artifacts, extraction under sampling, rank
    residual: bool = True
    # decode % memorized as the reference (min_length = max_ctx bans EOS: rows ending inside the window never count)
    reference_compatible: bool = False
    n_samples: int = 10  # sampled continuations per artifact
    temperature: float = 1.0
    sample_seed: int = 0

    def __post_init__(self) -> None:
        if self.k <= 0 or self.batch_size <= 0:
            raise ObliviateError(f"eval.k and eval.batch_size must be > 0, got {self.k}, {self.batch_size}")
        if self.retain not in ("clean", "reference"):
            raise ObliviateError(f"eval.retain must be 'clean' or 'reference', got {self.retain!r}")
        if self.n_samples < 1 or self.temperature <= 0:
            raise ObliviateError(f"eval.n_samples must be >= 1 and eval.temperature > 0, got {self.n_samples}, "
                                 f"{self.temperature}")


def retain_rows(data: Any, e: EvalConfig) -> torch.Tensor:
    """The retain rows of ``eval.retain``: the clean training rows, or (``reference``) those followed by every
    artifact row once, as trained (the reference's retain list: clean c7 + aux train + its noise data)."""
    if e.retain == "reference":
        return torch.cat([data.clean_train, data.artifacts])
    return data.clean_train


@dataclass(frozen=True)
class TinyMemConfig:
    """The suite's own sections. Run-level fields (seed, device, methods, ...) live in ``RunConfig``."""

    data: TinyMemDataConfig = field(default_factory=TinyMemDataConfig)
    model: TinyMemModelConfig = field(default_factory=TinyMemModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self) -> None:
        if self.model.n_positions < self.data.max_ctx:
            raise ObliviateError(f"model.n_positions ({self.model.n_positions}) < data.max_ctx ({self.data.max_ctx})")
        if self.data.artifact == "noise" and self.eval.k > self.data.max_ctx - NOISE_PROMPT_LEN:
            raise ObliviateError(
                f"eval.k={self.eval.k} runs past the {self.data.max_ctx}-token rows after the {NOISE_PROMPT_LEN}-token "
                f"prompt (valid: 1..{self.data.max_ctx - NOISE_PROMPT_LEN})")


class TinyMemSuite:
    name = "tinymem"
    VERSION = "1.3"  # 1.1: noise never writes negative numbers; data.seed follows the run seed by default; 1.2: held-out
    # artifacts and the residual-memorization metrics; 1.3: backdoor runs leave backdoor_clean out of the mean accuracy
    family = "lm"
    paper = TINYMEM
    config_cls = TinyMemConfig
    default_preset = "tinymem-cpu"  # demo, train, unlearn
    bench_preset = "tinymem-bench"  # `obliviate bench tinymem`: all 17 methods
    score_rule = "min (mem_after-mem_before)/mem_before - (acc_after-acc_before)/acc_before (the paper's score)"

    # --- data ---------------------------------------------------------------------------------------------
    def data_config(self, cfg: TinyMemConfig, seed: int) -> TinyMemDataConfig:
        """``data.seed: null`` (the default) follows the run seed: each seed of a study gets its own artifacts."""
        from dataclasses import replace

        return cfg.data if cfg.data.seed is not None else replace(cfg.data, seed=seed)

    def build_data(self, cfg: TinyMemConfig, seed: int) -> TinyMemData:
        return generate(self.data_config(cfg, seed))

    def data_hash(self, data: TinyMemData) -> str:
        parts = [("train", data.train), ("artifacts", data.artifacts), ("artifacts_clean", data.artifacts_clean),
                 ("group", data.artifact_group), ("prompt_len", data.prompt_len)]
        parts += [(name, t) for name, t in (("heldout", data.heldout), ("heldout_clean", data.heldout_clean),
                                            ("heldout_prompt_len", data.heldout_prompt_len)) if t is not None]
        return hash_tensors(parts + sorted((f"test_{k}", v) for k, v in data.tests.items()))

    def describe(self, cfg: TinyMemConfig, data: TinyMemData | None) -> list[str]:
        d, m = cfg.data, cfg.model
        lines = [f"data: {d.task} + {d.artifact}, groups {', '.join(f'{10 ** p}x' for p in d.dup_powers)}"
                 + (f"; {data.summary()}" if data is not None else ""),
                 f"model: GPT-2, {m.n_layer} layer(s), {m.n_embd}-d, {cfg.train.epochs} epochs",
                 f"% memorized: greedy continuation of the clean prefix ({'first 50 tokens' if d.artifact == 'noise' else 'up to the trigger'}) "
                 f"reproduces the artifact's next {cfg.eval.k} tokens; forget set = "
                 + ("artifacts memorized before unlearning" if cfg.eval.forget == "memorized" else "every eligible artifact"),
                 "accuracy: teacher-forced next-token accuracy per test distribution, PAD positions included (paper)"]
        if cfg.eval.residual:
            lines.append(f"is it really gone: continuation-loss AUC vs never-trained artifacts (0.5 = gone), any of "
                         f"{cfg.eval.n_samples} samples at T={cfg.eval.temperature:g} reproduces the artifact, mean "
                         "token rank; held-out % mem = greedy reproduction of unseen artifacts"
                         + (" (the backdoor firing on unseen triggered rows)" if d.artifact == "backdoor" else ""))
        return lines

    # --- what is reported -----------------------------------------------------------------------------------
    def _group_names(self, cfg: TinyMemConfig) -> list[str]:
        return [f"dup_{10 ** p}x" for p in cfg.data.dup_powers]

    def _test_names(self, cfg: TinyMemConfig) -> list[str]:
        names = [f"c{cfg.data.main_c}", *(f"c{c}" for c in cfg.data.aux_c)]
        return names + (["backdoor_clean"] if cfg.data.artifact == "backdoor" else [])

    def columns(self, cfg: TinyMemConfig) -> list[Column]:
        return [Column("percent_memorized", "% memorized", False, 1),
                *(Column(f"mem_{g}", f"% mem {g}", False, 1) for g in self._group_names(cfg)),
                Column("percent_correct", "% correct", True, 1),
                *(Column(f"acc_{t}", f"acc {t}", True, 2) for t in self._test_names(cfg)),
                Column("mean_accuracy", "mean acc", True, 2),
                *([Column("loss_auc", "loss AUC", False, 2), Column("sampled_extraction", "% sampled", False, 1),
                   Column("token_rank", "rank", True, 2), Column("heldout_memorized", "held-out % mem", False, 1)]
                  if cfg.eval.residual else [])]

    def axes(self) -> dict[str, str]:
        return {"forget": "percent_memorized", "utility": "mean_accuracy"}

    def groups(self, cfg: TinyMemConfig) -> dict[str, Any] | None:
        names = self._group_names(cfg)
        return {"title": "% memorized by duplication group", "keys": [f"mem_{g}" for g in names],
                "labels": [g.removeprefix("dup_") for g in names]}

    # --- the model ------------------------------------------------------------------------------------------
    def new_model(self, cfg: TinyMemConfig, seed: int, device: Any) -> nn.Module:
        return build_model(cfg.model, seed=seed).to(device)

    def train_fingerprint(self, cfg: TinyMemConfig, seed: int) -> str:
        t = to_dict(cfg.train)
        for volatile in ("epochs", "checkpoint_every", "keep_checkpoints"):
            t.pop(volatile)
        return run_fingerprint(to_dict(self.data_config(cfg, seed)), to_dict(cfg.model), t, seed, self.VERSION,
                               source_hash())

    def train(self, model: nn.Module, data: TinyMemData, cfg: TinyMemConfig, seed: int, out_dir: Path | None,
              fresh: bool, progress: bool) -> dict[str, Any]:
        """Pre-train on every row, PAD targets included (reference); trailing all-PAD columns skipped (deviation;
        ``train.trim_padding: false`` averages over every position as the reference)."""
        stats = pretrain(model, TokenData.from_rows(data.train, PAD, score_pad=True), cfg.train, seed,
                         out_dir=out_dir, progress=progress, fingerprint=self.train_fingerprint(cfg, seed),
                         fresh=fresh, trim=PretrainRecipe(cfg.train, pad_id=PAD).trim())
        return {"epochs_run": stats.epochs_run, "resumed_from_epoch": stats.resumed_from_epoch,
                "final_loss": stats.final_loss, "tokens": stats.tokens, "tokens_per_s": stats.tokens_per_s,
                "history": stats.history}

    def save_model(self, model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
        save_pretrained_atomic(model, path, overwrite=True, extra=meta)

    def load_model(self, path: Path, device: Any) -> nn.Module:
        return load_causal_lm(path, device=device)

    def model_hash(self, model: nn.Module) -> str:
        return hash_model(model)

    # --- metrics, forget set, selection ---------------------------------------------------------------------
    def evaluate(self, model: nn.Module, data: TinyMemData, cfg: TinyMemConfig) -> Evaluation:
        """% memorized (overall and per duplication group), % correct, accuracy per test distribution."""
        mem, cor, scores = percent_memorized(model, data.artifacts, data.artifacts_clean, data.prompt_len,
                                             data.artifact_group, PAD, data.group_names, k=cfg.eval.k,
                                             batch_size=cfg.eval.batch_size, eos_id=EOS,
                                             reference_compatible=cfg.eval.reference_compatible)
        accs = {name: accuracy(model, rows, PAD, batch_size=cfg.eval.batch_size) for name, rows in data.tests.items()}
        # the backdoor's clean test set is reported but not averaged: removing the backdoor already scores in
        # % memorized, and its clean rows would reward the removal a second time (the reference re-splits c7)
        utility = [v.value for k, v in accs.items() if k != "backdoor_clean"]
        mean_acc = sum(utility) / max(len(utility), 1)
        metrics = {
            "percent_memorized": {"value": mem.value, "by_group": mem.breakdown, "per_item": mem.per_item,
                                  "eligible": int(scores.eligible.sum())},
            "percent_correct": {"value": cor.value, "by_group": cor.breakdown},
            "accuracy": {"by_test": {k: v.value for k, v in accs.items()},
                         "by_test_non_pad": {k: v.breakdown["non_pad"] for k, v in accs.items()}, "mean": mean_acc},
        }
        scalars = {"percent_memorized": mem.value, **{f"mem_{g}": v for g, v in mem.breakdown.items()},
                   "percent_correct": cor.value, **{f"acc_{k}": v.value for k, v in accs.items()},
                   "mean_accuracy": mean_acc}
        if cfg.eval.residual and data.heldout is not None:
            from obliviate.metrics.residual import residual_for_data, residual_scalars

            res = residual_for_data(model, data, cfg.eval, PAD)
            metrics["residual"] = res
            scalars.update(residual_scalars(res))
        return Evaluation(metrics, scalars)

    def unlearn_data(self, data: TinyMemData, before: dict[str, Any], cfg: TinyMemConfig) -> LMUnlearnData:
        """Forget = artifacts memorized before unlearning (or every eligible one); retain = clean training rows
        (``eval.retain: reference``: plus every artifact row, as the reference).
        ``before`` is the stored metric record, so a worker can rebuild the forget set without re-evaluating.

        For the train-time and fine-tuning methods (methods/tinymem): ``extra["train"]`` = every row pre-training
        saw, ``extra["clean"]`` = the clean versions of every artifact, both labelled as pre-training labels them
        (PAD scored), and ``recipe`` = how the model was pre-trained; the other methods ignore them."""
        per_item = before["percent_memorized"]["per_item"]
        if cfg.eval.forget == "memorized":
            sel = [p is not None and p >= 0.5 for p in per_item]
        else:
            sel = [p is not None for p in per_item]
        idx = torch.tensor(sel, dtype=torch.bool)
        base = LMUnlearnData.from_rows(data.artifacts[idx], retain_rows(data, cfg.eval), PAD)
        extra = {"train": TokenData.from_rows(data.train, PAD, score_pad=True),
                 "clean": TokenData.from_rows(data.artifacts_clean, PAD, score_pad=True)}
        return PretrainedLMData(base.forget, base.retain, extra,
                                recipe=PretrainRecipe(cfg.train, pad_id=PAD, score_pad=True))

    def score(self, before: dict[str, float], after: dict[str, float]) -> float:
        return selection_score(before["percent_memorized"], after["percent_memorized"],
                               before["mean_accuracy"], after["mean_accuracy"])


SUITES.register("tinymem")(TinyMemSuite())
