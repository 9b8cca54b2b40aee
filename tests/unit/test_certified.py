"""Certified deletion for the anchor-word topic model (obliviate.certified): the Gaussian mechanism, the Newton step
and its certificate, the certificate against real retraining, a distributional (KS) test of the released topics,
utility up to the computed capacity, certify(), the downstream head (U_head) and save/load.
Spec: shared/specs/topic-unlearning.md sections 3-5."""

from __future__ import annotations

import copy
import math
from dataclasses import asdict

import numpy as np
import pytest
from scipy import integrate
from scipy.optimize import linear_sum_assignment
from scipy.stats import ks_2samp, norm

from obliviate.certified.deletion import CertificationRefused, PrivacyState, certified_update, release
from obliviate.certified.head import TopicHead
from obliviate.certified.mechanism import (
    check_privacy,
    classic_budget,
    distance_budget,
    hockey_stick,
    noise_scale,
)
from obliviate.certified.newton import column_normalised_bound, newton_step
from obliviate.data.documents import planted_corpus
from obliviate.errors import ObliviateError
from obliviate.families.topic import TopicBundle
from obliviate.models.simplex import project_simplex_columns, simplex_lstsq
from obliviate.models.topic import AnchorTopicModel
from obliviate.models.topic_io import load_bundle, save_bundle

R = 5
EPS, DELTA = 1.0, 1e-5

# ------------------------------------------------------------------------------------------------------- helpers


def matched_errors(A_hat: np.ndarray, A_true: np.ndarray) -> tuple[float, float]:
    """(mean matched L1 column error, Frobenius error of the matched columns); Hungarian matching on L1."""
    cost = np.abs(A_true[:, :, None] - A_hat[:, None, :]).sum(axis=0)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean()), float(np.linalg.norm(A_hat[:, cols] - A_true[:, rows]))


def remaining(n: int, forget: np.ndarray) -> np.ndarray:
    return np.setdiff1d(np.arange(n), forget)


def wilson_hilferty_chi2_90(k: int) -> float:
    """The 0.9 quantile of chi-square(k) by the Wilson-Hilferty approximation k (1 - 2/(9k) + z sqrt(2/(9k)))^3,
    z = Phi^-1(0.9) = 1.2815515655 (relative error ~1e-5 at k >= 300): 1057.71 for k = 1000."""
    z = 1.2815515655446004
    return k * (1 - 2 / (9 * k) + z * math.sqrt(2 / (9 * k))) ** 3


def same_privacy(a: PrivacyState, b: PrivacyState) -> bool:
    """Field-wise equality, NaN == NaN (classic_budget is NaN for epsilon >= 1)."""
    da, db = asdict(a), asdict(b)
    same_nan = all(math.isnan(da[k]) and math.isnan(db[k]) for k in da
                   if isinstance(da[k], float) and da[k] != db[k])
    return da.keys() == db.keys() and same_nan and all(da[k] == db[k] for k in da
                                                       if not (isinstance(da[k], float) and math.isnan(da[k])))


@pytest.fixture(scope="module")
def corpus():
    """20000 documents x 200 words, 5 topics, length 10: the fitted anchors are the planted ones."""
    return planted_corpus(20000, 200, R, doc_length=10, beta=1.0, seed=0)


@pytest.fixture(scope="module")
def fitted(corpus):
    model = AnchorTopicModel(n_topics=R).fit(corpus.counts)
    assert sorted(model.anchors_.tolist()) == sorted(ids[0] for ids in corpus.anchors)
    return model


# ------------------------------------------------------------------------------------------- 1. the mechanism


def _hockey_stick_integral(D: float, sigma: float, eps: float) -> float:
    """int max(0, p(x) - e^eps q(x)) dx, p = N(D, sigma^2), q = N(0, sigma^2). The integrand is > 0 exactly for
    x > x0 = eps sigma^2 / D + D / 2 (where p/q = exp((2xD - D^2) / (2 sigma^2)) exceeds e^eps)."""
    def f(x: float) -> float:
        return max(0.0, norm.pdf(x, D, sigma) - math.exp(eps) * norm.pdf(x, 0.0, sigma))

    x0 = eps * sigma**2 / D + D / 2
    left = integrate.quad(f, x0 - 40 * sigma, x0, epsabs=0, epsrel=1e-12, limit=200)[0]
    right = integrate.quad(f, x0, x0 + 40 * sigma, epsabs=0, epsrel=1e-12, limit=200)[0]
    return left + right


@pytest.mark.parametrize("D,sigma,eps", [(1.0, 1.0, 1.0), (0.3, 1.0, 0.5), (2.0, 0.7, 2.0), (5e-3, 1e-2, 1.0),
                                         (3.0, 1.0, 0.1)])
