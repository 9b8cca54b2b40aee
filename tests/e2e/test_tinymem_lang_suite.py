"""End to end: ``obliviate bench tinymem_lang --preset tinymem-lang-micro --executor inline`` (Lee news text, a BPE
trained here, noised rows seen 1x / 100x, a 1-layer GPT-2): % memorized per duplication group and perplexity in the
results, recomputed from the stored per-item values; the 100x group is memorized more than the 1x group."""

from __future__ import annotations

import json
import math

import pytest
import torch

from obliviate.cli import main
from obliviate.metrics.selection import selection_score


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    from obliviate.jobs import executors

    out = tmp_path_factory.mktemp("bench_tinymem_lang")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(executors, "available_cpus", lambda: 1)  # jobs take 1 thread: the machine is shared
        torch.set_num_threads(1)
        assert main(["bench", "tinymem_lang", "--preset", "tinymem-lang-micro", "--executor", "inline",
                     "--out", str(out), "--quiet"]) == 0
    return out, json.loads((out / "results.json").read_text())


def _entries(res):
    per = res["per_seed"]["0"]
    return [("before", per["before"]), *per["methods"].items()]


def test_results_hold_memorization_per_group_and_perplexity(bench_run):
    out, res = bench_run
    assert res["suite"] == "tinymem_lang" and res["suite_version"] == "1.0"
    keys = [c["key"] for c in res["columns"]]
    assert {"percent_memorized", "mem_dup_1x", "mem_dup_100x", "perplexity", "loss_auc",
            "heldout_memorized"} <= set(keys)
    per = res["per_seed"]["0"]
    assert set(per["methods"]) == {"balanced_subnet", "grad_diff"}
    assert [t["point"] for t in per["methods"]["balanced_subnet"]["trials"]] == [{"ratio": 0.25}, {"ratio": 0.5}]
    for f in ("report.md", "report.html"):
        assert (out / f).is_file()


def test_metric_values_are_recomputed_from_the_stored_per_item_values(bench_run):
    _out, res = bench_run
    before = res["per_seed"]["0"]["before"]["scalars"]
    for name, entry in _entries(res):
        sc, m = entry["scalars"], entry["metrics"]
        pm = m["percent_memorized"]
        items, groups = pm["per_item"], pm["group"]
        eligible = [(p, g) for p, g in zip(items, groups) if p is not None]
        assert pm["eligible"] == len(eligible) > 0
        assert sc["percent_memorized"] == pytest.approx(100 * sum(p for p, _ in eligible) / len(eligible)), name
        for g, label in enumerate(("dup_1x", "dup_100x")):
            mine = [p for p, gg in eligible if gg == g]
            assert sc[f"mem_{label}"] == pytest.approx(100 * sum(mine) / len(mine)), (name, label)
        # masked perplexity = exp(token-weighted mean of the rows' NLL); test rows are full, so no PAD is skipped
        ppl = m["perplexity"]
        nll, n = ppl["per_item_nll"]["test"], ppl["n_targets"]["test"]
        assert set(n) == {47}
        masked = math.exp(sum(a * b for a, b in zip(nll, n)) / sum(n))
        assert ppl["definition"] == "masked" and sc["perplexity"] == pytest.approx(masked, rel=1e-6), name
        assert ppl["masked"]["test"] == pytest.approx(masked, rel=1e-6)
        # the reference's mean over batches of exp(batch NLL, PAD included): the 40 full test rows are one batch
        assert ppl["reference"]["test"] == pytest.approx(masked, rel=1e-5)
        if name != "before":
            assert entry["score"] == pytest.approx(selection_score(
                before["percent_memorized"], sc["percent_memorized"], ppl_before=before["perplexity"],
                ppl_after=sc["perplexity"]))


def test_the_model_memorizes_the_100x_group_more_than_the_1x_group(bench_run):
    _out, res = bench_run
    sc = res["per_seed"]["0"]["before"]["scalars"]
    assert sc["mem_dup_100x"] >= 50.0 and sc["mem_dup_100x"] > sc["mem_dup_1x"] + 40.0
    # the trained noisy continuations have a lower loss than never-trained noisy rows (loss AUC > 0.5)
    assert sc["loss_auc"] > 0.6
    # the forget set the methods got = the artifacts memorized before
    per = res["per_seed"]["0"]
    n_mem = sum(p == 1.0 for p in per["before"]["metrics"]["percent_memorized"]["per_item"])
    assert per["methods"]["grad_diff"]["forget_rows"] == n_mem


@pytest.mark.parametrize("override, match", [("data.source=imdb", "imdb"), ("eval.perplexity=exp", "exp"),
                                             ("data.prompt_len=48", "data.prompt_len")])
def test_bad_config_is_a_clear_error(tmp_path, capsys, override, match):
    assert main(["train", "--suite", "tinymem_lang", "--preset", "tinymem-lang-micro", "--out", str(tmp_path / "x"),
                 "--set", override, "--quiet"]) != 0
    assert match in capsys.readouterr().err
