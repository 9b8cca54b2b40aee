"""Batched KV-cached greedy generation (``text_generation.greedy_generate``, what MUSE VerbMem/KnowMem run on) vs
one HF ``model.generate(do_sample=False)`` per prompt (MUSE's own loop), side by side in one run.

Model: a GPT-2 built from a config (``--layers`` x ``--width``, vocabulary 8192, 1024 positions, random weights, no
EOS so every prompt decodes all ``--new-tokens``). Prompts: ``--n`` rows of random ids with lengths drawn uniformly
from [``--min-len``, ``--max-len``] (mixed lengths, as MUSE's VerbMem prompts and KnowMem's ICL prompts are). Each
variant is timed ``--repeats`` times, alternating, after one warm-up on 2 prompts; the best time is reported, and the
outputs of the two variants must be identical token for token.

Run it on an otherwise idle machine: on a shared 2-core box every small op waits on the other jobs, and both
variants slow down by different factors (the per-sample loop issues many more, smaller ops). The load average is
printed before and after.

Usage: python benchmarks/bench_generation_muse.py [--n 32] [--new-tokens 128] [--batch-size 16] [--threads 2]
       [--repeats 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch

from obliviate.metrics.text_generation import generate_reference, greedy_generate

VOCAB, POSITIONS = 8192, 1024


def build(layers: int, width: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=VOCAB, n_positions=POSITIONS, n_layer=layers, n_embd=width, n_head=max(1, width // 64),
                     bos_token_id=None, eos_token_id=None)
    return GPT2LMHeadModel(cfg).eval()


def prompts(n: int, lo: int, hi: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    lens = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return [torch.randint(0, VOCAB, (k,), generator=g).tolist() for k in lens]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32, help="prompts")
    ap.add_argument("--min-len", type=int, default=16)
    ap.add_argument("--max-len", type=int, default=512)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    if args.max_len + args.new_tokens - 1 > POSITIONS:
        ap.error(f"--max-len + --new-tokens - 1 must be <= {POSITIONS}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    load0 = os.getloadavg()[0]
    model, ps = build(args.layers, args.width), prompts(args.n, args.min_len, args.max_len)
    k = args.new_tokens
    variants = {
        "batched_kv": lambda: greedy_generate(model, ps, k, pad_id=0, batch_size=args.batch_size),
        "per_sample_generate": lambda: generate_reference(model, ps, k, pad_id=0),
    }
    greedy_generate(model, ps[:2], 8, pad_id=0)  # warm-up (allocator, kernels, generate's first-call set-up)
    generate_reference(model, ps[:2], 8, pad_id=0)
    times: dict[str, list[float]] = {v: [] for v in variants}
    outs = {}
    for _ in range(args.repeats):
        for v, fn in variants.items():
            t0 = time.perf_counter()
            outs[v] = fn()
            times[v].append(time.perf_counter() - t0)
    load1 = os.getloadavg()[0]
    best = {v: min(t) for v, t in times.items()}
    ratio = best["per_sample_generate"] / best["batched_kv"]
    same = outs["batched_kv"] == outs["per_sample_generate"]
    lens = [len(p) for p in ps]
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpus {os.cpu_count()}, "
          f"load avg (1 min) {load0:.2f} before, {load1:.2f} after")
    print(f"GPT-2 {args.layers} layers x {args.width}, vocab {VOCAB}; {args.n} prompts of {min(lens)}-{max(lens)} "
          f"tokens (mean {sum(lens) / len(lens):.0f}), {k} new tokens each, batch {args.batch_size}, "
          f"best of {args.repeats}")
    for v in variants:
        print(f"  {v:20s} {best[v]:8.2f} s  {args.n / best[v]:7.2f} prompts/s  {args.n * k / best[v]:8.0f} tokens/s  "
              f"(all runs: {', '.join(f'{t:.2f}' for t in times[v])} s)")
    print(f"  speed-up {ratio:.1f}x; outputs identical: {same}")
    if args.json:
        args.json.write_text(json.dumps({"args": {k_: str(v) for k_, v in vars(args).items()}, "best_s": best,
                                         "all_s": times, "speedup": ratio, "identical": same,
                                         "load_before": load0, "load_after": load1}, indent=2))
    if not same:
        raise SystemExit("outputs differ")


if __name__ == "__main__":
    main()