def test_hockey_stick_equals_numerical_integral(D, sigma, eps):
    exact = _hockey_stick_integral(D, sigma, eps)
    assert exact > 0
    assert hockey_stick(D, sigma, eps) == pytest.approx(exact, rel=1e-7, abs=1e-15)


def test_hockey_stick_hand_values():
    # D = 2 sigma, eps -> 0+: Phi(1) - Phi(-1) = TV distance of N(0,1) and N(2,1) = 0.682689...
    assert hockey_stick(2.0, 1.0, 1e-12) == pytest.approx(0.6826894921370859, rel=1e-9)
    assert hockey_stick(0.0, 1.0, 1.0) == 0.0
    assert hockey_stick(-1.0, 1.0, 1.0) == 0.0


@pytest.mark.parametrize("sigma,eps,delta", [(1.0, 1.0, 1e-5), (0.3, 0.5, 1e-6), (1e-3, 2.0, 1e-3),
                                             (2.0, 0.1, 1e-5)])
def test_distance_budget_solves_hockey_stick_equals_delta(sigma, eps, delta):
    D = distance_budget(sigma, eps, delta)
    assert D > 0
    assert hockey_stick(D, sigma, eps) == pytest.approx(delta, rel=1e-9)
    # the budget is the largest such D: a hair more exceeds delta
    assert hockey_stick(D * (1 + 1e-6), sigma, eps) > delta
    if eps < 1:
        assert D >= classic_budget(sigma, eps, delta)


def test_distance_budget_monotone_and_linear_in_sigma():
    base = distance_budget(1.0, 1.0, 1e-5)
    eps_grid = [distance_budget(1.0, e, 1e-5) for e in (0.1, 0.5, 1.0, 2.0, 4.0)]
    delta_grid = [distance_budget(1.0, 1.0, d) for d in (1e-8, 1e-6, 1e-5, 1e-3, 1e-1)]
    assert (np.diff(eps_grid) > 0).all(), eps_grid
    assert (np.diff(delta_grid) > 0).all(), delta_grid
    for s in (1e-4, 0.5, 3.0, 17.0):
        assert distance_budget(s, 1.0, 1e-5) == pytest.approx(s * base, rel=1e-9)
    # classic (Dwork-Roth) value by hand: eps / sqrt(2 ln(1.25e5)) at sigma = 1, eps = 0.5, delta = 1e-5
    assert classic_budget(1.0, 0.5, 1e-5) == pytest.approx(0.5 / math.sqrt(2 * math.log(1.25e5)), rel=1e-12)
    for eps in (0.1, 0.5, 0.9):
        assert distance_budget(1.0, eps, 1e-5) >= classic_budget(1.0, eps, 1e-5)


def test_noise_scale_gives_probability_0_9_monte_carlo():
    tol, dim = 0.01, 50
    sigma = noise_scale(tol, dim)
    norms = np.linalg.norm(np.random.default_rng(0).normal(0.0, sigma, size=(20000, dim)), axis=1)
    frac = float(np.mean(norms <= tol))
    assert frac == pytest.approx(0.9, abs=0.01), frac
    # hand value for dim 1: P(|N(0, s^2)| <= t) = 0.9 <=> t / s = Phi^-1(0.95) = 1.6448536...
    assert noise_scale(1.0, 1) == pytest.approx(1.0 / 1.6448536269514722, rel=1e-12)
    assert noise_scale(2.0, 50) == pytest.approx(2.0 / tol * sigma, rel=1e-12)


@pytest.mark.parametrize("epsilon,delta", [(0, 1e-5), (-1.0, 1e-5), (math.inf, 1e-5), (math.nan, 1e-5),
                                           (1.0, 0.0), (1.0, 1.0), (1.0, -1e-5), (None, 1e-5), (1.0, None),
                                           ("1", 1e-5)])
def test_bad_epsilon_delta_raise(epsilon, delta, fitted):
    with pytest.raises(ObliviateError):
        check_privacy(epsilon, delta)
    with pytest.raises(ObliviateError):
        PrivacyState.create(epsilon, delta, 0.01, 10)
    before = fitted.components_.copy()
    with pytest.raises(ObliviateError):
        fitted.unlearned(np.zeros((0, fitted.n_features_in_), dtype=np.int64), mode="certified", epsilon=epsilon,
                         delta=delta)
    assert np.array_equal(fitted.components_, before)


def test_bad_tolerance_raises():
    for tol in (0.0, -0.01, math.nan):
        with pytest.raises(ObliviateError):
            noise_scale(tol, 10)


# ------------------------------------------------------------------------------------------- 2. Newton step


