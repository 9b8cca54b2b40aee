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
    assert main(["bench", "muse-micro", "--executor", "inline", "--out", str(out),
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
    # data.train_qa: the target was taught the forget QA, the reference only the retain QA
    assert per["before"]["scalars"]["knowmem_f"] > ref["scalars"]["knowmem_f"] + 10
    assert ref["scalars"]["knowmem_r"] > ref["scalars"]["knowmem_f"] + 10
    traj = per["methods"]["npo"]["info"]["trajectory"]
    assert [t["epoch"] for t in traj] == [0.0, 1.0, 2.0]
    assert traj[0]["privleak"] == pytest.approx(per["before"]["scalars"]["privleak"])


@pytest.mark.parametrize("override, match", [("eval.mink_k=1.5", "mink_k"), ("train.epochs=0", "train.epochs"),
                                             ("data.source=imdb", "imdb")])
def test_bad_config_is_a_clear_error(tmp_path, capsys, override, match):
    assert main(["train", "--suite", "muse", "--preset", "muse-micro", "--out", str(tmp_path / "x"), "--set",
                 override, "--quiet"]) != 0
    assert match in capsys.readouterr().err


def test_train_qa_adds_each_sides_knowmem_qa_with_only_the_answer_scored():
    import dataclasses

    from obliviate.config import from_dict
    from obliviate.presets import preset_dict
    from obliviate.suites.muse import MuseConfig, MuseSuite

    raw = preset_dict("muse-micro")
    cfg = from_dict(MuseConfig, {k: raw[k] for k in ("data", "model", "train", "eval")})
    assert cfg.data.train_qa
    suite = MuseSuite()
    data = suite.build_data(cfg, 0)
    with_qa = suite.unlearn_data(data, {}, cfg)
    plain = suite.unlearn_data(data, {}, dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, train_qa=False)))
    for side in ("forget", "retain"):
        n_qa = len(data.knowmem[side])
        got, base = getattr(with_qa, side), getattr(plain, side)
        n_docs = len(base.input_ids)  # the documents' rows (a long one is cut into several)
        assert n_qa > 0 and len(got.input_ids) == n_docs + n_qa
        for row, item in zip(range(n_docs, n_docs + n_qa), data.knowmem[side]):
            scored = got.labels[row][got.labels[row] != -100].tolist()
            text = data.tokenizer.decode(scored)
            assert text.strip().startswith(item["answer"].strip()), (text, item["answer"])  # answer (+ EOS) only
