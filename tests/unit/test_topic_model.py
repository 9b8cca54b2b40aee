"""The anchor-word topic model (obliviate.models.topic and its parts): population exactness, finite-sample
consistency, the co-occurrence statistic and its closed-form deletion, exact deletion == retraining, anchor stability,
adversarial (certified) deletion, input validation, scikit-learn conventions, the simplex solver and FastAnchorWords.
Spec: shared/specs/topic-unlearning.md section 5."""

from __future__ import annotations

import itertools
from collections import Counter

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.pipeline import make_pipeline

from obliviate.certified.deletion import CertificationRefused
from obliviate.data.documents import planted_corpus
from obliviate.errors import ObliviateError
from obliviate.models.anchors import fast_anchor_words, row_normalise
from obliviate.models.simplex import (
    fw_gap,
    gradient,
    objective,
    project_simplex_columns,
    simplex_lstsq,
    tangent_strong_convexity,
)
from obliviate.models.topic import AnchorTopicModel
from obliviate.models.topic_stats import CorpusStatistics, as_counts, cooccurrence_sum, doc_frequency, doc_hashes

# ------------------------------------------------------------------------------------------------------- helpers


def match_topics(A_true: np.ndarray, A_hat: np.ndarray) -> tuple[np.ndarray, float]:
    """perm with A_hat[:, perm[k]] matched to A_true[:, k] (Hungarian on L1 column distances), and the mean matched
    L1 column error."""
    cost = np.abs(A_true[:, :, None] - A_hat[:, None, :]).sum(axis=0)
    rows, cols = linear_sum_assignment(cost)
    assert np.array_equal(rows, np.arange(A_true.shape[1]))
    return cols, float(cost[rows, cols].mean())


def docs_containing(X: sp.csr_matrix, word: int) -> np.ndarray:
    return np.flatnonzero(np.asarray(X[:, word].todense()).ravel() > 0)


def snapshot(model: AnchorTopicModel) -> dict:
    return {"n_docs": model.n_docs_, "m": model.statistics_.m, "components": model.components_.copy(),
            "R": model.topic_cooccurrence_.copy(), "anchors": model.anchors_.copy(),
            "G": model.statistics_.G.copy(), "deletions": len(model.deletions_)}


def assert_unchanged(model: AnchorTopicModel, before: dict) -> None:
    assert model.n_docs_ == before["n_docs"]
    assert model.statistics_.m == before["m"]
    assert np.array_equal(model.components_, before["components"])
    assert np.array_equal(model.topic_cooccurrence_, before["R"])
    assert np.array_equal(model.anchors_, before["anchors"])
    assert np.array_equal(model.statistics_.G, before["G"])
    assert len(model.deletions_) == before["deletions"]


def assert_same_model(a: AnchorTopicModel, b: AnchorTopicModel, atol: float = 1e-10) -> None:
    assert np.array_equal(a.anchors_, b.anchors_)
    assert a.n_docs_ == b.n_docs_
    np.testing.assert_allclose(a.components_, b.components_, rtol=0, atol=atol)
    np.testing.assert_allclose(a.topic_cooccurrence_, b.topic_cooccurrence_, rtol=0, atol=atol)
    np.testing.assert_allclose(a.word_topic_posterior_, b.word_topic_posterior_, rtol=0, atol=atol)


R_SMALL = 4


@pytest.fixture(scope="module")
def small():
    """3000 documents, 100 words, 4 topics; the fitted anchors are the planted ones (checked below), and deleting
    the first 300 documents reorders them (so k=300 exercises the full re-solve path)."""
    return planted_corpus(3000, 100, R_SMALL, doc_length=10, beta=1.0, anchor_mass=0.1, seed=0)


def fit_small(small, **kwargs) -> AnchorTopicModel:
    return AnchorTopicModel(n_topics=R_SMALL, **kwargs).fit(small.counts)


# --------------------------------------------------------------------------------- 1. population exactness


