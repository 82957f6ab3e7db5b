"""Quantile and Monte Carlo are estimators: they must be the estimator, as in exact arithmetic.

The reference is `pnref.oracle.estimator_moments`: the same sums with Z_i = m + s u_i
formed exactly from the float64 points and f, f' in mpmath at adaptively raised
precision. Before the cancellation-free deviations, ELU at m = -40, s = 1 had a variance
6.13e-35 against 7.18e-35 and tanh at m = -40 had 0 against 7e-67.
"""

from __future__ import annotations

import numpy as np
import pytest

import pnref
from pnref import oracle
from pnref.moments import montecarlo, quantile

# 1e-12 relative is the bound for these estimators; below 1e-290 in magnitude the
# error is measured in absolute terms (the floor for derivatives).
BOUND = 1e-12
FLOOR = 1e-290

# (activation, alpha, m, s): the examples, every activation's far tails, tiny and
# huge s, and steps so short that f(m + d) - f(m) by subtraction keeps nothing. Points
# where f' itself crosses zero (GELU's minimum at s = 1e-8) are left out: there float64's
# f'(m) has no relative accuracy at all, and the derivative sums inherit it.
CASES = [
    ("elu", 1.0, -40.0, 1.0), ("tanh", None, -40.0, 1.0), ("tanh", None, 0.0, 1.0),
    ("silu", None, 40.0, 1.0), ("silu", None, 0.0, 1e-8), ("softplus", None, 0.5, 1e-8),
    ("sigmoid", None, 30.0, 1.0), ("gelu_tanh", None, 39.5, 1.0), ("gelu", None, 1e-300, 1e-8),
    ("relu", None, 1.0, 1.0), ("elu", 2.0, -19.75, 5.0), ("elu", 0.2, 0.3, 1e-8),
    ("tanh", None, -120.0, 3.0), ("silu", None, -4e4, 1e3), ("gelu", None, 400.0, 10.0),
    ("leaky_relu", 0.2, -40.0, 1.0), ("identity", None, 1e6, 1e-8), ("sigmoid", None, -0.3, 1e-6),
]

# Issue 13e: at a root of f with tiny s the estimator's mean is second order in s (ELU
# alpha = 1 at m = 0, s = 1e-8: 2.5e-17) while each g_i = alpha expm1(z_i) carried a rounding
# of 1e-24 (5.2e-10 of the mean); the NumPy estimator splits g_i into f'(m) s x_i (exact
# product, cancelling over the symmetric points) and a remainder (`_elu_split`). The Numba
# quantile kernel does not do this yet, so these cases are checked on the NumPy path only.
SPLIT_CASES = [("elu", 1.0, 0.0, 1e-8), ("elu", 1.0, 1e-14, 1e-8), ("elu", 0.5, -1e-11, 1e-8),
               ("elu", 2.0, 1e-10, 1e-8), ("elu", 1.0, -0.05, 0.04)]


def _act(name, alpha):
    return pnref.activation(name) if alpha is None else pnref.activation(name, alpha=alpha)


def _check(got, reference, label):
    for k, (value, ref) in enumerate(zip(got, reference, strict=True)):
        error = abs(float(value) - float(ref)) / max(abs(float(ref)), FLOOR)
        assert error <= BOUND, (label, k, float(value), float(ref), error)


@pytest.mark.parametrize(("name", "alpha", "m", "s"), CASES + SPLIT_CASES)
def test_quantile_is_the_estimator_in_exact_arithmetic(name, alpha, m, s):
    points = quantile.points(200)
    got = quantile.moments_with_derivatives(_act(name, alpha), np.array([m]), np.array([s]))
    kwargs = {} if alpha is None else {"alpha": alpha}
    reference = oracle.estimator_moments(name, m, s, points, **kwargs)
    _check([g[0] for g in got], reference, (name, m, s))


@pytest.mark.parametrize(("name", "alpha", "m", "s"), CASES[:8] + SPLIT_CASES[:2])
def test_montecarlo_is_the_estimator_in_exact_arithmetic(name, alpha, m, s):
    # 500 draws: the same code as the default 100000, with a reference that is cheap.
    got = montecarlo.moments_with_derivatives(_act(name, alpha), np.array([m]), np.array([s]),
                                              n=500, seed=3)
    kwargs = {} if alpha is None else {"alpha": alpha}
    reference = oracle.estimator_moments(name, m, s, montecarlo.draws(500, 3), **kwargs)
    _check([g[0] for g in got], reference, (name, m, s))


