r"""The official quantile estimator of the proxy moments, as a small Numba kernel.

The same estimator as `pnref.moments.quantile` (through
``pnref.moments._estimator.sample_moments``), with its formulas and order of operations
except four refinements of issue 13e that the NumPy reference has and this kernel does
not yet: the step ``s u_i`` as a double-length two-product, ELU's short steps split into
an exact linear part and a closed-form remainder, the slope means (and the variance's
derivatives) summed from ``f'(z_i)`` where ``f'`` fades over the points, and tanh and
sigmoid summed pair by pair where 64 |m| < s. They matter only at the edges of the
domain (ELU at m = 0, s = 1e-8: 5.2e-10 of the mean; tanh and sigmoid at m = 0, s = 1e3:
3.6e-10 of d(mean)/dm, 2.7e-11 of d(var)/ds; tanh at m = 1e-3, s = 1e3: 5.3e-8 of the
mean, against the estimator in exact arithmetic); elsewhere the two agree to rounding
(`tests/test_kernels.py`). The blocks (`pnref.kernels.fused_blocks._refine_edge_channels`)
recognise those channels and take the NumPy estimator's values for them. For
each channel, with ``d_i = s u_i`` on the official points ``u_i``,

.. math::
    g_i = f(m + d_i) - f(m), \quad h_i = f'(m + d_i) - f'(m) \quad
    \text{(formed without cancellation)},

    \mu = f(m) + \bar g, \quad v = \overline{(g - \bar g)^2}, \quad
    \partial_m \mu = f'(m) + \bar h, \quad \partial_s \mu = f'(m) \bar u + \overline{h u},

    \partial_m v = 2\,\overline{(g - \bar g)(h - \bar h)}, \quad
    \partial_s v = 2\,\overline{(g - \bar g)(f'(m)(u - \bar u) + h u - \overline{h u})},

every sum compensated (error-free two-sums in a pairwise cascade whose first level pairs
``i`` with ``n - 1 - i``). The differences: closed forms for identity, the ReLU family,
ELU, tanh and sigmoid; for GELU, tanh-GELU, SiLU and softplus subtraction where it is
accurate (after removing the linear part on the right), else Taylor's formula with
integral remainder by 20-node Gauss-Legendre. See `pnref.moments._estimator`.

It costs O(C n) like the NumPy version but without NumPy's per-call overhead, which
dominates a training-sized block.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pnref.kernels._activation_rows import (
    ELU,
    GELU,
    IDENTITY,
    LEAKY_RELU,
    RELU,
    SIGMOID,
    SILU,
    SOFTPLUS,
    TANH,
    _sigmoid,
    activate_row_with_slope,
)

__all__ = ["quantile_moments"]

_JIT = {"cache": True, "error_model": "numpy", "fastmath": False}

# The constants of pnref.moments._estimator (same values, same meaning).
_ACCEPT = 64.0
_PIECE = 2.0
_NODES = 20
_TAYLOR_LIMIT = 2 * _PIECE
_SHORT_STEP = 0.125
_GL_X, _GL_W = np.polynomial.legendre.leggauss(_NODES)
_GL_T = 0.5 * (_GL_X + 1.0)
_GL_W = 0.5 * _GL_W
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715


@njit(**_JIT)
def _sign(x: float) -> float:
    if x > 0.0:
        return 1.0
    if x < 0.0:
        return -1.0
    return 0.0


@njit(**_JIT)
def _two_sum(a: float, b: float) -> tuple[float, float]:
    total = a + b
    if not math.isfinite(total):
        return total, 0.0
    b_virtual = total - a
    return total, (a - (total - b_virtual)) + (b - b_virtual)


@njit(**_JIT)
def _accurate_sum(values, length: int, work) -> float:
    """The cascade of `pnref.moments._estimator.accurate_sum` (``work`` is scratch)."""
    if length == 0:
        return 0.0
    half = length // 2
    size = 0
    errors = 0.0
    level = 0.0
    for i in range(half):
        total, error = _two_sum(values[i], values[length - 1 - i])
        work[i] = total
        level += error
    errors += level
    size = half
    for i in range(half, length - half):
        work[size] = values[i]
        size += 1
    while size > 1:
        if size % 2:
            work[size] = 0.0
            size += 1
        level = 0.0
        for i in range(size // 2):
            total, error = _two_sum(work[2 * i], work[2 * i + 1])
            work[i] = total
            level += error
        errors += level
        size //= 2
    return work[0] + errors


@njit(**_JIT)
def _two_product(a: float, b: float) -> tuple[float, float]:
    """fl(a b) and its rounding error (Dekker's splitting)."""
    product = a * b
    big = 134217729.0 * a
    a_hi = big - (big - a)
    a_lo = a - a_hi
    big = 134217729.0 * b
    b_hi = big - (big - b)
    b_lo = b - b_hi
    error = ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return product, (error if math.isfinite(error) else 0.0)


@njit(**_JIT)
def _exp_factor(a: float, b: float, same: bool) -> float:
    abs_a, abs_b = abs(a), abs(b)
    exponent = -2.0 * min(abs_a, abs_b) if same else 0.0
    return 2.0 * math.exp(exponent) / ((1.0 + math.exp(-2.0 * abs_a))
                                       * (1.0 + math.exp(-2.0 * abs_b)))


@njit(**_JIT)
def _tanh_pair(z: float, m: float, d: float) -> tuple[float, float]:
    same = (z > 0.0) == (m > 0.0)
    g = _sign(d) * _exp_factor(z, m, same) * -math.expm1(-2.0 * abs(d))
    total = z + m
    tanh_sum = _sign(total) * _exp_factor(z, m, not same) * -math.expm1(-2.0 * abs(total))
    return g, -g * tanh_sum


@njit(**_JIT)
def _d2f(code: int, z: float) -> float:
    """f'' of the smooth activations (the formulas of `pnref.activations`)."""
    if code == GELU:
        zc = min(max(z, -1.0e100), 1.0e100)
        return math.exp(-0.5 * zc * zc) * _INV_SQRT_2PI * (2.0 - zc * zc)
    if code == SILU:
        zc = min(max(z, -1.0e100), 1.0e100)
        return _sigmoid(z) * _sigmoid(-z) * (2.0 - zc * math.tanh(0.5 * z))
    if code == SOFTPLUS:
        return _sigmoid(z) * _sigmoid(-z)
    # GELU_TANH
    zc = min(max(z, -1.0e6), 1.0e6)
    u = _SQRT_2_OVER_PI * (zc + _GELU_TANH_CUBIC * zc * zc * zc)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * zc * zc)
    d2u = _SQRT_2_OVER_PI * 6.0 * _GELU_TANH_CUBIC * zc
    pq = _sigmoid(2.0 * u) * _sigmoid(-2.0 * u)
    g1 = 2.0 * du * pq
    g2 = 2.0 * pq * (d2u - 2.0 * du * du * math.tanh(u))
    return 2.0 * g1 + min(max(z, -1.0e100), 1.0e100) * g2


