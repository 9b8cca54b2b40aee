"""``obliviate demo | train | eval | unlearn | bench | list | report | topics | alternates``.

Bad input -> one-line error, exit code 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from obliviate import __version__
from obliviate.errors import ObliviateError


def _config_args(p: argparse.ArgumentParser, out: bool = True, resume: bool = False) -> None:
    p.add_argument("--suite", help="suite (benchmark) name, see `obliviate list suites`; default tinymem")
    p.add_argument("--preset", help="built-in config name (see `obliviate list presets`); default: the suite's")
    p.add_argument("--config", help="YAML config file (instead of --preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.epochs=5 (repeatable)")
    if out:
        p.add_argument("--out", help="output directory")
        p.add_argument("--overwrite", action="store_true", help="discard what --out holds and start fresh")
    if resume:
        p.add_argument("--resume", action="store_true", help="continue the run that --out holds")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obliviate", description="Find, remove and measure memorized training data.")
    parser.add_argument("--version", action="version", version=f"obliviate {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a model, unlearn what it memorized with every configured method, report")
    _config_args(p)
    p = sub.add_parser("train", help="build the suite's data and train the model to edit (resumes from --out)")
    _config_args(p, resume=True)
    p = sub.add_parser("eval", help="measure a trained model with the suite's metrics")
    p.add_argument("--model", required=True, help="model directory (from `obliviate train`)")
    _config_args(p)
    p = sub.add_parser("unlearn", help="unlearn from a trained model and measure before/after")
    p.add_argument("--model", required=True, help="model directory (from `obliviate train`, or any local HF "
                   "causal LM with --forget)")
    p.add_argument("--method", action="append", required=True, help="method name (repeatable); see `obliviate list`")
    p.add_argument("--select", action="store_true",
                   help="sweep the config's selection grid and keep the best run by the suite's score")
    _config_args(p)
    f = p.add_argument_group("your own data (no suite): --model is a local Hugging Face causal LM + tokenizer")
    f.add_argument("--forget", help="forget data: .jsonl QA pairs (question/answer) or .txt (blank-line-separated)")
    f.add_argument("--retain", help="retain data, same formats")
    f.add_argument("--template", help="QA prompt template with {question}; \\n is a newline (default "
                   "'Question: {question}\\nAnswer: ')")
    f.add_argument("--chat-template", action="store_true", help="prompt QA pairs with the tokenizer's chat template")
    f.add_argument("--max-length", type=int, help="tokens per row (default 512, or the model's positions when fewer)")
    f.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the model")
    f.add_argument("--lora", action="store_true", help="train a LoRA adapter (PEFT) instead of all weights; "
                   "OUT/model holds the adapter (needs: pip install 'obliviate[lora]')")
    f.add_argument("--lora-r", type=int, metavar="N", help="LoRA rank (default 8; implies --lora)")
    f.add_argument("--lora-alpha", type=float, metavar="A", help="LoRA alpha (default 16; implies --lora)")
    f.add_argument("--lora-dropout", type=float, metavar="P", help="LoRA dropout (default 0; implies --lora)")
    f.add_argument("--lora-targets", metavar="A,B", help="module names to adapt, comma-separated (default: PEFT's "
                   "for the architecture, e.g. c_attn for GPT-2; implies --lora)")
    f.add_argument("--merge", action="store_true", help="with --lora: save the model with the adapter merged into "
                   "its weights instead of the adapter alone")
    f.add_argument("--idk", metavar="FILE", help="idk_dpo: your own \"I don't know\" answers, one per line (default: "
                   "the built-in pool)")
    f.add_argument("--checkpoint-dir", metavar="DIR", help="checkpoint the unlearning run in DIR (atomically, every "
                   "--checkpoint-every epochs); with --resume continue the run found there")
    f.add_argument("--checkpoint-every", type=int, default=1, metavar="N", help="epochs between checkpoints "
                   "(default 1)")
    f.add_argument("--resume", action="store_true", help="continue the interrupted run in --checkpoint-dir "
                   "(a checkpoint of another configuration is refused)")
    f.add_argument("--accelerate-config", metavar="FILE", help="a standard accelerate config file; with "
                   "distributed_type FSDP the model is sharded across the processes of torchrun / accelerate launch")
    p = sub.add_parser("bench", help="every method x selection grid x seed, as jobs; aggregated report")
    p.add_argument("suite_name", nargs="?", metavar="SUITE", help="suite name (same as --suite)")
    p.add_argument("--seeds", help="comma-separated seeds, e.g. 0,1,3 (default: the config's `seeds`, else `seed`)")
    p.add_argument("--method", action="append", help="only these methods (repeatable; default: all configured)")
    p.add_argument("--executor", default="process", help="process (local pool, default), ray, or inline")
    p.add_argument("--workers", type=int, default=1, help="parallel jobs (default 1)")
    p.add_argument("--address", help="Ray cluster address to join (default: start a local Ray)")
    _config_args(p, resume=True)
    p = sub.add_parser("list", help="list methods (by family), suites, presets and metrics")
    p.add_argument("what", nargs="?", default="all", choices=["all", "methods", "metrics", "suites", "presets"])
    p = sub.add_parser("report", help="re-render the reports (markdown, HTML, figures) from DIR/results.json")
    p.add_argument("directory")
    from obliviate import cli_alternates, cli_harness, cli_topics

    cli_topics.add_parser(sub)
    cli_alternates.add_parser(sub)
    cli_harness.add_parser(sub)
    from obliviate import cli_canaries

    cli_canaries.add_parser(sub)  # sets args.handler
    return parser


def _method_overrides(overrides: list[str], methods: list[str]) -> list[str]:
    """``method.X=v`` is shorthand for ``methods.NAME.X=v`` for every --method whose config has a field X."""
    import dataclasses

    from obliviate.methods import METHODS

    out = []
    for o in overrides:
        if not o.startswith("method."):
            out.append(o)
            continue
        key = o[len("method."):].split("=", 1)[0].split(".")[0]
        takers = [m for m in methods if key in {f.name for f in dataclasses.fields(METHODS.get(m).config_cls)}]
        if not takers:
            raise ObliviateError(f"--set {o}: no method given takes {key!r} ({', '.join(methods)}); "
                                 "use --set methods.NAME.KEY=VALUE to set one method")
        out += [f"methods.{m}.{o[len('method.'):]}" for m in takers]
    return out


def _load(args: argparse.Namespace, overrides: list[str] | None = None) -> Any:
    from obliviate.presets import load_run_config

    suite = getattr(args, "suite", None) or getattr(args, "suite_name", None)
    return load_run_config(args.preset, args.config, overrides if overrides is not None else args.overrides, suite)


def _trained_run(args: argparse.Namespace, overrides: list[str]) -> tuple[Any, Any, dict[str, Any]]:
    """The model and the run config for eval/unlearn: the model's own config unless --preset/--config is given."""
    from obliviate import pipeline
    from obliviate.config import apply_overrides
    from obliviate.runconfig import resolve_device, run_config_from_dict

    model, trained, meta = pipeline.load_trained(args.model)
    if args.preset is None and args.config is None and trained is not None:
        if args.suite and args.suite != trained.suite:
            raise ObliviateError(f"{args.model!r} was trained with suite {trained.suite!r}, not {args.suite!r}")
        run = run_config_from_dict(apply_overrides(trained.to_dict(), overrides))
    else:
        run = _load(args, overrides)
    if hasattr(model, "to"):  # torch models move to the run's device; NumPy models (topics) have none
        model = model.to(resolve_device(run.device))
    return model, run, meta


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "handler", None) is not None:  # subcommands that name their own handler (add_parser)
        return args.handler(args)
    if args.command == "list":
        return _list(args.what)
    if args.command == "report":
        return _report(Path(args.directory))
    if args.command == "topics":
        from obliviate import cli_topics

        return cli_topics.run(args)
    if args.command == "alternates":
        from obliviate import cli_alternates

        return cli_alternates.run(args)
    if args.command == "harness":
        from obliviate import cli_harness

        return cli_harness.run(args)
    from obliviate import pipeline
    from obliviate.context import quiet_libraries

    quiet_libraries()
    from obliviate.seeding import deterministic_kernels

    deterministic_kernels()
    progress = not args.quiet
    if args.command == "demo":
        res, out = pipeline.demo(_load(args), args.out, overwrite=args.overwrite, progress=progress)
        _print_results(res, out)
    elif args.command == "train":
        out = Path(args.out or "runs/train")
        _, _, res = pipeline.train(_load(args), out, overwrite=args.overwrite, resume=args.resume, progress=progress)
        print(_before_line(res))
        print(f"model: {out / 'model'}\nresults: {out / 'train.json'}")
    elif args.command == "eval":
        model, run_cfg, meta = _trained_run(args, [*args.overrides, *_foreign_model_path(args)])
        out = Path(args.out or Path(args.model).parent / "eval")
        res = pipeline.evaluate(model, run_cfg, out, overwrite=args.overwrite,
                                expected_data_hash=meta.get("data_hash"))
        print(_scalars_line(res["scalars"], res["columns"]))
        print(f"results: {out / 'eval.json'}")
    elif args.command == "unlearn" and args.forget is not None:
        from obliviate import cli_lm_files

        return cli_lm_files.run_cli(args, progress)
    elif args.command == "unlearn":
        _no_file_options(args)
        overrides = _method_overrides(args.overrides, args.method)
        overrides += [f"methods.{m}={{}}" for m in args.method if not any(o.startswith(f"methods.{m}.") for o in overrides)]
        model, run_cfg, meta = _trained_run(args, overrides)
        run_cfg = _only_methods(run_cfg, args.method, keep_selection=args.select)
        if args.select and not any(run_cfg.selection.get(m) for m in args.method):
            raise ObliviateError(f"--select: the config has no selection grid for {', '.join(args.method)} "
                                 "(add `selection: {METHOD: {field: [values]}}` or drop --select)")
        out = Path(args.out or Path(args.model).parent / "unlearn")
        res = pipeline.unlearn(model, run_cfg, out, overwrite=args.overwrite,
                               expected_data_hash=meta.get("data_hash"), progress=progress)
        _print_results(res, out)
    elif args.command == "bench":
        return _bench(args, progress)
    return 0


