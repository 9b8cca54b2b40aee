"""``obliviate canaries --model DIR [--canaries FILE] [--text FILE] [--method NAME ...] --out OUT``: plant canaries
in a local Hugging Face causal LM (or use the ones it memorized already, ``--no-plant``), measure extraction and
exposure, unlearn them with each method, measure again (:mod:`obliviate.canary_transfer`)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    from obliviate.canary_transfer import CanaryRunConfig as C

    p = sub.add_parser("canaries", help="plant canaries in a HF causal LM, unlearn them, report extraction, exposure "
                       "and held-out perplexity before/after")
    p.add_argument("--model", required=True, help="a local Hugging Face causal LM directory (+ tokenizer)")
    p.add_argument("--canaries", metavar="FILE", help="your canaries, JSON Lines: {\"prefix\", \"secret\"} or "
                   "{\"text\"[, \"secret\"]} (the secret = the last run of digits), optional \"copies\" (0 = held out)"
                   "; default: generated")
    p.add_argument("--text", metavar="FILE", help="real text (.txt, blank-line-separated paragraphs) to plant into "
                   "and to measure held-out perplexity on; default: the offline Lee news corpus (gensim)")
    p.add_argument("--method", action="append", default=[], help="lm method to apply (repeatable); none: only plant "
                   "and measure")
    p.add_argument("--out", required=True, help="output directory (results.json, canaries.jsonl, planted/)")
    p.add_argument("--no-plant", action="store_true", help="the model memorized the canaries already: no fine-tune")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="methods.NAME.KEY=VALUE",
                   help="a method setting, e.g. --set methods.durable.ratio=0.001 (repeatable)")
    g = p.add_argument_group("generated canaries (without --canaries)")
    g.add_argument("--groups", default=",".join(map(str, C.groups)), help="copies per canary, one group each "
                   "(default 1,10,100)")
    g.add_argument("--per-group", type=int, default=C.per_group, help=f"canaries per group (default {C.per_group})")
    g.add_argument("--held-out", type=int, default=C.held_out, help=f"canaries never inserted (default {C.held_out})")
    g.add_argument("--secret-length", type=int, default=C.secret_length, help=f"digits per secret (default "
                   f"{C.secret_length})")
    g.add_argument("--template", default=C.template, help=f"with {{secret}} and optional {{key}} (default "
                   f"{C.template!r})")
    t = p.add_argument_group("planting and measuring")
    t.add_argument("--plant-steps", type=int, help=f"fine-tune steps (default: {C.plant_epochs:g} epochs)")
    for flag, field, kind, what in (
            ("--plant-epochs", "plant_epochs", float, "fine-tune epochs"),
            ("--plant-lr", "plant_lr", float, "AdamW learning rate"),
            ("--plant-batch-size", "plant_batch_size", int, "rows per step"),
            ("--train-passages", "train_passages", int, "text passages to plant into"),
            ("--heldout-passages", "heldout_passages", int, "passages for held-out perplexity"),
            ("--max-length", "max_length", int, "tokens per row"),
            ("--samples", "exposure_samples", int, "candidates sampled to estimate exposure"),
            ("--exact-limit", "exact_limit", int, "rank among all candidates when there are at most this many")):
        t.add_argument(flag, type=kind, default=getattr(C, field), help=f"{what} (default {getattr(C, field):g})")
    t.add_argument("--skip-original", action="store_true", help="do not measure the model before planting")
    t.add_argument("--save-models", action="store_true", help="save each method's model to OUT/methods/NAME")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the model")
    p.add_argument("--overwrite", action="store_true", help="replace the results in --out")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(handler=run)


def _groups(text: str) -> tuple[int, ...]:
    from obliviate.errors import ObliviateError

    try:
        groups = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise ObliviateError(f"--groups must be comma-separated integers, got {text!r}") from None
    return groups


def method_settings(overrides: list[str], methods: list[str]) -> dict[str, dict[str, Any]]:
    """``methods.NAME.KEY=VALUE`` (NAME among ``methods``) -> {NAME: {KEY: VALUE}}."""
    from obliviate.config import apply_overrides
    from obliviate.errors import ObliviateError

    raw = apply_overrides({}, overrides)
    bad = [k for k in raw if k != "methods"]
    if bad:
        raise ObliviateError(f"--set {bad[0]}...: only methods.NAME.KEY=VALUE is accepted here")
    out = raw.get("methods") or {}
    for name, sub in out.items():
        if name not in methods:
            raise ObliviateError(f"--set methods.{name}...: {name!r} is not a --method of this run "
                                 f"({', '.join(methods) or 'none given'})")
        if not isinstance(sub, dict):
            raise ObliviateError(f"--set methods.{name}=...: give methods.{name}.KEY=VALUE")
    return out


def run(args: argparse.Namespace) -> int:
    from obliviate.canary_transfer import CanaryRunConfig, results_table, run_canaries
    from obliviate.context import print_stderr, quiet_libraries
    from obliviate.errors import ObliviateError
    from obliviate.seeding import deterministic_kernels

    if args.seed < 0:
        raise ObliviateError(f"--seed must be >= 0, got {args.seed}")
    cfg = CanaryRunConfig(groups=_groups(args.groups), per_group=args.per_group, held_out=args.held_out,
                          secret_length=args.secret_length, template=args.template.replace("\\n", "\n"),
                          train_passages=args.train_passages, heldout_passages=args.heldout_passages,
                          max_length=args.max_length, plant_epochs=args.plant_epochs, plant_steps=args.plant_steps,
                          plant_lr=args.plant_lr, plant_batch_size=args.plant_batch_size,
                          exposure_samples=args.samples, exact_limit=args.exact_limit,
                          measure_original=not args.skip_original)
    settings = method_settings(args.overrides, args.method)
    quiet_libraries()
    deterministic_kernels()
    res = run_canaries(args.model, args.out, methods=args.method, method_configs=settings, canaries=args.canaries,
                       text=args.text, config=cfg, plant_canaries=not args.no_plant, seed=args.seed,
                       device=args.device, overwrite=args.overwrite, trust_remote_code=args.trust_remote_code,
                       save_models=args.save_models, say=(lambda _m: None) if args.quiet else print_stderr)
    print(results_table(res))
    from pathlib import Path

    print(f"results: {Path(args.out) / 'results.json'}")
    return 0