@njit(**_JIT)
def _right_residual(code: int, z: float) -> tuple[float, float]:
    """(f(z) - z, f'(z) - 1) for z > 0 (see `pnref.moments._estimator._right_residual`)."""
    zp = min(max(z, 0.0), 1.0e100)
    if code == GELU:
        lower = 0.5 * math.erfc(zp * _INV_SQRT_2)
        pdf = math.exp(-0.5 * zp * zp) * _INV_SQRT_2PI
        return -zp * lower, zp * pdf - lower
    if code == SILU:
        q = _sigmoid(-zp)
        return -zp * q, q * (zp * _sigmoid(zp) - 1.0)
    if code == SOFTPLUS:
        return math.log1p(math.exp(-zp)), -_sigmoid(-zp)
    zc = min(zp, 1.0e6)
    u = _SQRT_2_OVER_PI * (zc + _GELU_TANH_CUBIC * zc * zc * zc)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * zc * zc)
    p, q = _sigmoid(2.0 * u), _sigmoid(-2.0 * u)
    return -zp * q, q * (2.0 * zp * du * p - 1.0)


@njit(**_JIT)
def _smooth_pair(code, m, d, z, f_z, f_m, df_z, df_m, gl_t, gl_w) -> tuple[float, float, float]:
    if z > 0.0 and m > 0.0:
        r_z, r1_z = _right_residual(code, z)
        r_m, r1_m = _right_residual(code, m)
        g = d + (r_z - r_m)
        g_base = abs(r_z) + abs(r_m)
        h = r1_z - r1_m
        h_base = abs(r1_z) + abs(r1_m)
    else:
        g = f_z - f_m
        g_base = abs(f_z) + abs(f_m)
        h = df_z - df_m
        h_base = abs(df_z) + abs(df_m)
    short = abs(d) <= _SHORT_STEP
    g_bad = _ACCEPT * abs(g) < g_base or short
    h_bad = _ACCEPT * abs(h) < h_base or short
    g_low = 0.0
    if abs(d) <= _TAYLOR_LIMIT and (g_bad or h_bad):
        pieces = 2 if abs(d) > _PIECE else 1
        remainder = 0.0
        slope_change = 0.0
        for piece in range(pieces):
            # the same (node-major) order as the NumPy sum over axis 0
            part_r = 0.0
            part_s = 0.0
            for k in range(gl_t.shape[0]):
                t = (piece + gl_t[k]) / pieces
                w = gl_w[k] / pieces
                curvature = _d2f(code, m + t * d)
                part_r += w * (1.0 - t) * curvature
                part_s += w * curvature
            remainder += part_r
            slope_change += part_s
        if g_bad:
            linear, linear_error = _two_product(d, df_m)
            g, g_error = _two_sum(linear, d * (d * remainder))
            g_low = g_error + linear_error
        if h_bad:
            h = d * slope_change
    return g, h, g_low


