"""Planted anchor-word corpora (obliviate.data.documents) and gensim's offline text corpora (obliviate.data.corpora)."""

from __future__ import annotations

import numpy as np
import pytest

from obliviate.data.corpora import count_corpus, load_corpus, wikipedia_texts
from obliviate.data.documents import (
    ctm_covariance,
    dirichlet_cooccurrence,
    logistic_normal,
    planted_corpus,
    planted_topics,
    sample_counts,
)
from obliviate.errors import ObliviateError

# --------------------------------------------------------------------------------------------- planted corpora


@pytest.fixture(scope="module")
def lda_corpus():
    return planted_corpus(4000, 300, 5, doc_length=10, anchors_per_topic=2, anchor_mass=0.2, seed=3)


@pytest.fixture(scope="module")
def ctm_corpus():
    return planted_corpus(40_000, 50, 4, doc_length=3, prior="ctm", seed=5)


def _row_sums(counts):
    return np.asarray(counts.sum(axis=1)).ravel()


def test_anchor_words_are_planted(lda_corpus):
    a = lda_corpus.topics
    anchors = lda_corpus.anchors
    assert a.shape == (300, 5) and a.dtype == np.float64
    flat = [w for ids in anchors for w in ids]
    assert len(flat) == len(set(flat)) == 10 and all(len(ids) == 2 for ids in anchors)
    for k, ids in enumerate(anchors):
        assert a[ids, k].sum() == pytest.approx(0.2)
        assert np.all(a[ids, k] > 0)
        assert np.all(np.delete(a[ids], k, axis=1) == 0.0)  # exactly zero in every other topic
    np.testing.assert_allclose(a.sum(axis=0), 1.0, rtol=0, atol=1e-12)
    assert np.all(a >= 0)


def test_planted_topics_rejects_too_small_vocabulary():
    with pytest.raises(ObliviateError, match="n_words=6"):
        planted_topics(6, 3, 2, 0.1, 0.1, np.random.default_rng(0))


@pytest.mark.parametrize("corpus", ["lda_corpus", "ctm_corpus"])
def test_topic_cooccurrence_is_a_symmetric_psd_distribution(corpus, request):
    r = request.getfixturevalue(corpus).topic_cooccurrence
    assert r.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_array_equal(r, r.T)
    assert np.linalg.eigvalsh(r).min() > -1e-12
    q = request.getfixturevalue(corpus).population_cooccurrence()
    assert q.sum() == pytest.approx(1.0, abs=1e-10)


def test_dirichlet_closed_form_matches_monte_carlo():
    alpha = np.array([0.2, 0.5, 1.0, 2.0])
    w = np.random.default_rng(0).dirichlet(alpha, size=200_000)
    empirical = w.T @ w / len(w)
    np.testing.assert_allclose(dirichlet_cooccurrence(alpha), empirical, atol=2e-3)
    with pytest.raises(ObliviateError, match="alpha_vec"):
        dirichlet_cooccurrence(np.array([1.0, -1.0]))


def test_documents_have_the_requested_length(lda_corpus):
    counts = lda_corpus.counts
    assert counts.shape == (4000, 300) and counts.dtype == np.int64
    assert np.all(_row_sums(counts) == 10)
    assert counts.data.min() > 0


def test_doc_length_range_is_respected():
    c = planted_corpus(3000, 40, 3, doc_length=(2, 6), seed=1)
    lengths = _row_sums(c.counts)
    assert lengths.min() == 2 and lengths.max() == 6
    assert set(np.unique(lengths)) == {2, 3, 4, 5, 6}


def test_same_seed_same_corpus_other_seed_differs():
    a = planted_corpus(500, 60, 3, seed=11)
    b = planted_corpus(500, 60, 3, seed=11)
    c = planted_corpus(500, 60, 3, seed=12)
    assert (a.counts != b.counts).nnz == 0
    np.testing.assert_array_equal(a.topics, b.topics)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert (a.counts != c.counts).nnz > 0


