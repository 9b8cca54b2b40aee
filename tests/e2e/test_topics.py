"""End to end: ``obliviate topics fit | unlearn | audit`` on a small generated text corpus and on a counts file, bad
input (one-line errors, exit 2), and ``obliviate bench topics`` on the topics-micro preset."""

from __future__ import annotations

import itertools
import json
import re
import string

import pytest
import scipy.sparse as sp

from obliviate.cli import main
from obliviate.data.documents import planted_corpus
from obliviate.models.topic_io import load_bundle

N_DOCS = 400


def _words(n: int) -> list[str]:
    """wordaaa, wordaab, ...: alphabetic tokens of >= 3 letters (what the CLI's text tokenizer keeps)."""
    return ["word" + "".join(t) for t in itertools.islice(itertools.product(string.ascii_lowercase, repeat=3), n)]


@pytest.fixture(scope="module")
def text_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("topics_text")
    pc = planted_corpus(N_DOCS, 120, 3, doc_length=12, beta=1.0, seed=0)
    words = _words(120)
    X = pc.counts
    lines = []
    for d in range(X.shape[0]):
        row = X[d]
        lines.append(" ".join(w for j, c in zip(row.indices, row.data) for w in [words[j]] * int(c)))
    path = root / "docs.txt"
    path.write_text("\n".join(lines) + "\n")
    return root, path


