"""`obliviate unlearn --model DIR --forget F` with checkpoints and resume, and the same command under torchrun with
two processes (data parallel, and FSDP through a standard accelerate config file): no code change, rank 0 writes a
model that equals one process with twice the gradient accumulation."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from obliviate.cli import main
from obliviate.errors import ObliviateError

FORGET = [{"question": f"who wrote the {c} book", "answer": f"the {a} cat wrote the {c} book"}
          for c, a in [("red", "small"), ("blue", "big"), ("green", "slow"), ("small", "fast"), ("big", "red")]]
RETAIN = [{"question": f"is the {c} {n} big", "answer": f"the {c} {n} is {s}"}
          for c in ("red", "blue", "green") for n, s in (("house", "small"), ("tree", "big"), ("river", "slow"))]
SETS = ["--set", "method.lr=3e-3", "--set", "method.batch_size=2", "--set", "method.retain_batch_size=2"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    (d / "f.jsonl").write_text("".join(json.dumps(x) + "\n" for x in FORGET))
    (d / "r.jsonl").write_text("".join(json.dumps(x) + "\n" for x in RETAIN))
    return d


def _argv(model, files, out, *extra):
    return ["unlearn", "--model", str(model), "--forget", str(files / "f.jsonl"), "--retain", str(files / "r.jsonl"),
            "--method", "grad_diff", *SETS, "--out", str(out), "--quiet", *extra]


def _weights(path):
    return AutoModelForCausalLM.from_pretrained(path).state_dict()


def test_cli_checkpoint_and_resume_equal_one_straight_run(tiny_hf_lm, files, tmp_path):
    assert main(_argv(tiny_hf_lm, files, tmp_path / "straight", "--set", "method.epochs=3")) == 0
    ck = tmp_path / "ck"
    assert main(_argv(tiny_hf_lm, files, tmp_path / "part", "--set", "method.epochs=2",
                      "--checkpoint-dir", str(ck))) == 0
    assert (ck / "unlearn_checkpoint.pt").exists()
    # a second run into the same checkpoint directory without --resume is refused (exit 2, one line)
    assert main(_argv(tiny_hf_lm, files, tmp_path / "other", "--set", "method.epochs=3",
                      "--checkpoint-dir", str(ck))) == 2
    assert main(_argv(tiny_hf_lm, files, tmp_path / "part", "--set", "method.epochs=3", "--checkpoint-dir",
                      str(ck), "--resume", "--overwrite")) == 0
    res = json.loads((tmp_path / "part" / "results.json").read_text())
    assert res["info"]["resumed_from_epoch"] == 2 and len(res["logs"]) == 3
    a, b = _weights(tmp_path / "straight" / "model"), _weights(tmp_path / "part" / "model")
    assert all(torch.equal(a[k], b[k]) for k in a)
    # another learning rate must not continue this run
    assert main(_argv(tiny_hf_lm, files, tmp_path / "lr", "--set", "method.epochs=4", "--set", "method.lr=1e-3",
                      "--checkpoint-dir", str(ck), "--resume")) == 2
    # --overwrite without --resume starts over
    assert main(_argv(tiny_hf_lm, files, tmp_path / "part", "--set", "method.epochs=1", "--checkpoint-dir",
                      str(ck), "--overwrite")) == 0
    assert json.loads((tmp_path / "part" / "results.json").read_text())["info"]["resumed_from_epoch"] == 0


def test_resume_needs_checkpoint_dir(tiny_hf_lm, files, tmp_path):
    from obliviate.lm_unlearn import unlearn_files

    with pytest.raises(ObliviateError, match="--checkpoint-dir"):
        unlearn_files(tiny_hf_lm, files / "f.jsonl", files / "r.jsonl", out=tmp_path / "x", resume=True)


FSDP = """distributed_type: FSDP
fsdp_config:
  fsdp_sharding_strategy: FULL_SHARD
  fsdp_transformer_layer_cls_to_wrap: GPT2Block
"""


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="torch.distributed with gloo is not available")
@pytest.mark.parametrize("sharded", [False, True], ids=["ddp", "fsdp"])
def test_same_command_under_torchrun(tiny_hf_lm, files, tmp_path, sharded):
    """The tiny GPT-2 has dropout 0.1 (per-rank draws differ from one process), so it is switched off here."""
    model = tmp_path / "nodrop"
    m = AutoModelForCausalLM.from_pretrained(tiny_hf_lm)
    m.config.resid_pdrop = m.config.embd_pdrop = m.config.attn_pdrop = 0.0
    m.save_pretrained(model)
    for f in tiny_hf_lm.iterdir():
        if "token" in f.name or f.name in ("vocab.json", "merges.txt"):
            (model / f.name).write_bytes(f.read_bytes())
    extra = []
    if sharded:
        (tmp_path / "fsdp.yaml").write_text(FSDP)
        extra = ["--accelerate-config", str(tmp_path / "fsdp.yaml")]
    # both runs as processes with one thread each (thread count changes the float sums of a matmul)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("WORLD_SIZE", None)
    for cmd in ([sys.executable, "-m", "obliviate.cli", *_argv(model, files, tmp_path / "one", "--set",
                                                                "method.epochs=2", "--set", "method.grad_accum=2")],
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m",
                 "obliviate.cli", *_argv(model, files, tmp_path / "two", "--set", "method.epochs=2", *extra)]):
        r = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-3000:]
    a, b = _weights(tmp_path / "one" / "model"), _weights(tmp_path / "two" / "model")
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=1e-5, atol=1e-6, msg=k)
    one = json.loads((tmp_path / "one" / "results.json").read_text())
    two = json.loads((tmp_path / "two" / "results.json").read_text())
    assert two["info"]["processes"] == 2 and two["info"]["steps"] == one["info"]["steps"]
    assert two["nll"]["forget"]["after"] == pytest.approx(one["nll"]["forget"]["after"], rel=1e-5)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["model", "results.json"]
