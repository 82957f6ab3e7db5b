"""Sample moments of f(m + s x_i) on given points, computed without cancellation.

The quantile and Monte Carlo methods are estimators: given their points x_i (the
official quantiles or seeded normal draws), their job is to return

    mean = (1/n) sum_i f(Z_i),   var = (1/n) sum_i (f(Z_i) - mean)^2,   Z_i = m + s x_i,

and its exact (m, s) derivatives, as they are in exact arithmetic on those points. Two
things stand between float64 and that:

1. **Differences of nearly equal values.** When f hardly changes over the points (tanh
   or ELU far in the left tail, any smooth f at s = 1e-8, SiLU's slope far right),
   f(Z_i) - f(m) formed by subtraction keeps nothing of the deviation (tanh at m = -40:
   var 0 instead of 7e-67). Here every deviation is formed directly:

   - g_i = f(m + d_i) - f(m) and h_i = f'(m + d_i) - f'(m), d_i = s x_i, by a closed
     difference formula (`pnref.moments._differences`, shared with the quadrature) where the
     activation has one (identity, the ReLU family, ELU:
     alpha e^min(..) expm1; tanh and sigmoid: tanh a - tanh b = sinh(a - b) / (cosh a
     cosh b) written with exponentials of non-positive arguments only);
   - for the smooth, asymptotically linear activations (GELU, tanh-GELU, SiLU,
     softplus) by subtraction where that is accurate (the difference is at least 1/64
     of the values it is formed from, so at most ~7 bits are lost), on their right side
     after removing the linear part z (the residual f(z) - z and slope f'(z) - 1 are
     exponentially small and kept to full relative precision), and otherwise (and for
     every step |d| <= 1/8) by Taylor's formula with integral remainder, evaluated by
     20-node Gauss-Legendre on [0, 1] in up to two pieces, with d f'(m) kept as an exact
     product (two floats) so that it cancels exactly over symmetric points:

         g = d f'(m) + d^2 int_0^1 (1 - t) f''(m + t d) dt,
         h = d int_0^1 f''(m + t d) dt.

   - the step d_i = s x_i is formed as a two-product d_i + d_low_i (exact), and the
     first-order effect f'(z_i) d_low_i of its rounding goes into g's low part; for ELU,
     short steps (|d| <= 1/8) split g into the exact product f'(m) d and the remainder
     R = g - f'(m) d in closed form (`_elu_split`): at a root of f (alpha = 1, m = 0,
     s = 1e-8) the mean is R's mean, second order in s, and the linear parts cancel
     exactly over symmetric points.

2. **Sums that cancel.** Every sum is compensated (a pairwise cascade of error-free
   two-sums, `accurate_sum`), whose first level pairs x_i with x_{n-1-i}: on the
   exactly symmetric quantile points the odd part of g cancels exactly there.

All statistics are two-pass in the deviations:

    mean = f(m) + g_bar,           var = mean((g - g_bar)^2),
    dmean/dm = f'(m) + h_bar,      dmean/ds = f'(m) x_bar + mean(h x),
    dvar/dm = 2 mean((g - g_bar)(h - h_bar)),
    dvar/ds = 2 mean((g - g_bar)(f'(m)(x - x_bar) + h x - mean(h x))),

with x_bar the exactly rounded mean of the points (0 for the quantile points). Where
|f'(m) + h_bar| < |f'(m)| / 64 (f' fades over the points: tanh at s = 1e3), the slope means
are the sums themselves, dmean/dm = mean(f'(z)), dmean/ds = mean(f'(z) x).
"""

from __future__ import annotations

import math

import numpy as np

from pnref.moments._differences import closed_pair, right_residual

__all__ = ["accurate_sum", "differences", "sample_moments"]

# Channels per block, so that a block's (channels x points) arrays stay near 2e6 numbers.
_BLOCK_ELEMENTS = 2_000_000
# Subtraction is accepted when |a - b| >= (|a| + |b|) / _ACCEPT: at most log2(2 * 64) = 7
# bits are lost, a relative error below 3e-14.
_ACCEPT = 64.0
# Taylor's remainder is integrated on pieces of length <= _PIECE with _NODES nodes each;
# f'' of every activation here is analytic in a strip of half-width >= ~1 around the real
# axis, so 20 nodes on a piece of length 2 are exact to ~1e-19 (Bernstein-ellipse bound).
_PIECE = 2.0
_NODES = 20
_TAYLOR_LIMIT = 2 * _PIECE  # beyond this the difference is large enough to subtract
# Steps this short always take Taylor's form: there g is mostly its odd part d f'(m), which
# cancels over symmetric points, and the even rest (the mean's share when f(m) ~ 0, e.g.
# SiLU at m = 0, s = 1e-8) must not inherit the rounding of f(m + d) (1e-9 relative seen).
_SHORT_STEP = 0.125

