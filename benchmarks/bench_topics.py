"""Anchor-word topic model benchmark: deletion cost vs corpus size, vs retraining, fit vs scikit-learn LDA, memory.

Everything is measured in one run, side by side, on planted corpora (``planted_corpus``: n_words=1000, n_topics=10,
doc_length=10, beta=1.0, seed 0):

1. Deletion time vs corpus size m (default 1e4, 1e5, 1e6): a fixed forget set (default 10 documents of the corpus,
   drawn with a fixed seed) deleted with ``mode="exact"`` and ``mode="certified"`` (epsilon=1, delta=1e-5,
   fallback=True: a refused certificate is replaced by an exact recompute, reported as "fell back"). Each repeat
   deletes from a fresh ``copy.deepcopy`` of the fitted model (copy time excluded, but printed: ``unlearned()``
   pays it). Median of the repeats; the ratio of the largest-m to the smallest-m deletion time should be ~1
   (the cost of deletion is meant to be independent of m). Also the fit time and ``statistics_.without`` alone.
2. Deletion vs retraining from scratch at m = 1e5 (``--retrain-m``): ``AnchorTopicModel(n_topics=10).fit`` on the
   remaining documents (median of the repeats) against the exact and certified deletion. Goal >= 1000x. Both sides
   are broken into their pieces (building G with ``cooccurrence_sum``, the hash multiset, row normalisation,
   FastAnchorWords and its clean-up pass, RecoverL2 = ``solve_words``, ``recover_topics``; for certified: the noise
   calibration, the Newton update and the release), timed by calling the library functions the way ``learn`` /
   ``relearn`` / ``unlearn`` do.
3. Fit time next to scikit-learn's ``LatentDirichletAllocation(n_components=10, learning_method="batch",
   max_iter=10, random_state=0, n_jobs=1)`` on the same corpus (m = 1e4 and 1e5; --quick: 1e4 only, LDA takes
   ~3 min at 1e5 on 2 cores), one LDA fit each, and both models' topic-recovery error: the mean L1 distance between
   planted and learned topic-word distributions, topics matched by ``linear_sum_assignment``.
4. Memory of the statistic G (n x n): 8 n^2 / 4 n^2 bytes for float64 / float32 at n = 1000..20000, the measured
   ``statistics_.G.nbytes``, the peak transient memory of one exact deletion (tracemalloc, in units of G) and the
   per-document cost of the content-hash multiset kept for validating deletion requests.

``--profile`` adds cProfile listings of one exact and one certified deletion at the largest m and of the retrain.

Run it on an otherwise idle machine: with 2 BLAS threads on 2 cores, one competing process makes every BLAS call
wait for a descheduled thread, and the m-independent learner (anchors, RecoverL2) slows down 5-10x.

Usage: python benchmarks/bench_topics.py [--quick] [--sizes M ...] [--repeats N] [--forget K] [--threads K]
                                         [--profile] [--json PATH]
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import json
import os
import pstats
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import LatentDirichletAllocation

from obliviate.certified.deletion import CertificationRefused, PrivacyState, certified_update, release
from obliviate.data.documents import planted_corpus
from obliviate.models.anchors import fast_anchor_words, row_normalise
from obliviate.models.topic import AnchorTopicModel
from obliviate.models.topic_learn import (
    LearnerParams,
    TopicSolution,
    candidates,
    recover_topics,
    relearn,
    solve_words,
)
from obliviate.models.topic_stats import (
    CorpusStatistics,
    HashMultiset,
    as_counts,
    check_lengths,
    cooccurrence_sum,
    doc_frequency,
    doc_hash_arrays,
    doc_hashes,
)

N_WORDS, N_TOPICS, DOC_LENGTH, BETA = 1000, 10, 10, 1.0
EPSILON, DELTA = 1.0, 1e-5
CERTIFIED = {"epsilon": EPSILON, "delta": DELTA, "fallback": True, "random_state": 0}
LDA_KW = {"n_components": N_TOPICS, "learning_method": "batch", "max_iter": 10, "random_state": 0, "n_jobs": 1}
MEMORY_WORDS = (1000, 2000, 5000, 20000)
MODES = ("exact", "certified")


# --- helpers --------------------------------------------------------------------------------------------------------
def timed(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Median wall seconds of ``repeats`` calls of ``fn`` and the last call's result."""
    secs, out = [], None
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        out = fn()
        secs.append(time.perf_counter() - t0)
    return statistics.median(secs), out


