"""Data parallel unlearning (gloo, CPU): two processes end with the same weights as one process with twice the
gradient accumulation, see different retain rows, and stop together on a non-finite loss."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

WORKER = Path(__file__).with_name("dist_worker.py")
pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(),
                                reason="torch.distributed with gloo is not available")


def _run(tmp_path: Path, procs: int, method: str, params: dict, poison_rank: int = -1,
         config: Path | None = None) -> dict:
    out = tmp_path / f"{method}-{procs}-{poison_rank}-{config is not None}.pt"
    args = [str(WORKER), str(out), method, json.dumps(params), str(poison_rank)] + ([str(config)] if config else [])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    if procs == 1:
        env.pop("WORLD_SIZE", None)
        cmd = [sys.executable, *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", *args]
    key = (procs, method, json.dumps(params, sort_keys=True), poison_rank, config is not None)
    if key not in _RUNS:  # single-process baselines are shared between tests
        r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
        _RUNS[key] = torch.load(out, weights_only=True)
    return _RUNS[key]


_RUNS: dict[tuple, dict] = {}


@pytest.mark.parametrize("method,extra", [("grad_diff", {}), ("npo", {}), ("mean_teacher", {"lr": 1e-2})])
def test_two_processes_match_one_with_double_accumulation(tmp_path, method, extra):
    base = {"lr": 3e-3, "epochs": 2, "batch_size": 3, "retain_batch_size": 2, **extra}  # 10 rows: 4 chunks/epoch
    one = _run(tmp_path, 1, method, {**base, "grad_accum": 2})
    two = _run(tmp_path, 2, method, {**base, "grad_accum": 1})
    assert "error" not in one and "error" not in two
    for k, v in one["state"].items():
        torch.testing.assert_close(two["state"][k], v, rtol=1e-5, atol=1e-6, msg=f"{method}: {k} differs")
    assert [e["loss"] for e in two["logs"]] == pytest.approx([e["loss"] for e in one["logs"]], rel=1e-5, abs=1e-6)
    assert two["info"]["processes"] == 2 and two["info"]["steps"] == one["info"]["steps"] == 4
    # the retain rows: each chunk its own draw -- different rows on the two ranks, together those of one process
    r0, r1 = two["seen"]
    assert r0 and r1 and r0 != r1
    merged = [None] * (len(r0) + len(r1))
    merged[0::2], merged[1::2] = r0, r1
    assert merged == one["seen"][0]


def test_uneven_last_step_and_a_rank_without_batches(tmp_path):
    # 10 rows in chunks of 4: 3 chunks per epoch; with 2 processes the second step has one chunk (rank 1 idles)
    base = {"lr": 3e-3, "epochs": 2, "batch_size": 4, "retain_batch_size": 2}
    one = _run(tmp_path, 1, "grad_diff", {**base, "grad_accum": 2})
    two = _run(tmp_path, 2, "grad_diff", {**base, "grad_accum": 1})
    for k, v in one["state"].items():
        torch.testing.assert_close(two["state"][k], v, rtol=1e-5, atol=1e-6)


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path):
    base = {"lr": 3e-3, "epochs": 2, "batch_size": 3, "retain_batch_size": 2, "grad_accum": 1}
    two = _run(tmp_path, 2, "grad_diff", base, poison_rank=1)
    # rank 1's second batch is the 4th of epoch 1 (chunks 0, 2 on rank 0; 1, 3 on rank 1)
    assert "epoch 1, batch 4" in two["error"]


FSDP_CONFIG = """compute_environment: LOCAL_MACHINE
distributed_type: FSDP
num_processes: 2
fsdp_config:
  fsdp_version: 2
  fsdp_sharding_strategy: FULL_SHARD
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: GPT2Block
  fsdp_offload_params: false
