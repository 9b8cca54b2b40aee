"""Figures for bench results, built from the results dict alone.

Uses matplotlib's object API (``Figure`` + its own Agg canvas, never pyplot): no global state, safe in threads and
under any backend. Each ``*_figure`` returns None when its data is absent; ``render_figures`` encodes them as PNG.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Callable
from typing import Any

import matplotlib  # noqa: F401 -- the figures below attach their own Agg canvas; the global backend is never set
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

DPI = 110
BEFORE = "before"
BEFORE_COLOR = "#4d4d4d"
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
CURVE_KEYS = ("loss", "forget_nll", "retain_nll")
CURVE_TITLES = {"loss": "training loss", "forget_nll": "forget-set NLL", "retain_nll": "retain-set NLL"}
COSTS = (("wall_s", "wall time (s)"), ("peak_rss_mb", "peak memory (MB)"))
_LABEL_OFFSETS = ((8, 5), (8, -13))  # alternate above/below-right, so coinciding points stay told apart


def _num(x: Any) -> float | None:
    """``x`` as a float when it is a finite number, else None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return None
    return float(x)


def method_names(results: dict[str, Any]) -> list[str]:
    """Methods in report order (the order of ``summary.methods``)."""
    return list((results.get("summary") or {}).get("methods") or {})


def stat(results: dict[str, Any], model: str, key: str) -> tuple[float, float] | None:
    """(mean, std) of ``key`` for ``model`` ("before" or a method) from the summary; None when undefined."""
    summary = results.get("summary") or {}
    entry = summary.get("before") if model == BEFORE else (summary.get("methods") or {}).get(model)
    st = (entry or {}).get(key) or {}
    mean = _num(st.get("mean"))
    return None if mean is None else (mean, _num(st.get("std")) or 0.0)


def column(results: dict[str, Any], key: str) -> dict[str, Any]:
    """The ``columns`` entry for ``key`` (a bare one when it is not listed)."""
    return next((c for c in results.get("columns") or [] if c.get("key") == key), {"key": key, "label": key})


def _axis_label(col: dict[str, Any]) -> str:
    better = col.get("higher_is_better")
    hint = "" if better is None else (" (higher is better)" if better else " (lower is better)")
    return _text(col.get("label", col["key"])) + hint


def _text(s: Any) -> str:
    """Text for matplotlib with ``$`` escaped, so names are never parsed as mathtext."""
    return str(s).replace("$", r"\$")


def _color(results: dict[str, Any], model: str) -> str:
    names = method_names(results)
    return BEFORE_COLOR if model not in names else PALETTE[names.index(model) % len(PALETTE)]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def tradeoff_figure(results: dict[str, Any]) -> Figure | None:
    """Forget-axis metric vs utility-axis metric, one point per model, mean ± std over seeds in both directions."""
    axes = results.get("axes") or {}
    fx, fy = axes.get("forget"), axes.get("utility")
    if not fx or not fy:
        return None
    models = [BEFORE, *method_names(results)]
    points = [(m, stat(results, m, fx), stat(results, m, fy)) for m in models]
    points = [(m, x, y) for m, x, y in points if x is not None and y is not None]
    if not points:
        return None
    fig = _figure(6.6, 4.6)
    ax = fig.add_subplot()
    for i, (m, (x, sx), (y, sy)) in enumerate(points):
        color = _color(results, m)
        ax.errorbar(x, y, xerr=sx, yerr=sy, fmt="s" if m == BEFORE else "o", ms=9 if m == BEFORE else 7,
                    color=color, mfc="white" if m == BEFORE else color, mew=2, capsize=3, elinewidth=1,
                    label=_text(m), zorder=3)
        dx, dy = _LABEL_OFFSETS[i % len(_LABEL_OFFSETS)]
        ax.annotate(_text(m), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8.5, color=color)
    ax.set_xlabel(_axis_label(column(results, fx)))
    ax.set_ylabel(_axis_label(column(results, fy)))
    ax.set_title("forgetting vs utility (mean ± std over seeds)", fontsize=11)
    ax.margins(0.18)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best", framealpha=0.85)
    return fig