@pytest.mark.parametrize("how", ["anchor", "pinv"])
@pytest.mark.parametrize("per", [1, 2])
@pytest.mark.parametrize("prior", ["lda", "ctm"])
def test_population_cooccurrence_recovers_A_R_and_planted_anchors(prior, per, how):
    pc = planted_corpus(10, 60, 4, prior=prior, anchors_per_topic=per, anchor_mass=0.2, seed=1)
    model = AnchorTopicModel(n_topics=4, topic_cooccurrence=how).fit_cooccurrence(pc.population_cooccurrence())
    A_hat = model.components_.T
    perm, err = match_topics(pc.topics, A_hat)
    np.testing.assert_allclose(A_hat[:, perm], pc.topics, rtol=0, atol=1e-8)
    np.testing.assert_allclose(model.topic_cooccurrence_[np.ix_(perm, perm)], pc.topic_cooccurrence, rtol=0,
                               atol=1e-8)
    assert err < 1e-8
    # each found anchor is a planted anchor of a distinct topic -- the topic it was matched to
    owner = {w: k for k, ids in enumerate(pc.anchors) for w in ids}
    found_topic = [owner.get(int(a)) for a in model.anchors_]
    assert None not in found_topic, (model.anchors_, pc.anchors)
    assert sorted(found_topic) == list(range(4))
    assert [found_topic[perm[k]] for k in range(4)] == list(range(4))
    assert model.converged_


def test_population_cooccurrence_kl_recovers_A():
    # regression: rows converging at different iterations crashed RecoverKL (shape mismatch). KL has no active-set
    # finish, so exponentiated gradient alone gets ~2e-5 in the default 1000 iterations (L2 gets 1e-14)
    pc = planted_corpus(10, 60, 4, anchor_mass=0.2, seed=1)
    model = AnchorTopicModel(n_topics=4, loss="KL").fit_cooccurrence(pc.population_cooccurrence())
    perm, _ = match_topics(pc.topics, model.components_.T)
    np.testing.assert_allclose(model.components_.T[:, perm], pc.topics, rtol=0, atol=1e-4)


# ------------------------------------------------------------------------------- 2. finite-sample consistency


def test_finite_sample_error_falls_like_inverse_sqrt_m():
    # measured (seed 0): mean matched L1 column errors 0.598, 0.143, 0.048 -> slope -0.55 (seeds 0-5: -0.55..-0.58)
    ms = [2_000, 20_000, 200_000]
    pc = planted_corpus(ms[-1], 300, 5, doc_length=10, beta=1.0, seed=0)
    errs = []
    for m in ms:
        model = AnchorTopicModel(n_topics=5).fit(pc.counts[:m])
        errs.append(match_topics(pc.topics, model.components_.T)[1])
    slope = np.polyfit(np.log(ms), np.log(errs), 1)[0]
    assert errs[0] > errs[1] > errs[2], errs
    assert -0.8 < slope < -0.3, (slope, errs)
    assert sorted(model.anchors_.tolist()) == sorted(ids[0] for ids in pc.anchors)


# ------------------------------------------------------------------------------------------- 3. the statistic


def test_cooccurrence_sum_matches_per_document_loop():
    pc = planted_corpus(30, 12, 2, doc_length=(2, 7), seed=3)
    X = pc.counts
    ref = np.zeros((12, 12))
    for d in range(X.shape[0]):
        h = X[d].toarray().ravel().astype(float)
        L = h.sum()
        g = (np.outer(h, h) - np.diag(h)) / (L * (L - 1))
        assert g.sum() == pytest.approx(1.0, abs=1e-14)
        ref += g
    G = cooccurrence_sum(X)
    np.testing.assert_allclose(G, ref, rtol=0, atol=1e-13)
    assert G.sum() == pytest.approx(30.0, abs=1e-12)
    assert np.array_equal(G, G.T)


def test_cooccurrence_sum_hand_example():
    # doc 1: h=(2,1,0), L=3 -> (hh^T - diag h)/6 = [[2,2,0],[2,0,0],[0,0,0]]/6
    # doc 2: h=(0,1,1), L=2 -> [[0,0,0],[0,0,1],[0,1,0]]/2
    X = sp.csr_matrix(np.array([[2, 1, 0], [0, 1, 1]], dtype=np.int64))
    expected = np.array([[1 / 3, 1 / 3, 0.0], [1 / 3, 0.0, 1 / 2], [0.0, 1 / 2, 0.0]])
    np.testing.assert_allclose(cooccurrence_sum(X), expected, rtol=0, atol=1e-15)
    stats = CorpusStatistics.from_counts(X)
    assert stats.m == 2 and stats.G.sum() == pytest.approx(2.0, abs=1e-15)
    assert stats.doc_freq.tolist() == [1, 2, 1]


