"""Monte Carlo proxy moments: statistically consistent with the accurate moments, seeded."""

from __future__ import annotations

import numpy as np
import pytest

import pnref
from pnref.moments import montecarlo, quadrature

_CASES = [("relu", 0.0, 1.0), ("relu", -1.0, 0.5), ("gelu", 0.3, 1.7), ("silu", -0.5, 2.0),
          ("tanh", 0.8, 0.6)]


def _accurate_central_moments(name, m, s):
    """Mean, variance and fourth central moment by quadrature (1e-13, see its tests)."""
    act = pnref.activation(name)
    x, w = quadrature.nodes(np.array([m]), np.array([s]), 64)
    f = act.f(m + s * x[0])
    mean = np.sum(w[0] * f)
    centred = f - mean
    return mean, np.sum(w[0] * centred**2), np.sum(w[0] * centred**4)


@pytest.mark.parametrize(("name", "m", "s"), _CASES)
def test_within_five_standard_errors(name, m, s):
    n = 20_000
    mean_mc, var_mc = pnref.proxy_moments(name, s, m, method="montecarlo", n=n, seed=7)
    mean, var, fourth = _accurate_central_moments(name, m, s)
    # Central limit theorem: the sample mean has standard error sqrt(var / n) and the
    # population sample variance sqrt((mu4 - var^2) / n) (its O(1/n) bias, var / n, is
    # far below one standard error here). With a fixed seed the test is deterministic;
    # 5 standard errors would be exceeded by chance with probability ~6e-7 per check.
    assert abs(float(mean_mc) - mean) <= 5 * np.sqrt(var / n)
    assert abs(float(var_mc) - var) <= 5 * np.sqrt((fourth - var**2) / n)


def test_error_shrinks_like_one_over_sqrt_n():
    # Averaged over 8 seeds, the RMS error of the mean at n = 32000 must be well below
    # that at n = 500 (expected ratio sqrt(64) = 8; accept > 3 to leave room for the
    # spread of an 8-sample RMS).
    mean, _, _ = _accurate_central_moments("gelu", 0.2, 1.0)

    def rms_error(n):
        errors = [float(pnref.proxy_moments("gelu", 1.0, 0.2, method="montecarlo", n=n,
                                            seed=seed)[0]) - mean for seed in range(8)]
        return np.sqrt(np.mean(np.square(errors)))

    assert rms_error(500) > 3 * rms_error(32_000)


def test_seeded_and_reproducible():
    first = pnref.proxy_moments("relu", 1.0, 0.1, method="montecarlo", n=1000, seed=3)
    again = pnref.proxy_moments("relu", 1.0, 0.1, method="montecarlo", n=1000, seed=3)
    other = pnref.proxy_moments("relu", 1.0, 0.1, method="montecarlo", n=1000, seed=4)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)
    # The default seed is 0, so a forward and a VJP call without a seed share draws.
    assert np.array_equal(
        pnref.proxy_moments("relu", 1.0, 0.1, method="montecarlo", n=1000),
        pnref.proxy_moments("relu", 1.0, 0.1, method="montecarlo", n=1000, seed=0),
    )


def test_is_the_sample_estimator_of_its_draws():
    # Definition check: sample mean and population variance of f(m + s X_i).
    x = montecarlo.draws(500, 9)
    z = 0.4 + 1.3 * x
    f = np.maximum(z, 0.0)
    mean, var = pnref.proxy_moments("relu", 1.3, 0.4, method="montecarlo", n=500, seed=9)
    # Same float64 sums in possibly different association: a few ulps.
    assert abs(float(mean) - np.mean(f)) <= 1e-14 * np.max(np.abs(f))
    assert abs(float(var) - np.var(f)) <= 1e-14 * np.var(f)


def test_derivative_is_exact_for_the_same_draws():
    # d mean / d beta of the sampled estimator = fraction of draws with Z_i > 0, exactly.
    x = montecarlo.draws(1000, 2)
    grads = pnref.proxy_moments_vjp(1.0, None, "relu", 0.9, -0.2, method="montecarlo",
                                    n=1000, seed=2)
    assert float(grads[1]) == np.count_nonzero(-0.2 + 0.9 * x > 0) / 1000