def groups_figure(results: dict[str, Any]) -> Figure | None:
    """Grouped bars per duplication group: one bar per model, mean with a ±std error bar."""
    spec = results.get("groups") or {}
    keys = list(spec.get("keys") or [])
    labels = list(spec.get("labels") or keys)
    data = {m: [stat(results, m, k) for k in keys] for m in [BEFORE, *method_names(results)]}
    models = [m for m, vals in data.items() if any(v is not None for v in vals)]
    if not keys or not models:
        return None
    fig = _figure(max(6.0, 1.5 + 0.32 * len(keys) * len(models)), 4.2)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    for i, m in enumerate(models):
        bars = [(j, v) for j, v in enumerate(data[m]) if v is not None]
        ax.bar([j - 0.4 + width * (i + 0.5) for j, _ in bars], [v[0] for _, v in bars], width * 0.92,
               yerr=[v[1] for _, v in bars], capsize=2, color=_color(results, m), label=_text(m),
               error_kw={"elinewidth": 1, "ecolor": "#222222"}, zorder=3)
    ax.set_xticks(range(len(keys)), [_text(lb) for lb in labels[:len(keys)]] + [_text(k) for k in keys[len(labels):]])
    ax.set_xlabel(_text(spec.get("xlabel", "duplication group")))
    ax.set_ylabel(_text(spec.get("ylabel", "mean ± std over seeds")))
    ax.set_title(_text(spec.get("title", "")), fontsize=11)
    ax.grid(axis="y", alpha=0.3, zorder=0)
    fig.legend(loc="outside right upper", fontsize=8)
    return fig


def _series(logs: Any, key: str) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(epochs, values) of ``key`` in one run's logs, skipping entries where either is missing."""
    pairs = [(_num(r.get("epoch")), _num(r.get(key))) for r in logs or [] if isinstance(r, dict)]
    pairs = [(e, v) for e, v in pairs if e is not None and v is not None]
    return (tuple(e for e, _ in pairs), tuple(v for _, v in pairs)) if pairs else None


def curve(results: dict[str, Any], method: str, key: str) -> tuple[list[float], list[float], list[float], int] | None:
    """(epochs, mean, std, n) of ``key`` over the seeds whose selected run logged the most common epoch list."""
    runs = []
    for seed in (results.get("per_seed") or {}).values():
        entry = ((seed or {}).get("methods") or {}).get(method)
        series = _series((entry or {}).get("logs"), key)
        if series is not None:
            runs.append(series)
    if not runs:
        return None
    epochs = Counter(e for e, _ in runs).most_common(1)[0][0]
    cols = list(zip(*[v for e, v in runs if e == epochs]))
    n = len(cols[0])
    means = [sum(c) / n for c in cols]
    stds = [math.sqrt(sum((x - mu) ** 2 for x in c) / (n - 1)) if n > 1 else 0.0 for c, mu in zip(cols, means)]
    return list(epochs), means, stds, n


def _plot_curves(ax: Axes, results: dict[str, Any], key: str) -> None:
    for m in method_names(results):
        c = curve(results, m, key)
        if c is None:
            continue
        epochs, mean, std, n = c
        color = _color(results, m)
        ax.plot(epochs, mean, color=color, marker="o", ms=3, lw=1.6, label=f"{_text(m)} (n={n})")
        if n > 1:
            ax.fill_between(epochs, [a - b for a, b in zip(mean, std)], [a + b for a, b in zip(mean, std)],
                            color=color, alpha=0.18, lw=0)
    ax.set_title(CURVE_TITLES.get(key) or column(results, key).get("label", key), fontsize=10)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)


def curves_figure(results: dict[str, Any]) -> Figure | None:
    """Unlearning curves of each method's selected run: mean over seeds with a ±std band, one panel per quantity."""
    methods = method_names(results)
    axes = [k for k in (results.get("axes") or {}).values() if k not in CURVE_KEYS]  # the suite's, if logged
    keys = [k for k in (*CURVE_KEYS, *axes) if any(curve(results, m, k) is not None for m in methods)]
    if not keys:
        return None
    fig = _figure(1.0 + 3.6 * len(keys), 3.9)
    axs = fig.subplots(1, len(keys), squeeze=False)[0]
    handles: dict[str, Any] = {}
    for ax, key in zip(axs, keys):
        _plot_curves(ax, results, key)
        for h, lb in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lb, h)
    fig.legend(list(handles.values()), list(handles), loc="outside lower center", ncols=min(len(handles), 4),
               fontsize=8)
    return fig


