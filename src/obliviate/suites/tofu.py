"""The TOFU suite (Maini et al., 2024, *TOFU: A Task of Fictitious Unlearning for LLMs*, arXiv 2401.06121), offline.

Data: TOFU-style fictitious-author QA generated here (``data/tofu_synth.py``: 20 QA per author, a paraphrased
answer never trained on, perturbed answers, forget01/05/10 = the last 1/5/10 % of the authors, real-authors-like and
world-facts-like utility sets and a "world" corpus that teaches them) or TOFU's published files from a local
directory (``data.path``, the HF ``locuslab/TOFU`` layout). Models: a small GPT-2 built from a config with a BPE
tokenizer trained on the benchmark's text (or ``model.path``: your local HF causal LM and its tokenizer), trained in
two stages -- the world corpus (stands in for pre-training; skipped for a pretrained ``model.path``), then every QA
pair (the "full" target). The reference ("retain model", TOFU's oracle for forget quality) is the same recipe and
seed on the retain authors only; its forget-set truth ratios and scores travel in the target's evaluation and next
to a saved target (reference.json), checked against the data's content hash, so unlearning jobs never retrain it.

Metrics (``metrics/tofu.py``, ``metrics/tofu_eval.py``, open-unlearning's names): forget quality (KS-test p-value of
the forget truth ratios against the retain model's, and its log10), model utility (harmonic mean of the 9 numbers),
forget / retain probability, ROUGE-L recall, truth ratio, extraction strength. Hyper-parameters are selected by
``score`` (lower is better): -log10(forget quality) + 10 x the relative model-utility drop [our choice: one decade
of forget quality is worth a 10 % utility drop].
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from obliviate.errors import ObliviateError
from obliviate.families.lm import LMUnlearnData, TokenData
from obliviate.papers import TOFU
from obliviate.suites.base import SUITES, Column, Evaluation
from obliviate.suites.lm_common import (
    ModelWithReference,
    concat_rows,
    small_gpt2,
    stored_reference,
    train_stage,
)
from obliviate.suites.tofu_config import TofuConfig

TRAJECTORY = ("forget_quality_log10", "model_utility", "forget_Q_A_Prob", "forget_truth_ratio")


@dataclass
class TofuData:
    items: dict[str, list[dict[str, Any]]]  # forget, retain (training), forget_eval, retain_eval, real_authors, ...
    world: list[str]
    tokenizer: Any
    seed: int
    content_hash: str
    reference: dict[str, Any] | None = None
    _splits: dict[str, Any] = field(default_factory=dict)

    def rows(self, name: str, cfg: TofuConfig) -> TokenData:
        """Training-format QA rows (prompt unscored, answer + EOS scored) of ``items[name]``."""
        from obliviate.data.lm_files import pad_id_of, qa_rows

        seqs, plens = qa_rows(self.items[name], self.tokenizer, cfg.data.template, max_length=cfg.data.max_length,
                              source=f"TOFU {name}")
        return TokenData.from_sequences(seqs, pad_id_of(self.tokenizer), plens)

    def eval_split(self, name: str, cfg: TofuConfig) -> Any:
        """The tokenised TOFU evaluation split (cached): forget / retain / real_authors / world_facts."""
        from obliviate.metrics.tofu_eval import tofu_split_data

        if name not in self._splits:
            items = self.items[f"{name}_eval" if name in ("forget", "retain") else name]
            if cfg.eval.max_items is not None:
                items = items[: cfg.eval.max_items]
            self._splits[name] = tofu_split_data(items, self.tokenizer, name, template=cfg.data.template,
                                                 max_length=cfg.data.max_length)
        return self._splits[name]

    def summary(self) -> str:
        return (f"{len(self.items['forget'])} forget / {len(self.items['retain'])} retain QA, "
                f"{len(self.items['real_authors'])} real-authors, {len(self.items['world_facts'])} world-facts "
                f"items, {len(self.world)} world documents, vocabulary {len(self.tokenizer)}")


_TOKENIZERS: dict[Any, Any] = {}  # (data config, model path) -> tokenizer: deterministic, built once per process


def _tokenizer(cfg: TofuConfig, texts: list[str]) -> Any:
    key = (cfg.data, cfg.model.path, cfg.model.vocab_size)
    if key not in _TOKENIZERS:
        if cfg.model.path:
            from transformers import AutoTokenizer

            _TOKENIZERS[key] = AutoTokenizer.from_pretrained(cfg.model.path, local_files_only=True)
        else:
            from obliviate.data.tokenizer import train_bpe_tokenizer

            _TOKENIZERS[key] = train_bpe_tokenizer(texts, vocab_size=cfg.model.vocab_size)
    return _TOKENIZERS[key]


def _load_items(cfg: TofuConfig) -> tuple[dict[str, list[dict[str, Any]]], list[str], str]:
    """(items by split, world corpus, content hash) from the generator or from TOFU's files."""
    import hashlib

    d = cfg.data
    if d.path is None:
        from obliviate.data.tofu_synth import TofuSynthConfig, generate_tofu_synth

        synth = generate_tofu_synth(TofuSynthConfig(
            n_authors=d.n_authors, qa_per_author=d.qa_per_author, n_holdout_authors=d.n_holdout_authors,
            n_real_authors=d.n_real_authors, n_world_facts=d.n_world_facts, world_mentions=d.world_mentions,
            seed=d.synth_seed))
        forget, retain = synth.forget_split(d.forget)
        items = {"forget": forget, "retain": retain, "forget_eval": forget, "retain_eval": retain[: len(forget)],
                 "real_authors": synth.real_authors, "world_facts": synth.world_facts,
                 "holdout": synth.holdout_split(d.forget)}
        return items, list(synth.world_corpus), synth.content_hash()
    from obliviate.data.tofu_files import read_tofu_dir

    found = read_tofu_dir(d.path, forget=d.forget)
    for need in ("forget", "retain", "real_authors", "world_facts"):
        if need not in found:
            raise ObliviateError(f"{d.path!r} has no {need} split in TOFU's layout (see obliviate.data.tofu_files)")
    items = {"forget": found["forget"], "retain": found.get("retain_train", found["retain"]),
             "forget_eval": found["forget"], "retain_eval": found["retain"], "real_authors": found["real_authors"],
             "world_facts": found["world_facts"], "holdout": found.get("holdout", [])}
    world: list[str] = []
    corpus = Path(d.path) / "world_corpus.txt"
    if corpus.is_file():
        from obliviate.data.lm_files import read_paragraphs

        world = read_paragraphs(corpus)
    digest = hashlib.sha256(json.dumps([items, world], sort_keys=True).encode()).hexdigest()[:16]
    return items, world, digest


