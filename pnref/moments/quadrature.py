"""Proxy moments by split Gauss-Legendre quadrature in the standard normal variable.

E f(Z) with Z = m + s X, X ~ Normal(0, 1), is the integral of f(m + s x) phi(x) dx.
The activations here are analytic except at z = 0 (a kink for relu, leaky_relu and elu;
the centre of the transition, where the nearest complex singularities sit, for tanh,
silu, softplus, ...). In x that point is c = -m/s, and it moves with (m, s): plain
Gauss-Hermite misses it (no convergence for kinks, and slow convergence once the
activation varies on a scale 1/s much finer than the Gaussian).

The rule used here (docs/proxy-moments.md, "Quadrature"), built for c >= 0 and mirrored:

- graded breakpoints at distances (0.5, 1, 2, 4, 8, 16, 32, 48) / s from c on both sides
  (the activation's transition and its e^-|z| approach to the asymptotes, down to e^-48),
  shrunk in proportion when they would not fit in half a side;
- 8 equal pieces from -L to min(c - 48/s, 4 s + L), L = sqrt(92) = 9.59: the Gaussian's
  bulk and the tilted centres x = j s (j = 1, 2, 4) where an exponential tail e^(j z) of
  the activation meets the Gaussian (e^(j s x) phi(x) is a Gaussian centred at j s), one
  piece from there to the graded points, and 2 pieces on the short side up to
  sqrt(c^2 + 92), where the Gaussian weight beyond c has fallen by e^-46;
- for gelu_tanh, whose left tail decays like e^(-0.07 |z|^3), two breakpoints around each
  narrow peak of its tail integrands (`_tail_breakpoints`; 4 more pieces);
- on each piece, ``n`` Gauss-Legendre nodes with the Gaussian weight folded into the
  weights; from c - 48/s on, nodes held as offsets u from c (Z = sign(c) s u, phi at the
  exact node, a kink exactly on an edge: `_rule`), in the bulk as x (phi with x^2 formed
  exactly, Z = m + s x to a few ulp);
- the sums run over cancellation-free differences f(Z) - f(m) and f'(Z) - f'(m)
  (`pnref.moments._differences`, shared with the estimators), and f'(Z) minus its limit
  on the side of m (`_sums`).

Measured against mpmath over |m|/s <= 40, s in [1e-8, 1e3], every activation: 4.5e-13
worst relative error of any output at the default n = 32 on the 228 rows of
tests/data/moment_references.csv (tests/test_moments_domain.py; 5e-14 on the 216 rows
before issue 13e added the odd outputs at m/s = 1e-6, s = 1e3), 5e-14 on a 470-point
stress set (issue 13d). At small s the mean sums the Taylor remainders f(Z) - f(m) - f'(m) d
(E d = 0; `_linear_rest`), so that a mean of order s^2 at a root of f keeps its precision;
the outputs of tanh and sigmoid that are odd in m (the mean, dmean/ds, dvar/dm) pair each node
with its mirror -m + s x where |m| <= min(1, s/100) (`_mirrored_pairs`); exactly 0 (or f(0))
at m = 0 (issue 13e: 4.5e-13 worst at m = 0, +-1e-3 s, +-1e-6 s, s from 1e-8 to 1e3).
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import expit

from pnref.activations import Activation
from pnref.moments._differences import (
    closed_pair,
    right_slope_offset,
    sigmoid_pair,
    softplus_difference,
)
from pnref.moments._special import normal_pdf, ratio_with_residual, two_sum
from pnref.moments._sums import _steps

__all__ = ["DEFAULT_N", "CUT", "nodes", "moments", "moments_with_derivatives"]

DEFAULT_N = 32
"""Nodes per piece (27 pieces): 5e-14 for every activation over |m|/s <= 40, s in [1e-8, 1e3]."""

CUT = math.sqrt(92.0)
"""Half-width where phi has fallen by e^-46 from its peak."""

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_TANH_CUBIC = 0.044715

GRADES = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 48.0)
"""Distances from the split point c, in units of 1/s (of z), of the graded breakpoints."""

UNIFORM_PIECES = 8
"""Equal pieces on [-L, T] (the Gaussian's bulk and the tilted centres)."""

SHORT_PIECES = 2
"""Equal pieces on the short side beyond the graded points."""

TILT_REACH = 4.0
"""The largest tilt j in e^(j z) covered by the uniform pieces (tanh's (1 + tanh z)^2 ~ e^(4z))."""

PIECES = UNIFORM_PIECES + 1 + 2 * len(GRADES) + SHORT_PIECES
"""Pieces per channel (27; gelu_tanh adds len(TAIL_TILTS) * len(TAIL_OFFSETS) = 4)."""


@functools.lru_cache(maxsize=32)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(n)
    t.setflags(write=False)
    w.setflags(write=False)
    return t, w


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    """phi(x) with x^2/2 formed exactly: x = hi + lo, hi on a 2^-20 grid.

    x^2/2 = hi^2/2 + y, y = lo (hi + x)/2, |y| < 2^-21 * 40; exp(-y) by its cubic Taylor
    polynomial (remainder y^4/24 < 1e-23). |x| is clipped at 40, where phi is 0 in float64.
    """
    xc = np.clip(x, -40.0, 40.0)
    hi = np.round(xc * 1048576.0) / 1048576.0
    y = 0.5 * (xc - hi) * (hi + xc)
    correction = 1.0 - y * (1.0 - y * (0.5 - y * (1.0 / 6.0)))
    return np.exp(-0.5 * hi * hi) * correction * _INV_SQRT_2PI


def _edges(m: np.ndarray, s: np.ndarray, extra: tuple[np.ndarray, ...]) -> tuple[np.ndarray, ...]:
    """Breakpoints of the rule in the mirrored coordinate y, sorted, and the split point.

    Returns sign, k_hi, k_lo (k_hi + k_lo = |c| to about twice float64's precision), the
    edges y (shape ``S + (PIECES + E + 1,)``) and graded_end = k - d_G, the first edge of the
    pieces laid out as offsets from c (`_rule`).
    """
    # Beyond |c| = 1e300 the far side carries weight phi(c) = 0 in float64 anyway; the clip
    # only keeps m/s for a subnormal s (and c^2, via hypot) from overflowing.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio, residual = ratio_with_residual(m, s)  # m/s = ratio + residual
        c = np.clip(-ratio, -1e300, 1e300)
        inv_s = np.minimum(1.0 / s, 1e300)
    sign = np.where(c < 0.0, -1.0, 1.0)
    k = np.abs(c)
    k_lo = np.where(np.abs(c) < 1e300, -sign * residual, 0.0)
    reach = np.hypot(k, CUT)
    long_side = k + CUT
    short_side = reach - k
    last = GRADES[-1]
    long_d = [np.minimum(g * inv_s, 0.5 * long_side * (g / last)) for g in GRADES]
    short_d = [np.minimum(g * inv_s, 0.5 * short_side * (g / last)) for g in GRADES]
    graded_end = k - long_d[-1]
    top = np.minimum(graded_end, TILT_REACH * s + CUT)
    # The uniform pieces in two zones: [-L, P] in 3 and [P, T] in 5, P = min(L, -L + 3/8 (T + L))
    # (equal pieces while T is small; the Gaussian's bulk in pieces of 6.4 however far T is).
    split = np.minimum(CUT, -CUT + (top + CUT) * (3.0 / UNIFORM_PIECES))
    points = [-CUT + (split + CUT) * (i / 3.0) for i in range(3)]
    rest = UNIFORM_PIECES - 3
    points += [split + (top - split) * (i / rest) for i in range(rest)]
    points += [top, graded_end]
    # From k - d_G on, each edge also as its exact offset from c: -d, 0 (c itself, where
    # a kink sits exactly), +d, and the short pieces' ends.
    near_offsets = [-d for d in reversed(long_d[:-1])] + [np.zeros_like(k)] + list(short_d)
    last_short = short_d[-1]
    near_offsets += [last_short + (short_side - last_short) * (i / SHORT_PIECES)
                     for i in range(1, SHORT_PIECES + 1)]
    points += [k + u for u in near_offsets]
    extra_points = [np.clip(point, -CUT, reach) for point in extra]
    points += extra_points
    offsets = [(point - k) - k_lo for point in points[:len(points) - len(near_offsets)
                                                     - len(extra_points)]]
    offsets += near_offsets + [(point - k) - k_lo for point in extra_points]
    edges = np.stack(np.broadcast_arrays(*points), axis=-1)  # S + (PIECES + E + 1,)
    edge_offsets = np.stack(np.broadcast_arrays(*offsets), axis=-1)
    if extra:
        order = np.argsort(edges, axis=-1, kind="stable")
        edges = np.take_along_axis(edges, order, axis=-1)
        edge_offsets = np.take_along_axis(edge_offsets, order, axis=-1)
    return sign, k, k_lo, edges, edge_offsets, graded_end


def _rule(
    m: np.ndarray, s: np.ndarray, n: int, extra: tuple[np.ndarray, ...] = ()
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r"""Nodes x, weights w, steps d = s x and points Z = m + s x of the rule (see `nodes`).

    Equations
    ---------
    A node at distance u from the split point c (mirrored coordinate y = k + u, k = |c|)
    is held as the offset u: on the pieces at or beyond y = k - d_G the edges are
    u = (y - k_hi) - k_lo (k = k_hi + k_lo to twice float64's precision, from the
    residual of m / s), the nodes u_j = (u_a + u_b) / 2 + (u_b - u_a) / 2 t_j, and, with
    k_hi + u_j = y_hi + y_lo exactly (two-sum) and y_lo += k_lo,

    .. math::

        Z_j = \operatorname{sign}(c)\, s\, u_j, \qquad
        w_j = \tfrac{|u_b - u_a|}{2}\, \omega_j\, \varphi(y_{hi})\,
              e^{-y_{lo} (y_{hi} + y_{lo} / 2)}, \qquad
        x_j = \operatorname{sign}(c)\, y_{hi},

    since m + s c = 0 exactly: Z_j carries one rounding, and phi is taken at the node itself,
    not at its rounding to float64 (whose error eps |c| moves a steep integrand: GELU at
    m/s = -30, s = 30 varies by e^(30) per unit of x, and its mean is a 90-fold
    cancellation of the parts z < 0 and z > 0). The bulk pieces below k - d_G keep their
    nodes as plain x (an offset from a distant c would be coarser), with phi(x) formed
    exactly and Z by `_steps`.
    """
    t, omega = _legendre(n)
    sign, k_hi, k_lo, edges, offsets, graded_end = _edges(m, s, extra)
    pieces = edges.shape[-1] - 1

    def bulk(lower, upper, sign, m, s):
        half = 0.5 * (upper - lower)
        y = 0.5 * (upper + lower) + half * t
        x = sign * y
        d, z = _steps(m, s, x)
        return x, np.abs(half) * omega * _normal_pdf(y), d, z

    def near_c(lower, upper, k_hi, k_lo, sign, s):
        half = 0.5 * (upper - lower)
        u = 0.5 * (upper + lower) + half * t
        y_hi, y_lo = two_sum(k_hi, u)
        y_lo = y_lo + k_lo
        # phi(y_hi + y_lo) = phi(y_hi) e^(-t), t = y_lo (y_hi + y_lo / 2): where phi(y_hi) > 0,
        # |y_hi| < 40 and k < 90 (the graded points reach at most halfway to c), so
        # |y_lo| < 2e-14, |t| < 1e-12 and e^(-t) = 1 - t to 1e-24. (The clips keep t finite
        # where phi is 0: at |c| = 1e300 the two-sum's error y_lo reaches 1e283.)
        y_lo_c = np.clip(y_lo, -1e-10, 1e-10)
        correction = 1.0 - y_lo_c * (np.clip(y_hi, -40.0, 40.0) + 0.5 * y_lo_c)
        x = sign * y_hi
        return (x, half * omega * _normal_pdf(y_hi) * correction,
                sign * (s * y_hi + s * y_lo), sign * s * u)

    if not extra:
        # Without tail breakpoints the first UNIFORM_PIECES + 1 pieces are the bulk.
        split = UNIFORM_PIECES + 1
        channel = [v[..., None, None] for v in (sign, k_hi, k_lo, m, s)]
        sign_c, k_hi_c, k_lo_c, m_c, s_c = channel
        far = bulk(edges[..., :split, None], edges[..., 1:split + 1, None], sign_c, m_c, s_c)
        close = near_c(offsets[..., split:-1, None], offsets[..., split + 1:, None],
                       k_hi_c, k_lo_c, sign_c, s_c)
        parts = [np.concatenate([a, b], axis=-2) for a, b in zip(far, close, strict=True)]
    else:
        near = edges[..., :-1] >= graded_end[..., None]  # S + (P,): pieces from k - d_G on
        far_mask = ~near

        def per_piece(value: np.ndarray, where: np.ndarray) -> np.ndarray:
            return np.broadcast_to(value[..., None], near.shape)[where][:, None]

        parts = [np.empty(near.shape + (n,)) for _ in range(4)]
        lower, upper = edges[..., :-1], edges[..., 1:]
        for part, value in zip(parts, bulk(lower[far_mask][:, None], upper[far_mask][:, None],
                                           per_piece(sign, far_mask), per_piece(m, far_mask),
                                           per_piece(s, far_mask)), strict=True):
            part[far_mask] = value
        lower, upper = offsets[..., :-1], offsets[..., 1:]
        for part, value in zip(parts, near_c(lower[near][:, None], upper[near][:, None],
                                             per_piece(k_hi, near), per_piece(k_lo, near),
                                             per_piece(sign, near), per_piece(s, near)),
                               strict=True):
            part[near] = value
    shape = parts[0].shape[:-2] + (pieces * n,)
    return tuple(part.reshape(shape) for part in parts)


def nodes(
    m: np.ndarray, s: np.ndarray, n: int, extra: tuple[np.ndarray, ...] = ()
) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x and weights w (shape ``S + ((PIECES + E) n,)``) approximating E g(X) by sum w g(x).

    Parameters
    ----------
    m, s : ndarray
        Broadcast float64 arrays of shape ``S`` with s > 0.
    n : int
        Gauss-Legendre nodes per piece.
    extra : tuple of ndarray
        E further breakpoints (each broadcast to ``S``), in the mirrored coordinate of the
        construction (y = x for c >= 0, y = -x for c < 0), clipped to [-L, R]; the
        breakpoints are sorted after they are added (`_tail_breakpoints`).

    Equations
    ---------
    With c = -m/s, k = |c| (the construction is made for c >= 0 and mirrored), L = sqrt(92)
    and R = sqrt(k^2 + 92), the breakpoints are

    * the long side [-L, k]: graded points k - d_g, d_g = min(g / s, (k + L) g / (2 G)) for
      g in `GRADES` (G = 48, the last grade); below k - d_G, `UNIFORM_PIECES` (8) pieces on
      [-L, T], T = min(k - d_G, TILT_REACH s + L): 3 equal ones on [-L, P] and 5 on [P, T],
      P = min(L, -L + 3 (T + L) / 8); and one piece [T, k - d_G];
    * the short side [k, R]: graded points k + min(g / s, (R - k) g / (2 G)), then
      `SHORT_PIECES` equal pieces up to R;

    and on each piece [a, b], with the Legendre nodes t_j and weights omega_j on [-1, 1],

    .. math::

        x_j = \\tfrac{a + b}{2} + \\tfrac{b - a}{2} t_j, \\qquad
        w_j = \\tfrac{|b - a|}{2}\\, \\omega_j\\, \\varphi(x_j).

    Why: the activation varies on the scale 1/s around x = c, and its exponential tails
    (e^(j z) for z -> -inf, j = 1, 2, 4 in f, f^2 and tanh's (1 + tanh)^2) meet the Gaussian at
    the tilted centres x = j s (e^(j s x) phi(x) is a Gaussian centred there): the graded
    points resolve the transition down to e^-48 of its size, the uniform pieces cover every
    tilted centre below c together with the Gaussian's bulk, and the piece [T, k - d_G] holds
    less than e^-46 of the mass. Cut-offs: phi falls by e^-46 beyond L (and beyond R past c).
    From k - d_G on, the nodes are formed as offsets from c and phi is taken at the exact
    node (`_rule`); the x returned there is that node rounded to float64.
    """
    x, w, _, _ = _rule(np.asarray(m, np.float64), np.asarray(s, np.float64), n, extra)
    return x, w


TAIL_TILTS = (1.0, 2.0)
"""Powers j of a super-exponential tail g(z)^j met by the sums (f and f' ~ g, f^2, f f' ~ g^2)."""

TAIL_OFFSETS = (-4.0, 4.0)
"""Breakpoints around each tail peak y_j, in units of its width sigma_j: one piece of 8 sigma
holds the peak (a Gaussian of width sigma over half-width 4 sigma: 32 Legendre nodes resolve
it to 1e-20), the mass beyond (below e^-8 of the peak, decaying) goes to the neighbouring
pieces. Measured on gelu_tanh, m/s in [-40, -8] and [8, 40], s in [0.1, 1e3] (5330 points)
against 96 nodes with six points per peak: the same worst error as with six points per peak."""


def _tail_breakpoints(act, m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    r"""Breakpoints (mirrored coordinate, see `nodes`) around the peaks of a super-exponential tail.

    gelu_tanh's left tail is z sigmoid(2u) ~ z e^(2u), 2u = b z + q z^3 (b = 2 sqrt(2/pi),
    q = 0.044715 b), which decays like e^(-q |z|^3): in the integrals at m/s << 0 the mass
    of g^j phi sits where j 2u(-a + s y) - y^2 / 2 (a = |m|) is largest, a narrow peak far
    from both the Gaussian's bulk and the split point (m = -39.7, s = 1: y = 28.5 and 31.5,
    widths 0.42 and 0.35) that the exponential-tail layout would cover with one wide piece
    (7e-10 relative error). The same holds mirrored for f' - 1 at m/s >> 0, since
    f(z) = z + f(-z). For other activations (exponential tails, or GELU's Gaussian tail,
    whose peak is as wide as the Gaussian's bulk allows) nothing is added.

    Equations
    ---------
    Setting the y-derivative to zero, with z = s y - a:

    .. math::

        j s (b + 3 q z^2) = y
        \;\Longleftrightarrow\;
        A s^2 y^2 - (2 A s a + 1) y + A a^2 + j b s = 0, \quad A = 3 j q s,

    whose smaller root (z < 0, the maximum) is
    y_j = 2 (A a^2 + j b s) / (2 A s a + 1 + sqrt((2 A s a + 1)^2 - 4 A s^2 (A a^2 + j b s)));
    its width is sigma_j = (1 + 6 j q s^2 |z_j|)^(-1/2) (the curvature there). Without a
    real root the integrand grows up to the split point, where the graded points are.
    """
    if act.name != "gelu_tanh":
        return ()
    b = 2.0 * _SQRT_2_OVER_PI
    q = _GELU_TANH_CUBIC * b
    a = np.abs(m)
    points = []
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        for j in TAIL_TILTS:
            big_a = 3.0 * j * q * s
            linear = 2.0 * big_a * s * a + 1.0
            constant = big_a * a * a + j * b * s
            discriminant = linear * linear - 4.0 * big_a * s * s * constant
            peak = 2.0 * constant / (linear + np.sqrt(np.maximum(discriminant, 0.0)))
            z_peak = np.minimum(s * peak - a, 0.0)
            width = 1.0 / np.sqrt(1.0 + 6.0 * j * q * s * s * np.abs(z_peak))
            # No peak (or a non-finite one at extreme inputs): zero-width pieces at y = 0.
            usable = (discriminant >= 0.0) & np.isfinite(peak) & np.isfinite(width)
            peak = np.where(usable, peak, 0.0)
            width = np.where(usable, width, 0.0)
            points += [peak + offset * width for offset in TAIL_OFFSETS]
    return tuple(points)


_SHORT_STEP = 0.1  # |d| below which differences are integrals of the next derivative
_SHORT_NODES, _SHORT_WEIGHTS = np.polynomial.legendre.leggauss(6)


def _integral_difference(g, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """G(m + d) - G(m) = integral of g = G' over [m, m + d], by 6-node Gauss-Legendre.

    For |d| <= 0.1 and g analytic within distance pi/2 of the real axis (every smooth
    activation here) the error is below (0.1 / pi)^12 relative; no cancellation between
    G(m + d) and G(m).
    """
    half = 0.5 * d
    total = np.zeros(np.broadcast(m, d).shape)
    for node, weight in zip(_SHORT_NODES, _SHORT_WEIGHTS, strict=True):
        total = total + weight * g(m + half * (1.0 + node))
    return half * total


def _taylor_rest(g, m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """d^2 int_0^1 (1 - t) g(m + t d) dt by 6-node Gauss-Legendre on [0, 1].

    With g = f''' this is the Taylor remainder f'(m + d) - f'(m) - f''(m) d, without its
    cancellation; |d| <= 0.1 and g analytic near the real axis as in `_integral_difference`.
    """
    total = np.zeros(np.broadcast(m, d).shape)
    for node, weight in zip(_SHORT_NODES, _SHORT_WEIGHTS, strict=True):
        t = 0.5 * (1.0 + node)
        total = total + (0.5 * weight) * (1.0 - t) * g(m + t * d)
    return d * d * total


# Roots r of f' (the minima of gelu, silu, gelu_tanh) as double-doubles: mpmath findroot at
# 40 digits gives -0.75179152469356445745790494677952404, -1.2784645427610737951093587390229802
# and -0.75246142207101625848795444328891609; (hi, lo) = (float rounding, remainder).
_DERIVATIVE_ROOTS = {
    "gelu": (-0.7517915246935645, 1.4956759177009883e-17),
    "silu": (-1.2784645427610737, -1.0946994183093437e-16),
    "gelu_tanh": (-0.7524614220710163, 3.635560509207687e-17),
}
def _gelu_d3f(z: np.ndarray) -> np.ndarray:
    """GELU's third derivative phi(z) z (z^2 - 4) (the derivative of f'' = phi (2 - z^2))."""
    zc = np.clip(z, -40.0, 40.0)
    return normal_pdf(zc) * zc * (zc * zc - 4.0)


def _silu_d3f(z: np.ndarray) -> np.ndarray:
    """SiLU's third derivative p q (z (t^2 - 2 p q) - 3 t), p, q = sigmoid(+-z), t = tanh(z/2).

    From f'' = p q (2 - z t), (p q)' = -p q t and t' = 2 p q.
    """
    zc = np.clip(z, -750.0, 750.0)
    pq = expit(zc) * expit(-zc)
    t = np.tanh(0.5 * zc)
    return pq * (zc * (t * t - 2.0 * pq) - 3.0 * t)


def _gelu_tanh_d3f(z: np.ndarray) -> np.ndarray:
    """tanh-GELU's third derivative 3 g'' + z g''', g = sigmoid(2u) (f = z g).

    With r = sigmoid(2u) sigmoid(-2u) and T = tanh u: g'' = 2 r (u'' - 2 u'^2 T); since
    r' = -2 u' r T and T' = 4 u' r,
    g''' = 2 r (u''' - 4 u' u'' T - 8 u'^3 r - 2 u' T (u'' - 2 u'^2 T)).
    """
    zc = np.clip(z, -1.0e3, 1.0e3)
    u = _SQRT_2_OVER_PI * (zc + _GELU_TANH_CUBIC * zc**3)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_TANH_CUBIC * zc * zc)
    d2u = _SQRT_2_OVER_PI * 6.0 * _GELU_TANH_CUBIC * zc
    d3u = _SQRT_2_OVER_PI * 6.0 * _GELU_TANH_CUBIC
    r = expit(2.0 * u) * expit(-2.0 * u)
    tanh_u = np.tanh(u)
    inner = d2u - 2.0 * du * du * tanh_u
    d_inner = d3u - 4.0 * du * d2u * tanh_u - 8.0 * du**3 * r
    return 3.0 * (2.0 * r * inner) + zc * (2.0 * r * (d_inner - 2.0 * du * tanh_u * inner))


_THIRD_DERIVATIVES = {"gelu": _gelu_d3f, "silu": _silu_d3f, "gelu_tanh": _gelu_tanh_d3f}
# f''' of the activations with a critical point (`_DERIVATIVE_ROOTS`), for `_sums`.

_ROOT_REACH = 0.1  # |z - r| below which f' is the integral of f'' from r
_CRITICAL_S = 0.01  # s below which E f' and Cov(f, f') near r drop their linear part


def _first_derivative(act):
    """f'(m + d) from (m, d), to full relative accuracy also near the root r of f'.

    Near r (|z - r| < 0.1), f'(z) = int_r^z f''(t) dt by `_integral_difference`, with
    z - r = ((m - r_hi) - r_lo) + d formed without rounding m + d first where m is close
    to r (and from the point z, given to a few ulp of itself, where m is far from r and
    m + d cancels; GELU at m = -900, s = 30: 4e-12 from (m, d)): the textbook forms
    (Phi(z) + z phi(z) for gelu) carry an absolute rounding error of about eps there, a
    relative error eps / |f''(r) (z - r)| that reaches 1e-8 at |z - r| = 1e-8, and so does
    the rounding of z = m + d itself. f'' has no cancellation near r.
    """
    root = _DERIVATIVE_ROOTS.get(act.name)

    def df(m: np.ndarray, d: np.ndarray | float = 0.0, z: np.ndarray | None = None) -> np.ndarray:
        m = np.asarray(m, dtype=np.float64)
        if z is None:
            z = m + d
        out = np.array(act.df(z), dtype=np.float64)
        if root is None:
            return out
        root_hi, root_lo = root
        # m - r_hi and z - r_hi are exact near r (Sterbenz); from (m, d) the error is
        # eps |m - r|, from the accurate z it is a few ulp of z: take the smaller.
        from_steps = ((m - root_hi) - root_lo) + d
        from_point = (z - root_hi) - root_lo
        offset = np.where(np.abs(m - root_hi) <= 4.0 * np.abs(z), from_steps, from_point)
        near = np.abs(offset) < _ROOT_REACH
        if np.any(near):
            start = np.full(offset[near].shape, root_hi)
            out[near] = _integral_difference(act.d2f, start, offset[near])
        return out

    return df


def _derivative_offsets(act, df, df_z: np.ndarray, z: np.ndarray, m: np.ndarray,
                        right: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """D(z) = f'(z) - K', K' and D(m); K' is the limit of f' on the side of m (right: m > 0).

    K' is 0, 1 or alpha; where f' -> 1 as z -> +inf the offset is formed without
    cancellation (`right_slope_offset`), so that E[f'(Z) X] = E[D X] keeps its relative
    accuracy when f' is 1 to within rounding over the Gaussian's mass (softplus at m/s = 30).
    """
    left_limit = float(act.df(np.array(-1e300)))
    right_limit = float(act.df(np.array(1e300)))
    limit = np.where(right, right_limit, left_limit)
    offset = df_z - limit
    offset_m = df(m) - limit
    special = right_slope_offset(act)
    if special is not None and np.any(right):
        rows = np.flatnonzero(right[:, 0])
        offset[rows] = special(z[rows])
        offset_m[rows] = special(m[rows])
    return offset, limit, offset_m


def _zero_width_limits(act, m: np.ndarray, derivatives: bool) -> tuple[np.ndarray, ...]:
    """The s -> 0+ limits: f(m), 0, the averaged f'(m), the kink term, 0, 0."""
    mean = act.f(m)
    var = np.zeros_like(m)
    if not derivatives:
        return mean, var
    dmean_dm = np.asarray(act.df(m), dtype=np.float64).copy()
    dmean_ds = np.zeros_like(m)
    for kink, jump in zip(act.kinks, act.jumps, strict=True):
        at_kink = m == kink
        # Left derivative + half the jump = average of the one-sided derivatives;
        # d/ds E f(m + s X) -> jump * E[X 1(X > 0)] = jump * phi(0).
        dmean_dm = np.where(at_kink, dmean_dm + 0.5 * jump, dmean_dm)
        dmean_ds = np.where(at_kink, jump * _INV_SQRT_2PI, dmean_ds)
    return mean, var, dmean_dm, dmean_ds, np.zeros_like(m), np.zeros_like(m)


_LINEAR_S = 0.01  # s below which the mean sums the Taylor remainders (`_linear_rest`) ...
_LINEAR_DOMINANCE = 64.0  # ... where |f(m)| <= this times s |f'(m)|
_KINKED_AT_ZERO = frozenset({"relu", "leaky_relu", "elu"})  # f' or f'' jumps at z = 0


def _linear_rest(act, delta: np.ndarray, slope: np.ndarray, z: np.ndarray, m: np.ndarray,
                 d: np.ndarray) -> np.ndarray:
    """R = f(Z) - f(m) - f'(m) d, the difference Delta without its linear part.

    Equations
    ---------
    Where Z and m lie on the same side of 0 (any Z for a smooth f) and |d| <= 0.1,
    R = d^2 int_0^1 (1 - t) f''(m + t d) dt (`_taylor_rest` with f''), free of the
    cancellation of Delta - f'(m) d. Across the kink of relu, leaky_relu and elu (f(z) = z
    for z > 0, a smooth left branch F with F(0) = 0 for z <= 0), within 0.1 of it:

    * m > 0 >= Z:  R = F(Z) - Z = rest_F(0, Z) + (F'(0) - 1) Z;
    * m <= 0 < Z:  R = Z (1 - F'(m)) + rest_F(m, -m), 1 - F'(m) = (1 - F'(0)) + int_m^0 F'';

    rest_F(a, h) = F(a + h) - F(a) - F'(a) h by `_taylor_rest` (F'' = `Activation.d2f` on
    z <= 0): R depends on Z itself, given to a few ulp, and not on the rounding of Z - m
    (ELU alpha = 1 at m = 1e-14, s = 1e-8: 1.6e-10 of the mean by subtraction). Elsewhere
    R = Delta - f'(m) d by subtraction (d is not small there). f'(m) is the left derivative
    at a kink, as `Activation.df`.
    """
    rest = delta - slope * d
    m_b = np.broadcast_to(m, d.shape)
    taylor = np.abs(d) <= _SHORT_STEP
    if act.name in _KINKED_AT_ZERO:
        crossing = (z > 0.0) != (m_b > 0.0)
        taylor &= ~crossing
        left_slope_zero = float(act.df(np.array(0.0)))
        from_right = crossing & (m_b > 0.0) & (np.abs(z) <= _SHORT_STEP)
        if np.any(from_right):
            point = z[from_right]
            rest[from_right] = (_taylor_rest(act.d2f, np.zeros_like(point), point)
                                + (left_slope_zero - 1.0) * point)
        from_left = crossing & (m_b <= 0.0) & (np.abs(m_b) <= _SHORT_STEP)
        if np.any(from_left):
            point, centre = z[from_left], m_b[from_left]
            gap = (1.0 - left_slope_zero) + _integral_difference(act.d2f, centre, -centre)
            rest[from_left] = point * gap + _taylor_rest(act.d2f, centre, -centre)
    if np.any(taylor):
        rest[taylor] = _taylor_rest(act.d2f, m_b[taylor], d[taylor])
    return rest


_MIRRORED = frozenset({"tanh", "sigmoid"})  # f(-z) = 2 f(0) - f(z), f not linear
_ODD_REACH = 1.0  # |m| up to which tanh and sigmoid pair Z = m + s x with -m + s x ...
_ODD_RATIO = 0.01  # ... and |m| / s up to which they do (see `_sums`)


def _mirrored_pairs(act, pair, z: np.ndarray, m: np.ndarray,
                    slopes: bool = True) -> tuple[np.ndarray, ...]:
    """For f(-z) = 2 f(0) - f(z): f(a) - f(b), f'(a) - f'(b) and f(b) - f(0), b = a - 2m.

    With ``slopes=False`` only f(a) - f(b) (the others None).

    a = Z = m + s x is the node's point and b = -m + s x its mirror; the differences come
    from `closed_pair` with the step a - b = 2m given exactly, so each carries a small
    relative error however small m is (`_sums`, the odd outputs).
    """
    step = np.broadcast_to(2.0 * m, z.shape)
    mirror = z - step
    difference, slope_difference = pair(z, mirror, step, slopes)
    if not slopes:
        offset = None
    elif act.name == "tanh":
        offset = np.tanh(mirror)
    else:  # sigmoid(b) - 1/2 = tanh(b / 2) / 2
        offset = 0.5 * np.tanh(0.5 * mirror)
    return difference, slope_difference, offset


_POINT_SYMMETRIC = frozenset({"identity", "tanh", "sigmoid"})
"""Activations with f(-z) = 2 f(0) - f(z) (see `_moments`)."""

_BLOCK_ELEMENTS = 2_000_000  # channels x nodes per block (16 MB per temporary)
_STEIN_S = 0.5  # smooth activations: E[f'(Z) X] = s E f''(Z) for s <= this


def _sums(act, m: np.ndarray, s: np.ndarray, n: int,
          derivatives: bool) -> tuple[np.ndarray, ...]:
    """Mean, variance (and derivatives) by the rule of `_rule`, per channel (1-d m, s).

    Equations
    ---------
    With Z_j = m + s x_j from `_rule`, Delta_j = f(Z_j) - f(m) and E_j = f'(Z_j) - f'(m)
    cancellation-free (`pnref.moments._differences.closed_pair`, softplus's log1p form and
    sigmoid difference; for gelu, gelu_tanh, silu the integral of f' (of f'' for E_j) over
    [m, Z_j] where |s x_j| <= 0.1, subtraction elsewhere), D_j = f'(Z_j) - K'
    (`_derivative_offsets`):

        mu = f(m) + sum w Delta,  v = sum w (Delta - sum w Delta)^2,
        dmu/dm = K' + sum w D,
        dmu/ds = s sum w f''(Z_j) + sum_kinks J phi(-m/s)   (s <= 0.5, or kinked f, m <= 0)
               = sum w D_j x_j                              (otherwise),
        dv/dm = 2 sum w (Delta - mean)(E_j - sum w E),
        dv/ds = 2 sum w (Delta - mean)(f'(Z_j) x_j - dmu/ds).

    Stein's identity E[f'(Z) X] = s E f''(Z) (plus J phi(c) at a kink with jump J) keeps
    dmu/ds relative at small s, where E[f' X] = O(s) is a sum of O(1) terms; for large s
    the direct form avoids the cancellation of the odd f'' around c, and for a kinked f with
    m > 0 the cancellation between s E f'' and a negative jump (ELU with alpha > 1): there D
    vanishes on the side of m, and every term of sum w D x has the same sign.

    Two replacements where those sums cancel: at s <= 0.01 with |f(m)| <= 64 s |f'(m)|,
    mu = f(m) + sum w R with R = Delta - f'(m) d (`_linear_rest`; E d = 0); for tanh and
    sigmoid at |m| <= min(1, s/100), with b = Z - 2m the mirror of each node's point and
    df = f(Z) - f(b), df' = f'(Z) - f'(b) (`_mirrored_pairs`):

        mu = f(0) + sum w df / 2,  dmu/ds = sum w df' x / 2,
        dv/dm = sum w [df (E - sum w E) + (f(b) - f(0)) df'].
    """
    count = 6 if derivatives else 2
    outs = [np.empty(m.shape) for _ in range(count)]
    pair = closed_pair(act)
    df = _first_derivative(act)
    smooth = not act.kinks and act.name not in ("identity",)
    extra_count = len(_tail_breakpoints(act, m[:1], s[:1]))
    block = max(1, _BLOCK_ELEMENTS // ((PIECES + extra_count) * n))
    for start in range(0, m.size, block):
        stop = min(start + block, m.size)
        m_block, s_block = m[start:stop], s[start:stop]
        xb, wb, d, z = _rule(m_block, s_block, n, _tail_breakpoints(act, m_block, s_block))
        mb, sb = m_block[:, None], s_block[:, None]
        f_m = act.f(mb)
        m_nodes = np.broadcast_to(mb, z.shape)
        short = np.abs(d) <= _SHORT_STEP
        if pair is not None:
            delta, change = pair(z, m_nodes, d, derivatives)
        elif act.name == "softplus":
            delta = softplus_difference(z, m_nodes, d)
            change = sigmoid_pair(z, m_nodes, d, False)[0] if derivatives else None  # f' = sigmoid
        else:
            delta = act.f(z) - f_m  # does not cancel where |d| > 0.1 (the rest below)
            change = None
        if pair is None and act.name != "softplus" and np.any(short):
            # int_m^(m+d) f' with f' at m + d (1 + t_j) / 2 from (m, d): accurate near its root
            m_short, half = m_nodes[short], 0.5 * d[short]
            total = np.zeros(half.shape)
            for node, weight in zip(_SHORT_NODES, _SHORT_WEIGHTS, strict=True):
                total = total + weight * df(m_short, half * (1.0 + node))
            delta[short] = half * total
        delta_mean = np.sum(wb * delta, axis=-1)
        deviation = delta - delta_mean[:, None]
        outs[0][start:stop] = f_m[:, 0] + delta_mean
        odd_rows = np.zeros(m_block.shape, dtype=bool)
        if act.name in _MIRRORED:
            odd_rows = np.abs(mb[:, 0]) <= np.minimum(_ODD_REACH, _ODD_RATIO * sb[:, 0])
        # At small s, sum w Delta = E f(Z) - f(m) = f''(m) s^2 / 2 + ... is a sum of O(s)
        # terms f'(m) d that cancel only to their rounding, eps s |f'(m)| (3e-8 of SiLU's
        # mean at m = 0, s = 1e-8): E d = s E X = 0 exactly, so the mean is f(m) + E R with
        # R = Delta - f'(m) d, formed without cancellation. Needed only where f(m) does not
        # dominate that rounding (|f(m)| <= 64 s |f'(m)|; elsewhere it is below eps / 64).
        slope_m = df(mb)
        narrow = ((sb[:, 0] <= _LINEAR_S) & ~odd_rows
                  & (np.abs(f_m[:, 0]) <= _LINEAR_DOMINANCE * sb[:, 0] * np.abs(slope_m[:, 0])))
        if np.any(narrow):
            rows = np.flatnonzero(narrow)
            rest = _linear_rest(act, delta[rows], slope_m[rows], z[rows], mb[rows], d[rows])
            outs[0][start + rows] = f_m[rows, 0] + np.sum(wb[rows] * rest, axis=-1)
        odd = np.flatnonzero(odd_rows)
        if odd.size:
            # f - f(0) odd and X symmetric: E f(Z) - f(0) = E[f(m + s X) - f(-m + s X)] / 2,
            # a sum of terms of one sign and of size m (f is monotone), where sum w Delta
            # cancels O(max(1, s) |f'|) terms to O(m): relative error eps max(1, s) / |m|
            # (1e-10 at m = 1e-6, s = 1; 1e-12 at m = 1, s = 1e3). Both points sit within
            # 2 |m| / s <= 2 / s of the split point c = -m/s, on the rule's finest graded
            # pieces (the integrand varies on the scale 1/s, analytic within pi / (2 s)).
            mirrored = _mirrored_pairs(act, pair, z[odd], mb[odd], derivatives)
            outs[0][start + odd] = (float(act.f(np.array(0.0)))
                                    + 0.5 * np.sum(wb[odd] * mirrored[0], axis=-1))
        outs[1][start:stop] = np.sum(wb * deviation * deviation, axis=-1)
        if not derivatives:
            continue
        right = mb > 0.0
        df_z = df(mb, d, z)
        offset, limit, offset_m = _derivative_offsets(act, df, df_z, z, mb, right)
        outs[2][start:stop] = limit[:, 0] + np.sum(wb * offset, axis=-1)
        use_stein = (sb[:, 0] <= _STEIN_S) | ((not smooth) & (mb[:, 0] <= 0.0))
        dmean_ds = np.sum(wb * offset * xb, axis=-1)
        if np.any(use_stein):
            rows = np.flatnonzero(use_stein)
            stein = sb[rows, 0] * np.sum(wb[rows] * act.d2f(z[rows]), axis=-1)
            for kink, jump in zip(act.kinks, act.jumps, strict=True):
                a, residual = ratio_with_residual(kink - mb[rows, 0], sb[rows, 0])
                correction = np.where(np.abs(a) < 40.0,
                                      np.exp(-residual * (np.clip(a, -40, 40) + 0.5 * residual)),
                                      1.0)
                stein = stein + jump * normal_pdf(a) * correction
            dmean_ds[rows] = stein
        outs[3][start:stop] = dmean_ds
        if change is None:
            # gelu, gelu_tanh, silu: f'' is continuous, and short steps take its integral
            change = offset - offset_m
            if np.any(short):
                change[short] = _integral_difference(act.d2f, m_nodes[short], d[short])
        change_mean = np.sum(wb * change, axis=-1)
        outs[4][start:stop] = 2.0 * np.sum(wb * deviation * (change - change_mean[:, None]),
                                           axis=-1)
        root = _DERIVATIVE_ROOTS.get(act.name)
        if root is not None:
            # Near a root r of f' at small s, E f' = f'(m) + O(s^2) and Cov(f, f') are sums
            # whose O(s) terms (odd in x) cancel to 1e-8 of their size: take the linear part
            # f''(m) d out of E_j and add back its exact expectation (E X = 0, and
            # Cov(f, s X) = s^2 E f' by Stein's identity). The rest E_j - f''(m) d is
            # d^2 int_0^1 (1 - t) f'''(m + t d) dt for short steps: formed as a difference,
            # the rounding of f'' (eps f'' d) is 1e-8 of it at d = 1e-8.
            critical = (np.abs(mb[:, 0] - root[0]) < 0.5) & (sb[:, 0] <= _CRITICAL_S)
            if np.any(critical):
                rows = np.flatnonzero(critical)
                curvature = act.d2f(mb[rows])
                residual = change[rows] - curvature * d[rows]
                steps = d[rows]
                near = np.abs(steps) <= _SHORT_STEP
                m_near = np.broadcast_to(mb[rows], steps.shape)[near]
                residual[near] = _taylor_rest(_THIRD_DERIVATIVES[act.name], m_near, steps[near])
                residual_mean = np.sum(wb[rows] * residual, axis=-1)
                dmean_dm = df(mb[rows, 0]) + residual_mean
                outs[2][start + rows] = dmean_dm
                outs[4][start + rows] = 2.0 * (
                    np.sum(wb[rows] * deviation[rows] * (residual - residual_mean[:, None]),
                           axis=-1)
                    + curvature[:, 0] * sb[rows, 0] ** 2 * dmean_dm)
        outs[5][start:stop] = 2.0 * np.sum(
            wb * deviation * (df_z * xb - dmean_ds[:, None]), axis=-1)
        if odd.size:
            # The odd outputs in the same mirrored form, with a = Z, b = a - 2m (f' even):
            # E[f'(Z) X] = E[(f'(a) - f'(b)) X] / 2 (terms of one sign: |f'| falls with |z|),
            # Cov(f, f') = E[(f(a) - f(b)) (f'(a) - E f') + (f(b) - f(0)) (f'(a) - f'(b))] / 2,
            # f'(a) - E f' = (f'(Z) - f'(m)) - E(f'(Z) - f'(m)) without cancellation.
            difference, slope_difference, offset = mirrored
            outs[3][start + odd] = 0.5 * np.sum(wb[odd] * slope_difference * xb[odd], axis=-1)
            # (At |m| >= s these terms would be of size |m| and cancel to s^2 f' f'': relative
            # error eps |m| / s, against eps s / |m| for the direct centred sum; hence
            # |m| <= s / 100 for the mirrored form.)
            centred_slope = change[odd] - change_mean[odd, None]
            outs[4][start + odd] = np.sum(
                wb[odd] * (difference * centred_slope + offset * slope_difference), axis=-1)
    return tuple(outs)


def _moments(act, m, s, n, derivatives):
    if any(k != 0.0 for k in act.kinks):
        raise ValueError(
            f"quadrature splits only at z = 0; activation {act.name!r} has kinks {act.kinks}"
        )
    n = DEFAULT_N if n is None else int(n)
    m, s = np.broadcast_arrays(np.asarray(m, np.float64), np.asarray(s, np.float64))
    count = 6 if derivatives else 2
    outs = [np.full(m.shape, np.nan) for _ in range(count)]
    positive = s > 0.0
    zero = s == 0.0  # NaN s falls in neither and stays NaN
    if positive.any():
        mp_, sp_ = m[positive], s[positive]
        with np.errstate(over="ignore", invalid="ignore", under="ignore"):
            values = _sums(act, mp_, sp_, n, derivatives)
        for out, value in zip(outs, values, strict=True):
            out[positive] = value
        if act.name == "identity":
            # E Z = m exactly; m + s sum w x leaves s 1e-17 (1e-10 of m at m/s = 1e-6, s = 1e3).
            outs[0][positive] = mp_
        if act.name in _POINT_SYMMETRIC:
            # f(-z) = 2 f(0) - f(z): at m = 0 the law of Z is symmetric, so E f(Z) = f(0),
            # E[f'(Z) X] = 0 (f' even) and Cov(f, f') = 0 (f - f(0) odd, f' even) exactly;
            # the sums leave rounding noise (1e-17, or s 1e-16 for the identity's mean).
            centred = positive & (m == 0.0)
            outs[0][centred] = float(act.f(np.array(0.0)))
            if derivatives:
                outs[3][centred] = 0.0
                outs[4][centred] = 0.0
    if zero.any():
        for out, value in zip(outs, _zero_width_limits(act, m[zero], derivatives), strict=True):
            out[zero] = value
    return tuple(outs)


def moments(
    act: Activation, m: np.ndarray, s: np.ndarray, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Proxy mean and population variance by split Gauss-Legendre quadrature.

    Parameters
    ----------
    act : Activation
        Its kinks must be at 0 (true of every activation in `pnref.activations`).
    m, s : ndarray
        Broadcast float64 arrays, s >= 0 (s = 0 gives the s -> 0+ limits).
    n : int, optional
        Nodes per piece (default 32; `PIECES` = 27 pieces).
    seed : None
        Unused.

    Returns
    -------
    mean, var : ndarray

    Equations
    ---------
    .. math::

        \\mu \\approx \\sum_j w_j f(m + s x_j), \\qquad
        v \\approx \\sum_j w_j \\big(f(m + s x_j) - \\mu\\big)^2 .
    """
    return _moments(act, m, s, n, derivatives=False)


def moments_with_derivatives(
    act: Activation, m: np.ndarray, s: np.ndarray, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, ...]:
    """Quadrature moments and their derivatives in m and s (Stein's identities).

    Returns
    -------
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds : ndarray

    Equations
    ---------
    .. math::

        \\partial_m \\mu = \\mathbb E f'(Z), \\quad
        \\partial_s \\mu = \\mathbb E f'(Z) X, \\quad
        \\partial_m v = 2 \\operatorname{Cov}(f, f'), \\quad
        \\partial_s v = 2 \\operatorname{Cov}(f, f' X),

    each expectation replaced by the same weighted sum, the covariances in centred
    form. At s = 0 the s -> 0+ limits are returned: f(m), 0, f'(m) (the average of the
    one-sided derivatives at a kink), the jump of f' at m times phi(0), 0, 0.
    """
    return _moments(act, m, s, n, derivatives=True)
