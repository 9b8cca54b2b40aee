"""The TinyMem comparison presets: `obliviate bench tinymem` runs all 17 methods (tinymem-bench), and every cell of
the paper's full grid (benchmarks/tinymem_paper_grid.py) is a valid study with the paper's epochs and grid."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from obliviate.presets import load_run_config

SEVENTEEN = {"spectral_norm", "loss_truncation", "example_tied_dropout", "finetune_clean", "finetune_extra",
             "finetune_both", "zero_out", "activations", "slimming", "hard_concrete", "integrated_gradients",
             "greedy", "durable", "durable_aggregate", "obs", "subnet", "balanced_subnet"}
PAPER_RATIOS = [1e-5, 1e-4, 1e-3, 1e-2, 0.05]


def _grid_script():
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "tinymem_paper_grid.py"
    spec = importlib.util.spec_from_file_location("tinymem_paper_grid", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _captured_bench(monkeypatch, argv):
    """Run `obliviate bench ...` up to the study: the run config and seeds it would run."""
    from obliviate.cli import main
    from obliviate.jobs import runner

    seen = {}

    def fake(run, seeds, out, executor, **kw):
        seen.update(run=run, seeds=seeds)
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_bench", fake)
    with pytest.raises(SystemExit):
        main(argv)
    return seen


def test_bench_tinymem_defaults_to_all_17_methods_and_demo_stays_small(monkeypatch, tmp_path):
    seen = _captured_bench(monkeypatch, ["bench", "tinymem", "--out", str(tmp_path / "b")])
    run = seen["run"]
    assert set(run.methods) == SEVENTEEN and seen["seeds"] == (0,)
    # the train-time regularizers sweep part of the paper's grid; every unlearning method a subset of its ratios
    assert set(run.selection["spectral_norm"]["spectral_lambda"]) <= {1e-3, 1e-2, 1e-1}
    assert set(run.selection["loss_truncation"]["dropc"]) <= {0.01, 0.05, 0.1}
    for m in ("zero_out", "activations", "slimming", "hard_concrete", "integrated_gradients", "greedy", "durable",
              "durable_aggregate", "obs"):
        assert set(run.selection[m]["ratio"]) <= set(PAPER_RATIOS), m
    # an explicit preset still wins, and the demo's default preset is unchanged
    seen = _captured_bench(monkeypatch, ["bench", "tinymem", "--preset", "tinymem-micro", "--out", str(tmp_path)])
    assert set(seen["run"].methods) == {"balanced_subnet", "grad_diff"}
    assert set(load_run_config(None, suite="tinymem").methods) == {"balanced_subnet", "grad_diff"}
    seen = _captured_bench(monkeypatch, ["bench", "tinymem_lang", "--out", str(tmp_path / "l")])
    assert seen["run"].suite == "tinymem_lang"


def test_paper_grid_presets_hold_the_paper_grid():
    for name, suite in (("tinymem-paper-grid", "tinymem"), ("tinymem-lang-paper-grid", "tinymem_lang")):
        run = load_run_config(name)
        assert run.suite == suite and set(run.methods) == SEVENTEEN and run.study_seeds == (0, 1, 3)
        assert run.selection["spectral_norm"]["spectral_lambda"] == [1e-3, 1e-2, 1e-1]
        assert run.selection["loss_truncation"]["dropc"] == [0.01, 0.05, 0.1]
        assert run.selection["integrated_gradients"]["steps"] == [1, 10, 20]
        for m in ("slimming", "hard_concrete", "greedy", "subnet", "balanced_subnet"):
            assert run.selection[m]["epochs"] == [1, 10, 30], m
        assert run.selection["durable"]["ratio"] == PAPER_RATIOS
        assert run.selection["balanced_subnet"]["ratio"] == PAPER_RATIOS + [0.1, 0.25, 0.5, 0.75, 0.9]


def test_every_paper_grid_cell_is_a_valid_study(tmp_path):
    grid = _grid_script()
    cells = grid.cells()
    assert len(cells) == 4 * 3 * 2 and {c["layers"] for c in cells} == {2, 4, 8, 16}
    for c in cells:
        cmd = grid.command(c, tmp_path, [])
        sets = [cmd[i + 1] for i, a in enumerate(cmd) if a == "--set"]
        preset = cmd[cmd.index("--preset") + 1]
        run = load_run_config(preset, None, sets, suite=cmd[2])
        cfg = run.suite_config
        assert cfg.model.n_layer == c["layers"] and cfg.data.artifact == c["artifact"]
        want = {("math", "noise"): 3500, ("math", "backdoor"): 500, ("lang", "noise"): 100,
                ("lang", "backdoor"): 50}[(c["kind"], c["artifact"])]
        assert cfg.train.epochs == want
        if c["kind"] == "math":
            assert cfg.data.task == c["task"]
    assert [grid.cell_name(c) for c in cells if grid.matches(c, "layers=8,task=mult")] == [
        "mult-noise-L8", "mult-backdoor-L8"]
    with pytest.raises(SystemExit, match="unknown field"):
        grid.matches(cells[0], "depth=4")
