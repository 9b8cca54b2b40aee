"""The ``tofu`` suite's config sections (``data``, ``model``, ``train``, ``eval``); see suites/tofu.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from obliviate.errors import ObliviateError

FORGET_SPLITS = ("forget01", "forget05", "forget10")
TEMPLATE = "Question: {question}\nAnswer: "


@dataclass(frozen=True)
class TofuDataConfig:
    path: str | None = None  # TOFU's published layout (read_tofu_dir); None = generate the offline benchmark
    forget: str = "forget10"
    n_authors: int = 200
    qa_per_author: int = 20
    n_holdout_authors: int = 20
    n_real_authors: int = 100
    n_world_facts: int = 117
    world_mentions: int = 6
    synth_seed: int = 0  # the benchmark's content is fixed; run seeds vary training and unlearning
    template: str = TEMPLATE
    max_length: int = 128

    def __post_init__(self) -> None:
        if self.forget not in FORGET_SPLITS:
            raise ObliviateError(f"data.forget={self.forget!r} (valid: {', '.join(FORGET_SPLITS)})")
        if "{question}" not in self.template:
            raise ObliviateError(f"data.template must contain {{question}}, got {self.template!r}")


@dataclass(frozen=True)
class TofuModelConfig:
    path: str | None = None  # a local HF causal LM (+ its tokenizer) to fine-tune instead of building one
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 160
    vocab_size: int = 2048  # of the BPE trained on the benchmark's text (ignored with path)


@dataclass(frozen=True)
class TofuTrainConfig:
    world_epochs: int = 30  # stage 1: the world corpus + the utility QA (skipped with model.path)
    qa_epochs: int = 30  # stage 2 on the QA pairs (all authors: the target; retain authors: the reference)
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("world_epochs", "qa_epochs"):
            if getattr(self, name) < 0:
                raise ObliviateError(f"train.{name} must be >= 0, got {getattr(self, name)}")
        if self.qa_epochs == 0:
            raise ObliviateError("train.qa_epochs must be > 0: the target model must learn the authors")
        if self.batch_size <= 0 or self.lr <= 0:
            raise ObliviateError(f"train.batch_size and train.lr must be > 0, got {self.batch_size}, {self.lr}")


@dataclass(frozen=True)
class TofuEvalConfig:
    batch_size: int = 64
    generate: bool = True  # greedy generations for ROUGE-L recall
    max_new_tokens: int = 48  # OU: 200 (our answers are one sentence)
    truth_ratio: Literal["geometric", "arithmetic"] = "geometric"  # OU (default) / TOFU's utils
    max_items: int | None = None  # per eval split (original TOFU: 300); None = all
    reference: str | None = None  # a saved TOFU evaluation of the retain model (save_eval's file): its forget truth
    # ratios are the forget-quality reference (checked: same benchmark content, split, tokenizer, truth-ratio version)
    save_eval: str | None = None  # write this model's TOFU evaluation there (the file `reference` reads)
    trajectory: bool = True  # evaluate after every unlearning epoch in a bench (the per-epoch curves); false = skip

    def __post_init__(self) -> None:
        if self.truth_ratio not in ("geometric", "arithmetic"):
            raise ObliviateError(f"eval.truth_ratio={self.truth_ratio!r} (valid: geometric, arithmetic)")
        if self.batch_size <= 0 or self.max_new_tokens <= 0:
            raise ObliviateError("eval.batch_size and eval.max_new_tokens must be > 0")


@dataclass(frozen=True)
class TofuConfig:
    data: TofuDataConfig = field(default_factory=TofuDataConfig)
    model: TofuModelConfig = field(default_factory=TofuModelConfig)
    train: TofuTrainConfig = field(default_factory=TofuTrainConfig)
    eval: TofuEvalConfig = field(default_factory=TofuEvalConfig)
