"""Unlearning-step throughput and peak memory: obliviate's loop vs a ``transformers.Trainer`` subclass computing the
same loss (GradDiff: -NLL(forget) + NLL(retain)) on the same model and data, side by side in one run (issue 9).

Each variant runs in its own fresh Python process, alternating, ``--repeats`` times; medians are reported. Model: a
GPT-2 built from a config (``--layers``, ``--width``, ``--vocab``); forget and retain ``--rows`` rows each; batch 8
forget + 8 retain rows per step, one epoch (the same optimizer steps on both sides), AdamW lr 1e-5, weight decay
0.01, constant lr. Data (``--data``):

* ``qa`` (default): question-answer rows as unlearning benchmarks have them -- a prompt of 16-64 tokens (not
  scored, label -100) and an answer of 16-64 tokens (scored), random ids, right-padded to the longest row of each
  batch on both sides (the Trainer gets a collator that pads to the batch's longest row, as open-unlearning's does).
  The Trainer subclass calls ``model(input_ids, attention_mask, labels).loss``, so the LM head and the float32
  softmax run on every position; ours runs them only from the first scored position on (``logits_to_keep``).
* ``full``: 128-token rows scored everywhere (pre-training-like): nothing to skip, both do the same maths.

Tokens/s counts every non-padding token fed to the model (forget + retain). Goal: ours >= 1.5x the Trainer's
throughput at <= its memory. Run it on an otherwise idle machine.

Memory (see ``memprobe.py``), measured around the training call only (model, data and Trainer already built):

* RSS added = the kernel's exact RSS high-water mark during the run minus the RSS before it, taken after
  ``malloc_trim(0)`` has returned malloc's free memory to the kernel (how much it found is printed: memory freed
  during set-up and reused by the run would otherwise hide part of what the run needs);
* torch tensors added = the peak of CPU tensor bytes allocated minus freed during the run, from ``torch.profiler``
  (``profile_memory``), in a separate process running the first ``--profile-rows`` rows (the peak is reached in the
  second step, once the optimizer state exists). This is torch's own accounting, free of malloc effects;
* RSS added with glibc's mmap threshold fixed (``MALLOC_MMAP_THRESHOLD_=131072``, the same ``--profile-rows``, a
  separate process): by default glibc raises the threshold whenever it frees a large mmapped block, after which
  blocks of up to 32 MB come from its heap and stay resident once freed, so the default RSS peak depends on the
  order of allocations and frees, not only on what is live. With the threshold fixed, RSS follows the live tensors.

Usage: python benchmarks/bench_lm_loop.py [--data qa|full] [--vocab 49152] [--repeats 2] [--rows 256] [--layers 4]
       [--width 256] [--threads 2]
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

SEQ, BATCH = 128, 8
PROMPT, ANSWER = (16, 64), (16, 64)  # token ranges of the qa rows' parts (inclusive)


def _rows(args: argparse.Namespace, rows: int, seed: int) -> tuple[list[list[int]], list[int]]:
    """(token lists, prompt lengths): the first ``rows`` of a fixed draw of ``args.rows`` rows."""
    import torch

    g = torch.Generator().manual_seed(seed)
    seqs, plens = [], []
    for _ in range(args.rows):
        if args.data == "qa":
            p = int(torch.randint(PROMPT[0], PROMPT[1] + 1, (1,), generator=g))
            n = p + int(torch.randint(ANSWER[0], ANSWER[1] + 1, (1,), generator=g))
        else:
            p, n = 0, SEQ
        seqs.append(torch.randint(1, args.vocab, (n,), generator=g).tolist())
        plens.append(p)
    return seqs[:rows], plens[:rows]


def _setup(args: argparse.Namespace, rows: int):
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=args.vocab, n_layer=args.layers, n_embd=args.width, n_head=4,
                                       n_positions=SEQ, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))
    return model, _rows(args, rows, 1), _rows(args, rows, 2)


def _padded(seqs: list[list[int]], plens: list[int]):
    """Right-padded (input_ids, attention_mask, labels) of a batch, padded to its longest row (pad id 0)."""
    import torch

    T = max(len(s) for s in seqs)
    ids = torch.zeros((len(seqs), T), dtype=torch.long)
    mask = torch.zeros_like(ids)
    labels = torch.full_like(ids, -100)
    for i, (s, p) in enumerate(zip(seqs, plens)):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
        labels[i, p:len(s)] = ids[i, p:len(s)]
    return ids, mask, labels


def prepare_ours(args: argparse.Namespace, rows: int) -> Callable[[], object]:
    """Everything built; the returned call runs the epoch."""
    from obliviate.families.lm import LMUnlearnData, TokenData
    from obliviate.methods import build_method

    model, forget, retain = _setup(args, rows)
    data = LMUnlearnData(*(TokenData.from_sequences(seqs, 0, plens) for seqs, plens in (forget, retain)))
    method = build_method("grad_diff", {"epochs": 1, "batch_size": BATCH, "retain_batch_size": BATCH, "lr": 1e-5})
    return lambda: method.unlearn(model, data)


def prepare_trainer(args: argparse.Namespace, rows: int) -> Callable[[], object]:
    import torch
    from transformers import Trainer, TrainingArguments

    model, forget, retain = _setup(args, rows)

    class Pairs(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(forget[0])

        def __getitem__(self, i: int) -> dict[str, object]:
            return {"forget": (forget[0][i], forget[1][i]), "retain": (retain[0][i], retain[1][i])}

    def collate(items: list[dict[str, object]]) -> dict[str, torch.Tensor]:
        out = {}
        for k in ("forget", "retain"):
            ids, mask, labels = _padded([it[k][0] for it in items], [it[k][1] for it in items])
            out.update({f"{k}_ids": ids, f"{k}_mask": mask, f"{k}_labels": labels})
        return out

    class GradDiffTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            loss_f = model(input_ids=inputs["forget_ids"], attention_mask=inputs["forget_mask"],
                           labels=inputs["forget_labels"]).loss
            loss_r = model(input_ids=inputs["retain_ids"], attention_mask=inputs["retain_mask"],
                           labels=inputs["retain_labels"]).loss
            return -loss_f + loss_r

    out = tempfile.mkdtemp(prefix="bench-lm-loop-")
    atexit.register(shutil.rmtree, out, ignore_errors=True)
    targs = TrainingArguments(output_dir=out, per_device_train_batch_size=BATCH, num_train_epochs=1,
                              learning_rate=1e-5, weight_decay=0.01, lr_scheduler_type="constant",
                              save_strategy="no", report_to=[], logging_strategy="no", use_cpu=True,
                              dataloader_num_workers=0, optim="adamw_torch", seed=0, disable_tqdm=True,
                              remove_unused_columns=False)
    trainer = GradDiffTrainer(model=model, args=targs, train_dataset=Pairs(), data_collator=collate)
    return trainer.train


PREPARE = {"ours": prepare_ours, "trainer": prepare_trainer}
PHASES = ("timed", "profiled", "malloc")
FIXED_MALLOC = {"MALLOC_MMAP_THRESHOLD_": "131072"}  # glibc: a fixed threshold, no dynamic raise


def run_timed(args: argparse.Namespace) -> dict[str, float]:
    from memprobe import MemoryProbe

    run = PREPARE[args.variant](args, args.rows if args.phase == "timed" else args.profile_rows)
    with MemoryProbe("cpu") as probe:
        t0 = time.perf_counter()
        run()
        wall = time.perf_counter() - t0
    return {"wall_s": wall, **probe.result(), "process_peak_mb": _peak_mb()}


def run_profiled(args: argparse.Namespace) -> dict[str, float]:
    from memprobe import torch_cpu_peak

    run = PREPARE[args.variant](args, args.profile_rows)
    return torch_cpu_peak(run)[1]


def _peak_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", choices=("qa", "full"), default="qa")
    ap.add_argument("--vocab", type=int, default=49152, help="vocabulary size (default SmolLM2's)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--rows", type=int, default=256)
    ap.add_argument("--profile-rows", type=int, default=32)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    ap.add_argument("--variant", choices=list(PREPARE), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--phase", choices=PHASES, default="timed", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.variant:
        print(json.dumps(run_profiled(args) if args.phase == "profiled" else run_timed(args)))
        return
    base = [sys.executable, __file__, "--data", args.data, "--vocab", str(args.vocab), "--rows", str(args.rows), "--profile-rows", str(args.profile_rows), "--layers",
            str(args.layers), "--width", str(args.width), "--threads", str(args.threads)]
    res: dict[str, dict[str, list[dict[str, float]]]] = {v: {p: [] for p in PHASES} for v in PREPARE}
    for _ in range(args.repeats):
        for v in PREPARE:
            res[v]["timed"].append(_child([*base, "--variant", v, "--phase", "timed"]))
    for phase in ("profiled", "malloc"):
        for v in PREPARE:
            res[v][phase].append(_child([*base, "--variant", v, "--phase", phase], FIXED_MALLOC if phase == "malloc"
                                        else None))
    tokens = sum(len(r) for seed in (1, 2) for r in _rows(args, args.rows, seed)[0])  # forget + retain, one epoch
    shape = (f"{args.data} rows (prompt {PROMPT[0]}-{PROMPT[1]} + answer {ANSWER[0]}-{ANSWER[1]} tokens)"
             if args.data == "qa" else f"rows of {SEQ} tokens, all scored")
    print(f"GPT-2 {args.layers} layers x {args.width}, vocabulary {args.vocab}, {args.rows} forget + {args.rows} "
          f"retain {shape}, batch {BATCH}+{BATCH}, {args.rows // BATCH} steps, {args.threads} threads, median of "
          f"{args.repeats}")

    def med(v: str, phase: str, key: str) -> float:
        return statistics.median(r[key] for r in res[v][phase])

    summary = {}
    for v in PREPARE:
        wall = med(v, "timed", "wall_s")
        s = {"wall_s": wall, "best_wall_s": min(r["wall_s"] for r in res[v]["timed"]), "tokens_per_s": tokens / wall, "added_rss_mb": med(v, "timed", "added_rss_mb"),
             "added_anon_mb": med(v, "timed", "added_anon_mb"), "trim_freed_mb": med(v, "timed", "trim_freed_mb"),
             "fixed_malloc_added_mb": med(v, "malloc", "added_rss_mb"), "peak_rss_mb": med(v, "timed", "peak_rss_mb"),
             "process_peak_mb": med(v, "timed", "process_peak_mb"),
             "torch_peak_added_mb": med(v, "profiled", "torch_peak_added_mb")}
        summary[v] = s
        runs = ", ".join(f"{r['wall_s']:.2f}" for r in res[v]["timed"])
        print(f"{v:>8}: {wall:6.2f} s {s['tokens_per_s']:6.0f} tokens/s | memory added by the run: RSS "
              f"{s['added_rss_mb']:4.0f} MB (anon {s['added_anon_mb']:4.0f}; free malloc memory before the run "
              f"{s['trim_freed_mb']:.0f} MB), with a fixed mmap threshold {s['fixed_malloc_added_mb']:4.0f} MB, torch "
              f"tensors {s['torch_peak_added_mb']:4.0f} MB | peak RSS {s['peak_rss_mb']:.0f} MB (runs: {runs})")
    o, t = summary["ours"], summary["trainer"]
    print(f"throughput ours / Trainer: {t['wall_s'] / o['wall_s']:.2f}x (median), "
          f"{t['best_wall_s'] / o['best_wall_s']:.2f}x (fastest runs); memory added ours / Trainer: RSS "
          f"{o['added_rss_mb'] / t['added_rss_mb']:.2f}x, torch tensors "
          f"{o['torch_peak_added_mb'] / t['torch_peak_added_mb']:.2f}x, RSS with a fixed mmap threshold "
          f"{o['fixed_malloc_added_mb'] / t['fixed_malloc_added_mb']:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "runs": res}, f, indent=2)


def _child(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, float]:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False,
                         env=None if env is None else {**os.environ, **env})
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd[-4:])} failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
