"""Integrated Gradients neuron attribution: batched (``obliviate.methods.neuron.integrated_gradients``) vs the
reference's naive loop (one forward + backward of the prefix per row, layer, position and step), side by side in one
run on the same TinyMem model and rows, plus a check that they give the same attributions (allclose). The batched
version is timed twice: as it runs by default (each patched position one token on the clean row's key/value cache)
and with ``kv_cache=False`` (the full rows, batching alone).

Setup: a TinyMem GPT-2 (4 layers, 128-d, 512 neurons per layer: the paper's 4-layer model; ``--layers`` /
``--embd`` to change) at its seeded init (timing and agreement do not depend on training), forget rows = the first
``--rows`` TinyMem "increment" artifacts with their continuation scored (prompt 50 tokens, as the paper's
memorization rows), ``--steps`` 20 (the reference's value).

Usage: python benchmarks/bench_neuron_ig.py [--rows 2] [--steps 20] [--layers 4] [--embd 128] [--batch 16]
                                             [--threads 2] [--device cpu] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=2)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--embd", type=int, default=128)
    p.add_argument("--batch", type=int, default=16, help="(row, position) pairs per forward of the batched version")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args()

    import torch

    from obliviate.data.tinymem import PAD, TinyMemDataConfig, generate
    from obliviate.families.lm import TokenData
    from obliviate.methods.neuron.base import find_neuron_sites, predicting, top_k_per_layer
    from obliviate.methods.neuron.integrated_gradients import integrated_gradients, integrated_gradients_naive
    from obliviate.models.gpt2 import TinyMemModelConfig, build_model

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    data = generate(TinyMemDataConfig(task="increment", n_main=200, n_aux=50, n_test=10, aux_c=(2,),
                                      n_artifacts=max(args.rows, 2), dup_powers=(0,)))
    rows = data.artifacts[: args.rows]
    split = TokenData.from_rows(rows, PAD, prompt_len=data.prompt_len[: args.rows])
    model = build_model(TinyMemModelConfig(n_layer=args.layers, n_embd=args.embd, n_head=4), seed=0).to(device)
    model.eval().requires_grad_(False)
    sites = find_neuron_sites(model)
    positions = int(predicting(split.labels).sum())

    def timed(fn: Any) -> tuple[list[Any], float]:
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return out, time.perf_counter() - t0

    integrated_gradients(model, TokenData(split.input_ids[:1], split.attention_mask[:1], split.labels[:1]),
                         sites[:1], 2, args.batch)  # warm-up (allocator, kernels)
    batched, t_batched = timed(lambda: integrated_gradients(model, split, sites, args.steps, args.batch))
    full, t_full = timed(lambda: integrated_gradients(model, split, sites, args.steps, args.batch, kv_cache=False))
    naive, t_naive = timed(lambda: integrated_gradients_naive(model, split, sites, args.steps))
    scale = max(float(b.abs().max()) for b in naive)
    # float32 through the layers: agreement to 1e-4 of the largest attribution, and the same neurons chosen
    diffs = [max(float((a - b).abs().max()) for a, b in zip(x, naive)) for x in (batched, full)]
    same = all(torch.allclose(a, b, rtol=1e-4, atol=1e-4 * scale) for x in (batched, full) for a, b in zip(x, naive))
    same_top = all(torch.equal(a, b) for x in (batched, full)
                   for a, b in zip(top_k_per_layer(x, 0.05), top_k_per_layer(naive, 0.05)))
    work = args.layers * positions * args.steps
    result = {"device": str(device), "threads": args.threads, "layers": args.layers, "inner_dim": sites[0].inner,
              "rows": args.rows, "positions": positions, "steps": args.steps, "pairs_per_forward": args.batch,
              "forward_backward_rows": work, "naive_s": t_naive, "batched_s": t_batched,
              "batched_full_rows_s": t_full, "speedup": t_naive / t_batched, "speedup_full_rows": t_naive / t_full, "max_abs_diff_kv_cache": diffs[0], "max_abs_diff_full_rows": diffs[1], "max_abs_attribution": scale,
              "allclose": same, "same_top5pct_neurons": same_top}
    print(f"IG attribution, {args.layers} layers x {sites[0].inner} neurons, {args.rows} rows, {positions} scored "
          f"positions, {args.steps} steps ({work} patched forwards) on {device} ({args.threads} threads)")
    print(f"  naive per-step loop: {t_naive:8.2f} s")
    print(f"  batched, full rows:  {t_full:8.2f} s   ({args.batch} positions x {args.steps} steps per forward)")
    print(f"  batched, kv cache:   {t_batched:8.2f} s   (the default: one token per patched row)")
    print(f"  speed-up over the naive loop: {t_naive / t_batched:.1f}x (full rows: {t_naive / t_full:.1f}x)   "
          f"same attributions: {same}")
    print(f"  max |diff| vs naive: kv cache {diffs[0]:.2e}, full rows {diffs[1]:.2e} (max |IG| {scale:.2e}); "
          f"same top-5% neurons per layer: {same_top}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    if not (same and same_top):
        raise SystemExit("batched and naive attributions differ")


if __name__ == "__main__":
    main()