def _foreign_model_path(args: argparse.Namespace) -> list[str]:
    """For a model not trained by obliviate (no obliviate.json), suites with a ``model.path`` field (tofu, muse,
    mia) read their tokenizer from it: ``model.path=DIR`` unless the user set it."""
    if (Path(args.model) / "obliviate.json").is_file() or any(o.startswith("model.path=") for o in args.overrides):
        return []
    from obliviate.suites import SUITES

    suite = SUITES.get(args.suite or "tinymem")
    section = getattr(suite.config_cls(), "model", None)
    return [f"model.path={args.model}"] if section is not None and hasattr(section, "path") else []


def _no_file_options(args: argparse.Namespace) -> None:
    given = [f for f, v in (("--retain", args.retain), ("--template", args.template),
                            ("--chat-template", args.chat_template), ("--trust-remote-code", args.trust_remote_code),
                            ("--max-length", args.max_length is not None), ("--lora", args.lora),
                            ("--lora-r", args.lora_r is not None), ("--lora-alpha", args.lora_alpha is not None),
                            ("--lora-dropout", args.lora_dropout is not None),
                            ("--lora-targets", args.lora_targets is not None), ("--merge", args.merge),
                            ("--idk", args.idk is not None), ("--checkpoint-dir", args.checkpoint_dir is not None),
                            ("--resume", args.resume), ("--accelerate-config", args.accelerate_config is not None))
             if v]
    if given:
        raise ObliviateError(f"{', '.join(given)} need(s) --forget (unlearning your own data from a HF model)")


