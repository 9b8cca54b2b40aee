"""The commands behind the CLI: train, eval, unlearn and demo on the TinyMem suite, each writing a results JSON
with full provenance (resolved config, seed, versions, git SHA, suite VERSION, content hashes, cost per phase)."""

from __future__ import annotations

import datetime as _dt
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch import nn

from obliviate.config import to_dict
from obliviate.data.tinymem import PAD, TinyMemData
from obliviate.errors import ObliviateError
from obliviate.io import (
    atomic_write_text,
    ensure_writable_dir,
    git_dirty,
    git_sha,
    hash_json,
    hash_model,
    hash_tensors,
    load_causal_lm,
    package_versions,
    read_json,
    save_pretrained_atomic,
    write_json,
)
from obliviate.profiling import PhaseCost, track
from obliviate.report.markdown import render_report, render_table
from obliviate.seeding import seed_everything
from obliviate.suites import tinymem as suite
from obliviate.train.pretrain import pretrain, run_fingerprint

Printer = Callable[[str], None]


def _print(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def data_hash(data: TinyMemData) -> str:
    parts = [("train", data.train), ("artifacts", data.artifacts), ("artifacts_clean", data.artifacts_clean),
             ("group", data.artifact_group), ("prompt_len", data.prompt_len)]
    return hash_tensors(parts + sorted((f"test_{k}", v) for k, v in data.tests.items()))


def provenance(cfg: suite.TinyMemConfig, command: str) -> dict[str, Any]:
    resolved = to_dict(cfg)
    return {
        "format": "obliviate-results/1",
        "command": command,
        "suite": "tinymem",
        "suite_version": suite.VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": cfg.seed,
        "config": resolved,
        "git_sha": git_sha(),
        "git_dirty": git_dirty(),
        "versions": package_versions(),
        "hashes": {"config": hash_json(resolved)},
    }


def prepare_out(out: str | Path, overwrite: bool, result_name: str) -> Path:
    """Create ``out``; refuse to replace an existing results file unless ``overwrite``."""
    path = ensure_writable_dir(out)
    if (path / result_name).exists() and not overwrite:
        raise ObliviateError(f"{str(path / result_name)!r} already exists; pass --overwrite or choose another --out")
    return path


def _save_model(model: nn.Module, path: Path, cfg: suite.TinyMemConfig, extra: dict[str, Any]) -> str:
    save_pretrained_atomic(model, path, overwrite=True, extra={"config": to_dict(cfg), **extra})
    return str(path)


def train(cfg: suite.TinyMemConfig, out: str | Path, overwrite: bool = False, progress: bool = True,
          say: Printer = _print, check_existing: bool = True) -> tuple[nn.Module, TinyMemData, dict[str, Any]]:
    """Generate data, train from scratch (resuming from ``out/train/checkpoints``), save ``out/model``."""
    out_dir = prepare_out(out, overwrite or not check_existing, "train.json")
    suite.set_threads(cfg)
    seed_everything(cfg.seed)
    results = provenance(cfg, "train")
    phases: dict[str, PhaseCost] = {}
    with track("generate_data") as phases["generate_data"]:
        data = suite.build_data(cfg)
    say(f"data: {data.summary()}")
    model = suite.new_model(cfg)
    with track("train") as phases["train"]:
        stats = pretrain(model, data.train, cfg.train, cfg.seed, PAD, out_dir=out_dir / "train", progress=progress,
                         fingerprint=_fingerprint(cfg), discard_mismatched=overwrite)
    mhash = hash_model(model)
    results["hashes"].update({"data": data_hash(data), "model": mhash})
    results["data"] = data.summary()
    results["train"] = {"epochs_run": stats.epochs_run, "resumed_from_epoch": stats.resumed_from_epoch,
                        "final_loss": stats.final_loss, "tokens": stats.tokens, "tokens_per_s": stats.tokens_per_s,
                        "history": stats.history}
    results["model_path"] = _save_model(model, out_dir / "model", cfg, {"data_hash": results["hashes"]["data"]})
    results["phases"] = {k: v.to_dict() for k, v in phases.items()}
    write_json(out_dir / "train.json", results)
    return model, data, results


def _fingerprint(cfg: suite.TinyMemConfig) -> str:
    t = to_dict(cfg.train)
    for volatile in ("epochs", "checkpoint_every", "keep_checkpoints"):
        t.pop(volatile)
    return run_fingerprint(to_dict(cfg.data), to_dict(cfg.model), t, cfg.seed)


def load_trained(model_dir: str | Path) -> tuple[nn.Module, suite.TinyMemConfig | None, dict[str, Any]]:
    """A saved model, the TinyMem config it was trained with (None for a foreign checkpoint) and its metadata."""
    from obliviate.config import from_dict

    model = load_causal_lm(model_dir)
    meta_path = Path(model_dir) / "obliviate.json"
    meta = read_json(meta_path) if meta_path.is_file() else {}
    cfg = from_dict(suite.TinyMemConfig, meta["config"]) if "config" in meta else None
    return model, cfg, meta


def check_data(data: TinyMemData, expected_hash: str | None, say: Printer) -> str:
    """Warn when the data built now is not the data the model was trained on (a different config)."""
    h = data_hash(data)
    if expected_hash and h != expected_hash:
        say(f"warning: this config builds different data (hash {h[:12]}) than the model was trained on "
            f"({expected_hash[:12]}); memorization is measured on artifacts the model may never have seen")
    return h


def evaluate(model: nn.Module, cfg: suite.TinyMemConfig, out: str | Path, overwrite: bool = False,
             data: TinyMemData | None = None, expected_data_hash: str | None = None,
             say: Printer = _print) -> dict[str, Any]:
    out_dir = prepare_out(out, overwrite, "eval.json")
    suite.set_threads(cfg)
    data = data if data is not None else suite.build_data(cfg)
    results = provenance(cfg, "eval")
    with track("eval") as cost:
        ev = suite.evaluate(model, data, cfg)
    results["hashes"].update({"data": check_data(data, expected_data_hash, say), "model": hash_model(model)})
    results["metrics"] = ev.metrics
    results["phases"] = {"eval": cost.to_dict()}
    write_json(out_dir / "eval.json", results)
    return results


def unlearn(model: nn.Module, cfg: suite.TinyMemConfig, methods: list[str], out: str | Path,
            overwrite: bool = False, data: TinyMemData | None = None, say: Printer = _print,
            base_results: dict[str, Any] | None = None, expected_data_hash: str | None = None) -> dict[str, Any]:
    """Evaluate, run each method (sweeping ``cfg.selection[name]`` when given), evaluate again, write
    ``results.json`` + ``report.md`` and the edited models under ``out/unlearned/NAME``."""
    out_dir = prepare_out(out, overwrite, "results.json")
    suite.set_threads(cfg)
    seed_everything(cfg.seed)
    results = base_results if base_results is not None else provenance(cfg, "unlearn")
    phases = dict(results.get("phases", {}))
    if data is None:
        with track("generate_data") as c:
            data = suite.build_data(cfg)
        phases["generate_data"] = c.to_dict()
    with track("eval_before") as c:
        before = suite.evaluate(model, data, cfg)
    phases["eval_before"] = c.to_dict()
    say(f"before: {before.memorized:.1f}% memorized, mean accuracy {before.mean_accuracy:.2f}%")
    results["hashes"].update({"data": check_data(data, expected_data_hash, say), "model_before": hash_model(model)})
    results["before"] = before.metrics
    records = []
    for name in methods:
        n_points = len(suite.grid_points(cfg.selection.get(name, {}))) or 1
        say(f"{name}: {n_points} configuration(s){' (selection by the paper score)' if n_points > 1 else ''}")

        def report(m: str, point: dict[str, Any], rec: dict[str, Any]) -> None:
            say(f"  {m} {point or ''}: {rec['after']['percent_memorized']['value']:.1f}% memorized, "
                f"acc {rec['after']['accuracy']['mean']:.2f}%, score {rec['selection_score']:+.3f}, "
                f"{rec['cost']['unlearn']['wall_s']:.1f}s")

        with track(f"method_{name}") as c:
            edited, rec = suite.select(model, data, cfg, before, name, progress=report)
        phases[f"method_{name}"] = c.to_dict()
        rec["model_path"] = _save_model(edited, out_dir / "unlearned" / name, cfg, {"method": name})
        records.append(rec)
    results["methods"] = records
    results["phases"] = phases
    write_json(out_dir / "results.json", results)
    atomic_write_text(out_dir / "report.md", render_report(results))
    print(render_table(results), flush=True)  # the result goes to stdout; progress to stderr
    return results


def demo(cfg: suite.TinyMemConfig, out: str | Path | None, overwrite: bool = False, progress: bool = True,
         say: Printer = _print) -> dict[str, Any]:
    """The main job: train a TinyMem model, measure memorization, unlearn with every configured method, report."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out_dir = prepare_out(out or Path("runs") / f"demo-{stamp}", overwrite, "results.json")
    say(f"obliviate demo: writing to {out_dir}")
    if not cfg.methods:
        raise ObliviateError("the config lists no methods to run (methods: {name: {...}})")
    model, data, train_results = train(cfg, out_dir, overwrite=overwrite, progress=progress, say=say,
                                       check_existing=False)
    results = provenance(cfg, "demo")
    results["hashes"].update(train_results["hashes"])
    results["data"] = train_results["data"]
    results["train"] = train_results["train"]
    results["model_path"] = train_results["model_path"]
    results["phases"] = dict(train_results["phases"])
    results = unlearn(model, cfg, list(cfg.methods), out_dir, overwrite=True, data=data, say=say,
                      base_results=results)
    print(f"results: {out_dir / 'results.json'}\nreport:  {out_dir / 'report.md'}")
    return results
