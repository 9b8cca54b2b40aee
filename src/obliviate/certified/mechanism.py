"""The Gaussian mechanism used by certified deletion: noise scale from a utility tolerance, and the largest distance
between the pre-noise output and retraining's that the noise covers at (epsilon, delta).

Two outputs x + N(0, s^2 I) and y + N(0, s^2 I) with ||x - y|| <= D are (eps, delta)-indistinguishable iff the
hockey-stick divergence of N(0, s^2) and N(D, s^2) is <= delta (Balle & Wang, ICML 2018, Thm. 8):
    delta(eps) = Phi(D/(2s) - eps s/D) - e^eps Phi(-D/(2s) - eps s/D).
It is increasing in D, so the budget D is found by bisection; this is exact for every eps > 0, unlike the classic
s >= D sqrt(2 ln(1.25/delta))/eps (Dwork & Roth, Thm. A.1), which needs eps < 1 and is looser.
"""

from __future__ import annotations

import math

from scipy.special import ndtr
from scipy.stats import chi2

from obliviate.errors import ObliviateError

UTILITY_PROBABILITY = 0.9  # Definition 4 of the paper: with probability >= 0.9 ...
UTILITY_TOLERANCE = 0.01  # ... the loss is within 0.01 of the best achievable one


def check_privacy(epsilon: float | None, delta: float | None) -> tuple[float, float]:
    if epsilon is None or delta is None:
        raise ObliviateError("certified deletion needs epsilon and delta (e.g. epsilon=1.0, delta=1e-5)")
    if not (isinstance(epsilon, (int, float)) and epsilon > 0 and math.isfinite(epsilon)):
        raise ObliviateError(f"epsilon={epsilon!r} must be a finite number > 0")
    if not (isinstance(delta, (int, float)) and 0.0 < delta < 1.0):
        raise ObliviateError(f"delta={delta!r} must be in (0, 1)")
    return float(epsilon), float(delta)


def noise_scale(tolerance: float, dim: int, probability: float = UTILITY_PROBABILITY) -> float:
    """sigma with P(||N(0, sigma^2 I_dim)||_2 <= tolerance) = probability: the noise alone moves the released
    matrix by at most ``tolerance`` (Frobenius) with that probability (chi-square quantile)."""
    if not tolerance > 0:
        raise ObliviateError(f"tolerance={tolerance!r} must be > 0")
    return float(tolerance / math.sqrt(chi2.ppf(probability, dim)))


def hockey_stick(distance: float, sigma: float, epsilon: float) -> float:
    """delta(epsilon) between N(0, sigma^2) and N(distance, sigma^2) (Balle & Wang 2018, Thm. 8)."""
    if distance <= 0:
        return 0.0
    a, b = distance / (2 * sigma), epsilon * sigma / distance
    return float(ndtr(a - b) - math.exp(epsilon) * ndtr(-a - b))


def distance_budget(sigma: float, epsilon: float, delta: float) -> float:
    """The largest D for which noise sigma makes outputs D apart (epsilon, delta)-indistinguishable."""
    lo, hi = 0.0, sigma
    while hockey_stick(hi, sigma, epsilon) <= delta:
        hi *= 2.0
    for _ in range(100):  # 2^-100 of the bracket: far below float precision
        mid = 0.5 * (lo + hi)
        if hockey_stick(mid, sigma, epsilon) <= delta:
            lo = mid
        else:
            hi = mid
    return lo


def classic_budget(sigma: float, epsilon: float, delta: float) -> float:
    """The textbook D = sigma eps / sqrt(2 ln(1.25/delta)) (valid for eps < 1); reported for comparison."""
    return sigma * epsilon / math.sqrt(2.0 * math.log(1.25 / delta))
