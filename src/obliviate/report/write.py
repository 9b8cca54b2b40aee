"""Write the bench report files (figures, markdown, HTML) from a results dict, each file atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from obliviate.io import atomic_write_bytes, atomic_write_text
from obliviate.report.bench_markdown import render_bench_markdown
from obliviate.report.html import render_bench_html
from obliviate.report.plots import FIGURE_NAMES, render_figures


def write_bench_report(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Render the figures once and write ``figures/NAME.png``, ``report.md`` and ``report.html`` under ``out_dir``.

    Returns relative name (e.g. ``"figures/tradeoff.png"``, ``"report.html"``) -> path written. A figure file left
    from an earlier render whose data is now absent is removed, so the folder matches the report."""
    out = Path(out_dir)
    figures = render_figures(results)
    paths: dict[str, Path] = {}
    for name, png in figures.items():
        rel = f"figures/{name}.png"
        atomic_write_bytes(out / rel, png)
        paths[rel] = out / rel
    for name in FIGURE_NAMES:
        if name not in figures:
            (out / "figures" / f"{name}.png").unlink(missing_ok=True)
    paths["report.md"] = out / "report.md"
    atomic_write_text(paths["report.md"], render_bench_markdown(results, list(figures)))
    paths["report.html"] = out / "report.html"
    atomic_write_text(paths["report.html"], render_bench_html(results, figures))
    return paths
