"""The bench report (figures, markdown, HTML) rendered from a small hand-written results dict."""

from __future__ import annotations

import base64
import copy
import statistics
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from obliviate.report.bench_markdown import render_bench_markdown, render_bench_table
from obliviate.report.html import render_bench_html
from obliviate.report.plots import available_figures, render_figures, tradeoff_figure
from obliviate.report.write import write_bench_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLUMNS = [
    {"key": "percent_memorized", "label": "% memorized", "higher_is_better": False, "digits": 1},
    {"key": "mem_dup_1x", "label": "% mem dup_1x", "higher_is_better": False, "digits": 1},
    {"key": "mem_dup_10x", "label": "% mem dup_10x", "higher_is_better": False, "digits": 1},
    {"key": "mem_dup_100x", "label": "% mem dup_100x", "higher_is_better": False, "digits": 1},
    {"key": "percent_correct", "label": "% correct", "higher_is_better": True, "digits": 1},
    {"key": "mean_accuracy", "label": "mean acc", "higher_is_better": True, "digits": 2},
]
KEYS = [c["key"] for c in COLUMNS]
GRIDS = {"balanced_subnet": [{"ratio": 0.25, "epochs": 10}, {"ratio": 0.5, "epochs": 10}],
         "grad_ascent": [{"lr": 0.001, "schedule": "<b>cos</b>"}, {"lr": 0.01, "schedule": "flat"}]}


def _scalars(base: float, seed: int) -> dict[str, float | None]:
    return {"percent_memorized": base + 3 * seed, "mem_dup_1x": base / 4 + seed, "mem_dup_10x": base / 2 + 2 * seed,
            "mem_dup_100x": base + 5 * seed, "percent_correct": 40.0 - base / 10 + seed, "mean_accuracy": 95.1 - seed}


def _trial(method: int, point: int, seed: int, selected: bool) -> dict[str, Any]:
    scalars = _scalars(4.0 + 6 * method + 5 * point, seed)
    if point == 1 and seed == 1:
        scalars["percent_correct"] = None  # an undefined metric in a trial that is not selected
    return {"point": list(GRIDS.values())[method][point], "score": round(-0.9 + 0.1 * method + 0.2 * point - 0.03 * seed, 3),
            "scalars": scalars, "cost": {"wall_s": 2.0 + method + 0.3 * seed + 0.1 * point, "peak_rss_mb": 850.0 + 10 * seed},
            "job": f"job-{method}{point}{seed}", "selected": selected}


def _method(method: int, seed: int) -> dict[str, Any]:
    trials = [_trial(method, p, seed, p == 0) for p in range(2)]
    logs = [{"epoch": e, "loss": 1.0 / e + 0.1 * seed + method, "forget_nll": 2.0 + e * (1 + method) + seed,
             "retain_nll": 0.5 + 0.01 * e * (1 + method)} for e in (1, 2, 3)]
    chosen = trials[0]
    return {"selected": chosen["point"], "score": chosen["score"], "scalars": chosen["scalars"], "logs": logs,
            "cost": chosen["cost"], "trials": trials}


def _summarize(values: list[float | None]) -> dict[str, Any]:
    vals = [v for v in values if v is not None]
    if not vals:
        return {"mean": None, "std": None, "ci95": None, "n": 0, "values": values}
    return {"mean": statistics.fmean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else 0.0, "ci95": None,
            "n": len(vals), "values": values}


def _summary(per_seed: dict[str, Any]) -> dict[str, Any]:
    seeds = list(per_seed.values())
    before = {k: _summarize([s["before"]["scalars"][k] for s in seeds]) for k in KEYS}
    before |= {c: _summarize([s["train"]["cost"][c] for s in seeds]) for c in ("wall_s", "peak_rss_mb")}
    methods = {}
    for m in GRIDS:
        rows = [s["methods"][m] for s in seeds]
        entry = {k: _summarize([r["scalars"][k] for r in rows]) for k in KEYS}
        entry |= {c: _summarize([r["cost"][c] for r in rows]) for c in ("wall_s", "peak_rss_mb")}
        entry["score"] = _summarize([r["score"] for r in rows])
        methods[m] = entry
    return {"before": before, "methods": methods}