def _face_minimum(M: np.ndarray, b: np.ndarray, support: np.ndarray) -> np.ndarray:
    """argmin c^T M c - 2 b^T c on {sum c = 1, c = 0 off support} by its KKT system (written out here)."""
    S = np.flatnonzero(support)
    kkt = np.zeros((S.size + 1, S.size + 1))
    kkt[: S.size, : S.size] = 2 * M[np.ix_(S, S)]
    kkt[: S.size, S.size] = 1.0
    kkt[S.size, : S.size] = 1.0
    sol = np.linalg.solve(kkt, np.append(2 * b[S], 1.0))
    c = np.zeros(b.size)
    c[S] = sol[: S.size]
    return c


def _random_problem(seed: int, k: int = 40, r: int = 6):
    """A strongly convex M and, per row, an optimum c* with a random support and strict complementarity: b is set
    so that the gradient 2(M c* - b) equals lam on the support and lam + nu (nu in [0.5, 1.5]) off it."""
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(r, r))
    M = B @ B.T / r + 0.5 * np.eye(r)
    C, b = np.zeros((k, r)), np.zeros((k, r))
    for i in range(k):
        S = rng.choice(r, size=rng.integers(2, r), replace=False)
        C[i, S] = rng.dirichlet(np.ones(S.size)) * 0.9 + 0.1 / S.size  # entries >= 0.1/|S|
        nu = rng.uniform(0.5, 1.5, size=r)
        nu[S] = 0.0
        b[i] = M @ C[i] - 0.5 * rng.normal() - 0.5 * nu
    return M, C, b


