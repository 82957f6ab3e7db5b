"""proxy_moments / proxy_moments_vjp: reduction, chain rule, dtypes, shapes and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pnref
from pnref.moments import METHODS, reduce_parameters


def _methods_available():
    # Every method ships with pnref: an import error in one must fail, never skip it.
    return list(METHODS)


# Small n for Monte Carlo keeps these tests fast; the estimator is still differentiable.
_SMALL_N = {"exact": None, "quadrature": 48, "quantile": 200, "montecarlo": 2000}


def _call(function, *args, method, **kwargs):
    return function(*args, method=method, n=_SMALL_N[method], **kwargs)


# ------------------------------------------------------------------------ reduction


def test_reduce_parameters_formulas():
    gamma = np.array([2.0, -0.5, 0.0])
    beta = np.array([0.25, 1.0, -3.0])
    gamma_tilde = np.array([0.5, -1.0, 2.0])
    beta_tilde = np.array([-1.0, 4.0, 7.0])
    m, sigma = reduce_parameters(gamma, beta, gamma_tilde, beta_tilde)
    # m = gamma beta~ + beta, sigma = gamma (1 + gamma~), all exact in binary here.
    assert np.array_equal(m, [-1.75, -1.0, -3.0])
    assert np.array_equal(sigma, [3.0, -0.0, 0.0])


@pytest.mark.parametrize("method", ["quadrature", "quantile", "montecarlo"])
def test_depends_only_on_m_and_s(method):
    # (gamma, beta, gamma~, beta~) = (2, 0.5, -0.25, 0.25) and (-1.5, 2.5, 0, 1) have the
    # same m = gamma beta~ + beta = 1 and |sigma| = |gamma (1 + gamma~)| = 1.5, both computed
    # exactly in binary.
    first = _call(pnref.proxy_moments, "gelu", 2.0, 0.5, -0.25, 0.25, method=method)
    second = _call(pnref.proxy_moments, "gelu", -1.5, 2.5, 0.0, 1.0, method=method)
    assert np.array_equal(first, second)


@settings(max_examples=25)
@given(
    gamma=st.floats(-3, 3),
    beta=st.floats(-3, 3),
    gamma_tilde=st.floats(-0.9, 2),
    beta_tilde=st.floats(-3, 3),
    method=st.sampled_from(["quadrature", "quantile"]),
)
def test_sign_flip_invariance(gamma, beta, gamma_tilde, beta_tilde, method):
    # (gamma, beta~) -> (-gamma, -beta~) leaves m and |sigma| unchanged exactly (negation
    # is exact), so the moments are bit-identical, the gradients of beta and gamma~
    # equal, and those of gamma and beta~ flip sign.
    args = (gamma, beta, gamma_tilde, beta_tilde)
    flipped = (-gamma, beta, gamma_tilde, -beta_tilde)
    assert np.array_equal(
        pnref.proxy_moments("silu", *args, method=method),
        pnref.proxy_moments("silu", *flipped, method=method),
    )
    grads = pnref.proxy_moments_vjp(0.7, -1.3, "silu", *args, method=method)
    grads_flipped = pnref.proxy_moments_vjp(0.7, -1.3, "silu", *flipped, method=method)
    for got, ref, sign in zip(grads, grads_flipped, (-1, 1, 1, -1), strict=True):
        assert float(got) == sign * float(ref)


# ---------------------------------------------------------------------- chain rule


def _finite_difference(function, params, direction, h):
    plus = [p + h * d for p, d in zip(params, direction, strict=True)]
    minus = [p - h * d for p, d in zip(params, direction, strict=True)]
    f_plus, f_minus = function(plus), function(minus)
    return [(a - b) / (2 * h) for a, b in zip(f_plus, f_minus, strict=True)]


@pytest.mark.parametrize(
    ("method", "name"),
    [
        (method, name)
        for method in _methods_available()
        for name in ("gelu", "elu", "relu", "silu")
        if not (method == "exact" and name == "silu")  # silu has no closed form
    ],
)
def test_vjp_matches_central_differences_all_four_parameters(method, name):
    rng = np.random.default_rng(5)
    channels = 5
    gamma = np.array([1.2, -0.8, 0.0, 0.6, -1.4])  # positive, negative and zero scales
    beta = rng.normal(0.0, 0.7, channels)
    gamma_tilde = rng.normal(0.0, 0.3, channels)
    beta_tilde = rng.normal(0.0, 0.5, channels)
    params = [gamma, beta, gamma_tilde, beta_tilde]
    dmean, dvar = rng.normal(size=channels), rng.normal(size=channels)
    grads = _call(pnref.proxy_moments_vjp, dmean, dvar, name, *params, method=method)

    def loss(p):
        mean, var = _call(pnref.proxy_moments, name, *p, method=method)
        return (dmean * mean + dvar * var,)

    for index in range(4):
        # One parameter at a time, every channel in a random direction. At gamma = 0
        # the moments depend on |sigma| symmetrically, so the central difference is the
        # average of the one-sided slopes: exactly the sign(0) = 0 convention.
        direction = [np.zeros(channels) for _ in range(4)]
        direction[index] = rng.normal(size=channels)
        # h = 1e-6: truncation h^2 |F'''| ~ 1e-12, rounding eps |F| / h ~ 1e-10. For the
        # sampled estimators of relu/elu a kink crossing would break this; with these
        # seeds no point m + s x_i lies within 1e-5 of 0 (checked by the result).
        (numeric,) = _finite_difference(loss, params, direction, 1e-6)
        analytic = grads[index] * direction[index]
        # Per channel: 2e-7 absolute on gradients of order 1 (rounding bound above
        # with a safety factor of 20).
        np.testing.assert_allclose(analytic, numeric, rtol=0, atol=2e-7, err_msg=f"{index}")


@pytest.mark.parametrize("method", ["quadrature", "quantile"])
def test_gamma_zero_gives_average_of_one_sided_derivatives(method):
    # At gamma = 0 (sigma = 0): d/dgamma of F(m(gamma), |sigma(gamma)|). The s-part has
    # one-sided slopes +-c; sign(0) = 0 returns their average, so dgamma = dm term only:
    # dmean/dgamma = f'(beta) * beta~ for a smooth f.
    grads = _call(pnref.proxy_moments_vjp, 1.0, 0.0, "gelu", 0.0, 0.3, 0.2, 0.5, method=method)
    z = np.array([0.3])
    expected = float(pnref.activation("gelu").df(z)[0]) * 0.5  # f'(m) * beta~
    assert abs(float(grads[0]) - expected) <= 1e-14  # same f' evaluation, one product
    assert float(grads[2]) == 0.0  # gamma~ acts only through sigma = 0 * (1 + gamma~)


# ------------------------------------------------------------------ dtypes and shapes


@pytest.mark.parametrize("method", ["quadrature", "quantile"])
def test_float32_computed_in_float64_returned_in_float32(method):
    gamma = np.array([1.0, 0.5, -2.0], dtype=np.float32)
    beta = np.array([0.1, -0.3, 0.0], dtype=np.float32)
    mean32, var32 = pnref.proxy_moments("relu", gamma, beta, method=method)
    mean64, var64 = pnref.proxy_moments(
        "relu", gamma.astype(np.float64), beta.astype(np.float64), method=method
    )
    assert mean32.dtype == np.float32 and var32.dtype == np.float32
    assert np.array_equal(mean32, mean64.astype(np.float32))
    assert np.array_equal(var32, var64.astype(np.float32))
    grads = pnref.proxy_moments_vjp(
        np.ones(3, np.float32), None, "relu", gamma, beta, method=method
    )
    assert grads[0].dtype == np.float32 and grads[1].dtype == np.float32


def test_python_numbers_give_float64_scalars():
    mean, var = pnref.proxy_moments("relu", 1, 0)
    assert mean.dtype == np.float64 and mean.shape == ()


def test_broadcasting_and_vjp_shapes():
    rng = np.random.default_rng(3)
    gamma = rng.normal(1.0, 0.3, (3, 1))
    beta = rng.normal(0.0, 0.3, (4,))
    gamma_tilde = 0.1
    beta_tilde = rng.normal(0.0, 0.3, (1, 4))
    mean, var = pnref.proxy_moments("silu", gamma, beta, gamma_tilde, beta_tilde)
    assert mean.shape == (3, 4)
    # Channel by channel with scalars gives the same numbers.
    for i in range(3):
        for j in range(4):
            single = pnref.proxy_moments("silu", gamma[i, 0], beta[j], 0.1, beta_tilde[0, j])
            assert float(single[0]) == mean[i, j] and float(single[1]) == var[i, j]
    dmean, dvar = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    grads = pnref.proxy_moments_vjp(dmean, dvar, "silu", gamma, beta, gamma_tilde, beta_tilde)
    assert [np.shape(g) for g in grads] == [(3, 1), (4,), (), (1, 4)]
    # The broadcast gradient is the sum of the per-element ones.
    full = pnref.proxy_moments_vjp(
        dmean, dvar, "silu", np.broadcast_to(gamma, (3, 4)), np.broadcast_to(beta, (3, 4)),
        np.full((3, 4), gamma_tilde), np.broadcast_to(beta_tilde, (3, 4)),
    )
    # Summation order differs: 1e-13 relative.
    for got, whole in zip(grads, full, strict=True):
        np.testing.assert_allclose(np.sum(got), np.sum(whole), rtol=1e-13)


def test_tilde_none_means_zero_and_has_no_gradient():
    with_none = pnref.proxy_moments("relu", 1.3, 0.2, None, None)
    with_zero = pnref.proxy_moments("relu", 1.3, 0.2, 0.0, 0.0)
    assert np.array_equal(with_none, with_zero)
    # Distinct, non-unit cotangents for dmean and dvar (a swap or a dropped factor shows).
    grads = pnref.proxy_moments_vjp(0.7, -1.3, "relu", 1.3, 0.2, None, None)
    assert grads[2] is None and grads[3] is None
    grads_zero = pnref.proxy_moments_vjp(0.7, -1.3, "relu", 1.3, 0.2, 0.0, 0.0)
    assert float(grads[0]) == float(grads_zero[0]) and float(grads[1]) == float(grads_zero[1])


def test_activation_object_with_parameters():
    leaky = pnref.activation("leaky_relu", alpha=0.2)
    by_object = pnref.proxy_moments(leaky, 1.0, 0.0, method="quadrature")
    default = pnref.proxy_moments("leaky_relu", 1.0, 0.0, method="quadrature")
    # E leaky(X) = (1 - alpha) phi(0): alpha = 0.2 vs the default 0.01 must differ.
    # Quadrature splits at the kink z = 0, so on each piece the integrand (linear times the
    # Gaussian density) is analytic and the default rule converges to rounding: a few ulp
    # of 0.32.
    assert abs(float(by_object[0]) - 0.8 / np.sqrt(2 * np.pi)) <= 1e-15
    assert float(default[0]) != float(by_object[0])


def test_nan_propagates_per_channel():
    mean, var = pnref.proxy_moments("relu", np.array([1.0, np.nan]), np.array([0.0, 0.0]))
    assert np.isfinite(mean[0]) and np.isnan(mean[1]) and np.isnan(var[1])


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"method": "simpson"}, ValueError, "method"),
        ({"method": 3}, TypeError, "method"),
        ({"n": 0}, ValueError, "n"),
        ({"n": -4}, ValueError, "n"),
        ({"n": 2.5}, TypeError, "n"),
        ({"n": True}, TypeError, "n"),
        ({"method": "exact", "n": 10}, ValueError, "n"),
        ({"method": "quantile", "seed": 3}, ValueError, "seed"),
        ({"method": "montecarlo", "seed": -1}, ValueError, "seed"),
        ({"method": "montecarlo", "seed": 1.5}, TypeError, "seed"),
    ],
)
def test_bad_method_arguments(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        pnref.proxy_moments("relu", 1.0, 0.0, **kwargs)


def test_bad_activation_and_parameters():
    with pytest.raises(ValueError, match="activation"):
        pnref.proxy_moments("swishy", 1.0, 0.0)
    with pytest.raises(TypeError, match="activation"):
        pnref.proxy_moments(42, 1.0, 0.0)
    with pytest.raises(ValueError, match="broadcast"):
        pnref.proxy_moments("relu", np.ones(3), np.zeros(4))
    with pytest.raises(TypeError, match="gamma"):
        pnref.proxy_moments("relu", np.ones(3, dtype=int), 0.0)
    with pytest.raises(TypeError, match="beta_tilde"):
        pnref.proxy_moments("relu", 1.0, 0.0, 0.0, np.array([1 + 2j]))
    with pytest.raises(ValueError, match="dmean"):
        pnref.proxy_moments_vjp(np.ones(5), None, "relu", np.ones(3), 0.0)


def test_exact_rejects_activation_without_closed_form():
    with pytest.raises(ValueError, match="exact"):
        pnref.proxy_moments("silu", 1.0, 0.0, method="exact")
