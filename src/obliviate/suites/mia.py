"""The ``mia`` suite: membership inference on any local Hugging Face causal LM, evaluation only.

``obliviate eval --suite mia --model DIR --set data.forget=F --set data.holdout=H``: the model's scores on a set it may
have been trained on (``data.forget``) and on a set it was not (``data.holdout``) -- files as the LM commands read
them (``.jsonl``/``.json`` QA pairs, only the answer scored; ``.txt`` documents, every token scored) -- under every
attack of ``metrics/mia.py`` (loss, zlib, Min-K%, Min-K%++, the reference model's loss difference when
``eval.reference_model`` is given, gradient norm), each as an AUC with the per-item scores kept, in MUSE's convention
(forget label 0; a memorised forget set gives AUC ~0, a retrained model ~0.5) or open-unlearning's
(``eval.convention: ou``, AUC_OU = 1 - AUC_MUSE). It trains nothing: ``train`` and ``unlearn`` refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from obliviate.errors import ObliviateError
from obliviate.io import hash_model
from obliviate.suites.base import SUITES, Column, Evaluation

ALL_ATTACKS = ("loss", "zlib", "min_k", "min_k_pp", "reference", "gradnorm")


@dataclass(frozen=True)
class MiaDataConfig:
    forget: str | None = None  # a file the model may have been trained on
    holdout: str | None = None  # a file of the same kind it was not trained on
    template: str = "Question: {question}\nAnswer: "
    max_length: int = 512


@dataclass(frozen=True)
class MiaModelConfig:
    path: str | None = None  # the model directory (its tokenizer reads the files); `eval --model DIR` fills it


@dataclass(frozen=True)
class MiaEvalConfig:
    attacks: tuple[str, ...] = ("loss", "zlib", "min_k", "min_k_pp")
    k: float = 0.4
    convention: str = "muse"
    reference_model: str | None = None  # for the "reference" attack: e.g. the model before fine-tuning
    batch_size: int = 16

    def __post_init__(self) -> None:
        bad = [a for a in self.attacks if a not in ALL_ATTACKS]
        if bad or not self.attacks:
            raise ObliviateError(f"eval.attacks {list(self.attacks)}: unknown {bad} (valid: {', '.join(ALL_ATTACKS)})")
        if self.convention not in ("muse", "ou"):
            raise ObliviateError(f"eval.convention={self.convention!r} (valid: muse, ou)")
        if "reference" in self.attacks and not self.reference_model:
            raise ObliviateError("the reference attack needs eval.reference_model (a local HF model directory)")


@dataclass(frozen=True)
class MiaConfig:
    data: MiaDataConfig = field(default_factory=MiaDataConfig)
    model: MiaModelConfig = field(default_factory=MiaModelConfig)
    eval: MiaEvalConfig = field(default_factory=MiaEvalConfig)


@dataclass
class MiaData:
    forget: Any
    holdout: Any
    texts: tuple[list[str], list[str]]
    digest: str


class MiaSuite:
    name = "mia"
    VERSION = "1.0"
    family = "lm"
    paper = None
    config_cls = MiaConfig
    default_preset = "mia"
    score_rule = "none (evaluation only)"

    def build_data(self, cfg: MiaConfig, seed: int) -> MiaData:
        import hashlib

        from transformers import AutoTokenizer

        from obliviate.data.lm_files import load_split, pad_id_of
        from obliviate.families.lm import TokenData
        from obliviate.metrics.mia import labelled_texts

        d = cfg.data
        if not d.forget or not d.holdout or not cfg.model.path:
            raise ObliviateError("the mia suite needs data.forget, data.holdout (files) and the model directory: "
                                 "obliviate eval --suite mia --model DIR --set data.forget=F --set data.holdout=H")
        tok = AutoTokenizer.from_pretrained(cfg.model.path, local_files_only=True)
        pad = pad_id_of(tok)
        splits = []
        for path in (d.forget, d.holdout):
            seqs, plens = load_split(path, tok, d.template, max_length=d.max_length)
            splits.append(TokenData.from_sequences(seqs, pad, plens))
        h = hashlib.sha256()
        for s in splits:
            for t in (s.input_ids, s.labels):
                h.update(t.numpy().tobytes())
        texts = (labelled_texts(splits[0], tok), labelled_texts(splits[1], tok))
        return MiaData(splits[0], splits[1], texts, h.hexdigest()[:16])

    def data_hash(self, data: MiaData) -> str:
        return data.digest

    def describe(self, cfg: MiaConfig, data: MiaData | None) -> list[str]:
        n = f"{len(data.forget)} forget vs {len(data.holdout)} holdout items" if data is not None else "files"
        return [f"data: {cfg.data.forget} vs {cfg.data.holdout} ({n})",
                f"attacks: {', '.join(cfg.eval.attacks)}; AUC in the {cfg.eval.convention} convention"]

    def columns(self, cfg: MiaConfig) -> list[Column]:
        return [Column(f"auc_{a}", f"AUC {a}", cfg.eval.convention == "muse", 3) for a in cfg.eval.attacks]

    def axes(self) -> dict[str, str]:
        return {"forget": "auc_min_k", "utility": "auc_loss"}

    def groups(self, cfg: MiaConfig) -> dict[str, Any] | None:
        return None

    def new_model(self, cfg: MiaConfig, seed: int, device: Any) -> nn.Module:
        raise ObliviateError("the mia suite only evaluates a model you give it: obliviate eval --suite mia --model DIR")

    def train(self, model: nn.Module, data: MiaData, cfg: MiaConfig, seed: int, out_dir: Path | None, fresh: bool,
              progress: bool) -> dict[str, Any]:
        raise ObliviateError("the mia suite only evaluates: use obliviate eval --suite mia --model DIR")

    def save_model(self, model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
        raise ObliviateError("the mia suite does not save models")

    def load_model(self, path: Path, device: Any) -> nn.Module:
        from obliviate.io import load_causal_lm

        return load_causal_lm(path, device=device or "cpu")

    def model_hash(self, model: nn.Module) -> str:
        return hash_model(model)

    def evaluate(self, model: nn.Module, data: MiaData, cfg: MiaConfig) -> Evaluation:
        from obliviate.metrics.mia import membership_inference

        e = cfg.eval
        ref = None
        if "reference" in e.attacks:
            from obliviate.io import load_causal_lm

            ref = load_causal_lm(e.reference_model, device=next(model.parameters()).device)
        results = {a: membership_inference(model, data.forget, data.holdout, a, convention=e.convention, k=e.k,
                                           texts=data.texts, ref_model=ref, batch_size=e.batch_size)
                   for a in e.attacks}
        scalars = {f"auc_{a}": r.auc for a, r in results.items()}
        return Evaluation({"attacks": {a: r.to_dict() for a, r in results.items()}, "scalars": dict(scalars)},
                          scalars)

    def unlearn_data(self, data: MiaData, before: dict[str, Any], cfg: MiaConfig) -> Any:
        raise ObliviateError("the mia suite only evaluates; unlearn with --forget/--retain files or a suite")

    def score(self, before: dict[str, float], after: dict[str, float]) -> float:
        return 0.0


SUITES.register("mia")(MiaSuite())