def _only_methods(run_cfg: Any, methods: list[str], keep_selection: bool) -> Any:
    import dataclasses

    sel = {m: g for m, g in run_cfg.selection.items() if m in methods} if keep_selection else {}
    return dataclasses.replace(run_cfg, methods={m: run_cfg.methods.get(m, {}) for m in methods}, selection=sel)


def _preset_as_suite(args: argparse.Namespace) -> None:
    """``obliviate bench tofu-mini``: a preset named where the suite goes means that preset of its suite."""
    from obliviate.presets import preset_names, preset_suite
    from obliviate.suites import SUITES

    name = args.suite_name
    if name is None or name in SUITES.names() or name not in preset_names():
        return
    if args.preset is not None and args.preset != name:
        raise ObliviateError(f"two presets given: {name!r} and --preset {args.preset!r}")
    args.preset, args.suite_name = name, preset_suite(name)


def _bench(args: argparse.Namespace, progress: bool) -> int:
    from obliviate.context import print_stderr
    from obliviate.jobs.executors import make_executor
    from obliviate.jobs.runner import run_bench
    from obliviate.runconfig import check_seeds

    _preset_as_suite(args)
    if args.suite and args.suite_name and args.suite != args.suite_name:
        raise ObliviateError(f"two suites given: {args.suite_name!r} and --suite {args.suite!r}")
    if args.preset is None and args.config is None:  # a suite's bench may default to a bigger preset than its demo
        from obliviate.suites import SUITES

        suite = SUITES.get(args.suite_name or args.suite or "tinymem")
        args.preset = getattr(suite, "bench_preset", None) or suite.default_preset
    run_cfg = _load(args)
    if args.method:
        run_cfg = _only_methods(run_cfg, args.method, keep_selection=True)
    seeds = check_seeds(args.seeds) if args.seeds is not None else run_cfg.study_seeds
    out = Path(args.out or f"runs/bench-{run_cfg.suite}")
    with make_executor(args.executor, workers=args.workers, address=args.address) as executor:
        res = run_bench(run_cfg, seeds, out, executor, overwrite=args.overwrite, resume=args.resume,
                        say=print_stderr)
    _print_results(res, out)
    return 0