def test_statistics_without_equals_rebuild(small):
    X = small.counts
    model = fit_small(small)
    assert model.statistics_.G.sum() == pytest.approx(X.shape[0], rel=1e-12)
    idx = np.random.default_rng(1).choice(X.shape[0], 50, replace=False)
    keep = np.setdiff1d(np.arange(X.shape[0]), idx)
    old = model.statistics_
    new, touched = old.without(X[idx])
    rebuilt = CorpusStatistics.from_counts(X[keep])
    np.testing.assert_allclose(new.G, rebuilt.G, rtol=0, atol=1e-12)
    assert new.m == rebuilt.m == X.shape[0] - 50
    assert np.array_equal(new.doc_freq, rebuilt.doc_freq)
    # the hash multiset is shared, not copied (O(m)): the deletions stay pending until commit
    assert sum(old.hashes.values()) == X.shape[0]
    left = {h: new.contains(h) for h in old.hashes if new.contains(h) > 0}
    assert left == dict(rebuilt.hashes)
    assert np.array_equal(touched, np.unique(X[idx].indices))
    assert old.m == X.shape[0]  # without() returns a new object
    untouched = np.setdiff1d(np.arange(X.shape[1]), touched)
    assert untouched.size > 0
    assert np.array_equal(new.G[untouched], old.G[untouched])
    assert np.array_equal(row_normalise(new.G)[untouched], row_normalise(old.G)[untouched])
    # and through the model
    model.unlearn(X[idx])
    np.testing.assert_allclose(model.statistics_.G, rebuilt.G, rtol=0, atol=1e-12)
    assert model.n_docs_ == X.shape[0] - 50


# -------------------------------------------------------------------------------- 4. exact deletion == retraining


@pytest.mark.parametrize("k", [1, 20, 300])
def test_exact_unlearn_equals_retraining(small, k):
    X = small.counts
    model = fit_small(small)
    assert sorted(model.anchors_.tolist()) == sorted(ids[0] for ids in small.anchors)
    original = model.anchors_.copy()
    record = model.unlearn(X[:k])
    retrained = AnchorTopicModel(n_topics=R_SMALL).fit(X[k:])
    assert_same_model(model, retrained)
    assert record["n_docs_after"] == X.shape[0] - k and record["deleted"] == k
    assert record["anchors_changed"] == (not np.array_equal(original, retrained.anchors_))
    if k == 300:  # the retrained anchors come out in another order: every row was re-solved
        assert record["anchors_changed"] and record["rows_resolved"] == X.shape[1]


def test_deletion_is_order_and_batch_independent(small):
    X = small.counts
    one = fit_small(small)
    one.unlearn(X[:20])
    two = fit_small(small)
    two.unlearn(X[10:20])
    two.unlearn(X[:10])
    singles = fit_small(small)
    for d in reversed(range(20)):
        singles.unlearn(X[d:d + 1])
    shuffled = fit_small(small)
    shuffled.unlearn(X[np.random.default_rng(2).permutation(20)])
    for other in (two, singles, shuffled):
        assert_same_model(one, other, atol=1e-12)
        assert other.statistics_.hashes == one.statistics_.hashes
    assert len(singles.deletions_) == 20 and len(two.deletions_) == 2


def test_only_touched_rows_are_resolved_when_anchors_untouched(small):
    X = small.counts
    model = fit_small(small)
    anchors = model.anchors_.copy()
    no_anchor = np.flatnonzero(np.asarray((X[:, anchors] > 0).sum(axis=1)).ravel() == 0)[:5]
    forget = X[no_anchor]
    words = np.unique(forget.indices)
    C_before = model.word_topic_posterior_.copy()
    record = model.unlearn(forget)
    assert record["anchors_changed"] is False
    assert record["words_touched"] == words.size
    assert record["rows_resolved"] == words.size < X.shape[1]
    untouched = np.setdiff1d(np.arange(X.shape[1]), words)
    assert np.array_equal(model.word_topic_posterior_[untouched], C_before[untouched])
    keep = np.setdiff1d(np.arange(X.shape[0]), no_anchor)
    assert_same_model(model, AnchorTopicModel(n_topics=R_SMALL).fit(X[keep]))


# --------------------------------------------------------------------------------------- 5. anchor stability


def test_anchors_stable_under_small_random_deletions():
    # measured: 20/20 for this seed (seed 2 of the same configuration gives 15/20)
    pc = planted_corpus(20_000, 300, 5, doc_length=10, beta=1.0, seed=0)
    model = AnchorTopicModel(n_topics=5).fit(pc.counts)
    rng = np.random.default_rng(0)
    same = 0
    for _ in range(20):
        idx = rng.choice(20_000, 200, replace=False)
        same += np.array_equal(model.unlearned(pc.counts[idx]).anchors_, model.anchors_)
    assert model.n_docs_ == 20_000  # unlearned() leaves the original alone
    assert same >= 19, f"anchors unchanged in only {same}/20 trials"