@pytest.mark.parametrize(("name", "alpha", "m", "s"), CASES)
def test_numba_quantile_kernel_is_the_estimator_too(name, alpha, m, s):
    from pnref.kernels._activation_rows import ACTIVATION_CODES
    from pnref.kernels._quantile import quantile_moments

    points = np.array(quantile.points(200))
    out = np.empty((6, 1))
    act = _act(name, alpha)
    quantile_moments(points, np.array([m]), np.array([s]), ACTIVATION_CODES[name],
                     act.params.get("alpha", 0.0), out, np.empty(1, dtype=np.bool_))
    kwargs = {} if alpha is None else {"alpha": alpha}
    reference = oracle.estimator_moments(name, m, s, points, **kwargs)
    _check(out[:, 0], reference, (name, m, s))


def test_constant_stretch_has_exactly_zero_variance_and_odd_means_cancel():
    # ReLU far left is identically 0 on every point: var exactly 0. tanh at m = 0 on the
    # symmetric official points: the mean is exactly 0 (the mirrored pairs cancel exactly).
    relu = quantile.moments(pnref.activation("relu"), np.array([-40.0]), np.array([1.0]))
    assert relu[1][0] == 0.0
    tanh = quantile.moments(pnref.activation("tanh"), np.array([0.0]), np.array([0.7]))
    assert tanh[0][0] == 0.0


@pytest.mark.parametrize("method", ["quantile", "montecarlo"])
@pytest.mark.parametrize("n", [1, 0])
def test_fewer_than_two_points_is_an_error_naming_n(method, n):
    with pytest.raises(ValueError, match=r"\bn\b"):
        pnref.proxy_moments("relu", 1.0, 0.0, method=method, n=n)
    with pytest.raises(ValueError, match=r"\bn\b"):
        pnref.proxy_moments_vjp(1.0, 1.0, "relu", 1.0, 0.0, method=method, n=n)
    y = np.random.default_rng(0).normal(size=(2, 3, 4))
    gamma, beta = np.ones(3), np.zeros(3)
    with pytest.raises(ValueError, match=r"\bn\b"):
        pnref.pn_act(y, gamma, beta, method=method, n=n)
    for backend in ("numpy", "numba"):
        with pytest.raises(ValueError, match=r"\bn\b"):
            pnref.norm_pn_act(y, gamma, beta, norm="ln", method=method, n=n, backend=backend)


@pytest.mark.parametrize(("method", "name", "m"), [("quantile", "tanh", 0.0),
                                                  ("quantile", "sigmoid", 1.0),
                                                  ("montecarlo", "sigmoid", 0.0),
                                                  ("montecarlo", "tanh", 1.0)])
def test_slope_sums_where_f_prime_fades_over_the_points(method, name, m):
    # Issue 13e: at s = 1e3 the mean of f'(Z) is 1e-7 of f'(m), and f'(m) + mean(h),
    # f'(m) x_bar + mean(h x) cancelled to 3.6e-10 (quantile tanh dmean/dm) and 1.0e-11
    # (Monte Carlo sigmoid dmean/ds) of the result; the sums of f'(z_i) (and f'(z_i) x_i)
    # are taken there, and f'(z_i) - mean(f'(z)), f'(z_i) x_i - mean(f'(z) x) for the
    # variance's derivatives (tanh dvar/ds had 2.7e-11 from the same cancellation).
    s = 1e3
    act = pnref.activation(name)
    if method == "quantile":
        points = quantile.points(200)
        got = quantile.moments_with_derivatives(act, np.array([m]), np.array([s]))
    else:
        points = montecarlo.draws(500, 3)
        got = montecarlo.moments_with_derivatives(act, np.array([m]), np.array([s]), n=500,
                                                  seed=3)
    reference = oracle.estimator_moments(name, m, s, points)
    _check([g[0] for g in got[2:6]], reference[2:6], (method, name, m))


@pytest.mark.parametrize(("name", "m"), [("tanh", 1e-3), ("tanh", -1.0), ("sigmoid", 1e-3),
                                         ("sigmoid", -1.0), ("tanh", 0.0)])
def test_quantile_tanh_and_sigmoid_pairs_where_m_is_small_against_s(name, m):
    # At s = 1e3 the general form's g_i ~ +-1 cancel over each symmetric pair down to a mean
    # of ~1e-10: quantile tanh's mean was 5.3e-8 off at m = 1e-3, d(var)/dm 1e-8 and d(var)/ds
    # 1.2e-8 at m = -1. Where 64 |m| < s the estimator now sums pair by pair
    # (`_tanh_symmetric_moments`); all six outputs are held to the 1e-12.
    s = 1e3
    got = quantile.moments_with_derivatives(pnref.activation(name), np.array([m]),
                                            np.array([s]))
    reference = oracle.estimator_moments(name, m, s, quantile.points(200))
    _check([g[0] for g in got], reference, (name, m))
