"""``obliviate demo | train | eval | unlearn | list | report``. Bad input -> one-line error, exit code 2."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from obliviate.errors import ObliviateError


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def _config_args(p: argparse.ArgumentParser, needs_out: bool = True) -> None:
    p.add_argument("--preset", help="built-in config name (see `obliviate list presets`); default tinymem-cpu")
    p.add_argument("--config", help="YAML config file (instead of --preset)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="dotted override, e.g. --set train.epochs=5 (repeatable)")
    if needs_out:
        p.add_argument("--out", help="output directory")
        p.add_argument("--overwrite", action="store_true", help="replace results already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obliviate", description="Find, remove and measure memorized training data.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("demo", help="train a TinyMem model, unlearn its memorized artifacts, report before/after")
    _config_args(p)
    p = sub.add_parser("train", help="generate TinyMem data and train a model (resumes from checkpoints in --out)")
    _config_args(p)
    p = sub.add_parser("eval", help="measure memorization and accuracy of a trained model")
    p.add_argument("--model", required=True, help="model directory (from `obliviate train`)")
    _config_args(p)
    p = sub.add_parser("unlearn", help="unlearn memorized artifacts from a trained model")
    p.add_argument("--model", required=True, help="model directory (from `obliviate train`)")
    p.add_argument("--method", action="append", required=True, help="method name (repeatable); see `obliviate list`")
    p.add_argument("--select", action="store_true",
                   help="sweep the config's selection grid and keep the best run by the paper's score")
    _config_args(p)
    p = sub.add_parser("list", help="list registered methods, metrics, suites and presets")
    p.add_argument("what", nargs="?", default="all", choices=["all", "methods", "metrics", "suites", "presets"])
    p = sub.add_parser("report", help="re-render report.md from a results directory's results.json")
    p.add_argument("directory")
    return parser


def _method_overrides(overrides: list[str], methods: list[str]) -> list[str]:
    """``method.X=v`` is shorthand for ``methods.NAME.X=v`` (for every --method given)."""
    out = []
    for o in overrides:
        if o.startswith("method."):
            out += [f"methods.{m}.{o[len('method.'):]}" for m in methods]
        else:
            out.append(o)
    return out


def _load(args: argparse.Namespace, extra_overrides: list[str] | None = None):
    from obliviate.presets import load_run_config

    return load_run_config(args.preset, args.config, (extra_overrides or []) + args.overrides)[0]


def run(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _quiet_libraries()
    from obliviate import pipeline

    progress = not getattr(args, "quiet", False)
    if args.command == "list":
        return _list(args.what)
    if args.command == "report":
        return _report(Path(args.directory))
    if args.command == "demo":
        pipeline.demo(_load(args), args.out, overwrite=args.overwrite, progress=progress)
    elif args.command == "train":
        cfg = _load(args)
        out = args.out or "runs/train"
        pipeline.train(cfg, out, overwrite=args.overwrite, progress=progress)
        print(f"model: {Path(out) / 'model'}\nresults: {Path(out) / 'train.json'}")
    elif args.command in ("eval", "unlearn"):
        model, trained_cfg, meta = pipeline.load_trained(args.model)
        overrides = args.overrides
        if args.command == "unlearn":
            overrides = _method_overrides(overrides, args.method)
            if not args.select:
                overrides = overrides + [f"selection.{m}={{}}" for m in args.method]
        args.overrides = overrides
        if args.preset is None and args.config is None and trained_cfg is not None:
            from obliviate.config import apply_overrides, from_dict, to_dict
            from obliviate.suites.tinymem import TinyMemConfig

            cfg = from_dict(TinyMemConfig, apply_overrides(to_dict(trained_cfg), overrides))
        else:
            cfg = _load(args)
        from obliviate.suites.tinymem import resolve_device

        model = model.to(resolve_device(cfg.device))
        out = args.out or str(Path(args.model).parent / args.command)
        if args.command == "eval":
            res = pipeline.evaluate(model, cfg, out, overwrite=args.overwrite,
                                    expected_data_hash=meta.get("data_hash"))
            m = res["metrics"]
            print(f"% memorized {m['percent_memorized']['value']:.1f} {m['percent_memorized']['by_group']}")
            print(f"accuracy {m['accuracy']['by_test']}")
            print(f"results: {Path(out) / 'eval.json'}")
        else:
            pipeline.unlearn(model, cfg, args.method, out, overwrite=args.overwrite,
                             expected_data_hash=meta.get("data_hash"))
            print(f"results: {Path(out) / 'results.json'}")
    return 0


def _list(what: str) -> int:
    from obliviate.methods import METHODS
    from obliviate.metrics import METRICS
    from obliviate.presets import preset_names
    from obliviate.suites import SUITES

    if what in ("all", "methods"):
        print("methods:")
        for name in METHODS.names():
            cls = METHODS.get(name)
            paper = f"  ({cls.paper.authors}, {cls.paper.year})" if cls.paper else ""
            print(f"  {name}{paper}")
    if what in ("all", "metrics"):
        print("metrics:")
        for name in METRICS.names():
            spec = METRICS.get(name)
            print(f"  {name}  [{'higher' if spec.higher_is_better else 'lower'} is better] {spec.description}")
    if what in ("all", "suites"):
        print("suites:")
        for name in SUITES.names():
            print(f"  {name}  v{SUITES.get(name).VERSION}")
    if what in ("all", "presets"):
        print("presets:")
        for name in preset_names():
            print(f"  {name}")
    return 0


def _report(directory: Path) -> int:
    from obliviate.io import atomic_write_text, read_json
    from obliviate.report.markdown import render_report, render_table

    results = read_json(directory / "results.json")
    if "before" not in results:
        raise ObliviateError(f"{str(directory / 'results.json')!r} holds no unlearning results to report")
    atomic_write_text(directory / "report.md", render_report(results))
    print(render_table(results))
    print(f"report: {directory / 'report.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except ObliviateError as exc:
        print(f"obliviate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("obliviate: interrupted (checkpoints written so far are kept; rerun to resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