def forget_rows(m: int, k: int, seed: int = 1) -> np.ndarray:
    """``k`` distinct document ids of a corpus of ``m`` documents, sorted (fixed seed: the same set every run)."""
    return np.sort(np.random.default_rng(seed).choice(m, size=k, replace=False))


def remaining(X: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """``X`` without the documents ``rows``."""
    keep = np.ones(X.shape[0], dtype=bool)
    keep[rows] = False
    return X[keep]


def topic_l1_error(planted: np.ndarray, learned: np.ndarray) -> float:
    """Mean L1 distance between planted topics (n, r) columns and learned topics (r, n) rows (each normalised to a
    distribution), topics matched one-to-one by ``linear_sum_assignment`` on the L1 cost."""
    est = learned / learned.sum(axis=1, keepdims=True)
    cost = np.abs(planted.T[:, None, :] - est[None, :, :]).sum(axis=2)  # (r_planted, r_learned)
    i, j = linear_sum_assignment(cost)
    return float(cost[i, j].mean())


def short(text: str | None, width: int = 70) -> str:
    """One-line excerpt of a (fallback) message."""
    if not text:
        return "-"
    return text if len(text) <= width else text[: width - 3] + "..."


def hashes_bytes(hashes: Any) -> int:
    """Bytes of the content-hash multiset: its arrays (HashMultiset), or for a dict of tuples the dict plus every
    key tuple and its two ints."""
    if hasattr(hashes, "h1"):
        return int(hashes.h1.nbytes + hashes.h2.nbytes + hashes.count.nbytes)
    total = sys.getsizeof(hashes)
    for key in hashes:
        total += sys.getsizeof(key) + sys.getsizeof(key[0]) + sys.getsizeof(key[1])
    return total


def blas_threads() -> str:
    """The BLAS libraries numpy/scipy use and their thread counts (via threadpoolctl, a scikit-learn dependency)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - scikit-learn always brings it
        return "unknown"
    return ", ".join(f"{d.get('internal_api')}:{d.get('num_threads')}" for d in threadpool_info()) or "none"


def other_cpu_seconds() -> float | None:
    """CPU seconds all processes other than this one have used so far (system busy time from /proc/stat minus our
    own user+system time); the difference over a run shows whether something competed for the cores."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(v) for v in fields]
    busy = sum(ticks[:8]) - ticks[3] - ticks[4]  # user nice system idle iowait irq softirq steal: minus idle/iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK") - (own.user + own.system)


def to_jsonable(obj: Any) -> Any:
    """numpy scalars/arrays and nested containers -> plain JSON types."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# --- 1. deletion vs m -------------------------------------------------------------------------------------------------
def time_deletion(model: AnchorTopicModel, Xf: sp.csr_matrix, mode: str, repeats: int) -> dict[str, Any]:
    """Median wall seconds of ``unlearn(Xf, mode)`` on fresh deep copies of ``model`` (copy time measured apart)."""
    kw = CERTIFIED if mode == "certified" else {}
    secs, copies, fallbacks, rec = [], [], 0, {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        twin = copy.deepcopy(model)
        t1 = time.perf_counter()
        rec = twin.unlearn(Xf, mode=mode, **kw)
        secs.append(time.perf_counter() - t1)
        copies.append(t1 - t0)
        fallbacks += bool(rec.get("fallback"))
    return {"seconds": statistics.median(secs), "all_seconds": secs, "record_seconds": rec["seconds"],
            "deepcopy_seconds": statistics.median(copies), "fell_back": fallbacks, "repeats": repeats,
            "fallback_reason": rec.get("fallback"), "rows_resolved": rec.get("rows_resolved"),
            "rows_updated": rec.get("rows_updated"), "anchors_changed": rec.get("anchors_changed"),
            "words_touched": rec.get("words_touched")}


def bench_size(m: int, k: int, repeats: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Corpus of ``m`` documents: fit time, ``without`` time, exact + certified deletion. Returns (results, objects)."""
    t0 = time.perf_counter()
    corpus = planted_corpus(m, N_WORDS, N_TOPICS, doc_length=DOC_LENGTH, beta=BETA, seed=0)
    gen = time.perf_counter() - t0
    X = corpus.counts
    fit_s, model = timed(lambda: AnchorTopicModel(n_topics=N_TOPICS).fit(X), repeats)
    rows = forget_rows(m, k)
    Xf = X[rows]
    without_s, _ = timed(lambda: model.statistics_.without(as_counts(Xf, N_WORDS)), repeats)
    res: dict[str, Any] = {"m": m, "nnz": int(X.nnz), "generate_seconds": gen, "fit_seconds": fit_s,
                           "without_seconds": without_s}
    for mode in MODES:
        res[mode] = time_deletion(model, Xf, mode, repeats)
    fb = res["certified"]
    print(f"[m={m:>9,}] gen {gen:6.2f}s  fit {fit_s:7.3f}s  without() {without_s:6.3f}s  "
          f"exact {res['exact']['seconds']:6.3f}s  certified {fb['seconds']:6.3f}s "
          f"(fell back {fb['fell_back']}/{fb['repeats']})  deepcopy {res['exact']['deepcopy_seconds']:6.3f}s")
    return res, {"corpus": corpus, "model": model, "rows": rows}


# --- 2. pieces of retraining and of deletion ------------------------------------------------------------------------
def learn_pieces(stats: CorpusStatistics, p: LearnerParams, repeats: int, prefix: str = "",
                 old: TopicSolution | None = None, rows: np.ndarray | None = None) -> dict[str, float]:
    """Time the learner's steps on ``stats`` as ``learn`` runs them (``old`` None: every word solved) or as
    ``relearn`` does (only ``rows`` re-solved, the other rows of C taken from ``old``)."""
    out: dict[str, float] = {}
    out[f"{prefix}row_normalise"], qbar = timed(lambda: row_normalise(stats.G), repeats)
    cand = candidates(stats, p)
    cand_rows = qbar[cand]
    out[f"{prefix}anchors_greedy"], _ = timed(lambda: fast_anchor_words(cand_rows, p.n_topics, cleanup=False), repeats)
    full, idx = timed(lambda: fast_anchor_words(cand_rows, p.n_topics, cleanup=p.anchor_cleanup), repeats)
    out[f"{prefix}anchors_cleanup"] = max(full - out[f"{prefix}anchors_greedy"], 0.0)
    anchors = cand[idx]
    words = np.arange(stats.n_words) if rows is None else rows
    out[f"{prefix}recover_l2"], (C_rows, _, _) = timed(lambda: solve_words(qbar, anchors, words, p), repeats)
    C = C_rows
    if old is not None:
        C = old.C.copy()
        C[words] = C_rows
    out[f"{prefix}recover_topics"], _ = timed(lambda: recover_topics(stats, anchors, C, p.topic_cooccurrence), repeats)
    return out


def retrain_pieces(X_rem: sp.csr_matrix, repeats: int) -> dict[str, float]:
    """The pieces of ``AnchorTopicModel.fit`` on the remaining documents."""
    p = LearnerParams(N_TOPICS)
    out: dict[str, float] = {}
    out["as_counts"], counts = timed(lambda: as_counts(X_rem), repeats)
    out["check_lengths"], _ = timed(lambda: check_lengths(counts), repeats)
    out["build_G"], G = timed(lambda: cooccurrence_sum(counts), repeats)
    out["doc_frequency"], df = timed(lambda: doc_frequency(counts), repeats)
    out["hash_multiset"], hashes = timed(lambda: HashMultiset.of(*doc_hash_arrays(counts)), repeats)
    stats = CorpusStatistics(G, int(counts.shape[0]), df, hashes)
    out.update(learn_pieces(stats, p, repeats))
    return out


def deletion_pieces(model: AnchorTopicModel, Xf: sp.csr_matrix, repeats: int
                    ) -> tuple[dict[str, float], dict[str, float]]:
    """The pieces of ``unlearn`` for ``Xf`` on ``model``'s statistics: (exact path, certified extras). Names with a
    dot are parts of the preceding ``*_total``."""
    p = LearnerParams(N_TOPICS)
    stats = model.statistics_
    old = model._solution  # the pre-noise solution relearn/certified_update start from (internal, read-only)
    out: dict[str, float] = {}
    out["as_counts"], counts = timed(lambda: as_counts(Xf, N_WORDS), repeats)
    out["without_total"], (new, touched) = timed(lambda: stats.without(counts), repeats)

    def hash_check() -> list[tuple[int, int]]:  # validation of the request: O(deleted documents)
        want = Counter(doc_hashes(counts))
        return [h for h, c in want.items() if stats.contains(h) < c]

    out["without.hash_check"], _ = timed(hash_check, repeats)
    out["without.G_copy"], G = timed(stats.G.copy, repeats)

    def block_update() -> None:  # the deleted documents' pairs, subtracted on the touched words' block
        t = np.unique(counts.indices)
        G[np.ix_(t, t)] -= cooccurrence_sum(counts[:, t].tocsr(), G.dtype)

    out["without.G_block_update"], _ = timed(block_update, repeats)
    out["relearn_total"], (_, info) = timed(lambda: relearn(new, touched, old, p), repeats)
    rows = None if info["rows_resolved"] == new.n_words else np.union1d(touched, np.flatnonzero(~old.exact))
    out.update(learn_pieces(new, p, repeats, "relearn.", old, rows))

    def commit_on_copy() -> float:  # applying the pending deletions to the (shared) hash multiset, on a copy
        twin = copy.deepcopy(new)  # O(m), not timed
        t0 = time.perf_counter()
        twin.commit()
        return time.perf_counter() - t0

    out["commit(hash multiset)"] = statistics.median(commit_on_copy() for _ in range(max(1, repeats)))

    cert: dict[str, float] = {}
    cert["noise_calibration"], priv = timed(
        lambda: PrivacyState.create(EPSILON, DELTA, 0.01, model.components_.size), repeats)

    def newton() -> TopicSolution | None:
        try:
            return certified_update(new, touched, old, p)[0]
        except CertificationRefused:
            return None

    cert["newton_update(anchors+newton)"], sol = timed(newton, repeats)
    sol = sol if sol is not None else old
    cert["release(noise)"], _ = timed(
        lambda: release(sol, new, priv.sigma, p.topic_cooccurrence, np.random.default_rng(0)), repeats)
    return out, cert


def bench_retrain(objs: dict[str, Any], res: dict[str, Any], repeats: int) -> dict[str, Any]:
    """Retrain-from-scratch on the remaining documents vs the deletion times of ``res``, plus both breakdowns."""
    X, rows, model = objs["corpus"].counts, objs["rows"], objs["model"]
    X_rem = remaining(X, rows)
    retrain_s, _ = timed(lambda: AnchorTopicModel(n_topics=N_TOPICS).fit(X_rem), repeats)
    exact, cert = deletion_pieces(model, X[rows], repeats)
    return {"m": res["m"], "retrain_seconds": retrain_s, "exact_seconds": res["exact"]["seconds"],
            "certified_seconds": res["certified"]["seconds"],
            "speedup_exact": retrain_s / res["exact"]["seconds"],
            "speedup_certified": retrain_s / res["certified"]["seconds"],
            "retrain_pieces": retrain_pieces(X_rem, repeats), "exact_pieces": exact, "certified_pieces": cert}


# --- 3. LDA ---------------------------------------------------------------------------------------------------------
def bench_lda(objs: dict[str, Any], res: dict[str, Any]) -> dict[str, Any]:
    """One scikit-learn LDA fit on the same corpus; fit-time ratio and both topic-recovery errors."""
    corpus, model = objs["corpus"], objs["model"]
    t0 = time.perf_counter()
    lda = LatentDirichletAllocation(**LDA_KW).fit(corpus.counts)
    lda_s = time.perf_counter() - t0
    ours_err = topic_l1_error(corpus.topics, model.components_)
    lda_err = topic_l1_error(corpus.topics, lda.components_)
    out = {"m": res["m"], "anchor_fit_seconds": res["fit_seconds"], "lda_fit_seconds": lda_s,
           "lda_over_anchor": lda_s / res["fit_seconds"], "anchor_topic_l1": ours_err, "lda_topic_l1": lda_err}
    print(f"[lda m={res['m']:>9,}] LDA fit {lda_s:7.2f}s vs anchor fit {res['fit_seconds']:.3f}s "
          f"({out['lda_over_anchor']:.0f}x); topic L1 error anchor {ours_err:.3f}, LDA {lda_err:.3f}")
    return out


# --- 4. memory ------------------------------------------------------------------------------------------------------
def bench_memory(objs: dict[str, Any], k: int) -> dict[str, Any]:
    """Computed G sizes, measured G bytes, peak transient bytes of one exact deletion, hash multiset bytes/doc."""
    model, X, rows = objs["model"], objs["corpus"].counts, objs["rows"]
    twin = copy.deepcopy(model)
    tracemalloc.start()
    twin.unlearn(X[rows], mode="exact")
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    G = model.statistics_.G
    hb = hashes_bytes(model.statistics_.hashes)
    return {"computed": {n: {"float64": 8 * n * n, "float32": 4 * n * n} for n in MEMORY_WORDS},
            "measured_G_nbytes": int(G.nbytes), "G_dtype": str(G.dtype), "n_words": int(G.shape[0]),
            "exact_deletion_peak_bytes": int(peak), "exact_deletion_peak_in_G": peak / G.nbytes,
            "hash_multiset_bytes": hb, "hash_bytes_per_doc": hb / model.n_docs_, "m": int(model.n_docs_),
            "forget": k}


# --- profiling ------------------------------------------------------------------------------------------------------
def profile_lines(fn: Callable[[], Any], top: int = 14) -> list[str]:
    """cProfile ``fn``; the ``top`` entries by cumulative time as 'cum  tot  calls  file:line(func)'."""
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    st = pstats.Stats(prof)
    rows = sorted(st.stats.items(), key=lambda kv: -kv[1][3])  # type: ignore[attr-defined]
    lines = []
    for (path, line, func), (_, ncalls, tot, cum, _) in rows[:top]:
        where = f"{Path(path).name}:{line}({func})" if line else func
        lines.append(f"{cum:8.3f} {tot:8.3f} {ncalls:7d}  {where}")
    return lines


def run_profiles(objs: dict[str, Any], retrain_objs: dict[str, Any] | None) -> dict[str, list[str]]:
    """Profiles of one exact and one certified deletion at the largest m, and of the retrain fit."""
    model, X, rows = objs["model"], objs["corpus"].counts, objs["rows"]
    out = {}
    for mode in MODES:
        twin = copy.deepcopy(model)
        kw = CERTIFIED if mode == "certified" else {}
        out[f"{mode} deletion, m={model.n_docs_:,}"] = profile_lines(partial(twin.unlearn, X[rows], mode=mode, **kw))
    if retrain_objs is not None:
        X_rem = remaining(retrain_objs["corpus"].counts, retrain_objs["rows"])
        out[f"retrain fit, m={X_rem.shape[0]:,}"] = profile_lines(
            lambda: AnchorTopicModel(n_topics=N_TOPICS).fit(X_rem))
    return out


# --- main -----------------------------------------------------------------------------------------------------------
def print_pieces(title: str, pieces: dict[str, float], total: float) -> None:
    """A breakdown table: seconds and share of ``total`` per piece."""
    print(f"  {title} (measured total {total:.4f}s):")
    for name, sec in pieces.items():
        label = "  " + name.split(".", 1)[1] if "." in name else name
        print(f"    {label:32s} {sec:9.4f}s  {100 * sec / total:6.1f}%")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="m = 1e4, 1e5, 1 repeat, LDA at 1e4 only (< 1 min)")
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="corpus sizes (default 1e4 1e5 1e6)")
    ap.add_argument("--repeats", type=int, default=None, help="repeats per timing, median kept (default 3, quick 1)")
    ap.add_argument("--forget", type=int, default=10, help="documents deleted per deletion (default 10)")
    ap.add_argument("--retrain-m", type=int, default=100_000, help="corpus size of the retrain comparison")
    ap.add_argument("--lda-sizes", type=int, nargs="*", default=None,
                    help="corpus sizes for the LDA comparison (default 1e4 1e5; quick 1e4)")
    ap.add_argument("--threads", type=int, default=None,
                    help="BLAS/OpenMP threads (threadpoolctl; default: the libraries' own, 2 on 2 cores)")
    ap.add_argument("--profile", action="store_true", help="also print cProfile listings of deletion and retrain")
    ap.add_argument("--json", type=Path, default=None, help="also write the results as JSON here")
    args = ap.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=args.threads)
    sizes = args.sizes or ([10_000, 100_000] if args.quick else [10_000, 100_000, 1_000_000])
    repeats = args.repeats or (1 if args.quick else 3)
    lda_sizes = args.lda_sizes if args.lda_sizes is not None else ([10_000] if args.quick else [10_000, 100_000])
    lda_sizes = [m for m in lda_sizes if m in sizes]
    load0 = os.getloadavg()[0]
    print(f"numpy {np.__version__}, BLAS threads {blas_threads()}, cpus {os.cpu_count()}, load avg (1 min) "
          f"{load0:.2f}; n_words={N_WORDS}, n_topics={N_TOPICS}, doc_length={DOC_LENGTH}, beta={BETA}, "
          f"forget {args.forget} docs, {repeats} repeat(s)")

    t_start, other0 = time.perf_counter(), other_cpu_seconds()
    sizes_res, lda_res, objs_by_m = [], [], {}
    retrain_res = None
    for m in sorted(sizes):
        res, objs = bench_size(m, args.forget, repeats)
        sizes_res.append(res)
        if m == args.retrain_m:
            retrain_res = bench_retrain(objs, res, repeats)
            print(f"[retrain m={m:,}] retrain {retrain_res['retrain_seconds']:.3f}s vs exact "
                  f"{res['exact']['seconds']:.3f}s ({retrain_res['speedup_exact']:.1f}x), certified "
                  f"{res['certified']['seconds']:.3f}s ({retrain_res['speedup_certified']:.1f}x)")
        # keep what later sections need: the largest corpus (memory, profiles), the retrain one, the LDA ones
        objs_by_m = {k: v for k, v in objs_by_m.items() if k == args.retrain_m or k in lda_sizes}
        objs_by_m[m] = objs
    largest = objs_by_m[max(sizes)]
    mem = bench_memory(largest, args.forget)
    profiles = run_profiles(largest, objs_by_m.get(args.retrain_m)) if args.profile else {}
    # LDA last: its minutes of single-threaded work would otherwise spread the short timings above over a long
    # window in which a competing process is more likely to show up
    t_anchor, other_mid = time.perf_counter() - t_start, other_cpu_seconds()
    for r in sizes_res:
        if r["m"] in lda_sizes:
            lda_res.append(bench_lda(objs_by_m[r["m"]], r))
    load1 = os.getloadavg()[0]
    total = time.perf_counter() - t_start
    other1 = other_cpu_seconds()
    others = other1 - other0 if other0 is not None and other1 is not None else None

    print(f"\n== 1. deletion time vs corpus size (forget {args.forget} docs, median of {repeats}, "
          f"load avg {load0:.2f} -> {load1:.2f}) ==")
    print(f"  {'m':>10s} {'fit s':>8s} {'without s':>10s} {'exact s':>9s} {'certified s':>12s} {'fell back':>10s} "
          f"{'rows re-solved':>15s} {'deepcopy s':>11s} {'fit/exact':>10s}")
    for r in sizes_res:
        c = r["certified"]
        print(f"  {r['m']:>10,} {r['fit_seconds']:8.3f} {r['without_seconds']:10.4f} {r['exact']['seconds']:9.4f} "
              f"{c['seconds']:12.4f} {c['fell_back']:>6d}/{c['repeats']:<3d} "
              f"{r['exact']['rows_resolved']!s:>15s} {r['exact']['deepcopy_seconds']:11.3f} "
              f"{r['fit_seconds'] / r['exact']['seconds']:9.1f}x")
    lo, hi = sizes_res[0], sizes_res[-1]
    scaling = {"m_ratio": hi["m"] / lo["m"], "fit": hi["fit_seconds"] / lo["fit_seconds"],
               "without": hi["without_seconds"] / lo["without_seconds"]}
    for mode in MODES:
        scaling[mode] = hi[mode]["seconds"] / lo[mode]["seconds"]
    print(f"  largest/smallest m ({scaling['m_ratio']:.0f}x more documents): exact {scaling['exact']:.2f}x, "
          f"certified {scaling['certified']:.2f}x, without() {scaling['without']:.2f}x (flat = 1), "
          f"fit {scaling['fit']:.1f}x")
    print("  (fit/exact: fitting all m documents ~ retraining on the m - forget remaining ones, over exact deletion)")
    for r in sizes_res:
        print(f"  certified fallback at m={r['m']:,}: {short(r['certified']['fallback_reason'], 100)}")

    if retrain_res is not None:
        rr = retrain_res
        print(f"\n== 2. deletion vs retraining from scratch at m={rr['m']:,} ==")
        print(f"  retrain {rr['retrain_seconds']:.4f}s   exact {rr['exact_seconds']:.4f}s "
              f"-> {rr['speedup_exact']:.1f}x   certified {rr['certified_seconds']:.4f}s "
              f"-> {rr['speedup_certified']:.1f}x   (goal >= 1000x)")
        print_pieces("retrain = fit on the remaining documents", rr["retrain_pieces"], rr["retrain_seconds"])
        print_pieces("exact deletion", rr["exact_pieces"], rr["exact_seconds"])
        print_pieces("certified deletion = without + these (+ relearn when it falls back)", rr["certified_pieces"],
                     rr["certified_seconds"])
        learner = sum(v for k, v in rr["retrain_pieces"].items() if k.startswith(("row_", "anchors", "recover")))
        print(f"  the learner run on the statistics (anchors + RecoverL2 + topics) alone costs {learner:.4f}s, "
              f"independent of m: it bounds the speed-up of any deletion that re-runs it at "
              f"{rr['retrain_seconds'] / learner:.1f}x at this m")

    if lda_res:
        print("\n== 3. fit time vs scikit-learn LDA (batch, max_iter=10, n_jobs=1), topic L1 error vs planted ==")
        print(f"  {'m':>10s} {'anchor fit s':>13s} {'LDA fit s':>10s} {'LDA/anchor':>11s} {'anchor L1':>10s} "
              f"{'LDA L1':>8s}")
        for r in lda_res:
            print(f"  {r['m']:>10,} {r['anchor_fit_seconds']:13.3f} {r['lda_fit_seconds']:10.2f} "
                  f"{r['lda_over_anchor']:10.0f}x {r['anchor_topic_l1']:10.3f} {r['lda_topic_l1']:8.3f}")

    print("\n== 4. memory of the statistic G (n x n) ==")
    for n, b in mem["computed"].items():
        print(f"  n={n:>6,}: float64 {b['float64'] / 2**20:9.1f} MiB   float32 {b['float32'] / 2**20:9.1f} MiB")
    print(f"  measured statistics_.G.nbytes (n={mem['n_words']}, {mem['G_dtype']}): {mem['measured_G_nbytes']:,} "
          f"bytes; peak transient of one exact deletion {mem['exact_deletion_peak_bytes'] / 2**20:.1f} MiB "
          f"= {mem['exact_deletion_peak_in_G']:.1f} x G")
    print(f"  content-hash multiset at m={mem['m']:,}: {mem['hash_multiset_bytes'] / 2**20:.1f} MiB "
          f"({mem['hash_bytes_per_doc']:.0f} bytes/document; grows with m, unlike G)")

    for title, lines in profiles.items():
        print(f"\n== profile: {title} (cumulative s, own s, calls) ==")
        for line in lines:
            print("  " + line)
    print(f"\n  total benchmark wall time {total:.1f}s", end="")
    if others is not None:
        print(f"; other processes used {others:.1f} CPU-s meanwhile ({100 * others / total:.0f}% of one core)")
        before = other_mid - other0 if other_mid is not None and other0 is not None else others
        print(f"  of which {before:.1f} CPU-s during the anchor-model sections 1, 2, 4 ({t_anchor:.1f}s, "
              f"{100 * before / t_anchor:.0f}% of one core), the rest during the LDA fits")
        if before > 0.1 * t_anchor:
            print("  NOTE: other processes competed for the CPU during the anchor-model sections: with 2 BLAS threads "
                  "each small BLAS call can then wait a scheduler quantum; those timings are noisy (try --threads 1).")
        if others - before > 0.1 * max(total - t_anchor, 1e-9):
            print("  NOTE: other processes competed for the CPU during the LDA fits; the LDA times may be inflated.")
    else:
        print()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(to_jsonable({
            "config": {"sizes": sizes, "repeats": repeats, "forget": args.forget, "n_words": N_WORDS,
                       "n_topics": N_TOPICS, "doc_length": DOC_LENGTH, "beta": BETA, "lda": LDA_KW},
            "load_avg": [load0, load1], "sizes": sizes_res, "scaling": scaling, "retrain": retrain_res,
            "lda": lda_res, "memory": mem, "profiles": profiles, "total_seconds": total,
            "other_cpu_seconds": others, "anchor_sections_seconds": t_anchor,
            "other_cpu_seconds_anchor_sections": None if None in (other_mid, other0) else other_mid - other0}),
            indent=2))
        print(f"  results written to {args.json}")


if __name__ == "__main__":
    main()