def test_word_frequencies_match_population(lda_corpus):
    counts = lda_corpus.counts.toarray().astype(np.float64)
    n_docs, length = counts.shape[0], 10
    observed = counts.sum(axis=0) / (n_docs * length)
    mu = lda_corpus.population_word_frequencies()
    np.testing.assert_allclose(mu, lda_corpus.topics @ lda_corpus.topic_cooccurrence @ np.ones(5))
    # documents are iid but their tokens are not: a document's count of word j has variance
    # L mu_j + L (L - 1) Q_jj - L^2 mu_j^2 (binomial given W_d, plus the spread of (A W_d)_j)
    q_diag = np.diag(lda_corpus.population_cooccurrence())
    var = length * mu + length * (length - 1) * q_diag - length**2 * mu**2
    se = np.sqrt(var / n_docs) / length
    frequent = mu * n_docs * length >= 20  # the normal approximation needs a few expected occurrences
    assert frequent.sum() > 100
    z = np.abs(observed - mu)[frequent] / se[frequent]
    assert z.max() < 5.0


def test_two_token_cooccurrence_matches_population():
    # the anchor algorithm's unbiased estimator (H H^T - diag(H 1)) / (L (L - 1)) must estimate Q = A R A^T
    c = planted_corpus(30_000, 15, 3, doc_length=2, anchor_mass=0.3, seed=2)
    h = c.counts.toarray().astype(np.float64)
    q_hat = (h.T @ h - np.diag(h.sum(axis=0))) / (2 * len(h))
    np.testing.assert_allclose(q_hat, c.population_cooccurrence(), atol=4e-3)


def test_zero_mass_words_are_never_drawn():
    rng = np.random.default_rng(0)
    topics, anchors = planted_topics(30, 3, 1, 0.3, 0.1, rng)
    one_topic = np.tile([1.0, 0.0, 0.0], (2000, 1))
    counts = sample_counts(one_topic, topics, np.full(2000, 5), rng)
    used = np.flatnonzero(np.asarray(counts.sum(axis=0)).ravel())
    assert np.all(topics[used, 0] > 0)
    assert anchors[0][0] in used and anchors[1][0] not in used and anchors[2][0] not in used


def test_ctm_cooccurrence_matches_the_documents(ctm_corpus):
    w = ctm_corpus.doc_topics
    assert w.shape == (40_000, 4)
    np.testing.assert_allclose(w.sum(axis=1), 1.0)
    prods = w[:, :, None] * w[:, None, :]
    se = prods.std(axis=0) / np.sqrt(len(w))
    diff = np.abs(prods.mean(axis=0) - ctm_corpus.topic_cooccurrence)
    assert np.all(diff < 5.0 * se * np.sqrt(1.0 + len(w) / 200_000))  # sampling error of both estimates
    # the band correlation makes neighbouring topics co-occur more than distant ones
    r = ctm_corpus.topic_cooccurrence
    assert r[0, 1] > r[0, 3]


def test_ctm_helpers():
    sigma = ctm_covariance(5)
    assert np.all(np.diag(sigma) == 1.0) and sigma[1, 2] == 0.5 and sigma[0, 2] == 0.0
    w = logistic_normal(sigma, 10, np.random.default_rng(0))
    np.testing.assert_allclose(w.sum(axis=1), 1.0)


