"""TinyMem on language (Sakarvadia et al., 2024, arXiv 2410.02159): GPT-2-style models trained on real offline text
with noise or backdoor artifacts in duplication groups (data/tinymem_lang.py), perplexity as the utility metric.

The math suite's code is reused by subclassing: the same duplication groups, % memorized, residual metrics, forget
set and training loop; what differs is the data, the tokenizer-sized model, the pad id, and perplexity in place of
accuracy, in the metrics and in the paper's language selection score (Δmem_rel + Δppl_rel, details §1).
"""

from __future__ import annotations

import hashlib
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from obliviate.data.tinymem_lang import LangData, LangDataConfig, generate_language
from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.io import load_causal_lm, save_pretrained_atomic
from obliviate.metrics.lm_quality import perplexity
from obliviate.metrics.memorization import percent_memorized
from obliviate.metrics.selection import selection_score
from obliviate.models.gpt2 import TinyMemModelConfig
from obliviate.papers import TINYMEM
from obliviate.suites.base import SUITES, Column, Evaluation
from obliviate.suites.tinymem import EvalConfig, TinyMemSuite, retain_rows
from obliviate.train.pretrain import PretrainedLMData, PretrainRecipe, TrainConfig, pretrain

PERPLEXITIES = ("masked", "reference")


@dataclass(frozen=True)
class LangEvalConfig(EvalConfig):
    batch_size: int = 64  # (B, T, V) logits: 64 x 150 x 8192 floats are 315 MB
    # masked: exp(mean NLL over real tokens); reference: the mean over batches of exp(batch NLL, PAD targets included)
    perplexity: Literal["masked", "reference"] = "masked"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.perplexity not in PERPLEXITIES:
            raise ObliviateError(f"eval.perplexity must be one of {', '.join(PERPLEXITIES)}, got {self.perplexity!r}")


@dataclass(frozen=True)
class LangModelConfig(TinyMemModelConfig):
    """The paper's GPT-2 (4 heads, 128-d, relu, no dropout); the vocabulary is the tokenizer's (data.vocab_size)."""

    vocab_size: int = 0  # 0 = the tokenizer's; any other value is an error

    def __post_init__(self) -> None:
        if self.vocab_size != 0:
            raise ObliviateError(f"model.vocab_size is the tokenizer's (set data.vocab_size), got {self.vocab_size}")
        TinyMemModelConfig(**{**asdict(self), "vocab_size": 1})  # the other fields' checks


@dataclass(frozen=True)
class LangTrainConfig(TrainConfig):
    """The math suite's training (AdamW 1e-3, wd 0.1, betas (0.9, 0.98), batch 128); language + noise runs 100
    epochs with checkpoints every 10 (spec 1.2; language + backdoor: 50 epochs)."""

    epochs: int = 100
    checkpoint_every: int = 10


@dataclass(frozen=True)
class TinyMemLangConfig:
    data: LangDataConfig = field(default_factory=LangDataConfig)
    model: LangModelConfig = field(default_factory=LangModelConfig)
    train: LangTrainConfig = field(default_factory=LangTrainConfig)
    eval: LangEvalConfig = field(default_factory=LangEvalConfig)

    def __post_init__(self) -> None:
        if self.model.n_positions < self.data.max_ctx:
            raise ObliviateError(f"model.n_positions ({self.model.n_positions}) < data.max_ctx ({self.data.max_ctx})")
        room = self.data.max_ctx - self.data.prompt_len
        if self.data.artifact == "noise" and self.eval.k > room:
            raise ObliviateError(f"eval.k={self.eval.k} runs past the {self.data.max_ctx}-token rows after the "
                                 f"{self.data.prompt_len}-token prompt (valid: 1..{room})")


