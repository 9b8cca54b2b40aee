"""TinyMem's localization methods on a real pretrained LM, with canaries as the planted memorization.

``obliviate canaries --model DIR [--canaries FILE] [--text FILE] --method NAME ... --out OUT`` and, from Python::

    from obliviate.canary_transfer import CanaryRunConfig, run_canaries

    res = run_canaries("models/smollm2", "runs/canaries", methods=["durable", "hard_concrete"],
                       method_configs={"durable": {"ratio": 1e-3}}, config=CanaryRunConfig(plant_steps=40))

1. canaries: generated (:func:`obliviate.data.canaries.make_canaries`, duplication groups 1/10/100 + held-out
   ones) or read from your file; real text: your ``.txt`` or the offline Lee news corpus, cut into passages, split
   into train and held-out passages (seeded).
2. plant (unless ``plant=False``: your model memorized your canaries already): a brief full fine-tune (AdamW) on the
   train passages with every canary copy inserted at a random sentence boundary; saved to ``OUT/planted``.
3. measure the planted model: extraction % and exposure per duplication group, perplexity on the held-out passages.
4. each method, through :func:`obliviate.lm_unlearn.unlearn_files` on the planted model: forget = the planted
   canaries (prompt = the text before the secret, scored = the secret, the rest of the canary and EOS), retain =
   the clean train passages; then measure again, the paper's selection score (language version: relative change of
   the extraction % + relative change of the perplexity, lower is better) and the wall time.
5. ``OUT/results.json`` (atomic), ``OUT/canaries.jsonl``, ``OUT/plant.txt``, ``OUT/heldout.txt``, and a table.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from obliviate.data.canaries import (
    DEFAULT_EXACT_LIMIT,
    DEFAULT_GROUPS,
    DEFAULT_SAMPLES,
    DEFAULT_SECRET_LENGTH,
    DEFAULT_TEMPLATE,
    Canary,
    make_canaries,
    mix_canaries,
    passages,
    read_canary_file,
    split_passages,
    write_canary_file,
)
from obliviate.errors import ObliviateError

if TYPE_CHECKING:  # torch loads where a model is used: the CLI parser reads this module's defaults
    from torch import nn

FORMAT = "obliviate-canaries/1"
RESULTS = "results.json"
PLANTED = "planted"


@dataclass(frozen=True)
class CanaryRunConfig:
    """Generation (used when no canary file is given), text, planting and measurement settings; see docs/methods.md
    ("Canaries and exposure") for the sources of the defaults."""

    groups: tuple[int, ...] = DEFAULT_GROUPS  # copies per canary, one group each
    per_group: int = 1  # canaries per group
    held_out: int = 1  # canaries never inserted (baseline exposure)
    secret_length: int = DEFAULT_SECRET_LENGTH
    template: str = DEFAULT_TEMPLATE
    train_passages: int = 64
    heldout_passages: int = 16
    max_words: int = 40  # words per passage
    max_length: int = 256  # tokens per training row (longer documents are cut into rows)
    plant_epochs: float = 3.0
    plant_steps: int | None = None  # overrides plant_epochs
    plant_lr: float = 1e-4
    plant_batch_size: int = 8
    exposure_samples: int = DEFAULT_SAMPLES
    exact_limit: int = DEFAULT_EXACT_LIMIT
    eval_batch_size: int = 64
    measure_original: bool = True  # also measure the model before planting

    def __post_init__(self) -> None:
        checks = [("per_group", self.per_group >= 1), ("held_out", self.held_out >= 0),
                  ("secret_length", self.secret_length >= 1), ("max_words", self.max_words >= 1),
                  ("max_length", self.max_length >= 8), ("plant_epochs", self.plant_epochs > 0),
                  ("plant_steps", self.plant_steps is None or self.plant_steps >= 1),
                  ("plant_lr", self.plant_lr > 0), ("plant_batch_size", self.plant_batch_size >= 1),
                  ("exposure_samples", self.exposure_samples >= 3), ("exact_limit", self.exact_limit >= 0),
                  ("eval_batch_size", self.eval_batch_size >= 1)]
        for name, ok in checks:
            if not ok:
                raise ObliviateError(f"canaries: {name} = {getattr(self, name)!r} is out of range")
        if not self.groups or any(int(g) < 1 for g in self.groups):
            raise ObliviateError(f"canaries: groups must be copies >= 1, got {list(self.groups)}")


def plant(model: nn.Module, rows: Any, cfg: CanaryRunConfig, seed: int,
          say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune every weight of ``model`` on TokenData ``rows`` (AdamW, ``cfg.plant_lr``, no weight decay, gradient
    norm clipped at 1, batches from seeded shuffles of the rows). Returns the log; ``say`` hears the loss 4 times."""
    import torch

    from obliviate.families.lm import batch_of
    from obliviate.losses.nll import mean_nll
    from obliviate.seeding import torch_generator

    n = len(rows)
    bs = min(cfg.plant_batch_size, n)
    steps = cfg.plant_steps or max(1, math.ceil(cfg.plant_epochs * n / bs))
    device = next(model.parameters()).device
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.plant_lr, weight_decay=0.0)
    gen = torch_generator(seed)
    order: list[int] = []
    losses: list[float] = []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)  # dropout, where the model has any
        model.train()
        for step in range(1, steps + 1):
            if len(order) < bs:
                order += torch.randperm(n, generator=gen).tolist()
            idx, order = torch.tensor(order[:bs]), order[bs:]
            loss = mean_nll(*batch_of(rows, idx).to(device).scored_logits(model))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if say is not None and step % max(1, steps // 4) == 0:
                say(f"plant step {step}/{steps}: loss {losses[-1]:.3f}")
    model.eval()
    model.zero_grad(set_to_none=True)
    tail = losses[-max(1, len(losses) // 10):]
    return {"steps": steps, "epochs": steps * bs / n, "rows": n, "batch_size": bs, "lr": cfg.plant_lr,
            "optimizer": "adamw", "loss_first": losses[0], "loss_last": sum(tail) / len(tail)}


def forget_records(canaries: Sequence[Canary]) -> list[dict[str, str]]:
    """QA records of the planted canaries: question = the text before the secret (trailing spaces go to the answer,
    where the tokenizer attaches them to the secret as in running text), answer = the secret and what follows."""
    out = []
    for c in canaries:
        if c.copies > 0:
            q = c.prefix.rstrip()
            out.append({"question": q, "answer": c.text[len(q):]})
    return out


def heldout_perplexity(model: nn.Module, tokenizer: Any, texts: Sequence[str], max_length: int,
                       batch_size: int) -> float:
    """exp(mean NLL over every token of the held-out passages)."""
    from obliviate.data.lm_files import pad_id_of, text_rows
    from obliviate.families.lm import TokenData
    from obliviate.metrics.lm_quality import dataset_nll, safe_exp

    seqs, _ = text_rows(list(texts), tokenizer, max_length, source="held-out text")
    return safe_exp(dataset_nll(model, TokenData.from_sequences(seqs, pad_id_of(tokenizer)), batch_size=batch_size))


def _texts(text: Any) -> tuple[str, list[str]]:
    from obliviate.data.canaries import offline_texts
    from obliviate.data.lm_files import read_paragraphs

    if text is None:
        return offline_texts()
    if isinstance(text, (str, Path)):
        return str(text), read_paragraphs(text)
    return "<list in memory>", [str(t) for t in text]


def _canaries(canaries: Any, cfg: CanaryRunConfig, seed: int) -> tuple[str, list[Canary]]:
    if canaries is None:
        return "generated", make_canaries(cfg.groups, cfg.per_group, cfg.held_out, cfg.template, cfg.secret_length,
                                          seed=seed)
    if isinstance(canaries, (str, Path)):
        return str(canaries), read_canary_file(canaries)
    return "<list in memory>", list(canaries)


def _check_methods(methods: Sequence[str], configs: dict[str, dict[str, Any]], seed: int) -> None:
    """Every method an lm method taking forget QA + retain text, its config valid: before anything loads."""
    from obliviate.lm_unlearn import lm_method_class
    from obliviate.methods import build_method

    if len(set(methods)) != len(methods):
        raise ObliviateError(f"a method is given twice: {list(methods)}")
    for name in configs:
        if name not in methods:
            raise ObliviateError(f"settings for method {name!r}, which is not run (methods: {', '.join(methods)})")
    for m in methods:
        cls = lm_method_class(m)
        if getattr(cls, "needs_alternate", False) and not getattr(cls, "idk_alternates", False):
            raise ObliviateError(f"method {m!r} needs alternate answers, which canaries do not have")
        build_method(m, configs.get(m), run_seed=seed)


def _measure(model: nn.Module, tok: Any, canaries: Sequence[Canary], heldout: Sequence[str], cfg: CanaryRunConfig,
             seed: int) -> dict[str, Any]:
    from obliviate.metrics.exposure import measure_canaries
    from obliviate.profiling import track

    with track("measure") as t:
        m = measure_canaries(model, tok, canaries, cfg.exact_limit, cfg.exposure_samples, seed, cfg.eval_batch_size)
        m["perplexity"] = heldout_perplexity(model, tok, heldout, cfg.max_length, cfg.eval_batch_size)
    m["wall_s"] = t.to_dict()["wall_s"]
    return m


def _scores(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    from obliviate.metrics.selection import selection_score

    ppl = {"ppl_before": before["perplexity"], "ppl_after": after["perplexity"]}
    return {"selection_score": selection_score(before["planted"]["extraction_pct"],
                                               after["planted"]["extraction_pct"], **ppl),
            "selection_score_exposure": selection_score(before["planted"]["exposure_mean"],
                                                        after["planted"]["exposure_mean"], **ppl)}


def run_canaries(model_dir: str | Path, out: str | Path, methods: Sequence[str] = (),
                 method_configs: dict[str, dict[str, Any]] | None = None, canaries: Any = None, text: Any = None,
                 config: CanaryRunConfig | None = None, plant_canaries: bool = True, seed: int = 0,
                 device: str = "auto", overwrite: bool = False, trust_remote_code: bool = False,
                 save_models: bool = False, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run steps 1-5 of the module docstring; returns the results document (also ``OUT/results.json``).
    ``canaries``: None (generated), a JSON Lines path or a list of :class:`Canary`; ``text``: None (offline Lee
    corpus), a ``.txt`` path (blank-line-separated paragraphs) or a list of texts. ``save_models``: each method's
    edited model and its own results go to ``OUT/methods/NAME``."""
    from obliviate.io import ensure_writable_dir, git_sha, package_versions, save_pretrained_atomic, write_json
    from obliviate.lm_unlearn import load_model_and_tokenizer, tokenizer_files, unlearn_files
    from obliviate.profiling import track
    from obliviate.runconfig import resolve_device

    cfg = config or CanaryRunConfig()
    configs = dict(method_configs or {})
    say = say or (lambda _msg: None)
    methods = list(methods)
    _check_methods(methods, configs, seed)
    out_dir = Path(out)
    if (out_dir / RESULTS).exists() and not overwrite:
        raise ObliviateError(f"{str(out_dir / RESULTS)!r} already exists; pass --overwrite or choose another --out")
    canary_source, cans = _canaries(canaries, cfg, seed)
    planted = [c for c in cans if c.copies > 0]
    if not planted:
        raise ObliviateError("no canary has copies > 0: there is nothing planted to measure or unlearn")
    text_source, texts = _texts(text)
    train, heldout = split_passages(passages(texts, cfg.max_words), cfg.train_passages, cfg.heldout_passages, seed)
    ensure_writable_dir(out_dir)
    write_canary_file(out_dir / "canaries.jsonl", cans)
    dev = resolve_device(device)
    res: dict[str, Any] = {
        "format": FORMAT, "command": "canaries",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "model_dir": str(model_dir), "seed": seed, "device": str(dev), "config": dataclasses.asdict(cfg),
        "canaries": {"source": canary_source, "file": str(out_dir / "canaries.jsonl"), "count": len(cans),
                     "copies": {str(g): sum(c.copies == g for c in cans) for g in sorted({c.copies for c in cans})},
                     "space_log2": sorted({round(math.log2(c.space_size), 3) for c in cans})},
        "text": {"source": text_source, "train_passages": len(train), "heldout_passages": len(heldout)},
        "plant": None, "runs": {}, "git_sha": git_sha(), "versions": package_versions()}
    with track("total") as total:
        model, tok = load_model_and_tokenizer(model_dir, dev, trust_remote_code)
        res["model_class"] = type(model).__name__
        from obliviate.metrics.generation import max_positions

        limit = max_positions(model)
        if limit is not None and limit < cfg.max_length:  # as `obliviate unlearn`: the model's positions bound rows
            cfg = dataclasses.replace(cfg, max_length=limit)
            res["config"]["max_length"] = limit
        base_dir = Path(model_dir)
        from obliviate.io import atomic_write_text

        atomic_write_text(out_dir / "heldout.txt", "\n\n".join(heldout) + "\n")
        if plant_canaries:
            if cfg.measure_original:
                say("measuring the original model")
                res["runs"]["original"] = _measure(model, tok, cans, heldout, cfg, seed)
            docs, hosted = mix_canaries(train, cans, seed)
            atomic_write_text(out_dir / "plant.txt", "\n\n".join(docs) + "\n")
            from obliviate.data.lm_files import pad_id_of, text_rows
            from obliviate.families.lm import TokenData

            rows = TokenData.from_sequences(text_rows(docs, tok, cfg.max_length, source="plant text")[0],
                                            pad_id_of(tok))
            say(f"planting {sum(c.copies for c in cans)} canary copies in {len(docs)} passages ({len(rows)} rows)")
            with track("plant") as t:
                log = plant(model, rows, cfg, seed, say)
            base_dir = out_dir / PLANTED
            save_pretrained_atomic(model, base_dir, extra={"format": FORMAT, "planted_from": str(model_dir),
                                                           "plant": log, "seed": seed},
                                   overwrite=True, extra_files=tokenizer_files(tok))
            res["plant"] = {**log, "wall_s": t.to_dict()["wall_s"], "tokens": int(rows.attention_mask.sum()),
                            "passages_with_canaries": sum(1 for k in hosted if k), "model_path": str(base_dir)}
        say("measuring the model before unlearning")
        before = res["runs"]["before"] = _measure(model, tok, cans, heldout, cfg, seed)
        del model
        for m in methods:
            say(f"{m}: unlearning")
            r = unlearn_files(base_dir, forget_records(cans), train, method=m,
                              out=out_dir / "methods" / m if save_models else None, template="{question}",
                              max_length=cfg.max_length, seed=seed, device=device, evaluate=False,
                              method_config=configs.get(m), trust_remote_code=trust_remote_code, overwrite=overwrite)
            after = _measure(r.model, r.tokenizer, cans, heldout, cfg, seed)
            res["runs"][m] = {**after, **_scores(before, after), "params": r.results["params"],
                              "unlearn_s": r.results["cost"]["phases"]["unlearn"]["wall_s"],
                              "method_wall_s": r.results["cost"]["wall_s"]}
            del r
    res["cost"] = {k: v for k, v in total.to_dict().items() if k in ("wall_s", "peak_rss_mb", "cuda_peak_mb")}
    write_json(out_dir / RESULTS, res)
    return res


def results_table(res: dict[str, Any]) -> str:
    """One line per run: extraction % of the planted canaries, mean exposure per group (bits), held-out
    perplexity, selection score (lower is better) and the method's unlearning time."""
    groups = list(res["runs"]["before"]["by_group"])
    head = ["run", "extract%"] + [f"exp@{g}x" if g != "0" else "exp@held" for g in groups] + ["ppl", "score", "time_s"]
    lines = [head]
    for name, r in res["runs"].items():
        score = r.get("selection_score")
        lines.append([name, f"{r['planted']['extraction_pct']:.1f}"]
                     + [f"{r['by_group'][g]['exposure_mean']:.2f}" for g in groups]
                     + [f"{r['perplexity']:.2f}", "-" if score is None else f"{score:+.3f}",
                        f"{r['unlearn_s']:.1f}" if "unlearn_s" in r else "-"])
    widths = [max(len(row[i]) for row in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))
                     for row in lines)