def test_labels_are_balanced_and_predictable():
    linear_model = pytest.importorskip("sklearn.linear_model")
    c = planted_corpus(4000, 50, 5, label_noise=0.1, seed=4)
    assert c.labels.dtype == np.int64 and set(np.unique(c.labels)) == {0, 1}
    assert abs(c.labels.mean() - 0.5) < 0.01
    train, test = slice(0, 3000), slice(3000, None)
    clf = linear_model.LogisticRegression(C=100.0, max_iter=2000).fit(c.doc_topics[train], c.labels[train])
    assert clf.score(c.doc_topics[test], c.labels[test]) > 0.8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_docs": 0}, "n_docs.*0"),
        ({"n_topics": 1}, "n_topics.*1"),
        ({"n_words": 5, "n_topics": 5}, "n_words=5"),
        ({"doc_length": 1}, "doc_length.*1"),
        ({"doc_length": (5, 3)}, "doc_length.*3"),
        ({"doc_length": "long"}, "doc_length.*'long'"),
        ({"prior": "hdp"}, "'hdp'.*valid: ctm, lda"),
        ({"alpha": 0.0}, "alpha.*0.0"),
        ({"anchor_mass": 1.0}, "anchor_mass.*1.0"),
        ({"anchor_mass": -0.1}, r"anchor_mass.*-0\.1"),
        ({"beta": float("nan")}, "beta.*nan"),
        ({"anchors_per_topic": 0}, "anchors_per_topic.*0"),
        ({"label_noise": -1.0}, r"label_noise.*-1\.0"),
        ({"seed": -3}, "seed.*-3"),
        ({"n_topics": True}, "n_topics.*True"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"n_docs": 10, "n_words": 20, "n_topics": 3, **kwargs}
    with pytest.raises(ObliviateError, match=match):
        planted_corpus(**args)


# --------------------------------------------------------------------------------------------- text corpora


@pytest.fixture(scope="module")
def wiki():
    pytest.importorskip("gensim")
    pytest.importorskip("sklearn")
    return load_corpus("wikipedia"), load_corpus("wikipedia-paragraphs")


def _check_text_corpus(corpus, max_features=2000):
    m, n = corpus.counts.shape
    assert n == len(corpus.vocabulary) <= max_features
    assert m == len(corpus.titles) == len(corpus.texts)
    assert corpus.counts.dtype == np.int64 and corpus.counts.data.min() > 0
    assert _row_sums(corpus.counts).min() >= 2
    assert np.asarray(corpus.counts.sum(axis=0)).min() > 0  # no empty word column


def test_lee_corpus():
    pytest.importorskip("gensim")
    pytest.importorskip("sklearn")
    lee = load_corpus("lee")
    _check_text_corpus(lee)
    assert lee.counts.shape[0] + len(lee.dropped) == 300
    assert lee.titles[0] == "lee-0000" and lee.texts[0].startswith("Hundreds of people")
    small = load_corpus("lee", max_features=100)
    _check_text_corpus(small, max_features=100)


def test_wikipedia_articles_and_paragraphs(wiki):
    articles, paragraphs = wiki
    _check_text_corpus(articles)
    _check_text_corpus(paragraphs)
    assert articles.counts.shape[0] >= 90
    assert paragraphs.counts.shape[0] > articles.counts.shape[0]
    assert articles.titles[0] == "Anarchism" and paragraphs.titles[0] == "Anarchism #1"
    assert all(len(t) >= 200 for t in paragraphs.texts)


def test_wikipedia_unit_is_checked():
    with pytest.raises(ObliviateError, match="'sentence'.*article, paragraph"):
        wikipedia_texts("sentence")


def test_unknown_corpus_name():
    with pytest.raises(ObliviateError, match="'leee'.*valid: lee, wikipedia, wikipedia-paragraphs"):
        load_corpus("leee")


def test_count_corpus_drops_short_documents():
    pytest.importorskip("sklearn")
    texts = ["apple banana cherry", "apple banana", "cherry", "banana cherry apple", "the and of"]
    corpus = count_corpus(texts, titles=list("abcde"), min_df=1, max_df=1.0)
    assert corpus.dropped == ["c", "e"]
    assert corpus.titles == ["a", "b", "d"] and corpus.texts[1] == "apple banana"
    assert corpus.vocabulary == ["apple", "banana", "cherry"]
    np.testing.assert_array_equal(corpus.counts.toarray(), [[1, 1, 1], [1, 1, 0], [1, 1, 1]])
    with pytest.raises(ObliviateError, match="2 entries but texts has 5"):
        count_corpus(texts, titles=["a", "b"])
    with pytest.raises(ObliviateError, match="min_df=3"):
        count_corpus(texts[:2], min_df=3)
