"""Bench jobs: a pure function of (suite, suite VERSION, code version, resolved suite config, seed, threads, device
[, method, resolved params]) -- the spec -- whose result is stored under the spec's content hash.

Torch's CPU kernels split reductions by thread count, so the same job with 1 or 2 threads differs in the last bits:
``threads`` is part of the spec (and so of the key), which keeps "same spec -> same bits" true.
Workers only read (the base model of an unlearn job); the driver writes the store.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from obliviate.config import from_dict, to_dict


def _common(run: Any, seed: int, threads: int, device: str) -> dict[str, Any]:
    from obliviate.io import source_hash

    suite = run.suite_obj
    return {"suite": run.suite, "suite_version": suite.VERSION, "code": source_hash(),
            "config": to_dict(run.suite_config), "seed": seed, "threads": threads, "device": device}


def train_spec(run: Any, seed: int, threads: int, device: str) -> dict[str, Any]:
    return {"kind": "train", **_common(run, seed, threads, device)}


def unlearn_spec(run: Any, seed: int, method: str, params: dict[str, Any], train_key: str, threads: int,
                 device: str) -> dict[str, Any]:
    from obliviate.methods import build_method

    resolved = to_dict(build_method(method, params, run_seed=seed).config)  # defaults filled: the key is exact
    return {"kind": "unlearn", **_common(run, seed, threads, device), "method": method, "params": resolved,
            "train_key": train_key}


def _setup(payload: dict[str, Any]) -> tuple[Any, Any, Any]:
    import torch

    from obliviate.context import quiet_libraries
    from obliviate.suites import SUITES

    spec = payload["spec"]
    if payload.get("quiet"):  # a worker process: its library chatter would interleave with the driver's progress
        quiet_libraries()
    torch.set_num_threads(int(spec["threads"]))
    suite = SUITES.get(spec["suite"])
    if suite.VERSION != spec["suite_version"]:
        raise RuntimeError(f"job for {spec['suite']} v{spec['suite_version']} run by v{suite.VERSION}")
    return suite, from_dict(suite.config_cls, spec["config"]), torch.device(spec["device"])


def execute_train(payload: dict[str, Any]) -> dict[str, Any]:
    """Train + evaluate the base model. payload: {"spec", "quiet"}.
    -> {"result": record, "files": the saved model's files (name -> bytes)}."""
    from obliviate.study import train_base

    spec = payload["spec"]
    suite, cfg, device = _setup(payload)
    model, _, record = train_base(suite, cfg, int(spec["seed"]), device)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model"
        suite.save_model(model, path, {"suite": spec["suite"], "suite_version": spec["suite_version"],
                                       "seed": spec["seed"]})
        files = {f.name: f.read_bytes() for f in sorted(path.iterdir()) if f.is_file()}
    return {"result": record, "files": files}


def execute_unlearn(payload: dict[str, Any]) -> dict[str, Any]:
    """One method configuration on the stored base model. payload: {"spec", "quiet", "model_dir", "before"}."""
    from obliviate.study import run_trial

    spec = payload["spec"]
    suite, cfg, device = _setup(payload)
    seed = int(spec["seed"])
    data = suite.build_data(cfg, seed)
    model = suite.load_model(Path(payload["model_dir"]), device)
    _, record = run_trial(suite, cfg, data, model, payload["before"], spec["method"], spec["params"], seed, device,
                          copy_model=False)
    return {"result": record, "files": {}}
