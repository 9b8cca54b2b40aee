"""Tables and the markdown report, rendered from a results JSON alone (so ``obliviate report DIR`` can redo them)."""

from __future__ import annotations

import math
from typing import Any


def _f(x: Any, nd: int = 1) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{nd}f}"


def summary_rows(results: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """Header and rows: before, then one row per method (memorization overall and per group, accuracy, cost)."""
    before = results["before"]
    groups = list(before["percent_memorized"]["by_group"])
    tests = list(before["accuracy"]["by_test"])
    header = ["model", "% memorized", *[f"% mem {g}" for g in groups], "% correct",
              *[f"acc {t}" for t in tests], "mean acc", "score", "time s", "peak MB"]

    def row(name: str, m: dict[str, Any], score: Any, cost: dict[str, Any] | None) -> list[str]:
        return [name, _f(m["percent_memorized"]["value"]),
                *[_f(m["percent_memorized"]["by_group"].get(g)) for g in groups],
                _f(m["percent_correct"]["value"]),
                *[_f(m["accuracy"]["by_test"].get(t), 2) for t in tests], _f(m["accuracy"]["mean"], 2),
                "" if score is None else f"{score:+.3f}",
                "" if cost is None else _f(cost.get("wall_s")), "" if cost is None else _f(cost.get("peak_rss_mb"), 0)]

    rows = [row("before", before, None, results.get("phases", {}).get("train"))]
    for rec in results.get("methods", []):
        rows.append(row(rec["method"], rec["after"], rec.get("selection_score"), rec["cost"]["unlearn"]))
    return header, rows


def render_table(results: dict[str, Any]) -> str:
    """Fixed-width text table for the terminal."""
    header, rows = summary_rows(results)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


def _md(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def render_report(results: dict[str, Any]) -> str:
    """The markdown report: what ran, before/after per method, how hyper-parameters were selected, cost."""
    cfg = results.get("config", {})
    lines = [
        f"# obliviate report: {results.get('suite', '?')} v{results.get('suite_version', '?')}",
        "",
        f"- command: `{results.get('command')}`, seed {results.get('seed')}, created {results.get('created_utc')}",
        f"- git: `{results.get('git_sha')}`; versions: "
        + ", ".join(f"{k} {v}" for k, v in results.get("versions", {}).items() if k != "platform"),
        (f"- data: {cfg.get('data', {}).get('task')} + {cfg.get('data', {}).get('artifact')}, "
         f"{results.get('data', {})}"),
        f"- model: {cfg.get('model', {}).get('n_layer')} layers, {cfg.get('model', {}).get('n_embd')}-d",
        "- hashes: " + ", ".join(f"{k} `{str(v)[:12]}`" for k, v in results.get("hashes", {}).items()),
        "",
        "## Before and after unlearning",
        "",
        "% memorized: greedy continuation of the clean 50-token prefix reproduces the artifact's next 50 tokens;",
        "accuracy: teacher-forced next-token accuracy per test distribution (PAD positions included, as the paper);",
        "score: the paper's selection score (relative memorization change minus relative accuracy change).",
        "",
        _md(*summary_rows(results)),
        "",
    ]
    for rec in results.get("methods", []):
        lines += [f"## {rec['method']}", ""]
        params = ", ".join(f"{k}={v}" for k, v in rec["params"].items())
        lines += [f"- chosen config: {params}", f"- forget set: {rec['forget_rows']} memorized artifacts"]
        if rec.get("info"):
            lines.append("- info: " + ", ".join(f"{k}={_f(v, 4) if isinstance(v, float) else v}"
                                               for k, v in rec["info"].items()))
        sel = rec.get("selection")
        if sel and len(sel["trials"]) > 1:
            lines += ["", f"Selection over {len(sel['trials'])} grid points, rule: {sel['rule']}", ""]
            rows = [[", ".join(f"{k}={v}" for k, v in t["point"].items()), _f(t["percent_memorized"]),
                     _f(t["mean_accuracy"], 2), f"{t['selection_score']:+.3f}", _f(t["wall_s"])]
                    for t in sel["trials"]]
            lines.append(_md(["config", "% memorized", "mean acc", "score", "time s"], rows))
        lines.append("")
    phases = results.get("phases", {})
    if phases:
        lines += ["## Cost per phase", ""]
        lines.append(_md(["phase", "wall s", "peak RSS MB"],
                         [[k, _f(v.get("wall_s")), _f(v.get("peak_rss_mb"), 0)] for k, v in phases.items()]))
        lines.append("")
    return "\n".join(lines)
