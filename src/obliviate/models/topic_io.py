"""Save and load a fitted AnchorTopicModel (and an optional TopicHead) as a directory: ``topic_model.npz`` (arrays,
loaded with ``allow_pickle=False``: no code runs on load) + ``topic_model.json`` (parameters, records, metadata).
Written atomically; the document-hash multiset is kept, so a reloaded model still refuses unknown deletions."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.errors import ObliviateError
from obliviate.families.topic import TopicBundle

FORMAT = "obliviate-topic-model/1"


def _privacy_to_dict(privacy: Any) -> dict[str, Any] | None:
    if privacy is None:
        return None
    from dataclasses import asdict

    return asdict(privacy)


def _privacy_from_dict(d: dict[str, Any] | None) -> Any:
    if d is None:
        return None
    from obliviate.certified.deletion import PrivacyState

    return PrivacyState(**d)


def save_bundle(bundle: TopicBundle, path: str | Path, meta: dict[str, Any] | None = None,
                overwrite: bool = False) -> Path:
    from obliviate.io import _json_default, atomic_directory

    m, h = bundle.model, bundle.head
    sol, stats = m._solution, m.statistics_
    arrays = {"G": stats.G, "doc_freq": stats.doc_freq, "hash_hi": stats.hashes.h1, "hash_lo": stats.hashes.h2,
              "hash_count": stats.hashes.count,
              "residuals": sol.residuals if sol.residuals is not None else np.zeros(0),
              "anchors": sol.anchors, "C": sol.C, "gaps": sol.gaps, "exact": sol.exact, "A": sol.A, "R": sol.R,
              "components": m.components_, "topic_cooccurrence": m.topic_cooccurrence_,
              "word_topic_posterior": m.word_topic_posterior_}
    doc: dict[str, Any] = {"format": FORMAT, "params": m.get_params(), "m": stats.m, "converged": sol.converged,
                           "vocabulary": m.vocabulary_, "privacy": _privacy_to_dict(m.privacy_),
                           "deletions": m.deletions_, "meta": meta or {}, "head": None}
    if h is not None:
        arrays.update(head_theta=h.theta_, head_product=h.product_, head_intercept=np.array([h.intercept_]),
                      head_anchors=h.anchors_)
        doc["head"] = {"params": h.get_params(), "privacy": _privacy_to_dict(h.privacy_), "deletions": h.deletions_,
                       "components": h.components_source_}

    def fill(tmp: Path) -> None:
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        (tmp / "topic_model.npz").write_bytes(buf.getvalue())
        (tmp / "topic_model.json").write_text(json.dumps(doc, indent=1, default=_json_default))
        if meta:  # the run metadata every saved model of the suite pipeline carries (pipeline.load_trained)
            (tmp / "obliviate.json").write_text(json.dumps(meta, indent=2, default=_json_default))

    return atomic_directory(path, fill, overwrite=overwrite)


def load_bundle(path: str | Path) -> TopicBundle:
    from obliviate.certified.head import TopicHead
    from obliviate.models.topic import AnchorTopicModel
    from obliviate.models.topic_learn import TopicSolution
    from obliviate.models.topic_stats import CorpusStatistics, HashMultiset

    path = Path(path)
    if not (path / "topic_model.json").is_file() or not (path / "topic_model.npz").is_file():
        raise ObliviateError(f"{str(path)!r} is not a saved topic model (topic_model.json + topic_model.npz)")
    doc = json.loads((path / "topic_model.json").read_text())
    if doc.get("format") != FORMAT:
        raise ObliviateError(f"{str(path)!r} has format {doc.get('format')!r}, expected {FORMAT!r}")
    with np.load(path / "topic_model.npz", allow_pickle=False) as z:
        a = {k: z[k] for k in z.files}
    hashes = HashMultiset(a["hash_hi"], a["hash_lo"], a["hash_count"])
    stats = CorpusStatistics(a["G"], int(doc["m"]), a["doc_freq"], hashes)
    sol = TopicSolution(a["anchors"], a["C"], a["gaps"], a["exact"].astype(bool), a["A"], a["R"],
                        bool(doc["converged"]), a["residuals"] if a["residuals"].size else None)
    model = AnchorTopicModel(**doc["params"])
    model.vocabulary_ = doc["vocabulary"]
    model._commit(stats, sol, _privacy_from_dict(doc["privacy"]), doc["deletions"],
                  (a["components"].T, a["topic_cooccurrence"], a["word_topic_posterior"]))
    head = None
    if doc["head"] is not None:
        head = TopicHead(**doc["head"]["params"])
        theta = a["head_theta"]
        head.theta_, head.coef_, head.intercept_ = theta, theta[:-1].copy(), float(a["head_intercept"][0])
        head.product_ = a["head_product"]
        head.anchors_, head.components_source_ = a["head_anchors"], doc["head"]["components"]
        head.privacy_ = _privacy_from_dict(doc["head"]["privacy"])
        head.deletions_ = doc["head"]["deletions"]
    return TopicBundle(model, head)


def bundle_hash(bundle: TopicBundle) -> str:
    """Content hash of what the bundle releases and keeps (for results provenance)."""
    import hashlib

    h = hashlib.sha256()
    m = bundle.model
    for arr in (m.statistics_.G, m._solution.C, m.components_, m.topic_cooccurrence_):
        h.update(np.ascontiguousarray(arr).tobytes())
    if bundle.head is not None:
        h.update(np.ascontiguousarray(bundle.head.theta_).tobytes())
        h.update(np.ascontiguousarray(bundle.head.product_).tobytes())
    return h.hexdigest()[:16]
