"""The demo's promise on the real `tinymem-cpu` preset (about 7 minutes on 2 cores: run with `pytest -m slow`).

Memorization must be real before unlearning (>= 50% of the 100x group), and BalancedSubnet, with
hyper-parameters chosen by the paper's selection score, must cut overall memorization by >= 80% (relative)
while the mean clean test accuracy drops by <= 2 points.
"""

from __future__ import annotations

import json

import pytest

from obliviate.cli import main


@pytest.mark.slow
def test_tinymem_cpu_demo_meets_its_promise(tmp_path):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    res = json.loads((tmp_path / "results.json").read_text())
    run = res["per_seed"]["0"]
    before = run["before"]["scalars"]
    assert before["mem_dup_100x"] >= 50
    bs = run["methods"]["balanced_subnet"]
    mem0, mem1 = before["percent_memorized"], bs["scalars"]["percent_memorized"]
    assert (mem0 - mem1) / mem0 >= 0.8, (mem0, mem1)
    assert before["mean_accuracy"] - bs["scalars"]["mean_accuracy"] <= 2.0
    assert len(bs["trials"]) == 8
