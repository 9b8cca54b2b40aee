"""End to end: ``obliviate bench tofu`` on the tofu-micro preset (offline TOFU-style data, a target trained on every
author, the retain-only reference), TOFU's metrics recomputed from what the results store, the reference reused
from a saved model, and bad input."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from obliviate.cli import main
from obliviate.metrics.tofu import forget_quality


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_tofu")
    assert main(["bench", "tofu", "--preset", "tofu-micro", "--executor", "inline", "--out", str(out),
                 "--quiet"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_bench_reports_tofu_metrics_and_forget_quality_against_the_reference(bench_run):
    _out, res = bench_run
    assert res["suite"] == "tofu" and res["seeds"] == [0]
    per = res["per_seed"]["0"]
    assert set(per["methods"]) == {"grad_ascent", "npo", "idk_dpo"}
    ref = per["before"]["metrics"]["reference"]
    ref_tr = ref["forget_truth_ratios"]["geometric"]
    for name, entry in [("before", per["before"]), *per["methods"].items()]:
        sc, m = entry["scalars"], entry["metrics"]
        for key in ("forget_quality_pvalue", "forget_quality_log10", "model_utility", "forget_truth_ratio",
                    "forget_Q_A_Prob", "forget_Q_A_ROUGE", "retain_Q_A_Prob", "retain_Truth_Ratio",
                    "ra_Q_A_Prob_normalised", "wf_Truth_Ratio", "extraction_strength"):
            assert key in sc and math.isfinite(sc[key]), (name, key)
        # forget quality = KS p-value of the stored per-item truth ratios against the reference's
        fq = forget_quality(np.asarray(m["forget_truth_ratios"]), np.asarray(ref_tr))
        assert sc["forget_quality_pvalue"] == pytest.approx(fq.forget_quality_pvalue, rel=1e-9)
        assert sc["forget_quality_log10"] == pytest.approx(math.log10(sc["forget_quality_pvalue"]), abs=1e-9)
        # forget probability = mean of exp(-avg loss) of the stored per-item losses
        assert sc["forget_Q_A_Prob"] == pytest.approx(float(np.mean(np.exp(-np.asarray(m["forget_avg_loss"])))))
    before = per["before"]["scalars"]
    # the target learned the forget authors; the reference never saw them
    assert before["forget_Q_A_Prob"] > ref["scalars"]["forget_Q_A_Prob"] * 1.5
    assert per["methods"]["grad_ascent"]["scalars"]["forget_Q_A_Prob"] < before["forget_Q_A_Prob"]
    assert per["train"]["reference_s"] > 0 and per["train"]["target_s"] > 0
    # the trajectory: evaluated before the first epoch (= the target) and after each, merged into the epoch logs
    ga = per["methods"]["grad_ascent"]
    traj = ga["info"]["trajectory"]
    assert [t["epoch"] for t in traj] == [0.0, 1.0, 2.0]
    assert traj[0]["forget_quality_log10"] == pytest.approx(before["forget_quality_log10"])
    assert traj[-1]["model_utility"] == pytest.approx(ga["scalars"]["model_utility"])
    assert [e["forget_Q_A_Prob"] for e in ga["logs"]] == [t["forget_Q_A_Prob"] for t in traj[1:]]


def test_trained_model_keeps_its_reference_and_tokenizer(tmp_path, monkeypatch):
    from obliviate.suites.tofu import TofuSuite

    model_dir = tmp_path / "target"
    assert main(["train", "--suite", "tofu", "--preset", "tofu-micro", "--out", str(model_dir), "--quiet"]) == 0
    saved = next(p for p in model_dir.rglob("reference.json"))
    assert (saved.parent / "tokenizer.json").is_file() and (saved.parent / "config.json").is_file()

    def no_retraining(*a, **k):
        raise AssertionError("the saved reference should have been reused")

    monkeypatch.setattr(TofuSuite, "build_reference", no_retraining)
    out = tmp_path / "unlearned"
    assert main(["unlearn", "--suite", "tofu", "--preset", "tofu-micro", "--model", str(model_dir / "model"), "--method",
                 "grad_ascent", "--out", str(out), "--quiet"]) == 0


@pytest.mark.parametrize("override, match", [("data.forget=forget07", "forget07"),
                                             ("eval.truth_ratio=harmonic", "truth_ratio"),
                                             ("train.qa_epochs=0", "qa_epochs")])
def test_bad_config_is_a_clear_error(tmp_path, capsys, override, match):
    assert main(["train", "--suite", "tofu", "--preset", "tofu-micro", "--out", str(tmp_path / "x"), "--set",
                 override, "--quiet"]) != 0
    assert match in capsys.readouterr().err