# ---------------------------------------------------------------------------------- 6. adversarial deletion


def test_deleting_every_document_of_an_anchor_is_refused_then_falls_back(small):
    X = small.counts
    vocab = [f"w{j}" for j in range(X.shape[1])]
    model = AnchorTopicModel(n_topics=R_SMALL).fit(X, vocabulary=vocab)
    anchor = int(model.anchors_[0])
    assert anchor in [ids[0] for ids in small.anchors]
    rows = docs_containing(X, anchor)
    assert 0 < rows.size < X.shape[0]
    before = snapshot(model)
    with pytest.raises(CertificationRefused, match=rf"'w{anchor}'"):
        model.unlearn(X[rows], mode="certified", epsilon=1.0, delta=1e-5, random_state=0)
    assert_unchanged(model, before)
    assert model.privacy_ is None
    record = model.unlearn(X[rows], mode="certified", epsilon=1.0, delta=1e-5, fallback=True, random_state=0)
    assert f"w{anchor}" in record["fallback"]
    assert record["n_docs_after"] == model.n_docs_ == X.shape[0] - rows.size
    keep = np.setdiff1d(np.arange(X.shape[0]), rows)
    retrained = AnchorTopicModel(n_topics=R_SMALL).fit(X[keep])
    assert np.array_equal(model.anchors_, retrained.anchors_)
    assert anchor not in model.anchors_.tolist()
    # the release is noisy (certified mode) but every topic is still a distribution
    assert (model.components_ >= 0).all()
    np.testing.assert_allclose(model.components_.sum(axis=1), 1.0, atol=1e-12)


# ------------------------------------------------------------------------------------------- 7. bad input


@pytest.fixture
def fitted(small):
    return fit_small(small)


def _one_token_doc(n: int) -> np.ndarray:
    doc = np.zeros((1, n), dtype=np.int64)
    doc[0, 3] = 1
    return doc


def _bad_calls(small):
    X = small.counts
    D = X[:3].toarray()
    n = X.shape[1]
    neg = D.copy()
    neg[1, 4] = -1
    half = D.astype(float)
    half[2, 5] = 0.5
    never = np.zeros((1, n), dtype=np.int64)
    never[0, 0] = 50
    eps = {"mode": "certified", "delta": 1e-5}
    dlt = {"mode": "certified", "epsilon": 1.0}
    return {
        "fit_short": (lambda m: m.fit(sp.vstack([X, sp.csr_matrix(_one_token_doc(n))])), "fewer than 2 tokens"),
        "unlearn_short": (lambda m: m.unlearn(_one_token_doc(n)), "fewer than 2 tokens"),
        "fit_negative": (lambda m: m.fit(neg), "negative count"),
        "unlearn_negative": (lambda m: m.unlearn(neg), "negative count"),
        "fit_half": (lambda m: m.fit(half), "non-integer count"),
        "unlearn_half": (lambda m: m.unlearn(half), "non-integer count"),
        "unlearn_columns": (lambda m: m.unlearn(D[:, :-1]), f"{n - 1} words .* fitted on {n}"),
        "fit_vocabulary": (lambda m: m.fit(X, vocabulary=["a"] * (n - 1)), "vocabulary"),
        "unlearn_never_seen": (lambda m: m.unlearn(never), "not in the corpus"),
        "unlearn_too_many_copies": (lambda m: m.unlearn(np.vstack([D[:1], D[:1]])), "not in the corpus"),
        "unlearn_everything": (lambda m: m.unlearn(X), "at least one must remain"),
        "epsilon_zero": (lambda m: m.unlearn(D[:1], epsilon=0.0, **eps), "epsilon"),
        "epsilon_negative": (lambda m: m.unlearn(D[:1], epsilon=-1.0, **eps), "epsilon"),
        "epsilon_missing": (lambda m: m.unlearn(D[:1], **eps), "epsilon"),
        "delta_zero": (lambda m: m.unlearn(D[:1], delta=0.0, **dlt), "delta"),
        "delta_one": (lambda m: m.unlearn(D[:1], delta=1.0, **dlt), "delta"),
        "delta_big": (lambda m: m.unlearn(D[:1], delta=1.5, **dlt), "delta"),
        "mode": (lambda m: m.unlearn(D[:1], mode="newton"), "mode='newton'"),
        "n_topics": (lambda m: m.set_params(n_topics=1).fit(X), "n_topics=1"),
        "newton_steps": (lambda m: m.unlearn(D[:1], newton_steps=0), "newton_steps=0"),
    }


