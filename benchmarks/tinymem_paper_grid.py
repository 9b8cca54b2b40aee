"""The TinyMem paper's whole comparison grid (Sakarvadia et al., 2024; spec tinymem-details 7), one `obliviate bench`
per cell: layers 2 / 4 / 8 / 16 x {math: mult, increment} x {noise, backdoor} and language x {noise, backdoor}, each
with seeds 0 / 1 / 3 and all 17 methods over the paper's hyper-parameter grid (presets tinymem-paper-grid and
tinymem-lang-paper-grid), with the paper's epochs: math noise 3500, math backdoor 500, language noise 100, language
backdoor 50. 24 cells x 3 seeds x (1 training + 155 unlearning jobs). Meant for a GPU or a Ray cluster.

    python benchmarks/tinymem_paper_grid.py                        # print the commands (nothing runs)
    python benchmarks/tinymem_paper_grid.py --run --executor ray --address auto --out runs/paper-grid
    python benchmarks/tinymem_paper_grid.py --run --only layers=4,task=mult,artifact=noise

Every cell is an ordinary `obliviate bench` study: interrupted cells resume (`--resume` is passed when the cell's
directory exists), finished jobs are skipped, and each cell writes its own results.json and report.html.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

LAYERS = (2, 4, 8, 16)
MATH_TASKS = ("mult", "increment")
ARTIFACTS = ("noise", "backdoor")
EPOCHS = {("math", "noise"): 3500, ("math", "backdoor"): 500, ("lang", "noise"): 100, ("lang", "backdoor"): 50}
CHECKPOINT_EVERY = {"math": 50, "lang": 10}


def cells() -> list[dict[str, object]]:
    """Every cell of the grid: {"kind", "task", "artifact", "layers", "epochs"} (task "lang" for language)."""
    out: list[dict[str, object]] = []
    for layers in LAYERS:
        for task in (*MATH_TASKS, "lang"):
            kind = "lang" if task == "lang" else "math"
            for artifact in ARTIFACTS:
                out.append({"kind": kind, "task": task, "artifact": artifact, "layers": layers,
                            "epochs": EPOCHS[(kind, artifact)]})
    return out


def cell_name(c: dict[str, object]) -> str:
    return f"{c['task']}-{c['artifact']}-L{c['layers']}"


def command(c: dict[str, object], out: Path, extra: list[str]) -> list[str]:
    """The `obliviate bench` command line of one cell."""
    lang = c["kind"] == "lang"
    sets = [f"model.n_layer={c['layers']}", f"data.artifact={c['artifact']}", f"train.epochs={c['epochs']}",
            f"train.checkpoint_every={CHECKPOINT_EVERY[str(c['kind'])]}"]
    if not lang:
        sets.append(f"data.task={c['task']}")
    cmd = ["obliviate", "bench", "tinymem_lang" if lang else "tinymem",
           "--preset", "tinymem-lang-paper-grid" if lang else "tinymem-paper-grid",
           "--out", str(out / cell_name(c))]
    for s in sets:
        cmd += ["--set", s]
    return cmd + extra


def matches(c: dict[str, object], only: str | None) -> bool:
    """``--only layers=4,task=mult``: keep cells whose fields equal every given value."""
    if not only:
        return True
    for part in only.split(","):
        key, _, value = part.partition("=")
        if key not in c:
            raise SystemExit(f"--only: unknown field {key!r} (valid: {', '.join(c)})")
        if str(c[key]) != value:
            return False
    return True


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/tinymem-paper-grid", help="one sub-directory per cell")
    ap.add_argument("--run", action="store_true", help="run the cells one after another (default: print them)")
    ap.add_argument("--only", help="e.g. layers=4,task=mult,artifact=noise")
    ap.add_argument("--executor", default="process", help="process (default), ray, inline")
    ap.add_argument("--workers", type=int, help="parallel jobs per cell")
    ap.add_argument("--address", help="Ray cluster address (with --executor ray)")
    args = ap.parse_args(argv)
    out = Path(args.out)
    extra = ["--executor", args.executor]
    if args.workers is not None:
        extra += ["--workers", str(args.workers)]
    if args.address is not None:
        extra += ["--address", args.address]
    chosen = [c for c in cells() if matches(c, args.only)]
    if not chosen:
        raise SystemExit(f"--only {args.only!r} matches no cell")
    for c in chosen:
        cmd = command(c, out, extra)
        if (out / cell_name(c)).exists():
            cmd.append("--resume")
        print(shlex.join(cmd), flush=True)
        if args.run:
            rc = subprocess.call([sys.executable, "-m", "obliviate.cli", *cmd[1:]])
            if rc != 0:
                print(f"cell {cell_name(c)} failed (exit {rc}); rerun to resume it", file=sys.stderr)
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