_GL_X, _GL_W = np.polynomial.legendre.leggauss(_NODES)
_GL_T = 0.5 * (_GL_X + 1.0)  # nodes on [0, 1]
_GL_W = 0.5 * _GL_W



# ----------------------------------------------------------------------- compensated sums


def _two_sum(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """s = fl(a + b) and its rounding error e (a + b = s + e exactly; 0 where s is not finite)."""
    total = a + b
    with np.errstate(invalid="ignore"):
        b_virtual = total - a
        error = (a - (total - b_virtual)) + (b - b_virtual)
    return total, np.where(np.isfinite(total), error, 0.0)


def accurate_sum(values: np.ndarray) -> np.ndarray:
    """Sum over the last axis with about twice float64's precision.

    A pairwise cascade of error-free two-sums; the first level pairs element i with
    element n - 1 - i, the rest neighbours. The rounding errors of every level are
    gathered and added at the end, so the result is the exact sum rounded, up to about
    ``n eps^2 sum |values|``.

    Equations
    ---------
    .. math::

        a + b = \\mathrm{fl}(a + b) + e, \\quad
        S = \\textstyle\\sum_{\\text{top}} + \\sum_{\\text{levels}} e .
    """
    x = np.asarray(values, dtype=np.float64)
    n = x.shape[-1]
    lead = x.shape[:-1]
    if n == 0:
        return np.zeros(lead)
    errors = np.zeros(lead)
    half = n // 2
    if half:
        # x[n-1], x[n-2], ..., x[n-half] (n - 1 - half >= 0 since half <= n / 2)
        total, error = _two_sum(x[..., :half], x[..., n - 1: n - 1 - half: -1])
        errors = errors + error.sum(axis=-1)
        x = np.concatenate([total, x[..., half:n - half]], axis=-1)
    while x.shape[-1] > 1:
        if x.shape[-1] % 2:
            x = np.concatenate([x, np.zeros(lead + (1,))], axis=-1)
        total, error = _two_sum(x[..., 0::2], x[..., 1::2])
        errors = errors + error.sum(axis=-1)
        x = total
    return x[..., 0] + errors


# ----------------------------------------------------------------------- differences


def _two_product(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """p = fl(a b) and its rounding error (Dekker's splitting; a b = p + e exactly)."""
    product = a * b

    def split(x):
        big = 134217729.0 * x  # 2^27 + 1
        high = big - (big - x)
        return high, x - high

    with np.errstate(invalid="ignore", over="ignore"):
        a_hi, a_lo = split(a)
        b_hi, b_lo = split(b)
        error = ((a_hi * b_hi - product) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo
    return product, np.where(np.isfinite(error), error, 0.0)


def _taylor(act, m, d) -> tuple[np.ndarray, np.ndarray]:
    """(d int_0^1 (1 - t) f''(m + t d) dt, d int_0^1 f''(m + t d) dt), |d| <= 2 pieces of 2."""
    pieces = 2 if np.any(np.abs(d) > _PIECE) else 1
    remainder = np.zeros_like(d)
    slope_change = np.zeros_like(d)
    for piece in range(pieces):
        t = (piece + _GL_T[:, None]) / pieces  # (nodes, elements)
        w = _GL_W[:, None] / pieces
        curvature = act.d2f(m[None, :] + t * d[None, :])
        remainder += np.sum(w * (1.0 - t) * curvature, axis=0)
        slope_change += np.sum(w * curvature, axis=0)
    return d * remainder, d * slope_change


def _smooth_pair(act, z, m, d):
    """g, h for gelu, gelu_tanh, silu, softplus (see the module docstring)."""
    f_z, f_m = act.f(z), act.f(m)
    df_z, df_m = act.df(z), act.df(m)
    right = (z > 0.0) & (m > 0.0)
    r_z, r1_z = right_residual(act.name, z)
    r_m, r1_m = right_residual(act.name, m)
    # Subtraction, and the size of what it was formed from.
    g = np.where(right, d + (r_z - r_m), f_z - f_m)
    g_base = np.where(right, np.abs(r_z) + np.abs(r_m), np.abs(f_z) + np.abs(f_m))
    h = np.where(right, r1_z - r1_m, df_z - df_m)
    h_base = np.where(right, np.abs(r1_z) + np.abs(r1_m), np.abs(df_z) + np.abs(df_m))
    short = np.abs(d) <= _SHORT_STEP
    small = np.abs(d) <= _TAYLOR_LIMIT
    redo = small & ((_ACCEPT * np.abs(g) < g_base) | (_ACCEPT * np.abs(h) < h_base) | short)
    g_low = np.zeros_like(g)
    if np.any(redo):
        m_r, d_r = m[redo], d[redo]
        remainder, slope_change = _taylor(act, m_r, d_r)
        # g = d f'(m) + d * remainder as a pair (high, low): the linear term is odd in d,
        # and on symmetric points it must cancel to far below the even remainder.
        linear, linear_error = _two_product(d_r, df_m[redo])
        g_high, g_error = _two_sum(linear, d_r * remainder)
        g_bad = (_ACCEPT * np.abs(g[redo]) < g_base[redo]) | short[redo]
        h_bad = (_ACCEPT * np.abs(h[redo]) < h_base[redo]) | short[redo]
        g[redo] = np.where(g_bad, g_high, g[redo])
        g_low[redo] = np.where(g_bad, g_error + linear_error, 0.0)
        h[redo] = np.where(h_bad, slope_change, h[redo])
    return g, h, g_low


_PHI2_SERIES = tuple(1.0 / math.factorial(k + 2) for k in range(15))


def _expm1_minus_identity(t: np.ndarray) -> np.ndarray:
    """e^t - 1 - t without cancellation: t^2 sum_k t^k / (k + 2)! for |t| <= 1/2.

    15 terms: the first one left out is below 0.5^15 / 17! = 9e-20 of the leading 1/2.
    Beyond |t| = 1/2, expm1(t) - t loses at most two bits.
    """
    tc = np.clip(t, -0.5, 0.5)
    series = np.zeros_like(tc)
    for coefficient in reversed(_PHI2_SERIES):
        series = series * tc + coefficient
    return np.where(np.abs(t) <= 0.5, tc * tc * series, np.expm1(t) - t)


def _elu_split(alpha: float, m, d, d_low) -> tuple[np.ndarray, np.ndarray]:
    """g = f(m + d) - f(m) for ELU as (high, low): f'(m) d exactly plus the remainder R.

    For steps |d| <= 1/8 (`_SHORT_STEP`), with Z = m + d + d_low held as z_hi + z_lo and
    F(z) = alpha expm1(z) the left branch, R = f(Z) - f(m) - f'(m) (d + d_low) is

    * m, Z <= 0:  alpha e^m phi(d),  phi(t) = e^t - 1 - t;
    * m, Z > 0:   0;
    * m > 0 >= Z: F(Z) - Z = alpha phi(z_hi) + (alpha - 1) z_hi + (alpha e^z_hi - 1) z_lo;
    * m <= 0 < Z: Z (1 - F'(m)) + alpha e^m phi(-m), 1 - F'(m) = (1 - alpha) - alpha expm1(m);

    and f'(m) (d + d_low) is the exact product f'(m) d (two-product) plus f'(m) d_low. The
    linear part cancels exactly over symmetric points; the sum of R (second order in d)
    keeps its precision where the mean is that small (alpha = 1, m = 0, s = 1e-8: 5.2e-10
    of the mean from the rounding of each alpha expm1(z_i) before).
    """
    slope = np.where(m > 0.0, 1.0, alpha * np.exp(np.minimum(m, 0.0)))
    linear, linear_error = _two_product(d, slope)
    z_hi, z_lo = _two_sum(m, d)
    z_lo = z_lo + d_low
    left = z_hi <= 0.0
    same_left = left & (m <= 0.0)
    from_right = left & (m > 0.0)
    from_left = ~left & (m <= 0.0)
    rest = np.zeros_like(d)
    rest = np.where(same_left, slope * _expm1_minus_identity(d), rest)
    rest = np.where(from_right, alpha * _expm1_minus_identity(z_hi) + (alpha - 1.0) * z_hi
                    + (alpha * np.exp(np.minimum(z_hi, 0.0)) - 1.0) * z_lo, rest)
    m_left = np.minimum(m, 0.0)
    gap = (1.0 - alpha) - alpha * np.expm1(m_left)
    rest = np.where(from_left, (z_hi + z_lo) * gap
                    + alpha * np.exp(m_left) * _expm1_minus_identity(-m_left), rest)
    high, error = _two_sum(linear, rest)
    return high, error + linear_error + slope * d_low


def differences(act, m: np.ndarray, d: np.ndarray,
                d_low: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """g = f(m + d) - f(m) and h = f'(m + d) - f'(m), elementwise, without cancellation.

    Parameters
    ----------
    act : Activation
    m, d : ndarray
        Same shape; the step d is taken as given (m + d is rounded only to choose a
        side of a kink and where f or f' must be evaluated at the point itself).
    d_low : ndarray, optional
        The rounding error of d (the step is d + d_low, e.g. s x as a two-product): its
        first-order effect f'(m + d) d_low is added to ``g_low`` (the ELU split of short
        steps, `_elu_split`, takes it into its linear part and Z).

    Returns
    -------
    g, h, g_low : ndarray
        ``f'`` is the left derivative at a kink, as `Activation.df`; ``g + g_low`` is g
        to about twice float64's precision where g came from Taylor's formula (``g_low``
        is 0 elsewhere).

    Equations
    ---------
    See the module docstring; e.g. for tanh

    .. math::

        \\tanh a - \\tanh b = \\frac{\\sinh(a - b)}{\\cosh a \\cosh b}, \\qquad
        \\operatorname{sech}^2 a - \\operatorname{sech}^2 b
        = -(\\tanh a - \\tanh b)(\\tanh a + \\tanh b).
    """
    if d_low is None:
        d_low = np.zeros_like(np.asarray(d, np.float64))
    m, d, d_low = np.broadcast_arrays(np.asarray(m, np.float64), np.asarray(d, np.float64),
                                      np.asarray(d_low, np.float64))
    shape = m.shape
    m = np.ascontiguousarray(m).reshape(-1)
    d = np.ascontiguousarray(d).reshape(-1)
    d_low = np.ascontiguousarray(d_low).reshape(-1)
    z = m + d
    with np.errstate(invalid="ignore", over="ignore"):
        g_low = np.zeros_like(d)
        pair = closed_pair(act)
        if pair is not None:
            g, h = pair(z, m, d)
        else:
            g, h, g_low = _smooth_pair(act, z, m, d)
        # The step's own rounding, to first order (f'' d d_low ~ eps d^2 is left out).
        g_low = g_low + np.where(d_low == 0.0, 0.0, act.df(z) * d_low)
        if act.name == "elu":
            short = np.abs(d) <= _SHORT_STEP
            if np.any(short):
                high, low = _elu_split(act.params["alpha"], m[short], d[short], d_low[short])
                g[short] = high
                g_low[short] = low
    # d = 0 (s = 0) is an exact zero difference whatever the formula's sign conventions;
    # NaN propagates from m or d.
    nan = np.isnan(z)
    g = np.where(d == 0.0, 0.0, g)
    h = np.where(d == 0.0, 0.0, h)
    g = np.where(nan, np.nan, g)
    h = np.where(nan, np.nan, h)
    g_low = np.where(d == 0.0, 0.0, g_low)
    return g.reshape(shape), h.reshape(shape), g_low.reshape(shape)


# ----------------------------------------------------------------------- the estimator


def _tanh_pair_sums(m: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(tanh(m + d) + tanh(m - d), tanh(m + d) - tanh(m - d)) without cancellation.

    With p = 2|m|, q = 2|d|, M = max(p, q) and cosh a cosh b = (cosh 2m + cosh 2d) / 2:

        tanh a + tanh b = sinh 2m / (cosh a cosh b)
                        = 2 sign(m) (1 - e^-2p) e^(p-M) / (e^(p-M) + e^(-p-M) + e^(q-M) + e^(-q-M)),

    and the difference the same with p and q (and m and d) exchanged: only exponentials of
    non-positive arguments, and 1 - e^-2p as -expm1(-2p).
    """
    p, q = 2.0 * np.abs(m), 2.0 * np.abs(d)
    top = np.maximum(p, q)
    denominator = np.exp(p - top) + np.exp(-p - top) + np.exp(q - top) + np.exp(-q - top)
    total = 2.0 * np.sign(m) * -np.expm1(-2.0 * p) * np.exp(p - top) / denominator
    difference = 2.0 * np.sign(d) * -np.expm1(-2.0 * q) * np.exp(q - top) / denominator
    return total, difference


def _tanh_slope(z: np.ndarray) -> np.ndarray:
    """sech^2 z = 4 e^-2|z| / (1 + e^-2|z|)^2 (no 1 - tanh^2 cancellation in the tails)."""
    e = np.exp(-2.0 * np.abs(z))
    return 4.0 * e / (1.0 + e) ** 2


def _tanh_symmetric_moments(m: np.ndarray, s: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
    """The six estimator outputs of tanh on points symmetric about 0, pair by pair.

    ``u`` holds the positive half of the points (u_i paired with -u_i); with a = m + d,
    b = m - d, d = s u_i, S = tanh a + tanh b, D = tanh a - tanh b (`_tanh_pair_sums`),
    F = sech^2 a + sech^2 b, D' = sech^2 a - sech^2 b = -D S, over the n = 2 len(u) points:

        mean = sum S / n,   var = sum (D^2 + (S - 2 mean)^2) / 2 / n,
        dmean/dm = sum F / n,   dmean/ds = sum D' u / n,
        dvar/dm = sum ((S - 2 mean)(F - 2 dmean/dm) + D D') / n,
        dvar/ds = sum (u ((S - 2 mean) D' + D F) - 2 dmean/ds (S - 2 mean)) / n.

    Where the mean is far below the values (|m| << s: tanh at m = 1e-3, s = 1e3, the
    g_i = +-1 of the general form cancelled to a mean of 1e-10, 5.3e-8 of it lost), every
    term here keeps its relative accuracy.
    """
    n = 2 * u.shape[0]
    d = s[:, None] * u[None, :]
    centre = np.broadcast_to(m[:, None], d.shape)
    total, difference = _tanh_pair_sums(centre, d)
    slope_a, slope_b = _tanh_slope(centre + d), _tanh_slope(centre - d)
    slopes = slope_a + slope_b
    slope_difference = -difference * total
    mean = accurate_sum(total) / n
    even = total - 2.0 * mean[:, None]
    var = accurate_sum(difference * difference + even * even) / (2 * n)
    dmean_dm = accurate_sum(slopes) / n
    dmean_ds = accurate_sum(slope_difference * u[None, :]) / n
    dvar_dm = accurate_sum(even * (slopes - 2.0 * dmean_dm[:, None])
                           + difference * slope_difference) / n
    dvar_ds = accurate_sum(u[None, :] * (even * slope_difference + difference * slopes)
                           - 2.0 * dmean_ds[:, None] * even) / n
    return [mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds]


def _symmetric_override(act, m, s, x, outs) -> None:
    """Replace tanh's and sigmoid's outputs by the pair form where |m| << s (in place).

    Only on points symmetric about 0 (the quantile points) with n even, and only where
    64 |m| < s: there the general form's g_i ~ +-1 cancel over each pair.
    Sigmoid goes through tanh: sigmoid(z) = (1 + tanh(z/2)) / 2.
    """
    if act.name not in ("tanh", "sigmoid") or x.shape[0] % 2 or not np.array_equal(x, -x[::-1]):
        return
    scale = 0.5 if act.name == "sigmoid" else 1.0
    m_t, s_t = scale * m.reshape(-1), scale * s.reshape(-1)
    rows = np.flatnonzero(_ACCEPT * np.abs(m_t) < s_t)
    if rows.size == 0:
        return
    u = x[x.shape[0] // 2:]
    values = _tanh_symmetric_moments(m_t[rows], s_t[rows], u)
    if act.name == "sigmoid":  # mean and var of (1 + T)/2; d/dm = d/dm_t / 2, d/ds likewise
        values = [0.5 + 0.5 * values[0], 0.25 * values[1], 0.25 * values[2], 0.25 * values[3],
                  0.125 * values[4], 0.125 * values[5]]
    for out, value in zip(outs, values[:len(outs)], strict=True):  # 2 or 6 outputs
        out.reshape(-1)[rows] = value


def sample_moments(act, m: np.ndarray, s: np.ndarray, x: np.ndarray,
                   derivatives: bool) -> tuple[np.ndarray, ...]:
    """The sample mean and population variance of f(m + s x_i), and their (m, s) derivatives.

    Parameters
    ----------
    act : Activation
    m, s : ndarray
        Broadcast float64 arrays of the same shape (``s >= 0``).
    x : ndarray, shape (n,)
        The points, n >= 2, shared by every channel.
    derivatives : bool
        Also return ``dmean_dm, dmean_ds, dvar_dm, dvar_ds``.

    Returns
    -------
    tuple of ndarray
        ``(mean, var)`` or ``(mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds)``.

    Equations
    ---------
    With :math:`g_i = f(m + s x_i) - f(m)`, :math:`h_i = f'(m + s x_i) - f'(m)` and bars
    for means over i:

    .. math::

        \\hat\\mu = f(m) + \\bar g, \\quad \\hat v = \\overline{(g - \\bar g)^2}, \\quad
        \\partial_m \\hat\\mu = f'(m) + \\bar h, \\quad
        \\partial_s \\hat\\mu = f'(m) \\bar x + \\overline{h x},

        \\partial_m \\hat v = 2\\, \\overline{(g - \\bar g)(h - \\bar h)}, \\quad
        \\partial_s \\hat v = 2\\, \\overline{(g - \\bar g)
            \\big(f'(m)(x - \\bar x) + h x - \\overline{h x}\\big)} .
    """
    shape = m.shape
    outs = [np.empty(shape) for _ in range(6 if derivatives else 2)]
    flat = [o.reshape(-1) for o in outs]
    m_flat, s_flat = m.reshape(-1), s.reshape(-1)
    n = x.shape[0]
    x_bar = math.fsum(x.tolist()) / n
    block = max(1, _BLOCK_ELEMENTS // n)
    for start in range(0, m_flat.size, block):
        stop = min(start + block, m_flat.size)
        centre = m_flat[start:stop]
        # s x_i as a two-product: its rounding (eps |s x_i|) would otherwise stay in g_i.
        step, step_low = _two_product(np.broadcast_to(s_flat[start:stop, None], (stop - start, n)),
                                      np.broadcast_to(x[None, :], (stop - start, n)))
        g, h, g_low = differences(act, np.broadcast_to(centre[:, None], step.shape), step,
                                  step_low)
        g_bar = (accurate_sum(g) + accurate_sum(g_low)) / n
        deviation = g - g_bar[:, None]
        flat[0][start:stop] = act.f(centre) + g_bar
        flat[1][start:stop] = accurate_sum(deviation * deviation) / n
        if not derivatives:
            continue
        slope = act.df(centre)
        h_bar = accurate_sum(h) / n
        hx = h * x[None, :]
        hx_bar = accurate_sum(hx) / n
        flat[2][start:stop] = slope + h_bar
        flat[3][start:stop] = slope * x_bar + hx_bar
        # Where f' at the points is mostly far below f'(m) (tanh at m = 0, s = 1e3: the mean
        # of f' is 1.4e-7 of f'(m)), f'(m) + mean(h) and f'(m) x_bar + mean(h x) cancel
        # (3.6e-10 of dmean/dm): there the sums of f'(z_i) and f'(z_i) x_i themselves, whose
        # terms are accurate wherever they are not negligible, are taken instead.
        faded = _ACCEPT * np.abs(slope + h_bar) < np.abs(slope)
        if np.any(faded):
            rows = np.flatnonzero(faded)
            z_rows = centre[rows, None] + step[rows]
            slope_z = act.df(z_rows)
            flat[2][start + rows] = accurate_sum(slope_z) / n
            flat[3][start + rows] = accurate_sum(slope_z * x[None, :]) / n
        flat[4][start:stop] = 2.0 * accurate_sum(deviation * (h - h_bar[:, None])) / n
        slope_term = slope[:, None] * (x[None, :] - x_bar) + (hx - hx_bar[:, None])
        flat[5][start:stop] = 2.0 * accurate_sum(deviation * slope_term) / n
        if np.any(faded):
            # The same for the variance's derivatives: h - mean(h) = f'(z) - mean(f'(z)) and
            # f'(m)(x - x_bar) + h x - mean(h x) = f'(z) x - mean(f'(z) x) exactly, but the
            # left-hand forms cancel f'(m) where f' has faded (tanh at m = 0, s = 1e3:
            # d(var)/ds 2.7e-11 off the estimator in exact arithmetic).
            weighted = slope_z * x[None, :]
            centred_slope = slope_z - (accurate_sum(slope_z) / n)[:, None]
            centred_weighted = weighted - (accurate_sum(weighted) / n)[:, None]
            flat[4][start + rows] = 2.0 * accurate_sum(deviation[rows] * centred_slope) / n
            flat[5][start + rows] = 2.0 * accurate_sum(deviation[rows] * centred_weighted) / n
    _symmetric_override(act, m, s, x, outs)
    return tuple(outs)