"""


@pytest.mark.parametrize("method,extra", [("grad_diff", {"batch_size": 4}), ("npo", {"batch_size": 3}),
                                          ("mean_teacher", {"lr": 1e-2, "batch_size": 3})])
def test_fsdp_two_processes_match_one_with_double_accumulation(tmp_path, method, extra):
    """The model (and npo's reference, mean_teacher's teacher) sharded over 2 gloo processes by FSDP2, selected by a
    standard accelerate config file: the same weights as one process with twice the accumulation. batch_size 4 gives
    an uneven last step (3 chunks), where rank 1 runs a zero-weight stand-in batch."""
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CONFIG)
    base = {"lr": 3e-3, "epochs": 2, "retain_batch_size": 2, **extra}
    one = _run(tmp_path, 1, method, {**base, "grad_accum": 2})
    two = _run(tmp_path, 2, method, {**base, "grad_accum": 1}, config=config)
    assert "error" not in two, two.get("error")
    assert two["param_type"] == "DTensor" and one["param_type"] == "Parameter"
    assert set(two["state"]) <= set(one["state"]) and len(two["state"]) >= len(one["state"]) - 1  # tied lm_head
    for k, v in two["state"].items():
        torch.testing.assert_close(v, one["state"][k], rtol=1e-5, atol=1e-6, msg=f"{method}: {k} differs")
    assert [e["loss"] for e in two["logs"]] == pytest.approx([e["loss"] for e in one["logs"]], rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("method,extra", [("npo", {"batch_size": 3}), ("mean_teacher", {"lr": 1e-2, "batch_size": 3})])
def test_fsdp_run_killed_and_resumed_equals_uninterrupted(tmp_path, method, extra):
    """Checkpoints of a sharded run: each rank writes its shards (weights, AdamW moments / the mean teacher), rank 0
    commits a manifest; a run killed in epoch 3 and resumed on 2 processes ends with the bits of an uninterrupted
    sharded run. A resume without FSDP, or an unsharded checkpoint resumed sharded, is refused."""
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_CONFIG)
    base = {"lr": 3e-3, "epochs": 4, "retain_batch_size": 2, **extra}  # 10 rows / 3: 4 chunks, 2 calls per rank
    straight = _run(tmp_path, 2, method, base, config=config)
    ck = tmp_path / "ck"
    killed = _run(tmp_path, 2, method, {**base, "_ckpt": {"dir": str(ck), "kill_after": 4}}, config=config)  # dies at call 5: epoch 3
    assert killed == {"killed": 5, "seen": killed["seen"]}
    manifest = torch.load(ck / "unlearn_checkpoint.pt", weights_only=True)
    assert manifest["epoch"] == 2 and manifest["sharded"]["world_size"] == 2
    assert sorted(p.name for p in (ck / "unlearn_checkpoint.shards").iterdir()) == ["e2.rank0.pt", "e2.rank1.pt"]
    resumed = _run(tmp_path, 2, method, {**base, "_ckpt": {"dir": str(ck), "resume": True}}, config=config)
    assert "error" not in resumed, resumed.get("error")
    assert resumed["info"]["resumed_from_epoch"] == 2
    for k, v in straight["state"].items():
        assert torch.equal(resumed["state"][k], v), f"{method}: {k} differs after resume"
    assert [e["loss"] for e in resumed["logs"]] == [e["loss"] for e in straight["logs"]]
    unsharded = _run(tmp_path, 2, method, {**base, "_ckpt": {"dir": str(ck), "resume": True}})
    assert "sharded (FSDP) run" in unsharded["error"]


def test_stop_rule_with_a_metric_gathered_across_ranks(tmp_path):
    """The collapse guard / early stop under 2 processes: the metric (forget NLL drift) is computed by each rank on
    its share of the rows and gathered; both runs stop at the same epoch and keep the same model."""
    base = {"lr": 3e-3, "epochs": 6, "batch_size": 3, "retain_batch_size": 2, "_stop_drift": -0.15}
    one = _run(tmp_path, 1, "grad_diff", {**base, "grad_accum": 2})
    two = _run(tmp_path, 2, "grad_diff", {**base, "grad_accum": 1})
    assert one["info"]["stopped_at"] is not None, one["info"]
    assert two["info"]["stopped_at"] == one["info"]["stopped_at"]
    assert two["info"]["kept_epoch"] == one["info"]["kept_epoch"]
    assert [t["forget_drift"] for t in two["info"]["stop_trace"]] == pytest.approx(
        [t["forget_drift"] for t in one["info"]["stop_trace"]], abs=1e-6)
    for k, v in one["state"].items():
        torch.testing.assert_close(two["state"][k], v, rtol=1e-5, atol=1e-6)
