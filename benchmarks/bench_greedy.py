"""Greedy's per-step cost against naive implementations, side by side in one process on a small trained TinyMem model
(issue: "Greedy and IG dominate naive implementations").

A Greedy step must find, among all N MLP entries, the one whose removal lowers J = -sum_i y_i L_i on the step's batch
most, and zero it. Three ways, same model, same batches:

1. **ours** (``greedy_prune``): one backward into the MLP entries only, then one argmax over w * dJ/dw of all N.
2. **reference loop** (``greedy_prune(naive=True)``): the reference code's step -- backward into every parameter, a
   copy of every gradient, then a Python loop over the MLP tensors with one max (and one device sync) each. Same
   first-order criterion: the selected entries are asserted identical, step for step.
3. **exact, one candidate at a time**: zero an entry, re-run the batch, restore -- N forwards per step. Timed on
   ``--sample`` candidates (the first-order leaders of one batch) and extrapolated to N; also reported: whether the
   exact best of those leaders is the first-order pick.

Stacking candidates along the batch dimension (C copies of the batch, each with its own entry removed by a forward
hook) was also measured during development and is *slower* than the one-at-a-time loop on CPU (compute-bound: 8
copies of a 64-row batch on a 4-layer model took 1.56 s stacked vs 1.15 s looped), so it is not offered.

Usage: python benchmarks/bench_greedy.py [--layers 2] [--width 128] [--steps 60] [--sample 32] [--threads 1]
       [--train-epochs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time


def _setup(args: argparse.Namespace):
    import torch

    from obliviate.data.tinymem import PAD, TinyMemDataConfig, generate
    from obliviate.families.lm import LMUnlearnData, TokenData
    from obliviate.models.gpt2 import TinyMemModelConfig, build_model
    from obliviate.train.pretrain import TrainConfig, pretrain

    torch.set_num_threads(args.threads)
    data = generate(TinyMemDataConfig(task="increment", n_main=600, n_aux=150, n_test=30, aux_c=(2,), n_artifacts=40,
                                      dup_powers=(0, 1)))
    model = build_model(TinyMemModelConfig(n_layer=args.layers, n_embd=args.width), seed=0)
    pretrain(model, TokenData.from_rows(data.train, PAD, score_pad=True),
             TrainConfig(epochs=args.train_epochs, batch_size=64), seed=0, progress=False)
    return model.eval(), LMUnlearnData.from_rows(data.artifacts, data.clean_train[:200], PAD)


def _run(model, data, ratio: float, naive: bool):
    from obliviate.methods.localize.greedy import GreedyConfig, greedy_prune, mixed_rows
    from obliviate.methods.localize.weight_mask import mlp_targets

    m = copy.deepcopy(model)
    targets = mlp_targets(m)
    for t in targets:
        t.param.requires_grad_(True)
    rows, y = mixed_rows(data.forget, data.retain)
    t0 = time.perf_counter()
    run = greedy_prune(m, targets, rows, y, GreedyConfig(ratio=ratio), seed=0, naive=naive)
    return time.perf_counter() - t0, run


def _exact(model, data, sample: int) -> dict[str, float]:
    """Per-candidate cost of the literal greedy step on one batch, for the ``sample`` first-order leaders."""
    import torch

    from obliviate.families.lm import batch_of
    from obliviate.methods.localize.greedy import FlatIndex, _best, _scores, mixed_rows, objective
    from obliviate.methods.localize.weight_mask import mlp_targets

    m = copy.deepcopy(model)
    targets = mlp_targets(m)
    for t in targets:
        t.param.requires_grad_(True)
    rows, y = mixed_rows(data.forget, data.retain)
    idx = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:64]
    batch, yb = batch_of(rows, idx), y[idx]
    J = objective(m, batch, yb)
    grads = torch.autograd.grad(J, [t.param for t in targets])
    lead = _best(_scores(targets, list(grads)), sample)
    flat = FlatIndex(targets)
    exact = []
    t0 = time.perf_counter()
    with torch.no_grad():
        for ti, li in zip(*flat.locate(lead)):
            p = targets[int(ti)].param.view(-1)
            v = p[li].clone()
            p[li] = 0.0
            exact.append(float(objective(m, batch, yb)))
            p[li] = v
    per = (time.perf_counter() - t0) / len(lead)
    return {"per_candidate_s": per, "candidates": float(flat.numel),
            "exact_best_is_first_order_pick": float(int(torch.tensor(exact).argmin()) == 0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--steps", type=int, default=60, help="greedy steps per timed run")
    ap.add_argument("--sample", type=int, default=32, help="candidates timed for the exact one-at-a-time step")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--train-epochs", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from obliviate.methods.localize.weight_mask import mlp_targets

    model, data = _setup(args)
    N = sum(t.param.numel() for t in mlp_targets(model))
    ratio = (args.steps + 0.5) / N  # floor(ratio * N) = steps
    times: dict[str, list[float]] = {"ours": [], "reference_loop": []}
    chosen: dict[str, list[int]] = {}
    for _ in range(args.repeats):  # alternate, so drift in machine load hits both
        for name, naive in (("ours", False), ("reference_loop", True)):
            dt, run = _run(model, data, ratio, naive)
            times[name].append(dt / run.steps)
            assert chosen.setdefault(name, run.chosen) == run.chosen, f"{name}: not deterministic"
    same = chosen["ours"] == chosen["reference_loop"]
    assert same, "the fast path and the reference loop selected different weights"
    ex = _exact(model, data, args.sample)
    ours = statistics.median(times["ours"])
    ref = statistics.median(times["reference_loop"])
    exact_step = ex["per_candidate_s"] * N
    out = {"layers": args.layers, "width": args.width, "threads": args.threads, "mlp_entries": N,
           "steps": args.steps, "same_selection": same, "ours_step_ms": 1e3 * ours,
           "reference_loop_step_ms": 1e3 * ref, "speedup_vs_reference_loop": ref / ours,
           "exact_per_candidate_ms": 1e3 * ex["per_candidate_s"], "exact_step_s": exact_step,
           "speedup_vs_exact": exact_step / ours,
           "exact_best_of_leaders_is_first_order_pick": bool(ex["exact_best_is_first_order_pick"])}
    print(f"TinyMem {args.layers} layers x {args.width}, {N} MLP entries, {args.steps} steps, {args.threads} thread(s)")
    print(f"  ours            {out['ours_step_ms']:8.1f} ms/step")
    print(f"  reference loop  {out['reference_loop_step_ms']:8.1f} ms/step  -> ours {out['speedup_vs_reference_loop']:.2f}x "
          f"faster, same {len(chosen['ours'])} weights selected: {same}")
    print(f"  exact, 1 by 1   {out['exact_per_candidate_ms']:8.1f} ms/candidate x {N} = {exact_step:.0f} s/step "
          f"-> ours {out['speedup_vs_exact']:.0f}x faster (exact best of the {args.sample} first-order leaders is the "
          f"first-order pick: {out['exact_best_of_leaders_is_first_order_pick']})")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
