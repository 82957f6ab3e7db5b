"""Cancellation-free differences f(z) - f(m), f'(z) - f'(m), and right-side offsets.

Shared by the quadrature (`pnref.moments.quadrature`) and the estimators
(`pnref.moments._estimator`): both need the deviation of f and f' from their values at the
centre m where the two are nearly equal (tanh or ELU far in the left tail, any f at tiny s),
and f' - 1 where f' tends to 1 (the right side of the asymptotically linear activations).

Every function takes the point z, the centre m and the step d = z - m separately: the caller
forms z as accurately as it can (the quadrature to a few ulp of z itself, the estimators as
m + d), and the differences use d where the subtraction z - m would cancel.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from scipy.special import expit, ndtr

from pnref.moments._special import normal_cdf, normal_pdf

__all__ = ["closed_pair", "right_residual", "right_slope_offset", "sigmoid_pair",
           "softplus_difference"]

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715


# ----------------------------------------------------------------------- tanh and sigmoid


def _exp_factor(a, b):
    """2 e^(|a - b| - |a| - |b|) / ((1 + e^-2|a|)(1 + e^-2|b|)) with only non-positive exponents.

    |a - b| - |a| - |b| is -2 min(|a|, |b|) when a and b have the same sign and 0
    otherwise; computed that way it is exact.
    """
    abs_a, abs_b = np.abs(a), np.abs(b)
    same_sign = (a > 0) == (b > 0)
    exponent = np.where(same_sign, -2.0 * np.minimum(abs_a, abs_b), 0.0)
    return 2.0 * np.exp(exponent) / ((1.0 + np.exp(-2.0 * abs_a)) * (1.0 + np.exp(-2.0 * abs_b)))


def _tanh_difference(a, b, d):
    """tanh a - tanh b = sinh(a - b) / (cosh a cosh b), d = a - b given separately."""
    return np.sign(d) * _exp_factor(a, b) * -np.expm1(-2.0 * np.abs(d))


def _tanh_sum(a, b):
    """tanh a + tanh b, i.e. sinh(a + b) / (cosh a cosh b), in the same form."""
    total = a + b
    abs_a, abs_b = np.abs(a), np.abs(b)
    opposite = (a > 0) != (b > 0)
    exponent = np.where(opposite, -2.0 * np.minimum(abs_a, abs_b), 0.0)
    scale = 2.0 * np.exp(exponent) / ((1.0 + np.exp(-2.0 * abs_a)) * (1.0 + np.exp(-2.0 * abs_b)))
    return np.sign(total) * scale * -np.expm1(-2.0 * np.abs(total))


def _tanh_pair(z, m, d, slopes=True):
    g = _tanh_difference(z, m, d)
    if not slopes:
        return g, None
    # sech^2 a - sech^2 b = (tanh b - tanh a)(tanh b + tanh a)
    return g, -g * _tanh_sum(z, m)


def sigmoid_pair(z, m, d, slopes=True):
    """(sigmoid(z) - sigmoid(m), sigmoid'(z) - sigmoid'(m)) through tanh(x/2) (`closed_pair`)."""
    # sigmoid(x) = (1 + tanh(x/2)) / 2, sigmoid' = sech^2(x/2) / 4
    g, h = _tanh_pair(0.5 * z, 0.5 * m, 0.5 * d, slopes)
    return 0.5 * g, (None if h is None else 0.25 * h)


# ----------------------------------------------------------------------- kinked activations


def _elu_pair(z, m, d, alpha, slopes=True):
    # Both <= 0: alpha (e^z - e^m) = alpha sign(d) e^max(z, m) (1 - e^-|d|) (no overflow).
    both_left = alpha * np.sign(d) * np.exp(np.minimum(np.maximum(z, m), 0.0)) * -np.expm1(
        -np.abs(d))
    zneg, mneg = np.minimum(z, 0.0), np.minimum(m, 0.0)
    # Across 0, f' - 1 = alpha expm1(z) + (alpha - 1) on the left: for alpha = 1 (f'
    # continuous) the slope change is expm1, not 1 - e^m (2.8e-8 lost at m = -1e-9).
    g = np.where(z > 0.0,
                 np.where(m > 0.0, d, z - alpha * np.expm1(mneg)),
                 np.where(m > 0.0, alpha * np.expm1(zneg) - m, both_left))
    if not slopes:
        return g, None
    h = np.where(z > 0.0,
                 np.where(m > 0.0, 0.0, -(alpha * np.expm1(mneg) + (alpha - 1.0))),
                 np.where(m > 0.0, alpha * np.expm1(zneg) + (alpha - 1.0), both_left))
    return g, h


def _leaky_pair(z, m, d, alpha, slopes=True):
    g = np.where(z > 0.0,
                 np.where(m > 0.0, d, z - alpha * m),
                 np.where(m > 0.0, alpha * z - m, alpha * d))
    if not slopes:
        return g, None
    jump = 1.0 - alpha
    h = np.where(z > 0.0, np.where(m > 0.0, 0.0, jump), np.where(m > 0.0, -jump, 0.0))
    return g, h


def closed_pair(act) -> Callable | None:
    """(z, m, d, slopes=True) -> (f(z) - f(m), f'(z) - f'(m)) in closed form, or None for the
    smooth, asymptotically linear activations (gelu, gelu_tanh, silu, softplus).

    f' is the left derivative at a kink (as `Activation.df`); with ``slopes=False`` the
    second difference is not formed (None).

    Equations
    ---------
    tanh a - tanh b = sinh(a - b) / (cosh a cosh b) with exponentials of non-positive
    arguments only, sech^2 a - sech^2 b = -(tanh a - tanh b)(tanh a + tanh b), sigmoid
    through tanh(x/2); ELU with both points <= 0: alpha sign(d) e^max(z, m) (1 - e^-|d|);
    piecewise-linear: the slope times d on one side of 0.
    """
    name = act.name
    if name == "identity":
        return lambda z, m, d, slopes=True: (np.array(d, dtype=np.float64, copy=True),
                                             np.zeros_like(d) if slopes else None)
    if name in ("relu", "leaky_relu"):
        alpha = act.params.get("alpha", 0.0)
        return lambda z, m, d, slopes=True: _leaky_pair(z, m, d, alpha, slopes)
    if name == "elu":
        alpha = act.params["alpha"]
        return lambda z, m, d, slopes=True: _elu_pair(z, m, d, alpha, slopes)
    if name == "tanh":
        return _tanh_pair
    if name == "sigmoid":
        return sigmoid_pair
    return None


# ----------------------------------------------------------------------- softplus


def softplus_difference(z: np.ndarray, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """softplus(z) - softplus(m) = +-log1p(sigmoid(lower) expm1(|d|)), lower = min(z, m).

    (1 + e^upper) / (1 + e^lower) = 1 + sigmoid(lower) (e^|d| - 1); beyond |d| = 700 (where
    expm1 would overflow) the two values are far apart and plain subtraction is exact enough.
    (Its slope change sigmoid(z) - sigmoid(m) is `closed_pair` of sigmoid.)
    """
    lower = np.minimum(z, m)
    gap = np.log1p(expit(lower) * np.expm1(np.minimum(np.abs(d), 700.0)))
    near = np.where(d >= 0.0, gap, -gap)
    far = _softplus(z) - _softplus(m)
    return np.where(np.abs(d) <= 700.0, near, far)


def _softplus(z: np.ndarray) -> np.ndarray:
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


# ----------------------------------------------------------------------- right-side offsets


def _softplus_slope_offset(z):
    return -expit(-z)


def _silu_slope_offset(z):
    return expit(-z) * (np.clip(z, -1e100, 1e100) * expit(z) - 1.0)


def _gelu_slope_offset(z):
    zc = np.clip(z, -1e100, 1e100)
    return zc * normal_pdf(zc) - normal_cdf(-zc)


def _gelu_tanh_parts(z):
    zc = np.clip(z, -1.0e6, 1.0e6)
    u = _SQRT_2_OVER_PI * (zc + _GELU_TANH_CUBIC * zc**3)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * zc * zc)
    return zc, u, du


def _gelu_tanh_slope_offset(z):
    zc, u, du = _gelu_tanh_parts(z)
    return expit(-2.0 * u) * (2.0 * zc * du * expit(2.0 * u) - 1.0)


_SLOPE_OFFSETS = {"softplus": _softplus_slope_offset, "silu": _silu_slope_offset,
                  "gelu": _gelu_slope_offset, "gelu_tanh": _gelu_tanh_slope_offset}


def right_slope_offset(act) -> Callable | None:
    """z -> f'(z) - 1 without cancellation (valid for every z), for the activations whose f'
    tends to 1 as z -> +inf and has no closed difference; ELU as well; else None.

    Equations
    ---------
    softplus -sigmoid(-z); SiLU sigmoid(-z) (z sigmoid(z) - 1); GELU z phi(z) - Phi(-z);
    tanh-GELU sigmoid(-2u) (2 z u' sigmoid(2u) - 1); ELU 0 for z > 0 and
    alpha expm1(z) + (alpha - 1) for z <= 0.
    """
    if act.name == "elu":
        alpha = act.params["alpha"]
        return lambda z: np.where(z > 0.0, 0.0,
                                  alpha * np.expm1(np.minimum(z, 0.0)) + (alpha - 1.0))
    return _SLOPE_OFFSETS.get(act.name)


def right_residual(name: str, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(f(z) - z, f'(z) - 1) for z > 0, each to full relative precision (exponentially small).

    gelu: -z Phi(-z); silu: -z sigmoid(-z); softplus: log1p(e^-z); gelu_tanh: -z
    sigmoid(-2u); the slope offsets as in `right_slope_offset`. (z <= 0 is evaluated at 0.)
    """
    zp = np.clip(z, 0.0, 1.0e100)
    slope = _SLOPE_OFFSETS[name](zp)
    if name == "gelu":
        return -zp * ndtr(-zp), slope
    if name == "silu":
        return -zp * expit(-zp), slope
    if name == "softplus":
        return np.log1p(np.exp(-zp)), slope
    _, u, _ = _gelu_tanh_parts(zp)
    return -zp * expit(-2.0 * u), slope
