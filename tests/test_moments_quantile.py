"""The official quantile estimator: reference values, its points, and its exact derivative."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import erf as anp_erf
from scipy.special import erfinv

import pnref
from pnref.moments import quantile

# ---------------------------------------------------------------- the official numbers


def test_official_reference_values_six_digits():
    # Values published with the official code (docs: shared README, section 2) for
    # n = 200, gamma = 1, beta = beta~ = gamma~ = 0, eps = 0.03; quoted to six
    # decimals, so the check is |ours - quoted| <= 5e-7 (half a unit in the last place).
    quoted = {
        "relu": (0.398451, 0.338035, 1.648373),
        "silu": (0.206048, 0.310004, 1.714977),
    }
    for name, (mean_ref, var_ref, inv_std_ref) in quoted.items():
        mean, var = pnref.proxy_moments(name, 1.0, 0.0, method="quantile", n=200)
        assert abs(float(mean) - mean_ref) <= 5e-7, name
        assert abs(float(var) - var_ref) <= 5e-7, name
        assert abs(1.0 / np.sqrt(float(var) + 0.03) - inv_std_ref) <= 5e-7, name


def test_default_is_the_official_estimator():
    # method="quantile" and n=200 are the defaults: the same call without them must
    # give bit-identical results.
    explicit = pnref.proxy_moments("silu", 1.3, -0.2, 0.1, 0.4, method="quantile", n=200)
    default = pnref.proxy_moments("silu", 1.3, -0.2, 0.1, 0.4)
    assert np.array_equal(explicit, default)


def test_points_variance_is_below_one():
    # The u_i are the medians of n equal-probability cells; each stands for its cell's
    # mass but sits closer to 0 than the cell's mean square radius (most visibly in the
    # two tail cells, which reach to infinity), so their variance is 1 - c/n with
    # c ~ 1.28 (docs/proxy-moments.md). Measured with mpmath in moments.md: 0.993596.
    u = quantile.points(200)
    assert round(float(np.var(u)), 6) == 0.993596
    # The same number from the literal definition, as an independent derivation.
    i = np.arange(200)
    literal = np.sqrt(2.0) * erfinv(2.0 * (i + 0.5) / 200 - 1.0)
    assert round(float(np.var(literal)), 6) == 0.993596


@pytest.mark.parametrize("n", [2, 7, 16, 64, 199, 200, 256, 1024])
def test_points_exactly_symmetric_and_match_definition(n):
    u = quantile.points(n)
    assert u.shape == (n,)
    assert np.array_equal(u[::-1], -u)  # exact: the estimator then depends on |sigma| only
    assert np.all(np.diff(u) > 0)
    i = np.arange(n)
    literal = np.sqrt(2.0) * erfinv(2.0 * (i + 0.5) / n - 1.0)
    # Same formula with the numerator grouped differently: differences are rounding of
    # erfinv's argument (<= 1 ulp of numbers <= 1) amplified by erfinv' (at most
    # sqrt(2 pi) e^(u^2/2) ~ 3e3 for the outermost point at n = 1024): 1e-12 covers it.
    assert np.max(np.abs(u - literal)) <= 1e-12


def test_points_cached_and_read_only():
    assert quantile.points(200) is quantile.points(200)
    with pytest.raises(ValueError):
        quantile.points(200)[0] = 1.0


@pytest.mark.parametrize("bad", [1, 0, -3])
def test_points_reject_nonpositive(bad):
    with pytest.raises(ValueError, match="n"):
        quantile.points(bad)


@pytest.mark.parametrize("bad", [2.0, True, "200"])
def test_points_reject_non_integers(bad):
    with pytest.raises(TypeError, match="n"):
        quantile.points(bad)


# ------------------------------------------------- a plain re-implementation in autograd


def _official_activation(name, z):
    if name == "relu":
        return anp.where(z > 0.0, z, 0.0)
    if name == "silu":
        return z / (1.0 + anp.exp(-z))
    if name == "gelu":
        return 0.5 * z * (1.0 + anp_erf(z / np.sqrt(2.0)))
    if name == "elu":
        return anp.where(z > 0.0, z, anp.exp(anp.minimum(z, 0.0)) - 1.0)
    if name == "tanh":
        return anp.tanh(z)
    raise AssertionError(name)


def _official_estimator(params, name, n):
    """The official code's arithmetic: Y = (1 + g~) u + b~, z = phi(g Y + b)."""
    gamma, beta, gamma_tilde, beta_tilde = params
    i = np.arange(n)
    u = np.sqrt(2.0) * erfinv(2.0 * (i + 0.5) / n - 1.0)
    y = (1.0 + gamma_tilde[:, None]) * u + beta_tilde[:, None]
    z = _official_activation(name, gamma[:, None] * y + beta[:, None])
    mean = anp.mean(z, axis=1)
    var = anp.mean((z - mean[:, None]) ** 2, axis=1)
    return mean, var


def _random_channels(rng, channels):
    gamma = rng.normal(1.0, 0.5, channels)
    gamma[0] = -0.7  # a negative scale
    beta = rng.normal(0.0, 0.5, channels)
    gamma_tilde = rng.normal(0.0, 0.3, channels)
    beta_tilde = rng.normal(0.0, 0.3, channels)
    return gamma, beta, gamma_tilde, beta_tilde


@pytest.mark.parametrize("name", ["relu", "silu", "gelu", "elu", "tanh"])
@pytest.mark.parametrize("n", [16, 200])
def test_forward_and_vjp_match_autograd_of_official_code(name, n):
    rng = np.random.default_rng(11 + n)
    params = _random_channels(rng, 6)
    dmean, dvar = rng.normal(size=6), rng.normal(size=6)  # random cotangents

    mean_ref, var_ref = _official_estimator(params, name, n)
    mean, var = pnref.proxy_moments(name, *params, method="quantile", n=n)
    # Same sums up to rounding (our Z = m + s u vs g ((1 + g~) u + b~) + b): a few
    # ulps of values of order 1, amplified at most by the 2-term cancellation in m.
    np.testing.assert_allclose(mean, mean_ref, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(var, var_ref, rtol=1e-12, atol=1e-14)

    def scalar(p):
        mean_a, var_a = _official_estimator(p, name, n)
        return anp.sum(dmean * mean_a) + anp.sum(dvar * var_a)

    grads_ref = autograd.grad(scalar)(params)
    grads = pnref.proxy_moments_vjp(dmean, dvar, name, *params, method="quantile", n=n)
    for got, ref in zip(grads, grads_ref, strict=True):
        # Both are the exact derivative of the same discrete sums; only the order of
        # float64 operations differs: 1e-11 relative to the gradient's size.
        np.testing.assert_allclose(got, ref, rtol=1e-11, atol=1e-11 * np.max(np.abs(ref)))


def test_derivative_is_the_estimators_not_the_exact_moments():
    # At the reference point the discrete estimator's d mean / d beta is the fraction of
    # u_i above 0 = 1/2 exactly for even n, and d mean / d gamma = mean(u_i 1(u_i > 0)),
    # which is NOT the exact phi(0) = 0.398942: the difference is the estimator's bias.
    u = quantile.points(200)
    grads = pnref.proxy_moments_vjp(1.0, 0.0, "relu", 1.0, 0.0, 0.0, 0.0, n=200)
    dgamma, dbeta = float(grads[0]), float(grads[1])
    assert dbeta == 0.5
    assert abs(dgamma - np.mean(u * (u > 0))) <= 1e-15  # same sum, two orders
    assert abs(dgamma - 1.0 / np.sqrt(2.0 * np.pi)) > 1e-4
