"""The MUSE suite (Shi et al., 2024, *MUSE: Machine Unlearning Six-Way Evaluation for Language Models*), offline.

Data: a MUSE-style corpus built from real offline text (``data/muse_synth.py``: forget / retain / holdout documents,
VerbMem excerpts, cloze KnowMem QA with ICL examples) or MUSE's published layout from a local directory
(``data.path``). Models: a small GPT-2 built from a config with a BPE trained on the corpus (or ``model.path``, your
local HF causal LM). The **target** is trained on the forget and retain documents (MUSE fine-tunes on both) plus a
"format" set: other documents (in no split) with cloze questions in KnowMem's prompt format, so the model learns to
answer KnowMem's questions from what it read [deviation: MUSE's 7B targets answer in context without it]. The
**reference** (MUSE's retrained model) is the same recipe and seed without the forget documents; its VerbMem,
KnowMem and its PrivLeak AUC ride with the target's evaluation and in reference.json next to a saved target.

Metrics (``metrics/muse.py``, ``metrics/mia.py``, ``metrics/privleak.py``, MUSE's definitions): VerbMem on the forget
set (ROUGE-L F1 x 100 of greedy continuations, <= 128 new tokens), KnowMem on the forget and retain QA (ICL prompt,
<= 32 new tokens, cut at MUSE's stop strings), PrivLeak (Min-40% AUC of forget vs holdout, relative to the reference's
AUC, x 100). Selection score (lower is better) [our choice, after the mean-teacher paper's stopping rule]:
|VerbMem_f - VerbMem_f(retrain)| / 100 + the relative KnowMem_r drop.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from torch import nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.papers import MUSE
from obliviate.suites.base import SUITES, Column, Evaluation
from obliviate.suites.lm_common import (
    ModelWithReference,
    concat_rows,
    small_gpt2,
    stored_reference,
    train_stage,
)

TRAJECTORY = ("verbmem_f", "verbmem_r", "knowmem_f", "knowmem_r", "privleak")


@dataclass(frozen=True)
class MuseDataConfig:
    path: str | None = None  # MUSE's published layout (data/muse_files.py); None = build the offline corpus
    source: str = "wikipedia"
    n_forget: int = 100
    n_retain: int = 100
    n_holdout: int = 100
    n_format: int = 100  # documents (in no split) whose cloze QA teach the KnowMem format; 0 = none
    n_qa: int = 100
    n_icl: int = 3
    min_words: int = 40
    max_words: int = 200
    prompt_words: int = 32
    synth_seed: int = 0
    max_length: int = 320  # tokens per training / scoring row
    # also train the forget / retain KnowMem QA (KnowMem's prompt, the side's ICL prefix): KnowMem then measures
    # knowledge the model was taught as QA, and the forget QA join the forget set [deviation, for models too small to
    # answer questions about text they only read; MUSE's targets only read the text]
    train_qa: bool = False

    def __post_init__(self) -> None:
        if self.n_format < 0 or self.max_length < 16:
            raise ObliviateError(f"data.n_format must be >= 0 and data.max_length >= 16, got {self.n_format}, "
                                 f"{self.max_length}")


@dataclass(frozen=True)
class MuseModelConfig:
    path: str | None = None
    n_layer: int = 2
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 512
    vocab_size: int = 4096


@dataclass(frozen=True)
class MuseTrainConfig:
    epochs: int = 40
    lr: float = 1e-3
    weight_decay: float = 0.01
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.epochs <= 0 or self.batch_size <= 0 or self.lr <= 0:
            raise ObliviateError(f"train.epochs, train.batch_size and train.lr must be > 0, got {self.epochs}, "
                                 f"{self.batch_size}, {self.lr}")


@dataclass(frozen=True)
class MuseEvalConfig:
    batch_size: int = 32
    verbmem_max_new_tokens: int = 128  # MUSE
    knowmem_max_new_tokens: int = 32  # MUSE
    mink_k: float = 0.4  # MUSE's PrivLeak key forget_holdout_Min-40%
    trajectory: bool = True  # evaluate after every unlearning epoch in a bench (the per-epoch curves); false = skip

    def __post_init__(self) -> None:
        if not 0 < self.mink_k <= 1:
            raise ObliviateError(f"eval.mink_k must be in (0, 1], got {self.mink_k}")


@dataclass(frozen=True)
class MuseConfig:
    data: MuseDataConfig = field(default_factory=MuseDataConfig)
    model: MuseModelConfig = field(default_factory=MuseModelConfig)
    train: MuseTrainConfig = field(default_factory=MuseTrainConfig)
    eval: MuseEvalConfig = field(default_factory=MuseEvalConfig)


@dataclass
class MuseData:
    docs: dict[str, list[str]]  # forget, retain, holdout, format
    verbmem: list[dict[str, str]]
    verbmem_retain: list[dict[str, str]]  # the same excerpts of the retain documents (our utility proxy)
    knowmem: dict[str, list[dict[str, str]]]  # forget, retain, forget_icl, retain_icl, format
    tokenizer: Any
    seed: int
    content_hash: str
    reference: dict[str, Any] | None = None

    def text(self, name: str, cfg: MuseConfig) -> TokenData:
        """Documents as training rows (every token scored, + EOS, cut at ``data.max_length``)."""
        from obliviate.data.lm_files import pad_id_of, text_rows

        seqs, _ = text_rows(self.docs[name], self.tokenizer, max_length=cfg.data.max_length, source=f"MUSE {name}")
        return TokenData.from_sequences(seqs, pad_id_of(self.tokenizer))

    def scored_texts(self, name: str, cfg: MuseConfig) -> TokenData:
        """Documents as MUSE scores them for PrivLeak: BOS + the text, tokens 1..N-1 scored, no EOS."""
        from obliviate.data.lm_files import pad_id_of

        bos = self.tokenizer.bos_token_id if self.tokenizer.bos_token_id is not None else self.tokenizer.eos_token_id
        seqs = [[bos, *self.tokenizer.encode(d, add_special_tokens=False)][: cfg.data.max_length]
                for d in self.docs[name]]
        return TokenData.from_sequences(seqs, pad_id_of(self.tokenizer))

    def qa_training_rows(self, name: str, cfg: MuseConfig, icl: str = "forget_icl",
                         score_prompt: bool = False) -> TokenData | None:
        """The ``name`` QA items (``format``, ``forget``, ``retain``) as training rows in KnowMem's prompt: the
        ``icl`` examples' prefix, then the question; the answer (+ EOS) is scored, the prompt too with
        ``score_prompt``. None when there are none."""
        from obliviate.data.lm_files import pad_id_of, qa_rows
        from obliviate.metrics.muse import knowmem_prefix, parse_qa_items

        items = self.knowmem.get(name) or []
        if not items:
            return None
        prefix = knowmem_prefix(parse_qa_items(self.knowmem[icl], "icl", allow_empty=True))
        template = prefix.replace("{", "{{").replace("}", "}}") + "Question: {question}\nAnswer: "
        seqs, plens = qa_rows(items, self.tokenizer, template, max_length=cfg.model.n_positions,
                              source=f"{name} QA")
        return TokenData.from_sequences(seqs, pad_id_of(self.tokenizer), None if score_prompt else plens)

    def format_rows(self, cfg: MuseConfig) -> TokenData | None:
        """The format set's cloze QA in KnowMem's prompt (the forget ICL prefix, then the question), every token
        scored."""
        return self.qa_training_rows("format", cfg, score_prompt=True)

    def split_rows(self, name: str, cfg: MuseConfig) -> TokenData:
        """What training and unlearning see of a split: its documents, plus its KnowMem QA with ``data.train_qa``."""
        rows = self.text(name, cfg)
        qa = self.qa_training_rows(name, cfg, f"{name}_icl") if cfg.data.train_qa else None
        return rows if qa is None else concat_rows(rows, qa)

    def summary(self) -> str:
        d = self.docs
        return (f"{len(d['forget'])} forget / {len(d['retain'])} retain / {len(d['holdout'])} holdout documents, "
                f"{len(self.verbmem)} VerbMem excerpts, {len(self.knowmem['forget'])} + {len(self.knowmem['retain'])} "
                f"KnowMem QA, {len(d.get('format', []))} format documents, vocabulary {len(self.tokenizer)}")


_TOKENIZERS: dict[Any, Any] = {}


def _load(cfg: MuseConfig) -> tuple[dict[str, list[str]], list[dict[str, str]], dict[str, list[dict[str, str]]]]:
    d = cfg.data
    if d.path is not None:
        from obliviate.data.muse_files import read_muse_dir

        got = read_muse_dir(d.path)

        def qa(xs: Any) -> list[dict[str, str]]:
            return [{"question": x.question, "answer": x.answer} for x in xs]

        return ({"forget": got["forget"], "retain": got["retain"], "holdout": got["holdout"], "format": []},
                [{"prompt": v.prompt, "gt": v.gt} for v in got["verbmem"]],
                {"forget": qa(got["knowmem_forget"]), "retain": qa(got["knowmem_retain"]),
                 "forget_icl": qa(got["knowmem_forget_icl"]), "retain_icl": qa(got["knowmem_retain_icl"]),
                 "format": []})
    import random

    from obliviate.data.muse_synth import MuseSynthConfig, build_muse_synth, cloze_qa

    s = build_muse_synth(MuseSynthConfig(
        source=d.source, n_forget=d.n_forget, n_retain=d.n_retain, n_holdout=d.n_holdout + d.n_format,
        min_words=d.min_words, max_words=d.max_words, prompt_words=d.prompt_words, n_qa=d.n_qa, n_icl=d.n_icl,
        seed=d.synth_seed))
    holdout, fmt = s.holdout[: d.n_holdout], s.holdout[d.n_holdout:]
    rng = random.Random(f"obliviate.muse:format:{d.synth_seed}")
    format_qa = [q for q in (cloze_qa(doc, rng) for doc in fmt) if q is not None]
    return ({"forget": s.forget, "retain": s.retain, "holdout": holdout, "format": fmt}, s.verbmem,
            {"forget": s.knowmem_forget, "retain": s.knowmem_retain, "forget_icl": s.knowmem_forget_icl,
             "retain_icl": s.knowmem_retain_icl, "format": format_qa})


class MuseSuite(ModelWithReference):
    name = "muse"
    VERSION = "1.1"  # 1.1: data.train_qa
    family = "lm"
    paper = MUSE
    config_cls = MuseConfig
    default_preset = "muse-mini"
    score_rule = ("min |VerbMem_f - VerbMem_f(retrain)| / 100 + relative KnowMem_r drop (VerbMem_r's when the target "
                  "scores 0 on KnowMem_r)")
    _data_cache: ClassVar[dict[Any, MuseData]] = {}

    def build_data(self, cfg: MuseConfig, seed: int) -> MuseData:
        docs, verbmem, knowmem = _load(cfg)
        key = (cfg.data, cfg.model.path, cfg.model.vocab_size)
        if key not in _TOKENIZERS:
            if cfg.model.path:
                from transformers import AutoTokenizer

                _TOKENIZERS[key] = AutoTokenizer.from_pretrained(cfg.model.path, local_files_only=True)
            else:
                from obliviate.data.tokenizer import train_bpe_tokenizer

                texts = [t for v in docs.values() for t in v] + [q["question"] for q in knowmem["format"]]
                _TOKENIZERS[key] = train_bpe_tokenizer(texts, vocab_size=cfg.model.vocab_size)
        tok = _TOKENIZERS[key]
        from obliviate.data.tokenizer import tokenizer_hash

        blob = json.dumps([docs, verbmem, knowmem, tokenizer_hash(tok), cfg.data.max_length], sort_keys=True)
        from obliviate.data.muse_synth import verbmem_item

        retain_vm = [verbmem_item(doc, cfg.data.prompt_words) for doc in docs["retain"]
                     if len(doc.split()) > cfg.data.prompt_words]
        return MuseData(docs, verbmem, retain_vm, knowmem, tok, seed,
                        hashlib.sha256(blob.encode()).hexdigest()[:16])

    def data_hash(self, data: MuseData) -> str:
        return data.content_hash

    def describe(self, cfg: MuseConfig, data: MuseData | None) -> list[str]:
        d, m = cfg.data, cfg.model
        src = d.path or f"offline {d.source} text (seed {d.synth_seed})"
        model = m.path or f"GPT-2 {m.n_layer} layer(s) x {m.n_embd}, BPE vocabulary {m.vocab_size}"
        return [f"data: MUSE-style, {src}" + (f"; {data.summary()}" if data is not None else ""),
                (f"model: {model}; {cfg.train.epochs} epochs on forget + retain (+ format) documents (target); the "
                 "reference: the same without the forget documents, same seed"),
                ("VerbMem / KnowMem: ROUGE-L F1 x 100 (MUSE); PrivLeak: (AUC - AUC_retrain) / AUC_retrain x 100 of "
                 f"the forget-vs-holdout Min-{cfg.eval.mink_k:.0%} attack, 0 is ideal")]

    def columns(self, cfg: MuseConfig) -> list[Column]:
        return [Column("verbmem_f", "VerbMem f", False, 1), Column("verbmem_gap", "|VerbMem f - retrain|", False, 1),
                Column("verbmem_r", "VerbMem r", True, 1),
                Column("knowmem_f", "KnowMem f", False, 1), Column("knowmem_r", "KnowMem r", True, 1),
                Column("privleak", "PrivLeak %", True, 1), Column("abs_privleak", "|PrivLeak| %", False, 1)]

    def axes(self) -> dict[str, str]:
        return {"forget": "verbmem_f", "utility": "knowmem_r"}

    def groups(self, cfg: MuseConfig) -> dict[str, Any] | None:
        return None

    # --- models --------------------------------------------------------------------------------------------------
    def _data(self, cfg: MuseConfig, seed: int) -> MuseData:
        key = (cfg.data, cfg.model.path, cfg.model.vocab_size, seed)
        if key not in self._data_cache:
            self._data_cache.clear()
            self._data_cache[key] = self.build_data(cfg, seed)
        return self._data_cache[key]

    def new_model(self, cfg: MuseConfig, seed: int, device: Any) -> nn.Module:
        if cfg.model.path:
            from obliviate.io import load_causal_lm

            return load_causal_lm(cfg.model.path, device=device or "cpu")
        m = cfg.model
        return small_gpt2(self._data(cfg, seed).tokenizer, m.n_layer, m.n_embd, m.n_head, m.n_positions, seed, device)

    def _fit(self, model: nn.Module, data: MuseData, cfg: MuseConfig, seed: int, with_forget: bool,
             progress: bool) -> float:
        parts = [data.split_rows("retain", cfg)]
        if with_forget:
            parts.insert(0, data.split_rows("forget", cfg))
        if data.docs.get("format"):
            parts.append(data.text("format", cfg))
        fmt = data.format_rows(cfg)
        if fmt is not None:
            parts.append(fmt)
        t = cfg.train
        loss = train_stage(model, concat_rows(*parts), lr=t.lr, weight_decay=t.weight_decay, epochs=t.epochs,
                           batch_size=t.batch_size, seed=seed, progress=progress)
        model.eval()
        return loss

    def train(self, model: nn.Module, data: MuseData, cfg: MuseConfig, seed: int, out_dir: Path | None,
              fresh: bool, progress: bool) -> dict[str, Any]:
        t0 = time.perf_counter()
        loss = self._fit(model, data, cfg, seed, True, progress)
        target_s = time.perf_counter() - t0
        ref = self.build_reference(data, cfg, seed, progress)
        model.obliviate_reference = {"data_hash": self.data_hash(data), **ref}
        model.obliviate_tokenizer = data.tokenizer
        return {"target_s": target_s, "reference_s": ref["train_s"], "loss": loss}

    def build_reference(self, data: MuseData, cfg: MuseConfig, seed: int, progress: bool = False) -> dict[str, Any]:
        """The retrained model (no forget documents, same seed and recipe): its scores and its PrivLeak AUC."""
        t0 = time.perf_counter()
        ref = self.new_model(cfg, seed, "cpu")
        loss = self._fit(ref, data, cfg, seed, False, progress)
        train_s = time.perf_counter() - t0
        raw = self._measure(ref, data, cfg)
        data.reference = {"scalars": {k: v for k, v in raw.items() if not k.startswith("_")},
                          "auc": raw["_auc"], "train_s": train_s, "loss": loss}
        return data.reference

    # --- metrics -------------------------------------------------------------------------------------------------
    def _measure(self, model: nn.Module, data: MuseData, cfg: MuseConfig) -> dict[str, Any]:
        from obliviate.metrics.mia import membership_inference
        from obliviate.metrics.muse import knowmem, verbmem

        e = cfg.eval
        was = model.training
        model.eval()
        try:
            vm = verbmem(model, data.tokenizer, data.verbmem, max_new_tokens=e.verbmem_max_new_tokens,
                         truncate="left", batch_size=e.batch_size)
            vr = verbmem(model, data.tokenizer, data.verbmem_retain, max_new_tokens=e.verbmem_max_new_tokens,
                         truncate="left", batch_size=e.batch_size)
            kf = knowmem(model, data.tokenizer, data.knowmem["forget"], data.knowmem["forget_icl"],
                         max_new_tokens=e.knowmem_max_new_tokens, truncate="left", batch_size=e.batch_size)
            kr = knowmem(model, data.tokenizer, data.knowmem["retain"], data.knowmem["retain_icl"],
                         max_new_tokens=e.knowmem_max_new_tokens, truncate="left", batch_size=e.batch_size)
            mia = membership_inference(model, data.scored_texts("forget", cfg), data.scored_texts("holdout", cfg),
                                       "min_k", convention="muse", k=e.mink_k, batch_size=e.batch_size)
        finally:
            model.train(was)
        return {"verbmem_f": vm.value, "verbmem_r": vr.value, "knowmem_f": kf.value, "knowmem_r": kr.value,
                "_auc": mia.auc,
                "_mia": mia.to_dict(), "_items": {"verbmem": vm.per_item(), "verbmem_r": vr.per_item(),
                                                   "knowmem_f": kf.per_item(),
                                                   "knowmem_r": kr.per_item()}}

    def evaluate(self, model: nn.Module, data: MuseData, cfg: MuseConfig) -> Evaluation:
        """MUSE's numbers of ``model``; the retrained reference as the TOFU suite finds it (data, the model's saved
        reference for this very data, else trained now)."""
        from obliviate.metrics.privleak import muse_privleak

        if data.reference is None:
            data.reference = stored_reference(model, self.data_hash(data))
            if data.reference is None:
                self.build_reference(data, cfg, data.seed)
        ref = data.reference
        assert ref is not None
        raw = self._measure(model, data, cfg)
        pl = muse_privleak(raw["_auc"], ref["auc"])
        scalars = {"verbmem_f": raw["verbmem_f"], "verbmem_r": raw["verbmem_r"], "knowmem_f": raw["knowmem_f"],
                   "knowmem_r": raw["knowmem_r"],
                   "privleak": pl, "abs_privleak": abs(pl), "mink_auc": raw["_auc"],
                   "verbmem_gap": abs(raw["verbmem_f"] - ref["scalars"]["verbmem_f"])}
        metrics = {"scalars": dict(scalars), "reference": ref, "mia": raw["_mia"], "per_item": raw["_items"]}
        return Evaluation(metrics, scalars)

    def epoch_metrics(self, model: nn.Module, data: MuseData, cfg: MuseConfig) -> dict[str, float]:
        sc = self.evaluate(model, data, cfg).scalars
        return {k: sc[k] for k in TRAJECTORY}

    def unlearn_data(self, data: MuseData, before: dict[str, Any], cfg: MuseConfig) -> LMUnlearnData:
        """Forget = the forget documents, retain = the retain documents (MUSE's retain corpus), as text rows; with
        ``data.train_qa`` each side's taught KnowMem QA rows too."""
        if data.reference is None and before.get("reference"):
            data.reference = before["reference"]
        return LMUnlearnData(data.split_rows("forget", cfg), data.split_rows("retain", cfg))

    def score(self, before: dict[str, float], after: dict[str, float]) -> float:
        """|VerbMem_f gap| / 100 + the relative drop of KnowMem_r -- or of VerbMem_r when the target scores 0 on
        KnowMem_r (a model too small to answer KnowMem's questions has no KnowMem utility to lose)."""
        key = "knowmem_r" if before.get("knowmem_r", 0.0) > 0 else "verbmem_r"
        u0 = before.get(key, 0.0)
        drop = (u0 - after[key]) / u0 if u0 > 0 else 0.0
        return after["verbmem_gap"] / 100.0 + drop


SUITES.register("muse")(MuseSuite())