BAD = ["fit_short", "unlearn_short", "fit_negative", "unlearn_negative", "fit_half", "unlearn_half",
       "unlearn_columns", "fit_vocabulary", "unlearn_never_seen", "unlearn_too_many_copies", "unlearn_everything",
       "epsilon_zero", "epsilon_negative", "epsilon_missing", "delta_zero", "delta_one", "delta_big", "mode",
       "n_topics", "newton_steps"]


@pytest.mark.parametrize("case", BAD)
def test_bad_input_raises_and_changes_nothing(small, fitted, case):
    call, message = _bad_calls(small)[case]
    before = snapshot(fitted)
    with pytest.raises(ObliviateError, match=message):
        call(fitted)
    assert_unchanged(fitted, before)


def test_bad_calls_table_is_complete(small):
    assert sorted(_bad_calls(small)) == sorted(BAD)


def test_deleting_the_same_document_twice_is_refused(small, fitted):
    X = small.counts
    h0 = doc_hashes(X[:1])[0]
    assert Counter(doc_hashes(X))[h0] == 1  # document 0 occurs once
    fitted.unlearn(X[:1])
    before = snapshot(fitted)
    with pytest.raises(ObliviateError, match="not in the corpus"):
        fitted.unlearn(X[:1])
    assert_unchanged(fitted, before)


def test_unlearn_duplicate_documents_counts_copies():
    X = sp.csr_matrix(np.array([[2, 1, 0, 1], [2, 1, 0, 1], [0, 1, 1, 1], [1, 0, 2, 1], [1, 1, 1, 1]]))
    stats = CorpusStatistics.from_counts(as_counts(X))
    twice, _ = stats.without(as_counts(X[[0, 0]]))  # two copies exist: both can go
    assert twice.m == 3
    with pytest.raises(ObliviateError, match="not in the corpus"):
        twice.without(as_counts(X[[0]]))


def test_integer_valued_floats_are_counts(small):
    X = small.counts
    ints = AnchorTopicModel(n_topics=R_SMALL).fit(X)
    floats = AnchorTopicModel(n_topics=R_SMALL).fit(X.astype(np.float64))
    assert np.array_equal(ints.components_, floats.components_)
    floats.unlearn(X[:2].toarray().astype(np.float32))
    assert floats.n_docs_ == X.shape[0] - 2


def test_certified_mode_needs_l2_loss(small):
    model = AnchorTopicModel(n_topics=R_SMALL, loss="KL").fit(small.counts)
    before = snapshot(model)
    with pytest.raises(ObliviateError, match="loss='L2'") as info:
        model.unlearn(small.counts[:1], mode="certified", epsilon=1.0, delta=1e-5)
    assert not isinstance(info.value, CertificationRefused)  # not refusable: fallback does not apply
    assert_unchanged(model, before)
    assert model.privacy_ is None


# --------------------------------------------------------------------------------- 8. scikit-learn conventions


def test_params_round_trip_and_clone():
    model = AnchorTopicModel(n_topics=7, anchor_min_df=3, loss="KL", topic_cooccurrence="pinv", random_state=5)
    params = model.get_params()
    assert params == {"n_topics": 7, "anchor_min_df": 3, "projection_dim": None, "anchor_cleanup": True,
                      "loss": "KL", "topic_cooccurrence": "pinv", "tol": 1e-15, "max_iter": 1000, "dtype": "float64",
                      "random_state": 5}
    other = AnchorTopicModel().set_params(**params)
    assert other.get_params() == params
    twin = clone(model)
    assert twin is not model and twin.get_params() == params
    assert model.set_params(n_topics=3) is model and model.n_topics == 3


def test_transform_before_fit_raises():
    with pytest.raises(NotFittedError):
        AnchorTopicModel(n_topics=3).transform(np.ones((2, 5), dtype=np.int64))
    with pytest.raises(NotFittedError):
        AnchorTopicModel(n_topics=3).unlearn(np.ones((2, 5), dtype=np.int64))


def test_clone_of_fitted_model_is_unfitted(fitted):
    twin = clone(fitted)
    assert not hasattr(twin, "components_")
    assert twin.get_params() == fitted.get_params()