def make_results() -> dict[str, Any]:
    """2 seeds, 2 methods with 2 grid points each, 3 duplication groups."""
    per_seed = {str(seed): {"before": {"scalars": _scalars(36.0, seed)},
                            "train": {"cost": {"wall_s": 40.2 + seed, "peak_rss_mb": 900.0}, "job": "train"},
                            "methods": {m: _method(i, seed) for i, m in enumerate(GRIDS)}} for seed in (0, 1)}
    return {
        "format": "obliviate-bench/1", "command": "bench", "suite": "tinymem", "suite_version": "1.1",
        "created_utc": "2026-11-23T22:00:00+00:00", "seeds": [0, 1],
        "executor": {"name": "process", "workers": 2, "threads_per_job": 1},
        "git_sha": "abc123", "git_dirty": False,
        "versions": {"python": "3.11.7", "obliviate": "0.2.0", "torch": "2.13.0", "platform": "Linux-x86_64"},
        "hashes": {"config": "f" * 64}, "config": {"suite": "tinymem", "seed": 0, "model": {"n_layer": 1}},
        "description": ["data: increment + noise, 40 artifacts", "model: 1 layer, 64-d"],
        "columns": COLUMNS, "axes": {"forget": "percent_memorized", "utility": "mean_accuracy"},
        "groups": {"title": "% memorized by duplication group", "keys": ["mem_dup_1x", "mem_dup_10x", "mem_dup_100x"],
                   "labels": ["1x", "10x", "100x"]},
        "score": {"name": "selection score", "rule": "relative mem change - relative acc change",
                  "higher_is_better": False},
        "per_seed": per_seed, "summary": _summary(per_seed),
    }


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.srcs.append(dict(attrs)["src"] or "")


def _img_srcs(page: str) -> list[str]:
    parser = _Images()
    parser.feed(page)
    parser.close()
    return parser.srcs


def _pm(st: dict[str, Any], digits: int) -> str:
    return f"{st['mean']:.{digits}f} ± {st['std']:.{digits}f}"


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    return make_results()


