"""End to end: the CLI on the micro preset (train -> eval -> unlearn -> report, and demo), plus bad input."""

from __future__ import annotations

import json

import pytest

from obliviate.cli import main

FAST = ["--set", "train.epochs=6"]  # the fewest epochs at which micro memorizes (seeds 0, 1)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main(["train", "--preset", "tinymem-micro", "--out", str(out), "--quiet"]) == 0
    return out


def test_micro_pipeline_train_eval_unlearn_report(trained, capsys):
    out = trained
    assert (out / "model" / "model.safetensors").is_file()
    train = json.loads((out / "train.json").read_text())
    for key in ("config", "seed", "versions", "git_sha", "suite_version", "hashes", "cost", "before"):
        assert key in train
    assert {"data", "model", "config"} <= set(train["hashes"])
    assert train["cost"]["train"]["wall_s"] > 0 and train["cost"]["train"]["peak_rss_mb"] > 0

    assert main(["eval", "--model", str(out / "model"), "--out", str(out / "eval")]) == 0
    ev = json.loads((out / "eval" / "eval.json").read_text())
    mem_before = ev["metrics"]["percent_memorized"]["value"]
    assert mem_before > 20, "the micro preset must memorize some artifacts"
    assert mem_before == train["before"]["scalars"]["percent_memorized"]

    assert main(["unlearn", "--model", str(out / "model"), "--method", "balanced_subnet",
                 "--set", "method.ratio=0.25", "--out", str(out / "bs"), "--quiet"]) == 0
    res = json.loads((out / "bs" / "results.json").read_text())
    rec = res["per_seed"]["0"]["methods"]["balanced_subnet"]
    assert rec["params"]["ratio"] == 0.25 and rec["params"]["seed"] == 0
    mem_after = rec["scalars"]["percent_memorized"]
    assert mem_after <= 0.5 * mem_before, (mem_before, mem_after)
    assert rec["scalars"]["mean_accuracy"] > res["per_seed"]["0"]["before"]["scalars"]["mean_accuracy"] - 5
    assert (out / "bs" / "unlearned" / "balanced_subnet" / "model.safetensors").is_file()
    for name in ("report.md", "report.html", "figures/tradeoff.png"):
        assert (out / "bs" / name).is_file(), name

    report = (out / "bs" / "report.md").read_text()
    html = (out / "bs" / "report.html").read_text()
    (out / "bs" / "report.md").unlink()
    (out / "bs" / "report.html").unlink()
    assert main(["report", str(out / "bs")]) == 0
    assert (out / "bs" / "report.md").read_text() == report
    assert (out / "bs" / "report.html").read_text() == html
    assert "balanced_subnet" in report


def test_run_seed_reaches_the_methods(trained, capsys):
    # regression: `unlearn --set seed=0` and `--set seed=3` gave bit-identical models while the JSON said seed 3
    hashes = {}
    for seed in (0, 3):
        out = trained / f"seed{seed}"
        assert main(["unlearn", "--model", str(trained / "model"), "--method", "balanced_subnet", "--set", f"seed={seed}",
                     "--set", "data.seed=0", "--set", "methods.balanced_subnet.epochs=2", "--out", str(out),
                     "--quiet"]) == 0
        rec = json.loads((out / "results.json").read_text())["per_seed"][str(seed)]["methods"]["balanced_subnet"]
        assert rec["params"]["seed"] == seed and rec["info"]["seed"] == seed
        hashes[seed] = rec["model_hash"]
    assert hashes[0] != hashes[3]


def test_method_shorthand_goes_to_the_methods_that_take_it(trained, capsys):
    out = trained / "two"
    assert main(["unlearn", "--model", str(trained / "model"), "--method", "subnet", "--method", "grad_diff",
                 "--set", "method.ratio=0.25", "--set", "method.epochs=1", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())["per_seed"]["0"]["methods"]
    assert res["subnet"]["params"]["ratio"] == 0.25 and "ratio" not in res["grad_diff"]["params"]
    assert main(["unlearn", "--model", str(trained / "model"), "--method", "grad_diff", "--set", "method.ratio=0.2",
                 "--out", str(trained / "x")]) == 2
    assert "no method given takes 'ratio'" in capsys.readouterr().err


def test_select_without_a_grid_says_so(trained, capsys):
    assert main(["unlearn", "--model", str(trained / "model"), "--method", "subnet", "--select",
                 "--out", str(trained / "sel")]) == 2
    assert "no selection grid" in capsys.readouterr().err


def test_train_overwrite_starts_fresh_and_resume_rules(tmp_path, capsys):
    # regression: `--overwrite --set train.epochs=3` after an 8-epoch run saved the 8-epoch model (epochs_run=-5)
    out = tmp_path / "a"
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=2", "--out", str(out), "--quiet"]) == 0
    two = json.loads((out / "train.json").read_text())["hashes"]["model"]
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=3", "--out", str(out), "--quiet"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=3", "--out", str(out), "--resume",
                 "--quiet"]) == 0
    res = json.loads((out / "train.json").read_text())
    assert res["train"]["resumed_from_epoch"] == 2 and res["train"]["epochs_run"] == 1
    assert "resumed from the checkpoint at epoch 2" in capsys.readouterr().err
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=2", "--out", str(out), "--resume",
                 "--quiet"]) == 2
    assert "past train.epochs=2" in capsys.readouterr().err
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=2", "--out", str(out), "--overwrite",
                 "--quiet"]) == 0
    res = json.loads((out / "train.json").read_text())
    assert res["train"]["epochs_run"] == 2 and res["train"]["resumed_from_epoch"] == 0
    assert res["hashes"]["model"] == two


