"""LoTUS comparisons (obliviate.metrics.divergence) against hand-derived values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from obliviate.errors import ObliviateError
from obliviate.metrics.divergence import avg_gap, class_means, entropy, entropy_mia, js_divergence, rf_jsd


def test_faithful_jsdiv_hand_value_is_kl_from_the_mixture():
    P, Q = np.array([[0.5, 0.5]]), np.array([[0.25, 0.75]])
    m = (0.375, 0.625)
    kl_m_p = m[0] * math.log(m[0] / 0.5) + m[1] * math.log(m[1] / 0.5)
    kl_m_q = m[0] * math.log(m[0] / 0.25) + m[1] * math.log(m[1] / 0.75)
    assert js_divergence(P, Q) == pytest.approx(0.5 * (kl_m_p + kl_m_q), rel=1e-12)
    # the textbook direction is KL(P || M): a different number
    kl_p_m = 0.5 * math.log(0.5 / m[0]) + 0.5 * math.log(0.5 / m[1])
    kl_q_m = 0.25 * math.log(0.25 / m[0]) + 0.75 * math.log(0.75 / m[1])
    assert js_divergence(P, Q, faithful=False) == pytest.approx(0.5 * (kl_p_m + kl_q_m), rel=1e-12)
    assert js_divergence(P, Q) != pytest.approx(js_divergence(P, Q, faithful=False), rel=1e-3)


def test_faithful_jsdiv_scales_as_one_over_n():
    P, Q = np.array([[0.7, 0.2, 0.1]]), np.array([[0.1, 0.3, 0.6]])
    one = js_divergence(P, Q)
    for n in (2, 5, 40):
        assert js_divergence(np.repeat(P, n, 0), np.repeat(Q, n, 0)) == pytest.approx(one / n, rel=1e-12)
        assert js_divergence(np.repeat(P, n, 0), np.repeat(Q, n, 0), faithful=False) == pytest.approx(
            js_divergence(P, Q, faithful=False), rel=1e-12)


def test_jsd_identity_symmetry_and_bounds():
    rng = np.random.default_rng(0)
    P, Q = rng.dirichlet(np.ones(5), 30), rng.dirichlet(np.ones(5), 30)
    for faithful in (True, False):
        assert js_divergence(P, P, faithful) == pytest.approx(0.0, abs=1e-15)
        assert js_divergence(P, Q, faithful) == pytest.approx(js_divergence(Q, P, faithful), rel=1e-12)
    disjoint = js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]), faithful=False)
    assert disjoint == pytest.approx(math.log(2), rel=1e-12)
    # faithful clamps zeros to 1e-8, then measures KL *from* the mixture: finite but not bounded by ln 2
    p1, p2 = 1 / (1 + 1e-8), 1e-8 / (1 + 1e-8)
    kl_m_p = 0.5 * math.log(0.5 / p1) + 0.5 * math.log(0.5 / p2)
    got = js_divergence(np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]]))
    assert got == pytest.approx(kl_m_p, rel=1e-9) and got > math.log(2)


def test_rf_jsd_is_zero_when_class_means_coincide_and_drops_absent_classes():
    rng = np.random.default_rng(1)
    means = rng.dirichlet(np.ones(4), 4)
    f_labels = np.array([0, 0, 2, 2, 2])
    forget = means[f_labels]
    t_labels = np.array([0, 1, 2, 3, 0, 2])
    test = means[t_labels]
    assert rf_jsd(forget, f_labels, test, t_labels) == pytest.approx(0.0, abs=1e-15)
    moved = forget.copy()
    moved[f_labels == 2] = means[1]
    expected = js_divergence(np.stack([means[0], means[1]]), np.stack([means[0], means[2]]))
    assert rf_jsd(moved, f_labels, test, t_labels) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ObliviateError, match="no test samples"):
        rf_jsd(forget, f_labels, test[t_labels != 2], t_labels[t_labels != 2])


def test_class_means_renormalise():
    probs = np.array([[0.2, 0.8], [0.6, 0.4], [1.0, 0.0]])
    got = class_means(probs, [0, 0, 1])
    assert np.allclose(got[0], [0.4, 0.6]) and np.allclose(got[1], [1.0, 0.0])


def test_entropy_drops_zero_terms_and_mia_separates():
    assert entropy(np.array([[1.0, 0.0], [0.5, 0.5]])) == pytest.approx([0.0, math.log(2)])
    rng = np.random.default_rng(2)
    confident = np.column_stack([rng.uniform(0.95, 1.0, 200), np.zeros(200)])
    confident[:, 1] = 1 - confident[:, 0]
    unsure = np.column_stack([rng.uniform(0.5, 0.7, 200), np.zeros(200)])
    unsure[:, 1] = 1 - unsure[:, 0]
    assert entropy_mia(confident, unsure, confident[:50]) == 1.0  # forget looks like training data
    assert entropy_mia(confident, unsure, unsure[:50]) == 0.0  # forget looks unseen


def test_avg_gap_hand_value():
    assert avg_gap({"mia": 0.5, "forget": 0.9, "retain": 1.0, "test": 0.8},
                   {"mia": 0.4, "forget": 0.8, "retain": 0.95, "test": 0.85}) == pytest.approx((0.1 + 0.1 + 0.05 + 0.05) / 4)
    with pytest.raises(ObliviateError, match="missing"):
        avg_gap({"mia": 0.5}, {"mia": 0.4})