@pytest.fixture(scope="module")
def report(results: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    out = tmp_path_factory.mktemp("report")
    return out, write_bench_report(results, out)


def test_writes_every_file(report: tuple[Path, dict[str, Path]]) -> None:
    out, paths = report
    names = ["tradeoff", "groups", "curves", "cost"]
    assert list(paths) == [f"figures/{n}.png" for n in names] + ["report.md", "report.html"]
    assert all(p.is_file() and p.parent.is_relative_to(out) for p in paths.values())


def test_html_inlines_each_saved_png(report: tuple[Path, dict[str, Path]]) -> None:
    out, paths = report
    srcs = _img_srcs(paths["report.html"].read_text())
    pngs = sorted((out / "figures").glob("*.png"))
    assert len(srcs) == len(pngs) == 4
    prefix = "data:image/png;base64,"
    assert all(s.startswith(prefix) for s in srcs)
    decoded = [base64.b64decode(s[len(prefix):], validate=True) for s in srcs]
    assert all(d.startswith(PNG_SIGNATURE) for d in decoded)
    assert sorted(decoded) == sorted(p.read_bytes() for p in pngs)


def test_summary_numbers_in_html_and_markdown(results: dict[str, Any], report: tuple[Path, dict[str, Path]]) -> None:
    _, paths = report
    page, md = paths["report.html"].read_text(), paths["report.md"].read_text()
    summ = results["summary"]
    for name, entry in [("before", summ["before"]), *summ["methods"].items()]:
        cells = [_pm(entry[c["key"]], c["digits"]) for c in COLUMNS]
        cells.append("" if name == "before" else _pm(entry["score"], 3))
        wall = entry["wall_s"]["mean"]
        cells += [_pm(entry["wall_s"], 1 if wall >= 10 else 2 if wall >= 1 else 3), _pm(entry["peak_rss_mb"], 0)]
        assert f"| {name} | " + " | ".join(cells) + " |" in md.splitlines()
        html_row = f"<td>{name}</td>" + "".join(f'<td class="num">{c}</td>' for c in cells)
        assert html_row in page
    assert "% memorized&nbsp;↓" in page and "mean acc&nbsp;↑" in page and "| % correct ↑ |" in md


def test_selected_points_and_trials(results: dict[str, Any], report: tuple[Path, dict[str, Path]]) -> None:
    md = report[1]["report.md"].read_text()
    assert "| balanced_subnet | 1 | ratio=0.25, epochs=10 | -0.930 |" in md
    assert "| 1 | ratio=0.5, epochs=10 | -0.730 |  | 12.0 | 3.2 | 6.5 | 14.0 | n/a | 94.10 | 2.40 | 860 |" in md
    assert "| 0 | lr=0.001, schedule=&lt;b&gt;cos&lt;/b&gt; | -0.800 | ✓ | 10.0 |" in md


def test_ci95_shown_when_present(results: dict[str, Any]) -> None:
    res = copy.deepcopy(results)
    res["summary"]["methods"]["grad_ascent"]["mean_accuracy"].update(ci95=[93.123, 95.456], n=3)
    page, md = render_bench_html(res, {}), render_bench_markdown(res, [])
    st = res["summary"]["methods"]["grad_ascent"]["mean_accuracy"]
    assert f"{_pm(st, 2)} [93.12, 95.46]" in page
    assert f"{_pm(st, 2)} [93.12, 95.46]" in md


def test_absent_data_skips_figures(results: dict[str, Any]) -> None:
    res = copy.deepcopy(results)
    for seed in res["per_seed"].values():
        for entry in seed["methods"].values():
            entry["logs"] = []
    assert available_figures(res) == ["tradeoff", "groups", "cost"]
    del res["groups"], res["axes"]
    res["summary"]["methods"]["grad_ascent"]["wall_s"]["mean"] = None
    figures = render_figures(res)
    assert list(figures) == ["cost"]
    page = render_bench_html(res, figures)
    assert len(_img_srcs(page)) == 1 and "n/a" in page
    md = render_bench_markdown(res)
    assert "figures/cost.png" in md and "figures/curves.png" not in md


def test_null_metrics_render_na(results: dict[str, Any]) -> None:
    res = copy.deepcopy(results)
    for key in ("percent_memorized", "wall_s", "peak_rss_mb"):
        res["summary"]["methods"]["balanced_subnet"][key] = {"mean": None, "std": None, "ci95": None, "n": 0}
    assert tradeoff_figure(res) is not None  # the method without data is left out, the plot still renders
    row = render_bench_table(res).splitlines()[3]
    assert row.startswith("balanced_subnet") and row.count("n/a") == 3


def test_rendering_is_deterministic(results: dict[str, Any], report: tuple[Path, dict[str, Path]],
                                    tmp_path: Path) -> None:
    _, first = report
    second = write_bench_report(copy.deepcopy(results), tmp_path)
    assert [p.read_bytes() for p in first.values()] == [p.read_bytes() for p in second.values()]


def test_html_is_offline_and_escaped(report: tuple[Path, dict[str, Path]]) -> None:
    page = report[1]["report.html"].read_text()
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    assert "schedule=&lt;b&gt;cos&lt;/b&gt;" in page and "<b>cos</b>" not in page
    assert page.startswith("<!DOCTYPE html>")


def test_terminal_table(results: dict[str, Any]) -> None:
    lines = render_bench_table(results).splitlines()
    assert [ln.split()[0] for ln in lines[2:]] == ["before", "balanced_subnet", "grad_ascent"]
    assert _pm(results["summary"]["before"]["percent_memorized"], 1) in lines[2]
    assert len({len(ln) for ln in lines[:2]}) == 1
