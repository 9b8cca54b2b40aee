"""``obliviate alternates --model DIR --forget F --out alt.jsonl``: sample AltPO's alternate answers with the model to be
unlearned (``obliviate.data.alternates``); train with ``obliviate unlearn --method altpo --forget alt.jsonl``."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(sub: Any) -> None:
    p = sub.add_parser("alternates", help="sample plausible false answers to forget questions (AltPO's winners)")
    p.add_argument("--model", required=True, help="the local Hugging Face causal LM to be unlearned (+ tokenizer)")
    p.add_argument("--forget", required=True, help="forget QA pairs: .jsonl/.json with question and answer")
    p.add_argument("--out", required=True, help="JSON Lines to write: one {question, answer, alternate} per sample")
    p.add_argument("--repeats", type=int, default=5, help="samples per question, each its own row (default 5)")
    p.add_argument("--max-new-tokens", type=int, default=200, help="default 200")
    p.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default 1.0)")
    p.add_argument("--top-p", type=float, help="nucleus sampling (default: the model's generation config)")
    p.add_argument("--top-k", type=int, help="top-k sampling, 0 = off (default: the model's generation config)")
    p.add_argument("--seed", type=int, default=0, help="set once before the first sample (default 0)")
    p.add_argument("--chat-template", action="store_true", help="prompt with the tokenizer's chat template")
    p.add_argument("--instruction", help="your own request, with {question} and {answer}; \\n is a newline "
                   "(default: the built-in AltPO-style instruction)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:N, mps")
    p.add_argument("--trust-remote-code", action="store_true", help="run Python code shipped with the model")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from obliviate.context import print_stderr, quiet_libraries
    from obliviate.data.alternates import AlternatesConfig, alternates_file

    extra = {} if args.instruction is None else {"instruction": args.instruction.replace("\\n", "\n")}
    cfg = AlternatesConfig(repeats=args.repeats, max_new_tokens=args.max_new_tokens, temperature=args.temperature,
                           seed=args.seed, top_p=args.top_p, top_k=args.top_k, chat_template=args.chat_template,
                           **extra)
    quiet_libraries()
    res = alternates_file(args.model, args.forget, args.out, cfg, device=args.device,
                          trust_remote_code=args.trust_remote_code, overwrite=args.overwrite,
                          progress=not args.quiet)
    line = f"{res['records']} alternates for {res['questions']} questions"
    if res["dropped_empty"]:
        line += f" ({res['dropped_empty']} samples stayed empty and were left out)"
    print_stderr(line)
    print(f"alternates: {res['out']}")
    return 0