def test_newton_step_hand_example():
    # M = I, r = 2: min c1^2 + c2^2 - 2 (0.3 c1 + 0.1 c2) on c1 + c2 = 1 -> c1 = (1 + 0.3 - 0.1) / 2 = 0.6
    out = newton_step(np.array([[0.5, 0.5]]), np.eye(2), np.array([[0.3, 0.1]]))
    np.testing.assert_allclose(out, [[0.6, 0.4]], rtol=0, atol=1e-15)
    with pytest.raises(ValueError):
        newton_step(np.array([[0.5, 0.5]]), np.eye(2), np.array([[0.3, 0.1]]), steps=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_one_newton_step_is_exact_when_the_support_is_kept(seed):
    M, C_old, b_old = _random_problem(seed)
    rng = np.random.default_rng(100 + seed)
    b_new = b_old + 1e-3 * rng.normal(size=b_old.shape)
    support = C_old > 0
    # the perturbed optimum keeps the support (checked, not assumed): face minimum positive, KKT holds off it
    expected = np.array([_face_minimum(M, b_new[i], support[i]) for i in range(len(b_new))])
    assert (expected[support] > 0).all()
    g = 2 * (expected @ M - b_new)
    lam = np.where(support, g, np.inf).min(axis=1)
    assert (np.where(support, np.inf, g) > lam[:, None] + 0.1).all()
    ref = simplex_lstsq(M, b_new, tol=1e-15)
    np.testing.assert_allclose(ref.c, expected, rtol=0, atol=1e-10)
    out = newton_step(C_old, M, b_new)
    np.testing.assert_allclose(out, ref.c, rtol=0, atol=1e-10)
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    assert np.abs(out - C_old).max() > 1e-5  # the step really moved


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_newton_step_needs_more_steps_when_the_support_changes(seed):
    M, C_old, b_old = _random_problem(seed)
    r = M.shape[0]
    b_new = b_old.copy()
    # push the smallest support coordinate of every row out: lower its b by a lot (its gradient rises by 2 x 2)
    j = np.argmin(np.where(C_old > 0, C_old, np.inf), axis=1)
    b_new[np.arange(len(b_new)), j] -= 2.0
    ref = simplex_lstsq(M, b_new, tol=1e-15)
    changed = ((ref.c > 1e-9) != (C_old > 0)).any(axis=1)
    assert changed.all()
    one = newton_step(C_old, M, b_new)
    err_one = np.abs(one - ref.c).max(axis=1)
    assert err_one.max() > 1e-3, err_one
    many = newton_step(C_old, M, b_new, steps=3 * r)
    np.testing.assert_allclose(many, ref.c, rtol=0, atol=1e-10)


def test_column_normalised_bound_hand_example():
    # 2 words, 1 topic: w = (1, 3), C = (1, 1)^T, beta = (0.1, 0.2) -> e = w beta = (0.1, 0.6), |u|_1 = w.C = 4,
    # bound = (||e||_2 + sum e) / 4 = (sqrt(0.37) + 0.7) / 4
    w, C, beta = np.array([1.0, 3.0]), np.array([[1.0], [1.0]]), np.array([0.1, 0.2])
    assert column_normalised_bound(w, C, beta) == pytest.approx((math.sqrt(0.37) + 0.7) / 4, rel=1e-14)
    # the true distance for C' = (1.1, 0.8): u = (1, 3)/4, u' = (1.1, 2.4)/3.5
    true = np.linalg.norm(np.array([1, 3]) / 4 - np.array([1.1, 2.4]) / 3.5)
    assert true <= column_normalised_bound(w, C, beta)
    assert column_normalised_bound(w, np.array([[0.0], [0.0]]), beta) == math.inf
    assert column_normalised_bound(w, C, np.array([np.inf, 0.1])) == math.inf


def test_column_normalised_bound_is_an_upper_bound():
    rng = np.random.default_rng(0)
    for trial in range(200):
        n, r = int(rng.integers(2, 30)), int(rng.integers(1, 6))
        w = rng.uniform(0.01, 2.0, size=n)
        C = rng.dirichlet(np.ones(r), size=n) if trial % 2 else rng.uniform(0, 1, size=(n, r))
        beta = rng.uniform(0, 0.3, size=n) * (1.0 if rng.uniform() < 0.5 else 0.01)
        # extreme points of the box (clipped at 0, so C' stays a non-negative matrix and |C - C'| <= beta)
        d = beta[:, None] * (rng.choice([-1.0, 1.0], size=(n, r)) if trial % 3 else rng.uniform(-1, 1, (n, r)))
        C2 = np.maximum(C + d, 0.0)
        assert (np.abs(C2 - C) <= beta[:, None] + 1e-15).all()
        U, U2 = w[:, None] * C, w[:, None] * C2
        if (U2.sum(axis=0) <= 0).any():
            continue
        true = np.linalg.norm(U / U.sum(axis=0) - U2 / U2.sum(axis=0))
        bound = column_normalised_bound(w, C, beta)
        assert true <= bound * (1 + 1e-12), (trial, true, bound)


# ----------------------------------------------------------------------- 3. the certificate on real deletions


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_certificate_bounds_the_true_pre_noise_distance(corpus, fitted):
    # tolerance 10 makes sigma ~0.3, so the release is noise (and its R can hold inf, hence the filters); only the
    # pre-noise solution and the certificate matter here, and the budget never refuses
    X, rng = corpus.counts, np.random.default_rng(1)
    changes = []
    for k in (1, 5, 20, 50):
        forget = rng.choice(X.shape[0], size=k, replace=False)
        retrained = AnchorTopicModel(n_topics=R).fit(X[remaining(X.shape[0], forget)])
        for steps in (1, 3 * R):
            model = fitted.unlearned(X[forget], mode="certified", epsilon=EPS, delta=DELTA, tolerance=10.0,
                                     newton_steps=steps, random_state=0)
            rec = model.deletions_[-1]
            assert np.array_equal(model.anchors_, retrained.anchors_)
            dist = float(np.linalg.norm(model._solution.A - retrained._solution.A))
            assert rec["certificate"] >= dist, (k, steps, rec["certificate"], dist)
            assert rec["certificate"] >= rec["certificate_floor"] > 0
            assert model.n_docs_ == X.shape[0] - k and "fallback" not in rec
            if steps > 1:
                assert dist <= 1e-12, (k, dist)
            else:
                changes.append(rec["support_changes"])
    # the one-step updates include words whose support changed (certificate well above its floor)
    assert sum(changes) > 0, changes


def test_pre_noise_distance_grows_with_the_deletions(corpus, fitted, capsys):
    """One Newton step is exact for every word whose support the deletion keeps; the error comes from the words
    whose support changes, more of them the more is deleted. Averaged over 6 nested random forget sequences."""
    X, p = corpus.counts, fitted._learner()
    ks = [5, 10, 20, 40, 80]
    dist = np.zeros((6, len(ks)))
    cert = np.zeros((6, len(ks)))
    for s in range(6):
        order = np.random.default_rng(10 + s).permutation(X.shape[0])
        for j, k in enumerate(ks):
            stats, touched = fitted.statistics_.without(X[order[:k]])
            sol, info = certified_update(stats, touched, fitted._solution, p, newton_steps=1)
            retrained = AnchorTopicModel(n_topics=R).fit(X[order[k:]])
            assert np.array_equal(sol.anchors, retrained.anchors_)
            dist[s, j] = np.linalg.norm(sol.A - retrained._solution.A)
            cert[s, j] = info["certificate"]
            assert cert[s, j] >= dist[s, j]
            if k == ks[-1]:
                exact, _ = certified_update(stats, touched, fitted._solution, p, newton_steps=3 * R)
                assert np.linalg.norm(exact.A - retrained._solution.A) <= 1e-12
    mean = dist.mean(axis=0)
    slope = float(np.polyfit(np.log(ks), np.log(mean), 1)[0])
    cert_slope = float(np.polyfit(np.log(ks), np.log(cert.mean(axis=0)), 1)[0])
    with capsys.disabled():
        print(f"\npre-noise distance vs deletions {ks}: mean {np.array2string(mean, precision=3)}; log-log slope "
              f"{slope:.2f} (certificate slope {cert_slope:.2f})")
    assert slope > 0.5, f"log-log slope of the pre-noise distance vs deletions is {slope:.3f}: {mean}"
    assert mean[-1] > mean[0], mean


# --------------------------------------------------------------------------------- 4. distributional test

N_RELEASES = 2000


def _projected_releases(solution, stats, sigma: float, u: np.ndarray, seed: int) -> np.ndarray:
    out = np.empty(N_RELEASES)
    for i in range(N_RELEASES):
        A, _, _ = release(solution, stats, sigma, "anchor", np.random.default_rng([seed, i]))
        out[i] = float(np.sum(A * u))
    return out


def _direction(diff: np.ndarray) -> np.ndarray:
    norm_ = np.linalg.norm(diff)
    if norm_ < 1e-12:
        diff = np.random.default_rng(7).normal(size=diff.shape)
        norm_ = np.linalg.norm(diff)
    return diff / norm_


# forget sets (the first 20 of a seeded order): one the default tolerance accepts (every support kept, so the
# Newton step is exact), and one whose Newton step changes a support (certificate ~3e-3: certified at tolerance 1)
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
@pytest.mark.parametrize("order_seed,tolerance,support_changes", [(100, 0.01, 0), (0, 1.0, 1)])
def test_released_topics_are_indistinguishable_from_retraining(corpus, fitted, order_seed, tolerance,
                                                               support_changes, capsys):
    X = corpus.counts
    forget = np.random.default_rng(order_seed).permutation(X.shape[0])[:20]
    model = fitted.unlearned(X[forget], mode="certified", epsilon=EPS, delta=DELTA, tolerance=tolerance,
                             random_state=0)
    rec = model.deletions_[-1]
    assert rec["support_changes"] == support_changes
    retrained = AnchorTopicModel(n_topics=R).fit(X[remaining(X.shape[0], forget)])
    sigma, budget = model.privacy_.sigma, model.privacy_.budget
    diff = model._solution.A - retrained._solution.A
    assert rec["certificate"] <= budget and np.linalg.norm(diff) <= rec["certificate"]
    u = _direction(diff)
    ours = _projected_releases(model._solution, model.statistics_, sigma, u, 1)
    theirs = _projected_releases(retrained._solution, retrained.statistics_, sigma, u, 2)
    p = ks_2samp(ours, theirs).pvalue
    shift = abs(ours.mean() - theirs.mean()) / sigma
    with capsys.disabled():
        print(f"\nKS certified vs retrain (tolerance {tolerance}, support changes {support_changes}): p={p:.3g}, "
              f"mean shift {shift:.3g} sigma, pre-noise {np.linalg.norm(diff) / sigma:.2g} sigma, budget "
              f"{budget / sigma:.3g} sigma")
    assert p > 0.01, p
    assert shift <= budget / sigma, (shift, budget / sigma)


def test_broken_mechanisms_are_rejected(corpus, fitted, capsys):
    """The same test rejects (a) releasing the original model (no deletion) with the right noise, for a forget set
    that moves retraining by several sigma, and (b) the right models with sigma / 20."""
    X = corpus.counts
    order = np.random.default_rng(100).permutation(X.shape[0])
    sigma = noise_scale(0.01, fitted.components_.size)
    assert sigma == pytest.approx(0.01 / math.sqrt(wilson_hilferty_chi2_90(1000)), rel=1e-4)
    big = AnchorTopicModel(n_topics=R).fit(X[order[100:]])
    gap = fitted._solution.A - big._solution.A
    assert np.linalg.norm(gap) > 5 * sigma
    u = _direction(gap)
    a = _projected_releases(fitted._solution, fitted.statistics_, sigma, u, 3)
    b = _projected_releases(big._solution, big.statistics_, sigma, u, 4)
    p_original = ks_2samp(a, b).pvalue
    model = fitted.unlearned(X[order[:20]], mode="certified", epsilon=EPS, delta=DELTA, random_state=0)
    retrained = AnchorTopicModel(n_topics=R).fit(X[order[20:]])
    u = _direction(fitted._solution.A - retrained._solution.A)
    c = _projected_releases(fitted._solution, fitted.statistics_, sigma / 20, u, 5)
    d = _projected_releases(model._solution, model.statistics_, sigma / 20, u, 6)
    p_small = ks_2samp(c, d).pvalue
    with capsys.disabled():
        print(f"\nKS broken: original model at {np.linalg.norm(gap) / sigma:.3g} sigma: p={p_original:.3g}; "
              f"original vs unlearned (20 docs) with sigma/20: p={p_small:.3g}")
    assert p_original < 1e-6 and p_small < 1e-6, (p_original, p_small)


# ----------------------------------------------------------------------- 5. utility up to the capacity


def test_utility_holds_up_to_the_computed_capacity(corpus, fitted, capsys):
    X, truth = corpus.counts, corpus.topics
    model = copy.deepcopy(fitted)
    order = np.random.default_rng(100).permutation(X.shape[0])
    accepted, refused = 0, False
    worst_margin = math.inf
    for step in range(30):
        batch = order[5 * step: 5 * step + 5]
        before = (model.components_.copy(), model.statistics_.G.copy(), model.n_docs_, len(model.deletions_),
                  copy.deepcopy(model.privacy_))
        try:
            rec = model.unlearn(X[batch], mode="certified", epsilon=EPS, delta=DELTA, newton_steps=1,
                                random_state=step)
        except CertificationRefused:
            refused = True
            assert np.array_equal(model.components_, before[0]) and np.array_equal(model.statistics_.G, before[1])
            assert model.n_docs_ == before[2] and len(model.deletions_) == before[3]
            assert same_privacy(model.privacy_, before[4])
            # and the refused documents are still in the model: an exact deletion of them works
            assert model.unlearned(X[batch]).n_docs_ == model.n_docs_ - 5
            break
        accepted += 1
        assert rec["capacity_used"] <= 1.0 and rec["certificate"] <= rec["budget"]
        est = rec["remaining_capacity_estimate"]
        assert est is None or (isinstance(est, int) and est >= 0)
        assert model.privacy_.deletions == 5 * accepted
        # the model's own release is release() with default_rng(random_state)
        sigma = model.privacy_.sigma
        own, _, _ = release(model._solution, model.statistics_, sigma, "anchor", np.random.default_rng(step))
        assert np.array_equal(own.T, model.components_)
        retrained = AnchorTopicModel(n_topics=R).fit(X[order[5 * accepted:]])
        ref_fro = matched_errors(retrained._solution.A, truth)[1]
        ok = 0
        for seed in range(10):
            A, _, _ = release(model._solution, model.statistics_, sigma, "anchor", np.random.default_rng(seed))
            fro = matched_errors(A, truth)[1]
            ok += fro <= ref_fro + 0.01
            worst_margin = min(worst_margin, ref_fro + 0.01 - fro)
        assert ok >= 9, (step, ok)
    with capsys.disabled():
        print(f"\ncapacity at tolerance 0.01, newton_steps=1: {accepted} batches of 5 accepted "
              f"({5 * accepted} documents), refused next: {refused}; last estimate "
              f"{model.deletions_[-1].get('remaining_capacity_estimate') if model.deletions_ else None}; "
              f"worst utility margin {worst_margin:.3g}")
    assert accepted >= 1  # this forget order is accepted for a while (10 batches measured)


# --------------------------------------------------------------------------------------------- 6. certify()


def test_certify_releases_noise_without_deletions(fitted):
    model = copy.deepcopy(fitted)
    rec = model.certify(EPS, DELTA, random_state=3)
    assert rec["deleted"] == 0 and model.n_docs_ == fitted.n_docs_ and rec["certificate"] < 1e-8
    assert model.privacy_.releases == 1 and model.privacy_.deletions == 0
    assert np.array_equal(model._solution.A, fitted._solution.A)
    noise = np.linalg.norm(model.components_ - fitted.components_)
    assert 0 < noise <= 0.01  # projected noise; <= tolerance with probability 0.9 (seed 3 measured)
    np.testing.assert_allclose(model.components_.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # the release is exactly: A + N(0, sigma^2) per entry, sigma for P(||noise||_F <= 0.01) = 0.9 over 200 x 5
    # entries, columns projected onto the simplex
    sigma = model.privacy_.sigma
    assert sigma == pytest.approx(0.01 / math.sqrt(wilson_hilferty_chi2_90(1000)), rel=1e-4)
    noisy = fitted._solution.A + np.random.default_rng(3).normal(0.0, sigma, size=fitted._solution.A.shape)
    assert np.array_equal(model.components_, project_simplex_columns(noisy).T)
    with pytest.raises(ObliviateError, match="epsilon"):
        model.certify(0.5, DELTA)
    with pytest.raises(ObliviateError):
        model.unlearn(np.zeros((0, fitted.n_features_in_), dtype=np.int64), mode="certified", epsilon=EPS, delta=DELTA,
                      tolerance=0.02)
    same = copy.deepcopy(fitted)
    same.certify(EPS, DELTA, random_state=3)
    assert np.array_equal(same.components_, model.components_)
    assert np.array_equal(same.topic_cooccurrence_, model.topic_cooccurrence_)
    other = copy.deepcopy(fitted)
    other.certify(EPS, DELTA, random_state=4)
    assert not np.array_equal(other.components_, model.components_)
    # a second certify with the same privacy parameters is allowed and adds a release
    model.certify(EPS, DELTA, random_state=5)
    assert model.privacy_.releases == 2


# -------------------------------------------------------------------------------------------- 7. U_head


@pytest.fixture(scope="module")
def head_corpus():
    return planted_corpus(20000, 300, R, doc_length=50, beta=1.0, seed=0)


@pytest.fixture(scope="module")
def head_base(head_corpus):
    return AnchorTopicModel(n_topics=R).fit(head_corpus.counts[:15000])


def test_head_unlearns_pretraining_documents(head_corpus, head_base, capsys):
    X, y = head_corpus.counts, head_corpus.labels
    Xt, yt, Xs, ys = X[15000:18000], y[15000:18000], X[18000:], y[18000:]
    model = head_base
    comp, n_docs = model.components_.copy(), model.n_docs_
    head = TopicHead().fit(model, Xt, yt)
    acc_before = head.score(Xs, ys)
    forget = np.arange(10)
    rec = head.unlearn(model, X[forget], Xt, yt, epsilon=EPS, delta=DELTA, random_state=0)
    assert np.array_equal(model.components_, comp) and model.n_docs_ == n_docs
    retrained = AnchorTopicModel(n_topics=R).fit(X[10:15000])
    ref = TopicHead().fit(retrained, Xt, yt)
    acc, acc_ref = head.score(Xs, ys), ref.score(Xs, ys)
    assert abs(acc - acc_ref) <= 0.02, (acc, acc_ref)
    n = model.n_features_in_
    A_f = model.unlearned(X[forget])._solution.A
    pre = np.append(n * (A_f @ head.theta_[:-1]), head.theta_[-1])
    dist = float(np.linalg.norm(pre - np.append(ref.product_, ref.intercept_)))
    assert rec["certificate"] >= dist and rec["certificate"] <= rec["budget"], (rec["certificate"], dist)
    assert rec["capacity_used"] <= 1.0 and head.privacy_.deletions == 10
    # the released product is the pre-noise one plus noise of the recorded sigma
    released = np.append(head.product_, head.intercept_)
    sigma = head.privacy_.sigma
    assert sigma == pytest.approx(0.01 / math.sqrt(wilson_hilferty_chi2_90(n + 1)), rel=1e-4)
    assert np.array_equal(released, pre + np.random.default_rng(0).normal(0.0, sigma, size=n + 1))
    with capsys.disabled():
        print(f"\nhead accuracy: before {acc_before:.4f}, after U_head {acc:.4f}, retrained {acc_ref:.4f}; "
              f"certificate {rec['certificate']:.3g} >= true {dist:.3g}, budget {rec['budget']:.3g}")

    # a large deletion (3000 documents; the anchors keep their order) cannot be certified: refused, unchanged
    head2 = TopicHead().fit(model, Xt, yt)
    state = (head2.theta_.copy(), head2.product_.copy(), head2.intercept_, head2.privacy_, list(head2.deletions_))
    with pytest.raises(CertificationRefused, match="exceeds the budget"):
        head2.unlearn(model, X[:3000], Xt, yt, epsilon=EPS, delta=DELTA, fallback=False, random_state=0)
    assert np.array_equal(head2.theta_, state[0]) and np.array_equal(head2.product_, state[1])
    assert head2.intercept_ == state[2] and head2.privacy_ is state[3] and head2.deletions_ == state[4]
    assert np.array_equal(model.components_, comp)
    rec2 = head2.unlearn(model, X[:3000], Xt, yt, epsilon=EPS, delta=DELTA, fallback=True, random_state=0)
    assert "fallback" in rec2 and rec2["certificate"] <= rec2["budget"]
    ref2 = TopicHead().fit(AnchorTopicModel(n_topics=R).fit(X[3000:15000]), Xt, yt)
    np.testing.assert_allclose(head2.theta_, ref2.theta_, rtol=0, atol=1e-6)


def test_head_follows_a_reordering_of_the_same_anchors(head_corpus, head_base):
    X, y = head_corpus.counts, head_corpus.labels
    Xt, yt = X[15000:18000], y[15000:18000]
    reordered = head_base.unlearned(X[:200]).anchors_
    assert sorted(reordered.tolist()) == sorted(head_base.anchors_.tolist())
    assert not np.array_equal(reordered, head_base.anchors_)  # 200 deletions swap two topics
    head = TopicHead().fit(head_base, Xt, yt)
    # tolerance 100 -> budget ~1.47: covers the measured 4.5e-3 of a head that follows the reordering
    rec = head.unlearn(head_base, X[:200], Xt, yt, epsilon=EPS, delta=DELTA, tolerance=100.0, random_state=0)
    assert rec["certificate"] < 0.1


def test_head_regression_task(head_corpus, head_base):
    X = head_corpus.counts
    target = head_corpus.doc_topics @ np.array([1.0, -2.0, 0.5, 3.0, -1.0])
    Xt, yt, Xs, ys = X[15000:18000], target[15000:18000], X[18000:], target[18000:]
    head = TopicHead(task="regression").fit(head_base, Xt, yt)
    r2 = head.score(Xs, ys)
    assert r2 > 0.7, r2  # measured 0.762
    rec = head.unlearn(head_base, X[:10], Xt, yt, epsilon=EPS, delta=DELTA, random_state=0)
    # squared loss: one Newton step is exact, the certificate is float noise
    assert rec["certificate"] < 1e-9
    ref = TopicHead(task="regression").fit(AnchorTopicModel(n_topics=R).fit(X[10:15000]), Xt, yt)
    assert abs(head.score(Xs, ys) - ref.score(Xs, ys)) <= 0.02
    np.testing.assert_allclose(head.theta_, ref.theta_, rtol=0, atol=1e-8)
    with pytest.raises(ObliviateError, match="task"):
        TopicHead(task="ranking").fit(head_base, Xt, yt)
    with pytest.raises(ObliviateError, match="0 or 1"):
        TopicHead().fit(head_base, Xt, yt)


# --------------------------------------------------------------------------------------------- 8. save / load


def test_save_load_round_trip(corpus, fitted, tmp_path):
    X, y = corpus.counts, corpus.labels
    model = copy.deepcopy(fitted)
    model.unlearn(X[:3], mode="certified", epsilon=EPS, delta=DELTA, random_state=0)
    head = TopicHead().fit(model, X[100:2000], y[100:2000])
    head.unlearn(model, X[3:5], X[100:2000], y[100:2000], epsilon=EPS, delta=DELTA, random_state=1)
    path = save_bundle(TopicBundle(model, head), tmp_path / "bundle")
    with pytest.raises(ObliviateError, match="already exists"):
        save_bundle(TopicBundle(model, head), tmp_path / "bundle")
    loaded = load_bundle(path)
    m2, h2 = loaded.model, loaded.head
    for attr in ("components_", "anchors_", "topic_cooccurrence_", "word_topic_posterior_"):
        assert np.array_equal(getattr(m2, attr), getattr(model, attr)), attr
    s, s2 = model.statistics_, m2.statistics_
    assert np.array_equal(s.G, s2.G) and s.m == s2.m and np.array_equal(s.doc_freq, s2.doc_freq)
    assert s.hashes == s2.hashes
    for f in ("C", "gaps", "exact", "A", "R", "anchors"):
        assert np.array_equal(getattr(model._solution, f), getattr(m2._solution, f)), f
    assert same_privacy(m2.privacy_, model.privacy_) and m2.get_params() == model.get_params()
    assert m2.n_docs_ == model.n_docs_ == X.shape[0] - 3
    assert [d["deleted"] for d in m2.deletions_] == [3]
    assert np.array_equal(h2.theta_, head.theta_) and np.array_equal(h2.product_, head.product_)
    assert h2.intercept_ == head.intercept_ and same_privacy(h2.privacy_, head.privacy_) and h2.get_params() == head.get_params()
    assert h2.score(X[2000:4000], y[2000:4000]) == head.score(X[2000:4000], y[2000:4000])
    # the reloaded model still knows which documents it holds
    with pytest.raises(ObliviateError, match="not in the corpus"):
        m2.unlearn(X[:1], mode="certified", epsilon=EPS, delta=DELTA)
    with pytest.raises(ObliviateError, match="epsilon"):
        m2.unlearn(X[5:6], mode="certified", epsilon=2.0, delta=DELTA)
    rec = m2.unlearn(X[5:6], mode="certified", epsilon=EPS, delta=DELTA, random_state=0)
    assert rec["n_docs_after"] == X.shape[0] - 4 and m2.privacy_.deletions == 4
    # no head: saved and loaded as None
    bare = load_bundle(save_bundle(TopicBundle(fitted), tmp_path / "bare"))
    assert bare.head is None and bare.model.privacy_ is None
    assert np.array_equal(bare.model.components_, fitted.components_)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ObliviateError, match="not a saved topic model"):
        load_bundle(tmp_path / "empty")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "topic_model.json").write_text((path / "topic_model.json").read_text())
    with pytest.raises(ObliviateError, match="not a saved topic model"):
        load_bundle(tmp_path / "half")
    with pytest.raises(ObliviateError):
        load_bundle(tmp_path / "missing")