@njit(**_JIT)
def _pair(code, alpha, m, d, z, f_z, f_m, df_z, df_m, gl_t, gl_w) -> tuple[float, float, float]:
    """(g, h, g_low): f(m + d) - f(m), f'(m + d) - f'(m) (`pnref.moments._estimator`)."""
    if d == 0.0:
        return 0.0, 0.0, 0.0
    if code == IDENTITY:
        return d, 0.0, 0.0
    if code == RELU or code == LEAKY_RELU:
        a = alpha if code == LEAKY_RELU else 0.0
        jump = 1.0 - a
        if z > 0.0:
            return (d, 0.0, 0.0) if m > 0.0 else (z - a * m, jump, 0.0)
        return (a * z - m, -jump, 0.0) if m > 0.0 else (a * d, 0.0, 0.0)
    if code == ELU:
        if z > 0.0:
            if m > 0.0:
                return d, 0.0, 0.0
            # f' - 1 = alpha expm1(m) + (alpha - 1) on the left: no cancellation at alpha = 1
            return (z - alpha * math.expm1(min(m, 0.0)),
                    -(alpha * math.expm1(min(m, 0.0)) + (alpha - 1.0)), 0.0)
        if m > 0.0:
            return (alpha * math.expm1(min(z, 0.0)) - m,
                    alpha * math.expm1(min(z, 0.0)) + (alpha - 1.0), 0.0)
        both = alpha * _sign(d) * math.exp(min(max(z, m), 0.0)) * -math.expm1(-abs(d))
        return both, both, 0.0
    if code == TANH:
        g, h = _tanh_pair(z, m, d)
        return g, h, 0.0
    if code == SIGMOID:
        g, h = _tanh_pair(0.5 * z, 0.5 * m, 0.5 * d)
        return 0.5 * g, 0.25 * h, 0.0
    return _smooth_pair(code, m, d, z, f_z, f_m, df_z, df_m, gl_t, gl_w)


@njit(**_JIT)
def _channel(points, u_bar, m, s, act_code, act_alpha, z, f, df, g, h, g_low, work, scratch,
             at_m, value_m, slope_m, gl_t, gl_w, out, c) -> None:
    n = points.shape[0]
    for i in range(n):
        z[i] = m + s * points[i]
    activate_row_with_slope(z, f, df, n, act_code, act_alpha)
    at_m[0] = m
    activate_row_with_slope(at_m, value_m, slope_m, 1, act_code, act_alpha)
    f_m, df_m = value_m[0], slope_m[0]
    for i in range(n):
        d = s * points[i]
        if math.isnan(z[i]):
            g[i], h[i], g_low[i] = math.nan, math.nan, 0.0
        else:
            g[i], h[i], g_low[i] = _pair(act_code, act_alpha, m, d, z[i], f[i], f_m, df[i],
                                         df_m, gl_t, gl_w)
    g_bar = (_accurate_sum(g, n, scratch) + _accurate_sum(g_low, n, scratch)) / n
    for i in range(n):
        g[i] -= g_bar  # g now holds the deviations
        work[i] = g[i] * g[i]
    mean = f_m + g_bar
    var = _accurate_sum(work, n, scratch) / n
    h_bar = _accurate_sum(h, n, scratch) / n
    for i in range(n):
        work[i] = h[i] * points[i]
    hu_bar = _accurate_sum(work, n, scratch) / n
    for i in range(n):
        work[i] = g[i] * (h[i] - h_bar)
    dvar_dm = 2.0 * _accurate_sum(work, n, scratch) / n
    for i in range(n):
        work[i] = g[i] * (df_m * (points[i] - u_bar) + (h[i] * points[i] - hu_bar))
    dvar_ds = 2.0 * _accurate_sum(work, n, scratch) / n
    out[0, c] = mean
    out[1, c] = var
    out[2, c] = df_m + h_bar
    out[3, c] = df_m * u_bar + hu_bar
    out[4, c] = dvar_dm
    out[5, c] = dvar_ds


@njit(**_JIT)
def quantile_moments(points, m, s, act_code, act_alpha, out) -> None:
    """Moments and their (m, s) derivatives per channel, into ``out`` (6, C).

    Parameters
    ----------
    points : float64 ndarray (n,)
        The quantile points ``u_i`` (n >= 2).
    m, s : float64 ndarray (C,)
        Mean and standard deviation (``s >= 0``) of the proxy pre-activation.
    act_code, act_alpha : int, float
        Activation (``ACTIVATION_CODES``) and its parameter.
    out : float64 ndarray (6, C)
        Rows: mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds.

    Equations
    ---------
    See the module docstring.
    """
    gl_t, gl_w = _GL_T, _GL_W  # module constants (frozen into the compiled kernel)
    n = points.shape[0]
    z = np.empty(n)
    f = np.empty(n)
    df = np.empty(n)
    g = np.empty(n)
    h = np.empty(n)
    g_low = np.empty(n)
    work = np.empty(n)
    scratch = np.empty(n + 1)
    at_m = np.empty(1)
    value_m = np.empty(1)
    slope_m = np.empty(1)
    # The exactly rounded mean of the points (0 for the symmetric official points).
    u_bar = _accurate_sum(points, n, scratch) / n
    for c in range(m.shape[0]):
        _channel(points, u_bar, m[c], s[c], act_code, act_alpha, z, f, df, g, h, g_low, work,
                 scratch, at_m, value_m, slope_m, gl_t, gl_w, out, c)
