"""``obliviate harness --model DIR --tasks t1,t2 [--include-path DIR] --out results.json``: lm-evaluation-harness tasks
on a local Hugging Face causal LM (e.g. the model ``obliviate unlearn`` saved), in process, offline
(``obliviate.metrics.harness``; needs ``pip install 'obliviate[harness]'``)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("harness", help="run lm-evaluation-harness tasks on a local model (general ability check)")
    p.add_argument("--model", required=True, help="a local Hugging Face causal LM directory (+ tokenizer)")
    p.add_argument("--tasks", required=True, help="comma-separated lm-eval task / group names or task YAML paths")
    p.add_argument("--include-path", help="a folder of your own task YAMLs (see obliviate.metrics.harness)")
    p.add_argument("--limit", type=float, help="items per task (a fraction < 1 = share of the items)")
    p.add_argument("--num-fewshot", type=int, help="few-shot examples (default: the task's)")
    p.add_argument("--batch-size", type=int, default=8, help="default 8")
    p.add_argument("--seed", type=int, default=0, help="default 0")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N")
    p.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the model")
    p.add_argument("--out", required=True, help="JSON file to write (atomically)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from obliviate.context import quiet_libraries
    from obliviate.errors import ObliviateError
    from obliviate.io import load_causal_lm, write_json
    from obliviate.metrics.harness import run_lm_eval
    from obliviate.runconfig import resolve_device

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ObliviateError(f"{str(out)!r} exists; pass --overwrite to replace it")
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    if not tasks:
        raise ObliviateError("--tasks is empty: give at least one lm-eval task name")
    quiet_libraries()
    from transformers import AutoTokenizer

    device = resolve_device(args.device)
    model = load_causal_lm(args.model, device=device, trust_remote_code=args.trust_remote_code)
    tok = AutoTokenizer.from_pretrained(args.model, local_files_only=True, trust_remote_code=args.trust_remote_code)
    res = run_lm_eval(model, tok, tasks, include_path=args.include_path, limit=args.limit, batch_size=args.batch_size,
                      num_fewshot=args.num_fewshot, seed=args.seed)
    write_json(out, {"model": str(args.model), **res})
    for task, metrics in res["tasks"].items():
        print(f"{task}: " + ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                                      for k, v in metrics.items()))
    print(f"results: {out}")
    return 0