class TinyMemLangSuite(TinyMemSuite):
    name = "tinymem_lang"
    VERSION = "1.0"
    family = "lm"
    paper = TINYMEM
    config_cls = TinyMemLangConfig
    default_preset = "tinymem-lang-cpu"
    bench_preset = "tinymem-lang-cpu"  # not the math suite's
    score_rule = ("min (mem_after-mem_before)/mem_before + (ppl_after-ppl_before)/ppl_before "
                  "(the paper's language score)")

    # --- data ---------------------------------------------------------------------------------------------------
    def build_data(self, cfg: TinyMemLangConfig, seed: int) -> LangData:
        return generate_language(self.data_config(cfg, seed))

    def data_hash(self, data: LangData) -> str:
        """The math suite's tensors plus the tokenizer (the same ids under another vocabulary are other data)."""
        from obliviate.data.tokenizer import tokenizer_hash

        return hashlib.sha256(f"{super().data_hash(data)}|{tokenizer_hash(data.tokenizer)}".encode()).hexdigest()

    def describe(self, cfg: TinyMemLangConfig, data: LangData | None) -> list[str]:
        d, m, e = cfg.data, cfg.model, cfg.eval
        tok = "GPT-2's BPE (50257)" if d.tokenizer == "gpt2" else f"a byte-level BPE ({d.vocab_size}) trained on it"
        art = (f"noise: {d.noise_rate:.0%} of tokens moved to id ±1 "
               + ("after the clean prompt" if d.noise_scope == "continuation" else "everywhere")
               if d.artifact == "noise" else f"backdoor: after a trigger token every token -> id {d.backdoor_token}")
        lines = [f"data: {d.source} text, {tok}, rows of {d.max_ctx} tokens; {art}; groups "
                 f"{', '.join(f'{10 ** p}x' for p in d.dup_powers)}"
                 + (f"; {data.summary()}" if data is not None else ""),
                 f"model: GPT-2, {m.n_layer} layer(s), {m.n_embd}-d, {cfg.train.epochs} epochs",
                 "% memorized: greedy continuation of the clean prefix ("
                 + (f"first {d.prompt_len} tokens" if d.artifact == "noise" else "up to the trigger")
                 + f") reproduces the artifact's next {e.k} tokens",
                 "perplexity per test set: " + ("exp(mean NLL over real tokens)" if e.perplexity == "masked" else
                                                f"mean over batches of {e.batch_size} of exp(batch NLL), PAD included "
                                                "(reference)")]
        if data is not None and data.trigger is not None:
            lines.append(f"trigger: token {data.trigger_id} {data.trigger!r}")
        if e.residual:
            lines.append(f"is it really gone: continuation-loss AUC vs never-trained artifacts (0.5 = gone), any of "
                         f"{e.n_samples} samples at T={e.temperature:g} reproduces the artifact, mean token rank; "
                         "held-out % mem = greedy reproduction of unseen artifacts")
        return lines

    # --- what is reported ---------------------------------------------------------------------------------------
    def _test_names(self, cfg: TinyMemLangConfig) -> list[str]:
        return ["test"] + (["backdoor_clean"] if cfg.data.artifact == "backdoor" else [])

    def columns(self, cfg: TinyMemLangConfig) -> list[Column]:
        math_cols = super().columns(cfg)
        mem = [c for c in math_cols if c.key == "percent_memorized" or c.key.startswith("mem_")]
        residual = [c for c in math_cols if c.key in ("loss_auc", "sampled_extraction", "token_rank",
                                                      "heldout_memorized")]
        return [*mem, Column("percent_correct", "% correct", True, 1), Column("perplexity", "ppl", False, 2),
                *(Column(f"ppl_{t}", f"ppl {t}", False, 2) for t in self._test_names(cfg)[1:]), *residual]

    def axes(self) -> dict[str, str]:
        return {"forget": "percent_memorized", "utility": "perplexity"}

    # --- the model ----------------------------------------------------------------------------------------------
    def new_model(self, cfg: TinyMemLangConfig, seed: int, device: Any) -> nn.Module:
        from transformers import GPT2LMHeadModel

        from obliviate.data.tinymem_lang import tokenized_documents

        tok = tokenized_documents(self.data_config(cfg, seed))[0]  # cached by build_data: costs nothing here
        hf = TinyMemModelConfig(**{**asdict(cfg.model), "vocab_size": len(tok)}).hf_config()
        hf.bos_token_id = hf.eos_token_id = tok.eos_token_id
        hf.pad_token_id = tok.pad_token_id
        with torch.random.fork_rng(devices=[]):  # as models/gpt2.build_model: the caller's RNG is left alone
            torch.manual_seed(seed)
            model = GPT2LMHeadModel._from_config(hf, attn_implementation=cfg.model.attn_implementation)
        model.obliviate_tokenizer = tok
        return model.to(device)

    def train(self, model: nn.Module, data: LangData, cfg: TinyMemLangConfig, seed: int, out_dir: Path | None,
              fresh: bool, progress: bool) -> dict[str, Any]:
        """Pre-train on every row with PAD targets scored (the reference's labels = input ids; only the last
        training row has PAD), trailing all-PAD columns skipped as in the math suite."""
        stats = pretrain(model, TokenData.from_rows(data.train, data.pad_id, score_pad=True), cfg.train, seed,
                         out_dir=out_dir, progress=progress, fingerprint=self.train_fingerprint(cfg, seed),
                         fresh=fresh, trim=PretrainRecipe(cfg.train, pad_id=data.pad_id).trim())
        return {"epochs_run": stats.epochs_run, "resumed_from_epoch": stats.resumed_from_epoch,
                "final_loss": stats.final_loss, "tokens": stats.tokens, "tokens_per_s": stats.tokens_per_s,
                "history": stats.history}

    def save_model(self, model: nn.Module, path: Path, meta: dict[str, Any]) -> None:
        """The model and its tokenizer in one directory (a usable HF model)."""
        files: dict[str, bytes] = {}
        tok = getattr(model, "obliviate_tokenizer", None)
        if tok is not None:
            with tempfile.TemporaryDirectory() as tmp:
                tok.save_pretrained(tmp)
                files = {p.name: p.read_bytes() for p in Path(tmp).iterdir() if p.is_file()}
        save_pretrained_atomic(model, path, extra=meta, overwrite=True, extra_files=files)

    def load_model(self, path: Path, device: Any) -> nn.Module:
        model = load_causal_lm(path, device=device)
        if (Path(path) / "tokenizer.json").is_file():
            from transformers import PreTrainedTokenizerFast

            model.obliviate_tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
        return model

    # --- metrics, forget set, selection -------------------------------------------------------------------------
    def evaluate(self, model: nn.Module, data: LangData, cfg: TinyMemLangConfig) -> Evaluation:
        """% memorized / % correct (overall and per duplication group), perplexity per test set, residual metrics.
        Per-item values are kept: each artifact's verdict and group, each test row's NLL and target count."""
        e = cfg.eval
        mem, cor, scores = percent_memorized(model, data.artifacts, data.artifacts_clean, data.prompt_len,
                                             data.artifact_group, data.pad_id, data.group_names, k=e.k,
                                             batch_size=e.batch_size, eos_id=data.eos_id,
                                             reference_compatible=e.reference_compatible)
        ref = e.perplexity == "reference"
        ppl = {name: perplexity(model, rows, data.pad_id, batch_size=e.batch_size, reference_compatible=ref)
               for name, rows in data.tests.items()}
        metrics: dict[str, Any] = {
            "percent_memorized": {"value": mem.value, "by_group": mem.breakdown, "per_item": mem.per_item,
                                  "eligible": int(scores.eligible.sum()), "group": data.artifact_group.tolist()},
            "percent_correct": {"value": cor.value, "by_group": cor.breakdown, "per_item": cor.per_item},
            "perplexity": {"definition": e.perplexity, "batch_size": e.batch_size,
                           "by_test": {k: v.value for k, v in ppl.items()},
                           "masked": {k: v.breakdown["masked"] for k, v in ppl.items()},
                           "reference": {k: v.breakdown["reference"] for k, v in ppl.items()},
                           "per_item_nll": {k: v.per_item for k, v in ppl.items()},
                           "n_targets": {k: (rows[:, 1:] != data.pad_id).sum(1).tolist()
                                         for k, rows in data.tests.items()}},
        }
        scalars = {"percent_memorized": mem.value, **{f"mem_{g}": v for g, v in mem.breakdown.items()},
                   "percent_correct": cor.value, "perplexity": ppl["test"].value,
                   **{f"ppl_{k}": v.value for k, v in ppl.items()}}
        if e.residual and data.heldout is not None and data.heldout.shape[0] > 0:
            from obliviate.metrics.residual import residual_for_data, residual_scalars

            res = residual_for_data(model, data, cfg.eval, data.pad_id)
            metrics["residual"] = res
            scalars.update(residual_scalars(res))
        return Evaluation(metrics, scalars)

    def unlearn_data(self, data: LangData, before: dict[str, Any], cfg: TinyMemLangConfig) -> LMUnlearnData:
        """As the math suite's, with the tokenizer's PAD: forget = artifacts memorized before unlearning
        (``eval.forget: all``: every eligible one); retain = the clean training rows (``eval.retain``); for the train-time and
        fine-tuning methods ``extra["train"]`` (every pre-training row), ``extra["clean"]`` (the artifacts' clean
        versions), both PAD-scored as in pre-training, and the pre-training ``recipe``."""
        per_item = before["percent_memorized"]["per_item"]
        keep = (lambda p: p is not None and p >= 0.5) if cfg.eval.forget == "memorized" else (lambda p: p is not None)
        idx = torch.tensor([keep(p) for p in per_item], dtype=torch.bool)
        if not bool(idx.any()):
            raise ObliviateError(f"no artifact is {'memorized' if cfg.eval.forget == 'memorized' else 'eligible'}: "
                                 "nothing to forget (train longer, or set eval.forget=all)")
        pad = data.pad_id
        base = LMUnlearnData.from_rows(data.artifacts[idx], retain_rows(data, cfg.eval), pad)
        extra = {"train": TokenData.from_rows(data.train, pad, score_pad=True),
                 "clean": TokenData.from_rows(data.artifacts_clean, pad, score_pad=True)}
        return PretrainedLMData(base.forget, base.retain, extra,
                                recipe=PretrainRecipe(cfg.train, pad_id=pad, score_pad=True))

    def score(self, before: dict[str, float], after: dict[str, float]) -> float:
        return selection_score(before["percent_memorized"], after["percent_memorized"],
                               ppl_before=before["perplexity"], ppl_after=after["perplexity"])


SUITES.register("tinymem_lang")(TinyMemLangSuite())
