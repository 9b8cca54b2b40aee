"""End to end: ``obliviate bench muse`` on the muse-micro preset (offline MUSE-style corpus from the Lee news
articles, a target trained on forget + retain documents, the retrained reference), MUSE's metrics recomputed from
what the results store, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from obliviate.cli import main
from obliviate.metrics.mia import membership_auc
from obliviate.metrics.privleak import muse_privleak


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_muse")
    assert main(["bench", "muse", "--preset", "muse-micro", "--executor", "inline", "--out", str(out),
                 "--quiet"]) == 0
    return out, json.loads((out / "results.json").read_text())


def test_bench_reports_muse_metrics_against_the_retrained_reference(bench_run):
    _out, res = bench_run
    assert res["suite"] == "muse"
    per = res["per_seed"]["0"]
    assert set(per["methods"]) == {"npo", "nlul", "mean_teacher"}
    ref = per["before"]["metrics"]["reference"]
    assert 0.0 <= ref["auc"] <= 1.0 and set(ref["scalars"]) == {"verbmem_f", "verbmem_r", "knowmem_f", "knowmem_r"}
    for name, entry in [("before", per["before"]), *per["methods"].items()]:
        sc, m = entry["scalars"], entry["metrics"]
        # VerbMem / KnowMem = mean of the stored per-item ROUGE-L F1 x 100
        assert sc["verbmem_f"] == pytest.approx(float(np.mean(m["per_item"]["verbmem"])), abs=1e-9), name
        assert sc["knowmem_r"] == pytest.approx(float(np.mean(m["per_item"]["knowmem_r"])), abs=1e-9), name
        assert sc["verbmem_r"] == pytest.approx(float(np.mean(m["per_item"]["verbmem_r"])), abs=1e-9), name
        # PrivLeak from the stored per-item Min-40% scores and the reference's AUC
        scores = m["mia"]["scores"]
        auc, _ = membership_auc(scores["forget"], scores["holdout"], "muse", ("forget", "holdout"))
        assert sc["mink_auc"] == pytest.approx(auc, abs=1e-12)
        assert sc["privleak"] == pytest.approx(muse_privleak(auc, ref["auc"]), abs=1e-9)
        assert sc["verbmem_gap"] == pytest.approx(abs(sc["verbmem_f"] - ref["scalars"]["verbmem_f"]), abs=1e-9)
    # the target was trained on the forget documents: their loss gives them away (AUC far below the reference's)
    assert per["before"]["scalars"]["mink_auc"] < ref["auc"] - 0.2
    traj = per["methods"]["npo"]["info"]["trajectory"]
    assert [t["epoch"] for t in traj] == [0.0, 1.0, 2.0]
    assert traj[0]["privleak"] == pytest.approx(per["before"]["scalars"]["privleak"])


@pytest.mark.parametrize("override, match", [("eval.mink_k=1.5", "mink_k"), ("train.epochs=0", "train.epochs"),
                                             ("data.source=imdb", "imdb")])
def test_bad_config_is_a_clear_error(tmp_path, capsys, override, match):
    assert main(["train", "--suite", "muse", "--preset", "muse-micro", "--out", str(tmp_path / "x"), "--set",
                 override, "--quiet"]) != 0
    assert match in capsys.readouterr().err