def test_fit_transform_rows_on_simplex_and_sparse_equals_dense(small):
    X = small.counts[:600]
    sparse_model = AnchorTopicModel(n_topics=R_SMALL)
    theta = sparse_model.fit_transform(X)
    assert theta.shape == (600, R_SMALL)
    assert (theta >= 0).all()
    np.testing.assert_allclose(theta.sum(axis=1), 1.0, atol=1e-12)
    dense_model = AnchorTopicModel(n_topics=R_SMALL)
    theta_dense = dense_model.fit_transform(X.toarray())
    assert np.array_equal(theta, theta_dense)
    assert np.array_equal(sparse_model.components_, dense_model.components_)
    assert np.array_equal(sparse_model.topic_cooccurrence_, dense_model.topic_cooccurrence_)
    assert np.array_equal(sparse_model.transform(X.toarray()), theta)
    # components_ rows are distributions, anchors are words of topic k only in topic k's row
    np.testing.assert_allclose(sparse_model.components_.sum(axis=1), 1.0, atol=1e-12)


def test_top_words_names(small):
    X = small.counts
    vocab = [f"w{j}" for j in range(X.shape[1])]
    named = AnchorTopicModel(n_topics=R_SMALL).fit(X, vocabulary=vocab)
    plain = AnchorTopicModel(n_topics=R_SMALL).fit(X)
    ids = plain.top_words(5)
    assert len(ids) == R_SMALL and all(len(row) == 5 for row in ids)
    assert all(isinstance(w, int) for row in ids for w in row)
    assert named.top_words(5) == [[f"w{j}" for j in row] for row in ids]
    expected = np.argsort(-plain.components_, axis=1, kind="stable")[:, :5]
    assert ids == expected.tolist()


