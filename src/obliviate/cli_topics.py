"""``obliviate topics fit | unlearn | audit``: the anchor-word topic model on your own corpus.

Corpora: ``--corpus lee|wikipedia|wikipedia-paragraphs`` (text that ships with gensim), ``--text FILE`` (one
document per line) or ``--counts FILE.npz`` (a scipy.sparse documents x words matrix, ``--vocab`` one word per
line). The model directory remembers where its corpus came from, so ``unlearn --forget-rows`` and ``audit
--verify`` can re-read it; a changed corpus file is caught by the document hashes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from obliviate.errors import ObliviateError


def add_parser(sub: Any) -> None:
    p = sub.add_parser("topics", help="anchor-word topic model with exact / certified deletion on your corpus")
    tsub = p.add_subparsers(dest="topics_command", required=True)
    f = tsub.add_parser("fit", help="fit a topic model on a corpus and save it")
    _corpus_args(f)
    f.add_argument("--n-topics", type=int, default=10)
    f.add_argument("--anchor-min-df", type=float, default=0.01,
                   help="documents a word needs to be an anchor: a share in (0, 1) or a count >= 1 (default 0.01)")
    f.add_argument("--loss", default="L2", choices=["L2", "KL"])
    f.add_argument("--out", required=True, help="model directory to write")
    f.add_argument("--overwrite", action="store_true")
    f.add_argument("--certify", action="store_true", help="release with the noise of certified deletion")
    _privacy_args(f)
    u = tsub.add_parser("unlearn", help="delete documents from a saved topic model")
    u.add_argument("--model", required=True)
    _forget_args(u, "forget")
    u.add_argument("--mode", default="exact", choices=["exact", "certified"])
    u.add_argument("--newton-steps", type=int, default=1)
    u.add_argument("--fallback", action="store_true", help="certified: recompute exactly instead of refusing")
    _privacy_args(u)
    u.add_argument("--out", help="write the edited model here (default: replace --model in place, atomically)")
    a = tsub.add_parser("audit", help="what a saved model holds: topics, deletions, privacy record; checks")
    a.add_argument("--model", required=True)
    a.add_argument("--top", type=int, default=8, help="words shown per topic")
    _forget_args(a, "check", required=False)
    a.add_argument("--verify", action="store_true",
                   help="refit on the model's corpus minus every deleted document and compare (retraining check)")


def _corpus_args(p: argparse.ArgumentParser, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--corpus", choices=["lee", "wikipedia", "wikipedia-paragraphs"])
    g.add_argument("--text", help="a text file, one document per line")
    g.add_argument("--counts", help="a .npz scipy.sparse documents x words count matrix")
    p.add_argument("--vocab", help="with --counts: the words, one per line")
    p.add_argument("--max-features", type=int, default=2000, help="text: vocabulary size cap (default 2000)")


def _forget_args(p: argparse.ArgumentParser, what: str, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument(f"--{what}-rows", help="comma-separated row numbers of the model's corpus")
    g.add_argument(f"--{what}-title", action="append", help="documents whose title starts with this (repeatable)")
    g.add_argument(f"--{what}-text", help="a text file of documents, one per line (vectorised with the model's words)")
    g.add_argument(f"--{what}-counts", help="a .npz count matrix over the model's vocabulary")


def _privacy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--epsilon", type=float, default=1.0)
    p.add_argument("--delta", type=float, default=1e-5)
    p.add_argument("--tolerance", type=float, default=0.01, help="noise Frobenius norm at probability 0.9")
    p.add_argument("--seed", type=int, help="seed of the noise (default: fresh OS entropy)")


def _load_source(source: dict[str, Any]) -> tuple[Any, list[str] | None, list[str]]:
    """-> (counts, vocabulary, titles) from a corpus description (as stored in the model's metadata)."""
    import scipy.sparse as sp

    from obliviate.data.corpora import count_corpus, load_corpus

    if source["kind"] == "corpus":
        tc = load_corpus(source["name"], max_features=source["max_features"])
        return tc.counts, list(tc.vocabulary), list(tc.titles)
    if source["kind"] == "text":
        lines = _read_lines(source["path"])
        tc = count_corpus(lines, [f"line {i + 1}" for i in range(len(lines))], max_features=source["max_features"])
        if tc.dropped:
            print(f"note: {len(tc.dropped)} line(s) with < 2 known words left out ({', '.join(tc.dropped[:3])} ...)")
        return tc.counts, list(tc.vocabulary), list(tc.titles)
    path = Path(source["path"])
    if not path.is_file():
        raise ObliviateError(f"counts file {str(path)!r} does not exist")
    counts = sp.load_npz(path).tocsr()
    vocab = _read_lines(source["vocab"]) if source.get("vocab") else None
    if vocab is not None and len(vocab) != counts.shape[1]:
        raise ObliviateError(f"--vocab has {len(vocab)} words but the counts have {counts.shape[1]} columns")
    return counts, vocab, [f"row {i}" for i in range(counts.shape[0])]


def _read_lines(path: str) -> list[str]:
    p = Path(path)
    if not p.is_file():
        raise ObliviateError(f"file {str(p)!r} does not exist")
    return [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _source_from_args(args: argparse.Namespace) -> dict[str, Any]:
    if args.corpus:
        return {"kind": "corpus", "name": args.corpus, "max_features": args.max_features}
    if args.text:
        return {"kind": "text", "path": str(Path(args.text).resolve()), "max_features": args.max_features}
    return {"kind": "counts", "path": str(Path(args.counts).resolve()),
            "vocab": str(Path(args.vocab).resolve()) if args.vocab else None}


def _selected(args: argparse.Namespace, what: str, bundle: Any, meta: dict[str, Any]) -> Any:
    """The documents named by --{what}-rows/-title/-text/-counts, as counts over the model's vocabulary."""
    import scipy.sparse as sp

    rows, titles = getattr(args, f"{what}_rows"), getattr(args, f"{what}_title")
    text, counts = getattr(args, f"{what}_text"), getattr(args, f"{what}_counts")
    vocab = bundle.model.vocabulary_
    if rows is not None or titles:
        X, _, names = _load_source(meta["corpus"])
        if rows is not None:
            try:
                idx = [int(r) for r in rows.split(",") if r.strip()]
            except ValueError:
                raise ObliviateError(f"--{what}-rows {rows!r} must be comma-separated integers") from None
            bad = [i for i in idx if not 0 <= i < X.shape[0]]
            if bad:
                raise ObliviateError(f"--{what}-rows {bad[:5]} out of range (the corpus has {X.shape[0]} documents)")
        else:
            idx = [i for i, n in enumerate(names) if any(n.startswith(t) for t in titles)]
            if not idx:
                raise ObliviateError(f"no document title starts with {titles} (e.g. {names[:3]})")
        return X[idx]
    if text is not None:
        if vocab is None:
            raise ObliviateError("the model has no vocabulary (fitted on counts without --vocab): use --forget-counts")
        from sklearn.feature_extraction.text import CountVectorizer

        from obliviate.data.corpora import TOKEN_PATTERN

        vec = CountVectorizer(vocabulary=vocab, token_pattern=TOKEN_PATTERN, lowercase=True)
        return vec.transform(_read_lines(text))
    if not Path(counts).is_file():
        raise ObliviateError(f"counts file {counts!r} does not exist")
    return sp.load_npz(counts).tocsr()


def run(args: argparse.Namespace) -> int:
    from obliviate.models.topic_io import load_bundle, save_bundle

    if args.topics_command == "fit":
        from obliviate.families.topic import TopicBundle
        from obliviate.models.topic import AnchorTopicModel

        source = _source_from_args(args)
        X, vocab, _ = _load_source(source)
        model = AnchorTopicModel(args.n_topics, anchor_min_df=args.anchor_min_df, loss=args.loss).fit(
            X, vocabulary=vocab)
        if args.certify:
            model.certify(args.epsilon, args.delta, args.tolerance, random_state=args.seed)
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise ObliviateError(f"{str(out)!r} exists; pass --overwrite to replace it")
        save_bundle(TopicBundle(model), out, {"corpus": source}, overwrite=args.overwrite)
        print(f"fitted {model.n_docs_} documents x {model.n_features_in_} words, {args.n_topics} topics "
              f"(converged: {model.converged_}) -> {out}")
        _print_topics(model, 8)
        return 0
    path = Path(args.model)
    bundle = load_bundle(path)
    meta = _meta(path)
    if args.topics_command == "unlearn":
        X_f = _selected(args, "forget", bundle, meta)
        rec = bundle.model.unlearn(X_f, mode=args.mode, epsilon=args.epsilon, delta=args.delta,
                                   tolerance=args.tolerance, newton_steps=args.newton_steps,
                                   fallback=args.fallback, random_state=args.seed)
        out = Path(args.out) if args.out else path
        if args.out and out.exists():
            raise ObliviateError(f"{str(out)!r} exists; choose another --out (or leave it out to edit in place)")
        save_bundle(bundle, out, meta, overwrite=out == path)
        print(_record_line(rec))
        print(f"model: {out}")
        return 0
    return _audit(args, bundle, meta)


def _meta(path: Path) -> dict[str, Any]:
    from obliviate.io import read_json

    return read_json(path / "obliviate.json") if (path / "obliviate.json").is_file() else {}


def _record_line(rec: dict[str, Any]) -> str:
    parts = [f"{rec['mode']}: deleted {rec['deleted']} document(s), {rec['n_docs_before']} -> {rec['n_docs_after']}",
             f"{rec['seconds'] * 1000:.1f} ms"]
    if "sigma" in rec:
        parts.append(f"certificate {rec['certificate']:.3g} <= budget {rec['budget']:.3g} "
                     f"(capacity used {rec['capacity_used']:.1%}), sigma {rec['sigma']:.3g}")
        if rec.get("remaining_capacity_estimate") is not None:
            parts.append(f"~{rec['remaining_capacity_estimate']} more documents (estimate)")
    if rec.get("fallback"):
        parts.append(f"fell back to exact recompute: {rec['fallback']}")
    if rec.get("anchors_changed"):
        parts.append("anchors changed (as retraining would)")
    return "; ".join(parts)


def _print_topics(model: Any, k: int) -> None:
    vocab = model.vocabulary_
    for t, (words, a) in enumerate(zip(model.top_words(k, relevance=0.6), model.anchors_)):
        anchor = vocab[a] if vocab else int(a)
        print(f"  topic {t} (anchor {anchor!s}): {' '.join(str(w) for w in words)}")


def _audit(args: argparse.Namespace, bundle: Any, meta: dict[str, Any]) -> int:
    from obliviate.models.topic_stats import as_counts, doc_hashes

    model = bundle.model
    print(f"model: {model.n_docs_} documents x {model.n_features_in_} words, {model.n_topics} topics, "
          f"corpus {meta.get('corpus', {}).get('name') or meta.get('corpus', {}).get('path', 'unknown')}")
    _print_topics(model, args.top)
    p = model.privacy_
    if p is None:
        print("releases: exact (no noise)")
    else:
        print(f"releases: certified, epsilon {p.epsilon}, delta {p.delta}, sigma {p.sigma:.3g}, distance budget "
              f"{p.budget:.3g}; {p.deletions} document(s) deleted under it, {p.releases} release(s)")
    for i, rec in enumerate(model.deletions_):
        print(f"deletion {i + 1}: {_record_line(rec)}")
    if any(getattr(args, f"check_{k}") for k in ("rows", "title", "text", "counts")):
        X = as_counts(_selected(args, "check", bundle, meta), model.n_features_in_)
        held = model.statistics_
        for i, h in enumerate(doc_hashes(X)):
            print(f"check document {i}: {'IN the model' if held.contains(h) > 0 else 'not in the model'}")
    if args.verify:
        _verify(model, meta)
    return 0


def _verify(model: Any, meta: dict[str, Any]) -> None:
    """Refit on the stored corpus minus every document the model no longer holds, and compare."""
    from collections import Counter

    from sklearn.base import clone

    from obliviate.models.topic_stats import as_counts, doc_hashes

    if "corpus" not in meta:
        raise ObliviateError("--verify needs the model's corpus (a model fitted with `obliviate topics fit`)")
    X, vocab, _ = _load_source(meta["corpus"])
    X = as_counts(X, model.n_features_in_)
    left = Counter(dict(model.statistics_.hashes.items()))
    keep = []
    for i, h in enumerate(doc_hashes(X)):
        if left.get(h, 0) > 0:
            left[h] -= 1
            keep.append(i)
    ref = clone(model).fit(X[keep], vocabulary=vocab)
    dist = float(np.linalg.norm(model._solution.A - ref._solution.A))
    same = np.array_equal(np.sort(model.anchors_), np.sort(ref.anchors_))
    print(f"verify: retrained on the {len(keep)} remaining documents; pre-noise topic distance {dist:.3g} "
          f"(Frobenius), anchors {'equal' if same else 'DIFFER'}; released distance "
          f"{float(np.linalg.norm(model.components_ - ref.components_)):.3g}")
