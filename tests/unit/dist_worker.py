"""Worker for tests/unit/test_distributed.py: one unlearning run, as a single process (``python dist_worker.py``) or
as one rank of several (``torchrun --nproc_per_node N dist_worker.py``). Rank 0 writes the final weights, the logs
and the retain rows each rank trained on to OUT (torch.save), or the error message when the run failed."""

from __future__ import annotations

import json
import sys

import torch


def main(out: str, method: str, params: dict, poison_rank: int, config: str | None) -> None:
    from obliviate.context import RunContext
    from obliviate.errors import ObliviateError
    from obliviate.families.lm import LMUnlearnData, TokenData
    from obliviate.methods import build_method
    from obliviate.models.gpt2 import TinyMemModelConfig, build_model
    from obliviate.train.distributed import current_world, full_state_dict, gather_objects, init_from_env

    torch.set_num_threads(1)
    world = init_from_env(config_file=config)
    model = build_model(TinyMemModelConfig(n_layer=1, n_embd=32, n_head=2), seed=0)  # no dropout
    g = torch.Generator().manual_seed(0)
    rows = torch.randint(0, 14, (40, 10), generator=g)
    lens = torch.randint(5, 11, (40,), generator=g)  # ragged rows: the batches' trimmed widths differ
    mask = (torch.arange(10)[None, :] < lens[:, None]).long()
    labels = rows.masked_fill(mask == 0, -100)
    data = LMUnlearnData(TokenData(rows[:10], mask[:10], labels[:10]), TokenData(rows[10:], mask[10:], labels[10:]))
    evaluate = None
    stop = params.pop("_stop_drift", None)
    if stop is not None:  # a stop rule on a metric every rank computes on its share of the rows (then gathered)
        from obliviate.metrics.lm_quality import dataset_nll

        start: dict[str, float] = {}

        def evaluate(mod):
            v = dataset_nll(mod, data.forget, batch_size=3)
            start.setdefault("v", v)
            return {"forget_drift": start["v"] - v}

        params = {**params, "stop_metric": "forget_drift", "stop_below": stop}
    ckpt = params.pop("_ckpt", None)  # {"dir", "resume", "kill_after": loss calls per rank before a kill}
    m = build_method(method, params)
    seen: list[list[int]] = []
    loss = m.loss
    calls = [0]

    def recording(mod, batch):
        calls[0] += 1
        if ckpt is not None and ckpt.get("kill_after") is not None and calls[0] > ckpt["kill_after"]:
            raise KeyboardInterrupt  # every rank at the same call, as a killed job stops
        if batch.retain is not None:
            seen.append(batch.retain.index.tolist())
        value, stats = loss(mod, batch)
        if poison_rank == world.rank and len(seen) == 2:
            value = value * float("nan")
        return value, stats

    m.loss = recording
    ctx = RunContext(seed=3, evaluate=evaluate)
    if ckpt is not None:
        ctx = RunContext(seed=3, evaluate=evaluate, checkpoint_dir=ckpt["dir"], resume=ckpt.get("resume", False))
    try:
        res = m.unlearn(model, data, ctx)
        doc = {"state": full_state_dict(model, current_world()), "logs": res.logs, "info": res.info}
        doc["param_type"] = type(next(model.parameters())).__name__  # DTensor when FSDP sharded it
    except ObliviateError as exc:
        doc = {"error": str(exc)}
    except KeyboardInterrupt:
        doc = {"killed": calls[0]}
    all_seen = gather_objects(seen, current_world())
    if world.main:
        doc["seen"] = all_seen
        torch.save(doc, out)
    from obliviate.train.distributed import shutdown

    shutdown()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4]), sys.argv[5] if len(sys.argv) > 5 else None)