def cost_figure(results: dict[str, Any]) -> Figure | None:
    """Wall time and peak memory of each method's selected run: horizontal bars, mean ± std over seeds."""
    methods = method_names(results)
    data = {c: [stat(results, m, c) for m in methods] for c, _ in COSTS}
    if not any(v is not None for vals in data.values() for v in vals):
        return None
    fig = _figure(9.0, 1.4 + 0.42 * len(methods))
    axs = fig.subplots(1, len(COSTS), sharey=True, squeeze=False)[0]
    for ax, (key, title) in zip(axs, COSTS):
        for i, (m, v) in enumerate(zip(methods, data[key])):
            if v is not None:
                ax.barh(i, v[0], xerr=v[1], height=0.6, color=_color(results, m), capsize=3,
                        error_kw={"elinewidth": 1}, zorder=3)
        ax.set_yticks(range(len(methods)), [_text(m) for m in methods])
        ax.set_xlabel(title)
        ax.grid(axis="x", alpha=0.3, zorder=0)
    axs[0].invert_yaxis()
    fig.suptitle("cost of the selected run per method (mean ± std over seeds)", fontsize=11)
    return fig


def study_figure(results: dict[str, Any]) -> Figure | None:
    """The suite's study scatter (``results["study"]["scatter"]``: x/y labels, title, name -> [x, y]): e.g. RF-JSD
    against JSD to the retrained model, one point per method."""
    spec = (results.get("study") or {}).get("scatter")
    if not isinstance(spec, dict):
        return None
    pts = [(str(m), _num(p[0]), _num(p[1])) for m, p in (spec.get("points") or {}).items()
           if isinstance(p, (list, tuple)) and len(p) == 2]
    pts = [(m, x, y) for m, x, y in pts if x is not None and y is not None]
    if len(pts) < 2:
        return None
    fig = _figure(6.6, 4.6)
    ax = fig.add_subplot()
    for i, (m, x, y) in enumerate(pts):
        color = _color(results, m)
        ax.plot(x, y, "o", color=color, ms=7, zorder=3)
        dx, dy = _LABEL_OFFSETS[i % len(_LABEL_OFFSETS)]
        ax.annotate(_text(m), (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=8.5, color=color)
    ax.set_xlabel(_text(spec.get("x", "x")))
    ax.set_ylabel(_text(spec.get("y", "y")))
    ax.set_title(_text(spec.get("title", "")), fontsize=11)
    ax.margins(0.18)
    ax.grid(alpha=0.3)
    return fig


FIGURES: tuple[tuple[str, Callable[[dict[str, Any]], Figure | None]], ...] = (
    ("tradeoff", tradeoff_figure),
    ("groups", groups_figure),
    ("curves", curves_figure),
    ("cost", cost_figure),
    ("study", study_figure),
)
FIGURE_NAMES = tuple(name for name, _ in FIGURES)


def figure_png(fig: Figure) -> bytes:
    """PNG bytes of ``fig`` with no software/date metadata, so equal inputs give equal bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, metadata={"Software": None})
    return buf.getvalue()


def available_figures(results: dict[str, Any]) -> list[str]:
    """Names of the figures ``results`` has data for (built, not encoded)."""
    return [name for name, make in FIGURES if make(results) is not None]


def render_figures(results: dict[str, Any]) -> dict[str, bytes]:
    """Every figure with data, name -> PNG bytes, in ``FIGURE_NAMES`` order."""
    out: dict[str, bytes] = {}
    for name, make in FIGURES:
        fig = make(results)
        if fig is not None:
            out[name] = figure_png(fig)
    return out


def figure_caption(results: dict[str, Any], name: str) -> str:
    """A one-sentence caption for figure ``name`` (plain text)."""
    axes = results.get("axes") or {}
    fx = column(results, axes.get("forget", "?")).get("label", "?")
    fy = column(results, axes.get("utility", "?")).get("label", "?")
    captions = {
        "tradeoff": f"{fx} (forgetting) against {fy} (utility) per method; the square is the model before "
                    "unlearning. Points are means over seeds, bars ±1 std.",
        "groups": f"{(results.get('groups') or {}).get('title', 'per group')}: one bar per model, mean over "
                  "seeds with ±1 std.",
        "curves": "Unlearning curves of each method's selected run: mean over seeds (line) and ±1 std (band); "
                  "n = seeds with the same logged epochs.",
        "cost": "Wall time and peak memory of each method's selected run, mean over seeds with ±1 std "
                "(the hyper-parameter search costs more; see the cost table).",
        "study": str(((results.get("study") or {}).get("scatter") or {}).get("caption", "")),
    }
    return captions.get(name, name)