def _err(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_text_fit_unlearn_audit(text_corpus, capsys):
    root, path = text_corpus
    out = root / "model"
    assert main(["topics", "fit", "--text", str(path), "--n-topics", "3", "--anchor-min-df", "2",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"fitted {N_DOCS} documents" in printed and printed.count("topic ") >= 3
    fitted = load_bundle(out).model
    assert fitted.n_docs_ == N_DOCS and fitted.n_topics == 3 and fitted.anchor_min_df == 2
    assert all(w.startswith("word") for w in fitted.vocabulary_)

    # fit onto an existing --out: refused without --overwrite, nothing written
    before = (out / "topic_model.npz").read_bytes()
    assert main(["topics", "fit", "--text", str(path), "--n-topics", "4", "--out", str(out)]) == 2
    assert "--overwrite" in _err(capsys)
    assert (out / "topic_model.npz").read_bytes() == before

    assert main(["topics", "unlearn", "--model", str(out), "--forget-rows", "0,1,2"]) == 0
    line = capsys.readouterr().out
    assert f"exact: deleted 3 document(s), {N_DOCS} -> {N_DOCS - 3}" in line
    model = load_bundle(out).model
    assert model.n_docs_ == N_DOCS - 3 and model.deletions_[-1]["deleted"] == 3

    assert main(["topics", "audit", "--model", str(out), "--check-rows", "0,3", "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "check document 0: not in the model" in printed
    assert "check document 1: IN the model" in printed  # row 3 was kept
    m = re.search(r"retrained on the (\d+) remaining documents; pre-noise topic distance (\S+) \(Frobenius\), "
                  r"anchors (\w+)", printed)
    assert m, printed
    assert int(m.group(1)) == N_DOCS - 3 and float(m.group(2)) <= 1e-9 and m.group(3) == "equal"
    assert "releases: exact (no noise)" in printed and "deletion 1: exact: deleted 3" in printed

    # the same rows again: they are no longer in the model -> one-line error, model untouched
    state = (out / "topic_model.npz").read_bytes()
    assert main(["topics", "unlearn", "--model", str(out), "--forget-rows", "0,1,2"]) == 2
    assert "not in the corpus" in _err(capsys)
    assert main(["topics", "unlearn", "--model", str(out), "--forget-rows", "5", "--mode", "certified",
                 "--epsilon", "0"]) == 2
    assert "epsilon" in _err(capsys)
    assert main(["topics", "unlearn", "--model", str(out), "--forget-rows", "5,x"]) == 2
    assert "comma-separated integers" in _err(capsys)
    assert main(["topics", "unlearn", "--model", str(out), "--forget-rows", f"{N_DOCS + 7}"]) == 2
    assert "out of range" in _err(capsys)
    assert (out / "topic_model.npz").read_bytes() == state
    assert main(["topics", "audit", "--model", str(root / "nothing-here")]) == 2
    assert "not a saved topic model" in _err(capsys)


def test_counts_fit_and_certified_unlearn(tmp_path, capsys):
    pc = planted_corpus(600, 50, 3, doc_length=15, beta=1.0, seed=1)
    sp.save_npz(tmp_path / "counts.npz", pc.counts)
    words = _words(50)
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    out = tmp_path / "model"
    assert main(["topics", "fit", "--counts", str(tmp_path / "counts.npz"), "--vocab", str(tmp_path / "vocab.txt"),
                 "--n-topics", "3", "--anchor-min-df", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    model = load_bundle(out).model
    assert model.n_docs_ == 600 and model.vocabulary_ == words
    assert sorted(model.anchors_.tolist()) == sorted(ids[0] for ids in pc.anchors)

    edited = tmp_path / "edited"
    assert main(["topics", "unlearn", "--model", str(out), "--forget-rows", "4,9", "--mode", "certified",
                 "--newton-steps", "9", "--seed", "0", "--out", str(edited)]) == 0
    line = capsys.readouterr().out
    assert "certified: deleted 2 document(s), 600 -> 598" in line and "sigma" in line
    after = load_bundle(edited).model
    assert after.n_docs_ == 598 and after.privacy_.deletions == 2 and after.privacy_.epsilon == 1.0
    assert load_bundle(out).model.n_docs_ == 600  # --out: the original is left as it was
    # a second certified deletion must keep the noise parameters
    assert main(["topics", "unlearn", "--model", str(edited), "--forget-rows", "10", "--mode", "certified",
                 "--epsilon", "2"]) == 2
    assert "epsilon=1.0" in _err(capsys)
    assert main(["topics", "audit", "--model", str(edited), "--check-rows", "4", "--verify"]) == 0
    printed = capsys.readouterr().out
    assert "check document 0: not in the model" in printed
    assert "releases: certified, epsilon 1.0, delta 1e-05" in printed
    dist = float(re.search(r"pre-noise topic distance (\S+)", printed).group(1))
    assert dist <= 1e-9  # 9 Newton steps reach the retrained solution
    assert main(["topics", "fit", "--counts", str(tmp_path / "counts.npz"), "--vocab", str(tmp_path / "vocab.txt"),
                 "--n-topics", "3", "--out", str(out), "--overwrite"]) == 0


# ---------------------------------------------------------------------------------------------------- bench


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench_topics")
    assert main(["bench", "topics", "--preset", "topics-micro", "--executor", "inline", "--out", str(out),
                 "--quiet"]) == 0
    return out


def test_bench_topics_micro(bench_run):
    res = json.loads((bench_run / "results.json").read_text())
    assert res["suite"] == "topics" and res["seeds"] == [0, 1]
    for s in ("0", "1"):
        per = res["per_seed"][s]
        before = per["before"]["scalars"]
        methods = per["methods"]
        assert set(methods) == {"retrain", "exact_deletion", "certified_deletion", "certified_head"}
        assert before["dist_retrain"] > 1e-4  # the forget documents matter
        sc = {name: m["scalars"] for name, m in methods.items()}
        assert sc["retrain"]["dist_retrain"] == 0.0
        assert sc["exact_deletion"]["dist_retrain"] <= 1e-9
        assert sc["exact_deletion"]["n_docs"] == before["n_docs"] - 5
        assert sc["certified_deletion"]["dist_retrain"] <= 1e-9  # newton_steps: 3 in the preset
        assert sc["certified_deletion"]["dist_released"] > 0  # the release is noisy
        assert sc["certified_deletion"]["capacity_used"] <= 1.0
        # U_head leaves the topic model as it was
        assert sc["certified_head"]["dist_retrain"] == before["dist_retrain"]
        assert sc["certified_head"]["n_docs"] == before["n_docs"]
        assert sc["certified_head"]["head_dist"] < before["head_dist"]
        cert = methods["certified_deletion"]["info"]
        assert cert["epsilon"] == 1.0 and cert["delta"] == 1e-5 and cert["certificate"] <= cert["budget"]
    assert (bench_run / "report.md").is_file()


def test_bench_topics_finished_results_need_resume_or_overwrite(bench_run, capsys):
    before = (bench_run / "results.json").read_bytes()
    assert main(["bench", "topics", "--preset", "topics-micro", "--executor", "inline", "--out", str(bench_run),
                 "--quiet"]) == 2
    assert "--resume" in _err(capsys)
    assert (bench_run / "results.json").read_bytes() == before