def test_demo_micro_and_no_silent_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tinymem-micro", "--out", str(out), "--quiet", *FAST]) == 0
    res = json.loads((out / "results.json").read_text())
    assert list(res["summary"]["methods"]) == ["balanced_subnet", "grad_diff"]
    before = (out / "results.json").read_bytes()
    assert main(["demo", "--preset", "tinymem-micro", "--out", str(out), "--quiet", *FAST]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before


@pytest.mark.parametrize("argv,needle", [
    (["demo", "--preset", "tinymem-cpuu"], "unknown preset 'tinymem-cpuu'; did you mean 'tinymem-cpu'"),
    (["demo", "--preset", "tinymem-micro", "--set", "trian.epochs=1"], "did you mean 'train'"),
    (["demo", "--preset", "tinymem-micro", "--set", "methods.balanced_subnett={}"], "did you mean 'balanced_subnet'"),
    (["demo", "--preset", "tinymem-micro", "--set", "methods.balanced_subnet.ratio=2"], "method.ratio must be in (0, 1)"),
    (["demo", "--preset", "tinymem-micro", "--set", "eval.k=120"], "eval.k=120 runs past"),
    (["demo", "--preset", "tinymem-micro", "--set", "device=cuda"], "CUDA is not available"),
    (["demo", "--suite", "tinymemm"], "unknown suite 'tinymemm'; did you mean 'tinymem'"),
    (["demo", "--config", "/nonexistent.yaml"], "does not exist"),
    (["eval", "--model", "/nonexistent-model"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1
    assert not (tmp_path / "o" / "results.json").exists()


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--preset", "tinymem-micro", "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_unknown_method_on_unlearn(trained, capsys):
    assert main(["unlearn", "--model", str(trained / "model"), "--method", "grad_dif", "--out",
                 str(trained / "u")]) == 2
    assert "did you mean 'grad_diff'" in capsys.readouterr().err


def test_list_groups_methods_by_family_and_shows_suites(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for needle in ("lm:", "balanced_subnet", "Sakarvadia et al. (2024)", "tinymem v1.3", "tinymem-cpu", "grad_ascent",
                   "percent_memorized"):
        assert needle in out


def test_report_on_a_train_dir_says_what_is_there(trained, capsys):
    assert main(["report", str(trained)]) == 2
    assert "holds train.json" in capsys.readouterr().err


def test_eval_warns_when_config_builds_other_data(trained, capsys):
    capsys.readouterr()
    assert main(["eval", "--model", str(trained / "model"), "--set", "data.seed=5", "--out", str(trained / "e")]) == 0
    assert "different data" in capsys.readouterr().err


def test_bench_takes_a_preset_name_where_the_suite_goes(tmp_path, capsys, monkeypatch):
    """``obliviate bench tofu-mini`` = ``bench tofu --preset tofu-mini``; two different presets are refused."""
    from obliviate.jobs import runner

    seen = {}

    def fake_run_bench(run_cfg, seeds, out, executor, **kw):
        seen["suite"], seen["methods"] = run_cfg.suite, sorted(run_cfg.methods)
        raise SystemExit(0)

    monkeypatch.setattr(runner, "run_bench", fake_run_bench)
    with pytest.raises(SystemExit):
        main(["bench", "muse-micro", "--executor", "inline", "--out", str(tmp_path / "b"), "--quiet"])
    assert seen == {"suite": "muse", "methods": ["mean_teacher", "nlul", "npo"]}
    assert main(["bench", "tofu-micro", "--preset", "tofu-mini", "--out", str(tmp_path / "c"), "--quiet"]) != 0
    assert "two presets" in capsys.readouterr().err
    assert main(["bench", "no-such-suite", "--out", str(tmp_path / "d"), "--quiet"]) != 0
    assert "no-such-suite" in capsys.readouterr().err
