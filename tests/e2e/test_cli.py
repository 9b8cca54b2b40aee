"""End to end: the CLI on the micro preset (train -> eval -> unlearn -> report, and demo), plus bad input."""

from __future__ import annotations

import json

import pytest

from obliviate.cli import main


def test_micro_pipeline_train_eval_unlearn_report(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tinymem-micro", "--out", str(out), "--quiet"]) == 0
    assert (out / "model" / "model.safetensors").is_file()
    train = json.loads((out / "train.json").read_text())
    for key in ("config", "seed", "versions", "git_sha", "suite_version", "hashes", "phases"):
        assert key in train
    assert {"data", "model", "config"} <= set(train["hashes"])
    assert train["phases"]["train"]["wall_s"] > 0 and train["phases"]["train"]["peak_rss_mb"] > 0

    assert main(["eval", "--model", str(out / "model"), "--out", str(out / "eval")]) == 0
    ev = json.loads((out / "eval" / "eval.json").read_text())
    mem_before = ev["metrics"]["percent_memorized"]["value"]
    assert mem_before > 20, "the micro preset must memorize some artifacts"

    assert main(["unlearn", "--model", str(out / "model"), "--method", "balanced_subnet",
                 "--set", "method.ratio=0.25", "--out", str(out / "bs")]) == 0
    res = json.loads((out / "bs" / "results.json").read_text())
    rec = res["methods"][0]
    assert rec["params"]["ratio"] == 0.25
    mem_after = rec["after"]["percent_memorized"]["value"]
    assert mem_after <= 0.5 * mem_before, (mem_before, mem_after)
    assert rec["after"]["accuracy"]["mean"] > res["before"]["accuracy"]["mean"] - 5
    assert (out / "bs" / "unlearned" / "balanced_subnet" / "model.safetensors").is_file()

    report = (out / "bs" / "report.md").read_text()
    (out / "bs" / "report.md").unlink()
    assert main(["report", str(out / "bs")]) == 0
    assert (out / "bs" / "report.md").read_text() == report
    assert "balanced_subnet" in report


def test_demo_micro_and_no_silent_overwrite(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tinymem-micro", "--out", str(out), "--quiet"]) == 0
    res = json.loads((out / "results.json").read_text())
    assert [m["method"] for m in res["methods"]] == ["balanced_subnet", "grad_diff"]
    for rec in res["methods"]:
        assert rec["after"]["percent_memorized"]["value"] < res["before"]["percent_memorized"]["value"]
    before = (out / "results.json").read_bytes()
    assert main(["demo", "--preset", "tinymem-micro", "--out", str(out), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / "results.json").read_bytes() == before


@pytest.mark.parametrize("argv,needle", [
    (["demo", "--preset", "tinymem-cpuu"], "unknown preset 'tinymem-cpuu'; did you mean 'tinymem-cpu'"),
    (["demo", "--preset", "tinymem-micro", "--set", "trian.epochs=1"], "did you mean 'train'"),
    (["demo", "--preset", "tinymem-micro", "--set", "methods.balanced_subnett={}"], "did you mean 'balanced_subnet'"),
    (["demo", "--preset", "tinymem-micro", "--set", "methods.balanced_subnet.ratio=2"], "method.ratio must be in (0, 1)"),
    (["demo", "--config", "/nonexistent.yaml"], "does not exist"),
    (["eval", "--model", "/nonexistent-model"], "does not exist"),
])
def test_bad_input_is_one_line_exit_2(argv, needle, capsys, tmp_path):
    assert main(argv + ["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["demo", "--preset", "tinymem-micro", "--out", str(blocker / "sub")]) == 2
    assert "not writable" in capsys.readouterr().err


def test_unknown_method_on_unlearn(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=1", "--out", str(out), "--quiet"]) == 0
    assert main(["unlearn", "--model", str(out / "model"), "--method", "grad_dif", "--out", str(out / "u")]) == 2
    assert "did you mean 'grad_diff'" in capsys.readouterr().err


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("balanced_subnet", "subnet", "grad_diff", "grad_ascent", "percent_memorized", "tinymem-cpu"):
        assert name in out


def test_eval_warns_when_config_builds_other_data(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tinymem-micro", "--set", "train.epochs=1", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--model", str(out / "model"), "--set", "data.seed=5", "--out", str(out / "e")]) == 0
    assert "different data" in capsys.readouterr().err