class TofuSuite(ModelWithReference):
    name = "tofu"
    VERSION = "1.0"
    family = "lm"
    paper = TOFU
    config_cls = TofuConfig
    default_preset = "tofu-mini"
    score_rule = "min -log10(forget quality) + 10 x (MU_before - MU_after) / MU_before"
    _data_cache: ClassVar[dict[Any, TofuData]] = {}

    # --- data ----------------------------------------------------------------------------------------------------
    def build_data(self, cfg: TofuConfig, seed: int) -> TofuData:
        items, world, digest = _load_items(cfg)
        texts = world + [s for split in items.values() for it in split for s in _strings(it)]
        tok = _tokenizer(cfg, texts)
        from obliviate.data.tokenizer import tokenizer_hash

        return TofuData(items, world, tok, seed, f"{digest}-{tokenizer_hash(tok)}-{cfg.data.template!r}"
                        f"-{cfg.data.max_length}")

    def data_hash(self, data: TofuData) -> str:
        import hashlib

        return hashlib.sha256(data.content_hash.encode()).hexdigest()[:16]

    def describe(self, cfg: TofuConfig, data: TofuData | None) -> list[str]:
        d, m, t = cfg.data, cfg.model, cfg.train
        src = d.path or f"generated ({d.n_authors} fictitious authors x {d.qa_per_author} QA, seed {d.synth_seed})"
        model = m.path or f"GPT-2 {m.n_layer} layer(s) x {m.n_embd}, BPE vocabulary {m.vocab_size}"
        return [f"data: TOFU-style, {src}, {d.forget}" + (f"; {data.summary()}" if data is not None else ""),
                (f"model: {model}; {t.world_epochs} world-corpus epochs, then {t.qa_epochs} QA epochs (target: all "
                 "authors; reference: retain authors only, same seed)"),
                (f"forget quality: KS-test p-value of the forget truth ratios vs the reference's "
                 f"({cfg.eval.truth_ratio} truth ratio); model utility: harmonic mean of 9 (retain, real authors, "
                 "world facts)")]

    def columns(self, cfg: TofuConfig) -> list[Column]:
        return [Column("forget_quality_pvalue", "forget quality (p)", True, 4),
                Column("forget_quality_log10", "log10 FQ", True, 2),
                Column("model_utility", "model utility", True, 3),
                Column("forget_truth_ratio", "forget TR", True, 3),
                Column("forget_Q_A_Prob", "forget prob", False, 3),
                Column("forget_Q_A_ROUGE", "forget ROUGE", False, 3),
                Column("extraction_strength", "forget ES", False, 3),
                Column("retain_Q_A_Prob", "retain prob", True, 3),
                Column("retain_Q_A_ROUGE", "retain ROUGE", True, 3)]

    def axes(self) -> dict[str, str]:
        return {"forget": "forget_quality_log10", "utility": "model_utility"}

    def groups(self, cfg: TofuConfig) -> dict[str, Any] | None:
        return None

    # --- models --------------------------------------------------------------------------------------------------
    def new_model(self, cfg: TofuConfig, seed: int, device: Any) -> nn.Module:
        if cfg.model.path:
            from obliviate.io import load_causal_lm

            return load_causal_lm(cfg.model.path, device=device or "cpu")
        m = cfg.model
        return small_gpt2(self._data(cfg, seed).tokenizer, m.n_layer, m.n_embd, m.n_head, m.n_positions, seed, device)

    def _data(self, cfg: TofuConfig, seed: int) -> TofuData:
        key = (cfg.data, cfg.model.path, cfg.model.vocab_size, seed)
        if key not in self._data_cache:
            self._data_cache.clear()  # one benchmark at a time per process
            self._data_cache[key] = self.build_data(cfg, seed)
        return self._data_cache[key]

    def _fit(self, model: nn.Module, data: TofuData, cfg: TofuConfig, seed: int, qa_split: str,
             progress: bool, world_state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Stage 1 (world corpus; or load ``world_state``) then stage 2 (QA of ``qa_split``)."""
        from obliviate.data.lm_files import pad_id_of, text_rows

        t = cfg.train
        info: dict[str, Any] = {}
        if world_state is not None:
            model.load_state_dict(world_state)
        elif data.world and t.world_epochs > 0 and not cfg.model.path:
            seqs, _ = text_rows(data.world, data.tokenizer, max_length=cfg.data.max_length, source="world corpus")
            world = TokenData.from_sequences(seqs, pad_id_of(data.tokenizer))
            # the utility questions in the prompt format too: a model this small does not carry facts from prose to
            # "Question: ... Answer: ..." on its own, as the pretrained LMs TOFU evaluates do
            world = concat_rows(world, data.rows("real_authors", cfg), data.rows("world_facts", cfg))
            info["world_loss"] = train_stage(model, world, lr=t.lr, weight_decay=t.weight_decay,
                                             epochs=t.world_epochs, batch_size=t.batch_size, seed=seed,
                                             progress=progress)
        info["world_state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        parts = [data.rows(qa_split, cfg)] if qa_split != "all" else [data.rows("forget", cfg),
                                                                      data.rows("retain", cfg)]
        if not cfg.model.path:  # replay the utility questions, so stage 2 does not wipe the "pre-trained" knowledge
            parts += [data.rows("real_authors", cfg), data.rows("world_facts", cfg)]
        info["qa_loss"] = train_stage(model, concat_rows(*parts), lr=t.lr, weight_decay=t.weight_decay,
                                      epochs=t.qa_epochs, batch_size=t.batch_size, seed=seed + 1, progress=progress)
        model.eval()
        return info

    def train(self, model: nn.Module, data: TofuData, cfg: TofuConfig, seed: int, out_dir: Path | None,
              fresh: bool, progress: bool) -> dict[str, Any]:
        """The target (world corpus, then every QA pair) in place, then the retain-only reference."""
        t0 = time.perf_counter()
        info = self._fit(model, data, cfg, seed, "all", progress)
        world_state = info.pop("world_state")
        target_s = time.perf_counter() - t0
        ref = self.build_reference(data, cfg, seed, progress, world_state)
        model.obliviate_reference = {"data_hash": self.data_hash(data), **ref}
        model.obliviate_tokenizer = data.tokenizer  # saved with the model, so the directory is a usable HF model
        return {"target_s": target_s, "reference_s": ref["train_s"], "world_loss": info.get("world_loss"),
                "qa_loss": info["qa_loss"]}

    def build_reference(self, data: TofuData, cfg: TofuConfig, seed: int, progress: bool = False,
                        world_state: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
        """Train the retain model (same seed and recipe, retain authors only) and keep what forget quality needs:
        its per-item forget truth ratios (both versions) and its scores."""
        t0 = time.perf_counter()
        ref = self.new_model(cfg, seed, "cpu")
        info = self._fit(ref, data, cfg, seed, "retain", progress, world_state)
        train_s = time.perf_counter() - t0
        scores = self._scores(ref, data, cfg)
        from obliviate.metrics.tofu_eval import tofu_summary

        data.reference = {
            "forget_truth_ratios": {v: scores["forget"].truth_ratios(v).tolist() for v in ("geometric", "arithmetic")},
            "scalars": tofu_summary(scores, cfg.eval.truth_ratio), "train_s": train_s, "qa_loss": info["qa_loss"]}
        return data.reference

    # --- metrics -------------------------------------------------------------------------------------------------
    def _scores(self, model: nn.Module, data: TofuData, cfg: TofuConfig) -> dict[str, Any]:
        from obliviate.metrics.tofu_eval import score_tofu_split

        e = cfg.eval
        return {name: score_tofu_split(model, data.tokenizer, data.eval_split(name, cfg), generate=e.generate,
                                       max_new_tokens=e.max_new_tokens, batch_size=e.batch_size)
                for name in ("forget", "retain", "real_authors", "world_facts")}

    def evaluate(self, model: nn.Module, data: TofuData, cfg: TofuConfig) -> Evaluation:
        """Every TOFU number of ``model``; forget quality against the reference, which comes from ``data`` (set by
        ``train`` or the base evaluation), else from the model's reference.json when it was built on this very data
        (same content hash), else it is trained now, once."""
        from obliviate.metrics.tofu_eval import tofu_summary

        v = cfg.eval.truth_ratio
        if cfg.eval.reference:
            from obliviate.metrics.tofu_eval import load_reference_truth_ratios, tokenizer_fingerprint

            trs = load_reference_truth_ratios(cfg.eval.reference, benchmark="tofu",
                                              benchmark_version=self.data_hash(data), forget_split=cfg.data.forget,
                                              tokenizer_hash=tokenizer_fingerprint(data.tokenizer),
                                              truth_ratio_version=v)
            data.reference = {"forget_truth_ratios": {v: trs.tolist()}, "source": str(cfg.eval.reference)}
        if data.reference is None:
            data.reference = stored_reference(model, self.data_hash(data))
            if data.reference is None:
                self.build_reference(data, cfg, data.seed)
        ref = data.reference
        assert ref is not None
        was = model.training
        model.eval()
        try:
            scores = self._scores(model, data, cfg)
        finally:
            model.train(was)
        scalars = tofu_summary(scores, v, ref["forget_truth_ratios"][v])
        scalars = {k: float(x) for k, x in scalars.items()}
        if cfg.eval.save_eval:
            from obliviate.metrics.tofu_eval import save_tofu_eval, tokenizer_fingerprint

            save_tofu_eval(cfg.eval.save_eval, scores["forget"].truth_ratios(v), benchmark="tofu",
                           benchmark_version=self.data_hash(data), forget_split=cfg.data.forget,
                           tokenizer_hash=tokenizer_fingerprint(data.tokenizer),
                           tokenizer_name=str(getattr(data.tokenizer, "name_or_path", "")), truth_ratio_version=v,
                           metrics=scalars)
        metrics = {"scalars": dict(scalars), "reference": ref,
                   "forget_truth_ratios": scores["forget"].truth_ratios(v).tolist(),
                   "forget_avg_loss": scores["forget"].answer.avg_loss.tolist(),
                   "forget_rouge": [r.get("rougeL_recall") for r in scores["forget"].rouge]}
        return Evaluation(metrics, scalars)

    def epoch_metrics(self, model: nn.Module, data: TofuData, cfg: TofuConfig) -> dict[str, float]:
        """The trajectory recorded after every unlearning epoch (the report's curves): forget quality, model
        utility, forget probability and truth ratio."""
        sc = self.evaluate(model, data, cfg).scalars
        return {k: sc[k] for k in TRAJECTORY if k in sc}

    def unlearn_data(self, data: TofuData, before: dict[str, Any], cfg: TofuConfig) -> LMUnlearnData:
        """Forget = the forget authors' QA; retain = the retain authors' QA; extra["alternate"] = a seeded "I don't
        know" answer per forget item (IdkDPO's winners)."""
        from obliviate.data.alternates import with_answers
        from obliviate.data.idk import assign_idk
        from obliviate.data.lm_files import _ids, pad_id_of

        if data.reference is None and before.get("reference"):
            data.reference = before["reference"]
        forget = data.rows("forget", cfg)
        idk = assign_idk(len(forget), data.seed)
        eos = data.tokenizer.eos_token_id
        answers = [[*_ids(data.tokenizer, a, special=False), eos] for a in idk]
        alternate = with_answers(forget, answers, pad_id_of(data.tokenizer))
        return LMUnlearnData(forget, data.rows("retain", cfg), {"alternate": alternate})

    def score(self, before: dict[str, float], after: dict[str, float]) -> float:
        mu0 = before.get("model_utility", float("nan"))
        drop = (mu0 - after["model_utility"]) / mu0 if mu0 and np.isfinite(mu0) else 0.0
        return -after["forget_quality_log10"] + 10.0 * drop


def _strings(item: dict[str, Any]) -> list[str]:
    out = [item.get("question", ""), item.get("answer", ""), item.get("paraphrased_answer", "")]
    out += list(item.get("perturbed_answer") or [])
    return [s for s in out if isinstance(s, str) and s]


SUITES.register("tofu")(TofuSuite())
