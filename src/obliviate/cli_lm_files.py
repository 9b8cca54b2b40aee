"""The CLI layer of ``obliviate unlearn --model DIR --forget F ...`` (files, no suite): ``--set`` parsing, the LoRA
flags, and the call into :func:`obliviate.lm_unlearn.unlearn_files`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obliviate.data.lm_files import DEFAULT_TEMPLATE
from obliviate.errors import ObliviateError
from obliviate.lm_unlearn import RESULTS, lm_method_class, unlearn_files
from obliviate.lora import LoraConfig

SET_KEYS = ("method", "methods", "seed", "device")


def parse_sets(overrides: list[str], method: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set method.X=v`` (or ``methods.NAME.X=v``), ``seed=N``, ``device=D`` -> (method config, run options)."""
    from obliviate.config import apply_overrides
    from obliviate.errors import unknown_name_error

    raw = apply_overrides({}, overrides)
    for key in raw:
        if key not in SET_KEYS:
            raise unknown_name_error("--set key with --forget", key, SET_KEYS)
    config = dict(raw.get("method") or {})
    for name, sub in (raw.get("methods") or {}).items():
        if name != method:
            raise ObliviateError(f"--set methods.{name}...: the method run is {method!r}")
        config.update(sub if isinstance(sub, dict) else {})
    run = {k: raw[k] for k in ("seed", "device") if k in raw}
    if "seed" in run and (not isinstance(run["seed"], int) or isinstance(run["seed"], bool) or run["seed"] < 0):
        raise ObliviateError(f"seed must be an integer >= 0, got {run['seed']!r}")
    if "device" in run:
        run["device"] = str(run["device"])
    return config, run


def run_cli(args: Any, progress: bool) -> int:
    """``obliviate unlearn --model DIR --forget F [--retain R] --method NAME --out OUT``: no suite involved."""
    from obliviate.context import print_stderr

    for flag, given in (("--suite", args.suite), ("--preset", args.preset), ("--config", args.config),
                        ("--select", args.select)):
        if given:
            raise ObliviateError(f"{flag} is for suite models; with --forget the model and data come from files")
    if len(args.method) != 1:
        raise ObliviateError(f"with --forget give one --method, got {len(args.method)} ({', '.join(args.method)})")
    if not args.out:
        raise ObliviateError("with --forget, give --out DIR (the edited model goes to DIR/model)")
    if args.template is not None and args.chat_template:
        raise ObliviateError("--template and --chat-template exclude each other (the chat template makes the prompt)")
    method = args.method[0]
    lm_method_class(method)
    config, run = parse_sets(args.overrides, method)
    lora = lora_from_args(args)
    res = unlearn_files(args.model, args.forget, args.retain, method=method, out=args.out,
                        checkpoint_dir=args.checkpoint_dir, checkpoint_every=args.checkpoint_every,
                        resume=args.resume, accelerate_config=args.accelerate_config,
                        template=DEFAULT_TEMPLATE if args.template is None else
                        args.template.replace("\\n", "\n").replace("\\t", "\t"),
                        chat_template=args.chat_template, max_length=args.max_length,
                        trust_remote_code=args.trust_remote_code, overwrite=args.overwrite, progress=progress,
                        method_config=config, lora=lora, merge=args.merge, idk=args.idk, **run)
    from obliviate.train.distributed import current_world

    if not current_world().main:
        return 0  # rank 0 reports
    r = res.results
    line = f"{method}: "
    if r["nll"]:
        line += ", ".join(f"{k} NLL {v['before']:.3f} -> {v['after']:.3f}" for k, v in r["nll"].items()) + ", "
    print_stderr(line + f"{r['cost']['wall_s']:.1f}s, peak {r['cost']['peak_rss_mb']:.0f} MB")
    if lora is not None and not args.merge:
        print(f"adapter: {res.model_path} (LoRA on {args.model}; load with obliviate.lora.load_lora)")
    else:
        print(f"model:   {res.model_path}")
    print(f"results: {Path(args.out) / RESULTS}")
    return 0


def lora_from_args(args: Any) -> LoraConfig | None:
    """``--lora`` and ``--lora-r/--lora-alpha/--lora-dropout/--lora-targets`` (each implies --lora) -> LoraConfig."""
    given = {k: v for k, v in (("r", args.lora_r), ("alpha", args.lora_alpha), ("dropout", args.lora_dropout),
                               ("target_modules", args.lora_targets)) if v is not None}
    if not args.lora and not given:
        if args.merge:
            raise ObliviateError("--merge saves the LoRA adapter merged into the weights: it needs --lora")
        return None
    if isinstance(given.get("alpha"), float) and given["alpha"].is_integer():
        given["alpha"] = int(given["alpha"])
    if "target_modules" in given:
        given["target_modules"] = tuple(t.strip() for t in given["target_modules"].split(","))
    return LoraConfig(**given)
