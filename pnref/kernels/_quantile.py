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
(`tests/test_kernels.py`). The kernel flags every channel that may need one
(``maybe_edge``: finite m and s with tanh 64 |m| < s, sigmoid 64 |m/2| < s/2, ELU
s max|u_i| <= 1/8, or f' fading, 64 |dmean/dm| < |f'(m)|, the last taken with a margin
where ``pnref.activations`` may round f'(m) differently); the blocks
(`pnref.kernels.fused_blocks._refine_edge_channels`) check only the flagged channels
against those criteria and take the NumPy estimator's values where they hold. For
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
dominates a training-sized block. Per channel: one loop over the points per family of
activations (the piecewise ones and tanh/sigmoid need neither f nor f' at the points,
and their g_low is 0, so its sum is skipped), then the seven sums in two groups, the
first four (g, h, h u, g_low) and the three formed from their means, each group level
by level so that the rows' chains of additions overlap. Every value is what the
per-point, one-sum-at-a-time form gives, bit for bit (issue 15: same operations in the
same order; only the control flow changed).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from pnref.kernels._activation_rows import (
    ELU,
    GELU,
    GELU_TANH,
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


def _quadrature_nodes() -> np.ndarray:
    """Gauss-Legendre nodes on the pieces of [0, 1]: ``nodes[pieces - 1 + piece]`` holds,
    for piece ``piece`` of ``pieces`` (1 or 2), the rows ``t_k = (piece + x_k) / pieces``,
    ``w_k / pieces`` and ``(w_k / pieces) (1 - t_k)`` (the remainder's weights), each
    one correctly rounded operation per step as in the estimator's loop."""
    nodes = np.empty((3, 3, _NODES))
    for pieces in (1, 2):
        for piece in range(pieces):
            t = (piece + _GL_T) / pieces
            w = _GL_W / pieces
            nodes[pieces - 1 + piece] = t, w, w * (1.0 - t)
    return nodes


_GL_NODES = _quadrature_nodes()
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715
# The criteria of `pnref.kernels.fused_blocks._refine_edge_channels` (see `_maybe_edge`).
_EDGE_RATIO = 64.0
_EDGE_SLACK = 1e-12


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
def _add_errors(errors, count: int, length: int, totals) -> None:
    """``totals[k] += (((0 + e[k, 0]) + e[k, 1]) + ...)`` for ``k < count``, ``length`` terms.

    The level sums of `_accurate_sums`, in order; three rows' chains of additions are
    independent and run interleaved (each is latency bound on its own).
    """
    k = 0
    while k < count:
        if count - k >= 3:
            level0, level1, level2 = 0.0, 0.0, 0.0
            for i in range(length):
                level0 += errors[k, i]
                level1 += errors[k + 1, i]
                level2 += errors[k + 2, i]
            totals[k] += level0
            totals[k + 1] += level1
            totals[k + 2] += level2
            k += 3
        else:
            level0 = 0.0
            for i in range(length):
                level0 += errors[k, i]
            totals[k] += level0
            k += 1


@njit(**_JIT)
def _accurate_sums(rows, count: int, length: int, work, errors, sums) -> None:
    """``sums[k]``: the compensated sum of ``rows[k, :length]`` for ``k < count``.

    The cascade of `pnref.moments._estimator.accurate_sum`: error-free two-sums
    ``a + b = fl(a + b) + e`` (``e`` taken as 0 where ``fl(a + b)`` is not finite), the
    first level pairing ``i`` with ``length - 1 - i``, the next ones neighbours (a 0
    appended to an odd level); each level's errors are added in order and the levels'
    totals to the last sum. Level by level over all rows at once, so the rows' chains of
    additions overlap; each level's two-sums form a loop without branches. ``work``
    (rows x (length + 1)) and ``errors`` (rows x length) are scratch.
    """
    for k in range(count):
        sums[k] = 0.0  # the running sum of the levels' errors
    if length == 0:
        return
    half = length // 2
    for k in range(count):
        for i in range(half):
            a = rows[k, i]
            b = rows[k, length - 1 - i]
            total = a + b
            b_virtual = total - a
            error = (a - (total - b_virtual)) + (b - b_virtual)
            work[k, i] = total
            errors[k, i] = error if math.isfinite(total) else 0.0
        for i in range(half, length - half):
            work[k, i] = rows[k, i]
    _add_errors(errors, count, half, sums)
    size = length - half
    while size > 1:
        if size % 2:
            for k in range(count):
                work[k, size] = 0.0
            size += 1
        pairs = size // 2
        for k in range(count):
            for i in range(pairs):
                a = work[k, 2 * i]
                b = work[k, 2 * i + 1]
                total = a + b
                b_virtual = total - a
                error = (a - (total - b_virtual)) + (b - b_virtual)
                errors[k, i] = error if math.isfinite(total) else 0.0
                work[k, i] = total
        _add_errors(errors, count, pairs, sums)
        size = pairs
    for k in range(count):
        sums[k] = work[k, 0] + sums[k]


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
def _smooth_pair(code, m, d, z, f_z, f_m, df_z, df_m, r_m, r1_m,
                 nodes) -> tuple[float, float, float]:
    """(g, h, g_low) of the smooth activations; ``r_m, r1_m = _right_residual(code, m)``
    when m > 0 (unused otherwise); ``nodes``: `_GL_NODES`."""
    if z > 0.0 and m > 0.0:
        r_z, r1_z = _right_residual(code, z)
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
            on_piece = nodes[pieces - 1 + piece]
            t, w, w_remainder = on_piece[0], on_piece[1], on_piece[2]
            for k in range(t.shape[0]):
                curvature = _d2f(code, m + t[k] * d)
                part_r += w_remainder[k] * curvature
                part_s += w[k] * curvature
            remainder += part_r
            slope_change += part_s
        if g_bad:
            linear, linear_error = _two_product(d, df_m)
            g, g_error = _two_sum(linear, d * (d * remainder))
            g_low = g_error + linear_error
        if h_bad:
            h = d * slope_change
    return g, h, g_low


# Rows of `_channel`'s per-point buffers: ``terms`` (the first four sums) and ``products``
# (the last three, formed from the first ones' means).
_G, _H, _HU, _G_LOW = range(4)
_SQUARES, _DVAR_DM, _DVAR_DS = range(3)


@njit(**_JIT)
def _piecewise_terms(code, alpha, m, s, points, terms) -> None:
    """g and h (``terms`` rows ``_G``, ``_H``) of identity, the ReLU family and ELU, whose
    differences take neither f nor f' at the points and have no low part: the branches
    of `pnref.moments._estimator`'s closed forms, one loop per activation."""
    n = points.shape[0]
    g = terms[_G]
    h = terms[_H]
    if code == IDENTITY:
        for i in range(n):
            d = s * points[i]
            z = m + d
            if math.isnan(z):
                g[i], h[i] = math.nan, math.nan
            elif d == 0.0:
                g[i], h[i] = 0.0, 0.0
            else:
                g[i], h[i] = d, 0.0
    elif code == RELU or code == LEAKY_RELU:
        a = alpha if code == LEAKY_RELU else 0.0
        jump = 1.0 - a
        for i in range(n):
            d = s * points[i]
            z = m + d
            if math.isnan(z):
                g[i], h[i] = math.nan, math.nan
            elif d == 0.0:
                g[i], h[i] = 0.0, 0.0
            elif z > 0.0:
                if m > 0.0:
                    g[i], h[i] = d, 0.0
                else:
                    g[i], h[i] = z - a * m, jump
            elif m > 0.0:
                g[i], h[i] = a * z - m, -jump
            else:
                g[i], h[i] = a * d, 0.0
    else:  # ELU
        # f' - 1 = alpha expm1(m) + (alpha - 1) on the left: no cancellation at alpha = 1
        left_m = alpha * math.expm1(min(m, 0.0))
        for i in range(n):
            d = s * points[i]
            z = m + d
            if math.isnan(z):
                g[i], h[i] = math.nan, math.nan
            elif d == 0.0:
                g[i], h[i] = 0.0, 0.0
            elif z > 0.0:
                if m > 0.0:
                    g[i], h[i] = d, 0.0
                else:
                    g[i], h[i] = z - left_m, -(left_m + (alpha - 1.0))
            elif m > 0.0:
                left_z = alpha * math.expm1(min(z, 0.0))
                g[i], h[i] = left_z - m, left_z + (alpha - 1.0)
            else:
                both = alpha * _sign(d) * math.exp(min(max(z, m), 0.0)) * -math.expm1(-abs(d))
                g[i], h[i] = both, both


@njit(**_JIT)
def _tanh_terms(code, m, s, points, terms) -> None:
    """g and h (``terms`` rows ``_G``, ``_H``) of tanh and sigmoid (sigmoid at half the
    arguments, its g and h then scaled by 1/2 and 1/4).

    With exponentials of non-positive arguments only: ``e(a, b, same) =
    2 exp(-2 min(|a|, |b|) [same]) / ((1 + exp(-2|a|)) (1 + exp(-2|b|)))``,
    ``g = sign(d) e(z, m, same) (-expm1(-2|d|))``, ``h = -g sign(z + m)
    e(z, m, not same) (-expm1(-2|z + m|))`` (tanh z - tanh m and the slope difference
    sech^2 z - sech^2 m = -(tanh z - tanh m)(tanh z + tanh m)), ``same`` when z and m
    are on the same side of 0. ``exp(-2|m|)`` is taken once per channel and the common
    denominator once per point.
    """
    n = points.shape[0]
    g = terms[_G]
    h = terms[_H]
    half = code == SIGMOID
    mc = 0.5 * m if half else m
    exp_m = math.exp(-2.0 * abs(mc))
    for i in range(n):
        d = s * points[i]
        z = m + d
        if math.isnan(z):
            g[i], h[i] = math.nan, math.nan
            continue
        if d == 0.0:
            g[i], h[i] = 0.0, 0.0
            continue
        zc = 0.5 * z if half else z
        dc = 0.5 * d if half else d
        same = (zc > 0.0) == (mc > 0.0)
        abs_z = abs(zc)
        abs_m = abs(mc)
        denominator = (1.0 + math.exp(-2.0 * abs_z)) * (1.0 + exp_m)
        near = -2.0 * min(abs_z, abs_m)  # e's exponent where the signs agree
        factor_g = 2.0 * math.exp(near if same else 0.0) / denominator
        factor_sum = 2.0 * math.exp(0.0 if same else near) / denominator
        pair_g = _sign(dc) * factor_g * -math.expm1(-2.0 * abs(dc))
        total = zc + mc
        tanh_sum = _sign(total) * factor_sum * -math.expm1(-2.0 * abs(total))
        pair_h = -pair_g * tanh_sum
        if half:
            g[i], h[i] = 0.5 * pair_g, 0.25 * pair_h
        else:
            g[i], h[i] = pair_g, pair_h


@njit(**_JIT)
def _gather_off_right(m, s, points, z, z_used, index) -> int:
    """``z_i = m + s u_i`` for every point; those not on the right side (not both z_i > 0
    and m > 0) copied to the front of ``z_used``, their indices to ``index``; returns
    their count."""
    count = 0
    for i in range(points.shape[0]):
        z[i] = m + s * points[i]
        if not (z[i] > 0.0 and m > 0.0):
            z_used[count] = z[i]
            index[count] = i
            count += 1
    return count


@njit(**_JIT)
def _smooth_terms(code, m, s, points, f_m, df_m, z, f, df, used, index, terms,
                  nodes) -> None:
    """g, h and g_low (``terms`` rows ``_G``, ``_H``, ``_G_LOW``) of GELU, tanh-GELU,
    SiLU and softplus: `_smooth_pair` at every point, ``_right_residual(m)`` taken once.

    `_smooth_pair` reads f(z) and f'(z) only off the right side (unless z > 0 and m > 0):
    they are computed there only, gathered into the first ``count`` places of the rows
    z, f, f' of ``used`` (their points' indices in ``index``) and scattered back.
    """
    n = points.shape[0]
    z_used, f_used, df_used = used[0], used[1], used[2]
    count = _gather_off_right(m, s, points, z, z_used, index)
    activate_row_with_slope(z_used, f_used, df_used, count, code, 0.0)
    for j in range(count):
        i = index[j]
        f[i] = f_used[j]
        df[i] = df_used[j]
    r_m, r1_m = _right_residual(code, m) if m > 0.0 else (0.0, 0.0)
    g = terms[_G]
    h = terms[_H]
    g_low = terms[_G_LOW]
    for i in range(n):
        d = s * points[i]
        if math.isnan(z[i]):
            g[i], h[i], g_low[i] = math.nan, math.nan, 0.0
        elif d == 0.0:
            g[i], h[i], g_low[i] = 0.0, 0.0, 0.0
        else:
            g[i], h[i], g_low[i] = _smooth_pair(code, m, d, z[i], f[i], f_m, df[i], df_m,
                                                r_m, r1_m, nodes)


@njit(**_JIT)
def _channel(points, u_bar, m, s, act_code, act_alpha, z, f, df, used, index, terms, products,
             work, errors, sums, at_m, value_m, slope_m, nodes, out, c) -> float:
    """Column ``c`` of ``out`` for one channel; returns f'(m)."""
    n = points.shape[0]
    at_m[0] = m
    activate_row_with_slope(at_m, value_m, slope_m, at_m.shape[0], act_code, act_alpha)
    f_m, df_m = value_m[0], slope_m[0]
    smooth = (act_code == GELU or act_code == GELU_TANH or act_code == SILU
              or act_code == SOFTPLUS)
    if smooth:
        _smooth_terms(act_code, m, s, points, f_m, df_m, z, f, df, used, index, terms, nodes)
    elif act_code == TANH or act_code == SIGMOID:
        _tanh_terms(act_code, m, s, points, terms)
    else:
        _piecewise_terms(act_code, act_alpha, m, s, points, terms)
    for i in range(n):
        terms[_HU, i] = terms[_H, i] * points[i]
    # g, h, h u and (smooth activations only) g_low. Elsewhere every g_low is +0.0, whose
    # cascade sums to +0.0 exactly (two-sums of +0.0 give +0.0 and error +0.0), so the
    # literal "+ 0.0" below is that sum (it still turns a sum of -0.0 into +0.0).
    _accurate_sums(terms, 4 if smooth else 3, n, work, errors, sums)
    g_low_sum = sums[_G_LOW] if smooth else 0.0
    g_bar = (sums[_G] + g_low_sum) / n
    h_bar = sums[_H] / n
    hu_bar = sums[_HU] / n
    g = terms[_G]
    h = terms[_H]
    for i in range(n):
        g[i] -= g_bar  # g now holds the deviations
        products[_SQUARES, i] = g[i] * g[i]
    for i in range(n):
        products[_DVAR_DM, i] = g[i] * (h[i] - h_bar)
    for i in range(n):
        products[_DVAR_DS, i] = g[i] * (df_m * (points[i] - u_bar)
                                        + (h[i] * points[i] - hu_bar))
    _accurate_sums(products, products.shape[0], n, work, errors, sums)
    out[0, c] = f_m + g_bar
    out[1, c] = sums[_SQUARES] / n
    out[2, c] = df_m + h_bar
    out[3, c] = df_m * u_bar + hu_bar
    out[4, c] = 2.0 * sums[_DVAR_DM] / n
    out[5, c] = 2.0 * sums[_DVAR_DS] / n
    return df_m


@njit(**_JIT)
def _maybe_edge(code: int, m: float, s: float, step_max: float, df_m: float,
                dmean_dm: float) -> bool:
    """Whether the channel may need a refinement the kernel lacks (see the module
    docstring): a superset of `pnref.kernels.fused_blocks`' criteria, which it checks."""
    if not (math.isfinite(m) and math.isfinite(s)):
        return False
    if code == TANH and _EDGE_RATIO * abs(m) < s:
        return True
    if code == SIGMOID and _EDGE_RATIO * abs(0.5 * m) < 0.5 * s:
        return True
    if code == ELU and s * step_max <= _SHORT_STEP:
        return True
    if code == IDENTITY or code == RELU or code == LEAKY_RELU:
        # here f'(m) is exactly what pnref.activations returns for a finite m
        return _EDGE_RATIO * abs(dmean_dm) < abs(df_m)
    # Elsewhere the two implementations of f'(m) may differ by rounding: by a few units
    # in the last place of f'(m) (ELU's alpha e^m, tanh and sigmoid's products of
    # exponentials), or of 1 where f' is a sum of terms up to ~1 (GELU, tanh-GELU, SiLU:
    # near their slopes' root). A factor 2 and 1e-12 leave a wide margin
    # (`tests/test_kernels.py` checks it on a dense grid).
    return _EDGE_RATIO * abs(dmean_dm) < 2.0 * abs(df_m) + _EDGE_SLACK


@njit(**_JIT)
def quantile_moments(points, m, s, act_code, act_alpha, out, maybe_edge) -> None:
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
    maybe_edge : bool ndarray (C,)
        Set where the channel may need one of the estimator's refinements that this
        kernel lacks (finite m and s with: tanh 64 |m| < s, sigmoid 64 |m/2| < s/2, ELU
        s max|u_i| <= 1/8, or f' fading, 64 |dmean_dm| < |f'(m)|, taken with a margin
        where ``pnref.activations`` may round f'(m) differently); false elsewhere.

    Equations
    ---------
    See the module docstring.
    """
    nodes = _GL_NODES  # a module constant (frozen into the compiled kernel)
    n = points.shape[0]
    z = np.empty(n)
    f = np.empty(n)
    df = np.empty(n)
    used = np.empty((3, n))
    index = np.empty(n, dtype=np.int64)
    terms = np.empty((4, n))
    products = np.empty((3, n))
    work = np.empty((4, n + 1))
    errors = np.empty((4, n))
    sums = np.empty(4)
    at_m = np.empty(1)
    value_m = np.empty(1)
    slope_m = np.empty(1)
    # The exactly rounded mean of the points (0 for the symmetric official points).
    as_rows = points.reshape((1, n))
    _accurate_sums(as_rows, as_rows.shape[0], n, work, errors, sums)
    u_bar = sums[0] / n
    step_max = 0.0
    for i in range(n):
        step_max = max(step_max, abs(points[i]))
    for c in range(m.shape[0]):
        df_m = _channel(points, u_bar, m[c], s[c], act_code, act_alpha, z, f, df, used, index,
                        terms, products, work, errors, sums, at_m, value_m, slope_m, nodes, out,
                        c)
        maybe_edge[c] = _maybe_edge(act_code, m[c], s[c], step_max, df_m, out[2, c])