def _scalars_line(scalars: dict[str, float], columns: list[dict[str, Any]]) -> str:
    return ", ".join(f"{c['label']} {scalars[c['key']]:.{c['digits']}f}" for c in columns
                     if scalars.get(c["key"]) is not None)


def _before_line(res: dict[str, Any]) -> str:
    return "before: " + _scalars_line(res["before"]["scalars"], res["columns"])


def _print_results(res: dict[str, Any], out: Path) -> None:
    from obliviate.report.bench_markdown import render_bench_table

    print(render_bench_table(res), flush=True)  # the result goes to stdout; progress to stderr
    print(f"results: {out / 'results.json'}\nreport:  {out / 'report.html'} (and report.md)")


def _list(what: str) -> int:
    from obliviate.methods import METHODS
    from obliviate.presets import preset_names, preset_suite
    from obliviate.suites import SUITES

    if what in ("all", "methods"):
        print("methods (by family):")
        for family in sorted({METHODS.get(n).family for n in METHODS.names()}):
            print(f"  {family}:")
            for name in METHODS.names():
                cls = METHODS.get(name)
                if cls.family == family:
                    p = cls.paper
                    paper = f"  {p.authors} ({p.year}), {p.title}" + (f", arXiv {p.arxiv}" if p.arxiv else "") if p else ""
                    print(f"    {name:<18} [{cls.kind}]{paper}")
    if what in ("all", "suites"):
        print("suites:")
        for name in SUITES.names():
            s = SUITES.get(name)
            bench = getattr(s, "bench_preset", None)
            print(f"  {name} v{s.VERSION}  family {s.family}, presets: {', '.join(preset_names(name))} "
                  f"(default {s.default_preset}{f'; bench: {bench}' if bench else ''})")
    if what in ("all", "presets"):
        print("presets:")
        for name in preset_names():
            print(f"  {name}  (suite {preset_suite(name)})")
    if what in ("all", "metrics"):
        from obliviate.metrics import METRICS

        print("metrics:")
        for name in METRICS.names():
            spec = METRICS.get(name)
            print(f"  {name}  [{'higher' if spec.higher_is_better else 'lower'} is better] {spec.description}")
    return 0


def _report(directory: Path) -> int:
    from obliviate.io import read_json
    from obliviate.report.write import write_bench_report

    res_path = directory / "results.json"
    if not res_path.is_file():
        found = [n for n in ("train.json", "eval.json") if (directory / n).is_file()]
        hint = f" (it holds {found[0]}: reports are made for unlearn, demo and bench results)" if found else ""
        raise ObliviateError(f"{str(res_path)!r} does not exist{hint}")
    results = read_json(res_path)
    if "per_seed" not in results:
        raise ObliviateError(f"{str(res_path)!r} holds no unlearning results (format {results.get('format')!r})")
    paths = write_bench_report(results, directory)
    _print_results(results, directory)
    print(f"figures: {', '.join(str(p) for k, p in paths.items() if str(p).endswith('.png'))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        code = run(argv)
    except ObliviateError as exc:
        print(f"obliviate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("obliviate: interrupted (checkpoints and finished jobs are kept; rerun to resume)", file=sys.stderr)
        return 130
    from obliviate.train.distributed import shutdown

    shutdown()  # under torchrun: every rank leaves the process group together (a no-op otherwise)
    return code


if __name__ == "__main__":
    sys.exit(main())