def test_pipeline_with_count_vectorizer():
    pc = planted_corpus(1500, 60, 3, doc_length=10, beta=1.0, seed=4)
    X = pc.counts
    texts = [" ".join(f"w{j}" for j, c in zip(X[d].indices, X[d].data) for _ in range(c)) for d in range(X.shape[0])]
    pipe = make_pipeline(CountVectorizer(), AnchorTopicModel(n_topics=3))
    theta = pipe.fit_transform(texts)
    assert theta.shape == (1500, 3)
    assert (theta >= 0).all()
    np.testing.assert_allclose(theta.sum(axis=1), 1.0, atol=1e-12)
    names = pipe[0].get_feature_names_out()
    model = pipe[-1]
    assert model.n_features_in_ == len(names) == 60
    # the same model as fitting the counts directly, with the columns renamed
    cols = np.array([pipe[0].vocabulary_[f"w{j}"] for j in range(60)])
    direct = AnchorTopicModel(n_topics=3).fit(X)
    assert [int(names[a][1:]) for a in model.anchors_] == direct.anchors_.tolist()
    np.testing.assert_allclose(model.components_[:, cols], direct.components_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(pipe.transform(texts[:50]), direct.transform(X[:50]), rtol=0, atol=1e-9)
    # the pipeline's model can forget documents given through the same vectorizer
    model.unlearn(pipe[0].transform(texts[:5]))
    assert model.n_docs_ == 1495


# -------------------------------------------------------------------------------------------- 9. simplex solver


def brute_force_simplex(M: np.ndarray, b: np.ndarray) -> np.ndarray:
    """min c^T M c - 2 b^T c over the simplex by enumerating every face and solving its KKT system."""
    r = M.shape[0]
    best, best_f = None, np.inf
    for size in range(1, r + 1):
        for face in itertools.combinations(range(r), size):
            S = list(face)
            kkt = np.zeros((size + 1, size + 1))
            kkt[:size, :size] = 2.0 * M[np.ix_(S, S)]
            kkt[:size, size] = kkt[size, :size] = 1.0
            sol = np.linalg.solve(kkt, np.concatenate([2.0 * b[S], [1.0]]))
            if (sol[:size] < -1e-14).any():
                continue
            c = np.zeros(r)
            c[S] = np.maximum(sol[:size], 0.0)
            f = c @ M @ c - 2.0 * b @ c
            if f < best_f:
                best, best_f = c, f
    return best


def test_simplex_lstsq_matches_brute_force():
    rng = np.random.default_rng(0)
    boundary = interior = 0
    for r in (2, 3, 4):
        for _ in range(5):
            Y = rng.normal(size=(r, r + 3))
            # scaled like RecoverL2's problems (|M| <= 1): tol is an absolute gap, 1e-15 needs |f| of order 1
            scale = np.abs(Y @ Y.T).max()
            M = Y @ Y.T / scale
            B = rng.normal(size=(8, r)) / scale
            sol = simplex_lstsq(M, B, tol=1e-15)
            assert sol.converged
            for i in range(B.shape[0]):
                ref = brute_force_simplex(M, B[i])
                np.testing.assert_allclose(sol.c[i], ref, rtol=0, atol=1e-9)
                # the Frank-Wolfe gap vanishes at the optimum
                assert fw_gap(ref[None], gradient(ref[None], M, B[i][None]))[0] < 1e-12
                boundary += int((ref == 0).any())
                interior += int((ref > 0).all())
    assert boundary > 10 and interior > 10, (boundary, interior)


def test_simplex_lstsq_rows_are_independent():
    rng = np.random.default_rng(1)
    Y = rng.normal(size=(5, 9))
    M = Y @ Y.T
    B = rng.normal(size=(300, 5))
    full = simplex_lstsq(M, B, tol=1e-15)
    idx = np.array([5, 17, 123, 250, 299])
    part = simplex_lstsq(M, B[idx], tol=1e-15)
    assert np.array_equal(part.c, full.c[idx])
    assert np.array_equal(part.gap, full.gap[idx])
    single = simplex_lstsq(M, B[123:124], tol=1e-15)
    assert np.array_equal(single.c[0], full.c[123])


def test_fw_gap_and_gradient_by_hand():
    # gap = c.g - min g: 0.25*1 + 0.75*3 - 1 = 1.5; 0.5*3 + 0.5*1 - 1 = 1; a vertex at the smallest gradient: 0
    c = np.array([[0.25, 0.75], [0.5, 0.5], [1.0, 0.0]])
    g = np.array([[1.0, 3.0], [3.0, 1.0], [2.0, 5.0]])
    np.testing.assert_allclose(fw_gap(c, g), [1.5, 1.0, 0.0], rtol=0, atol=1e-15)
    # M = I, b = (0.3, 0.7): the unconstrained minimum c = b is on the simplex, so the gradient and gap are 0 there
    M, b = np.eye(2), np.array([[0.3, 0.7]])
    assert np.array_equal(gradient(b, M, b), np.zeros((1, 2)))
    assert fw_gap(b, gradient(b, M, b))[0] == 0.0
    assert objective(b, M, b)[0] == pytest.approx(-(0.09 + 0.49), abs=1e-15)
    np.testing.assert_allclose(simplex_lstsq(M, b, tol=1e-15).c, b, rtol=0, atol=1e-12)
    # gradient 2(Mc - b) at c = (1, 0): (2*(1-0.3), 2*(0-0.7)) = (1.4, -1.4); gap = 1.4 - (-1.4) = 2.8
    c0 = np.array([[1.0, 0.0]])
    np.testing.assert_allclose(gradient(c0, M, b), [[1.4, -1.4]], rtol=0, atol=1e-15)
    assert fw_gap(c0, gradient(c0, M, b))[0] == pytest.approx(2.8, abs=1e-15)


def test_project_simplex_columns_hand_examples_and_non_expansive():
    x = np.array([[0.5, 2.0, 0.2], [0.5, 0.0, 0.2]])
    np.testing.assert_allclose(project_simplex_columns(x), [[0.5, 1.0, 0.5], [0.5, 0.0, 0.5]], rtol=0, atol=1e-15)
    # (1, 0.5, -1): theta = (1 + 0.5 - 1)/2 = 0.25 -> (0.75, 0.25, 0)
    np.testing.assert_allclose(project_simplex_columns(np.array([[1.0], [0.5], [-1.0]])).ravel(), [0.75, 0.25, 0.0],
                               rtol=0, atol=1e-15)
    rng = np.random.default_rng(3)
    X, Y = rng.normal(size=(6, 200)), rng.normal(size=(6, 200))
    PX, PY = project_simplex_columns(X), project_simplex_columns(Y)
    assert (PX >= 0).all()
    np.testing.assert_allclose(PX.sum(axis=0), 1.0, atol=1e-12)
    assert (np.linalg.norm(PX - PY, axis=0) <= np.linalg.norm(X - Y, axis=0) + 1e-12).all()
    np.testing.assert_allclose(project_simplex_columns(PX), PX, rtol=0, atol=1e-15)  # idempotent


def test_tangent_strong_convexity_by_hand():
    assert tangent_strong_convexity(np.eye(3)) == pytest.approx(2.0, abs=1e-12)
    # r=2: the tangent space is v=(1,-1)/sqrt2; v^T diag(1,3) v = 2 -> mu = 4
    assert tangent_strong_convexity(np.diag([1.0, 3.0])) == pytest.approx(4.0, abs=1e-12)
    # the all-ones direction is not a tangent direction: 11^T + I -> 2, 11^T -> 0
    assert tangent_strong_convexity(np.ones((4, 4)) + np.eye(4)) == pytest.approx(2.0, abs=1e-12)
    assert tangent_strong_convexity(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-12)


# ------------------------------------------------------------------------------------------ 10. FastAnchorWords


V0, V1, V2 = np.array([4.0, 0.0]), np.array([0.0, 3.0]), np.array([-1.0, -1.0])


def _triangle_points() -> np.ndarray:
    """V0 at index 1, V1 at 3, V2 at 5; every other point a strictly positive convex combination (interior)."""
    weights = [(0.2, 0.3, 0.5), None, (1 / 3, 1 / 3, 1 / 3), None, (0.6, 0.3, 0.1), None, (0.1, 0.8, 0.1),
               (0.45, 0.1, 0.45)]
    fixed = {1: V0, 3: V1, 5: V2}
    return np.array([fixed[i] if w is None else w[0] * V0 + w[1] * V1 + w[2] * V2 for i, w in enumerate(weights)])


@pytest.mark.parametrize("cleanup", [True, False])
def test_fast_anchor_words_triangle(cleanup):
    # by hand: |V0|^2=16 > |V1|^2=9 > |V2|^2=2 -> V0 first; from V0, |V2-V0|^2=26 > |V1-V0|^2=25 -> V2; then V1
    rows = _triangle_points()
    assert fast_anchor_words(rows, 3, cleanup=cleanup).tolist() == [1, 5, 3]


@pytest.mark.parametrize("cleanup", [True, False])
def test_fast_anchor_words_ties_go_to_lowest_index(cleanup):
    rows = _triangle_points()
    dup = np.vstack([rows, V0, V2, V1])  # copies of the vertices at indices 8-10: the originals (1, 5, 3) win
    assert fast_anchor_words(dup, 3, cleanup=cleanup).tolist() == [1, 5, 3]
    first = np.vstack([V2, V1, V0, rows])  # copies at indices 0-2, before the originals (now 4, 6, 8): copies win
    assert fast_anchor_words(first, 3, cleanup=cleanup).tolist() == [2, 0, 1]


def test_fast_anchor_words_too_few_candidates():
    with pytest.raises(ObliviateError, match="n_topics=3"):
        fast_anchor_words(np.eye(2), 3)


def test_doc_frequency_by_hand():
    X = sp.csr_matrix(np.array([[2, 1, 0], [0, 1, 1], [0, 3, 0]], dtype=np.int64))
    assert doc_frequency(X).tolist() == [1, 3, 1]


def test_float32_statistic_halves_memory_and_stays_close():
    pc = planted_corpus(3000, 80, 4, doc_length=20, beta=1.0, seed=3)
    X = pc.counts
    m64 = AnchorTopicModel(n_topics=4).fit(X)
    m32 = AnchorTopicModel(n_topics=4, dtype="float32").fit(X)
    assert m32.statistics_.G.dtype == np.float32 and m32.statistics_.G.nbytes * 2 == m64.statistics_.G.nbytes
    assert np.array_equal(m32.anchors_, m64.anchors_)
    np.testing.assert_allclose(m32.components_, m64.components_, atol=1e-5)
    m32.unlearn(X[:30])
    retrained = AnchorTopicModel(n_topics=4, dtype="float32").fit(X[30:])
    np.testing.assert_allclose(m32.components_, retrained.components_, atol=1e-6)
    with pytest.raises(ObliviateError, match="dtype"):
        AnchorTopicModel(n_topics=4, dtype="float16").fit(X)


def test_top_words_relevance_ranks_distinctive_words_first():
    # topic 0 puts most mass on a word every topic uses (0) and less on its own word (1); topic 1 owns word 2
    model = AnchorTopicModel(n_topics=2)
    model.components_ = np.array([[0.6, 0.4, 0.0], [0.5, 0.0, 0.5]])
    model.topic_cooccurrence_ = np.array([[0.25, 0.25], [0.25, 0.25]])
    model.vocabulary_ = ["the", "goal", "vote"]
    assert model.top_words(1) == [["the"], ["the"]]  # by probability
    assert model.top_words(1, relevance=0.0) == [["goal"], ["vote"]]  # by lift: P(w|t)/P(w)
    with pytest.raises(ObliviateError, match="relevance"):
        model.top_words(1, relevance=2.0)
