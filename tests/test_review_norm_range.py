"""Review regressions: the reference norms are scale-invariant across float64's range.

Squaring deviations above ~1e154 overflowed the variance (inv_std = 0: an all-zero output,
silently) and, with eps = 0, deviations below ~1e-154 underflowed it (inv_std = inf or lost
digits). The NumPy reference now rescales such groups by an exact power of two.
"""

from __future__ import annotations

import numpy as np
import pytest

import pnref

X = np.random.default_rng(0).standard_normal((3, 4, 5))


@pytest.mark.parametrize("scale, eps", [(1e200, 1e-5), (1e300, 0.0), (1e-200, 0.0),
                                        (1e-160, 0.0), (1e-300, 0.0)])
@pytest.mark.parametrize("op", ["layer_norm", "instance_norm", "batch_norm"])
def test_norms_scale_invariant_at_extreme_scales(op, scale, eps):
    fn = getattr(pnref, op)
    expected = fn(X, eps=0.0)
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        got = fn(X * scale, eps=eps)
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=1e-13)


def test_group_norm_vjp_at_large_scale_is_the_scaled_gradient():
    dy = np.random.default_rng(1).standard_normal(X.shape)
    dx_big = pnref.group_norm_vjp(dy, X * 1e200, 2, eps=0.0)[0]
    dx = pnref.group_norm_vjp(dy, X, 2, eps=0.0)[0]
    np.testing.assert_allclose(dx_big * 1e200, dx, rtol=1e-12, atol=1e-12)


def test_normal_range_is_bit_identical_and_nan_still_propagates():
    from pnref.norms.core import normalize

    xhat, _, inv_std = normalize(X, (1, 2), 1e-5)
    centered = X - X.mean(axis=(1, 2), keepdims=True)
    assert np.all(np.isfinite(inv_std)) and xhat.shape == X.shape
    np.testing.assert_allclose(xhat, centered / np.sqrt(centered.var(axis=(1, 2),
                                                                  keepdims=True) + 1e-5),
                               rtol=1e-14, atol=1e-14)
    x = X * 1e200
    x[0, 0, 0] = np.nan
    y = pnref.layer_norm(x)
    assert np.isnan(y[0]).all() and not np.isnan(y[1:]).any()


def test_constant_group_with_zero_eps_is_still_nan():
    with np.errstate(divide="ignore", invalid="ignore"):
        y = pnref.layer_norm(np.ones((2, 3, 2)), eps=0.0)
    assert np.isnan(y).all()
