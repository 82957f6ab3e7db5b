"""Proxy moments by split Gauss-Legendre quadrature in the standard normal variable.

E f(Z) with Z = m + s X, X ~ Normal(0, 1), is the integral of f(m + s x) phi(x) dx.
The activations here are analytic except at z = 0 (a kink for relu, leaky_relu and elu;
the centre of the transition, where the nearest complex singularities sit, for tanh,
silu, softplus, ...). In x that point is c = -m/s, and it moves with (m, s): plain
Gauss-Hermite misses it (no convergence for kinks, and slow convergence once the
activation varies on a scale 1/s much finer than the Gaussian).

The rule used here (measured in docs/proxy-moments.md, "Quadrature"):

- split the line at c and cut each side where the Gaussian weight has fallen by e^-46
  from its largest value on that side: with L = sqrt(92) = 9.59, the sides are
  [-sqrt(c^2 + 92), c] and [c, L] for c < 0, mirrored for c > 0; on each side the
  piece next to c has width min(6 / s, half the side) (the activation's own scale
  1/s), and the rest, which holds the Gaussian's bulk, is halved: six pieces;
- for |c| >= L the point lies outside the Gaussian's mass: [-L, L] in thirds and the
  far piece [c, sign(c) sqrt(c^2 + 92)] (the 1/|c| scale of the tail beyond a kink)
  in thirds;
- on each piece, ``n`` Gauss-Legendre nodes with the Gaussian weight folded into the
  weights, phi evaluated with x^2 formed exactly;
- for identity, relu, leaky_relu, elu, tanh and sigmoid the sums run over
  cancellation-free differences f(m + s x) - f(m).

The truncation drops a relative e^-46 = 1e-20 of each side's mass. Variance and
derivatives come from the shared two-pass weighted sums (`pnref.moments._sums`).
Limits (use the exact method there): ELU at s > 20, GELU at s < 0.01, s > 5 or
m/s < -5.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import expit

from pnref.activations import Activation
from pnref.moments._sums import weighted_moments

__all__ = ["DEFAULT_N", "CUT", "nodes", "moments", "moments_with_derivatives"]

DEFAULT_N = 32
"""Nodes per piece (six pieces): 1e-14 for every activation over m in [-5, 5], s in [0.05, 5]."""

CUT = math.sqrt(92.0)
"""Half-width where phi has fallen by e^-46 from its peak."""

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

SCALE = 6.0
"""Width, in units of 1/s, of the pieces next to the split point c."""


@functools.lru_cache(maxsize=32)
def _legendre(n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = np.polynomial.legendre.leggauss(n)
    t.setflags(write=False)
    w.setflags(write=False)
    return t, w


def _normal_pdf(x: np.ndarray) -> np.ndarray:
    """phi(x) with x^2/2 formed exactly: x = hi + lo, hi on a 2^-20 grid."""
    hi = np.round(x * 1048576.0) / 1048576.0
    lo = x - hi
    with np.errstate(over="ignore"):  # hi^2 = inf for |x| > 1e154: exp(-inf) = 0, right
        return np.exp(-0.5 * hi * hi) * np.exp(-0.5 * lo * (hi + x)) * _INV_SQRT_2PI


def nodes(m: np.ndarray, s: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes x and weights w (shape ``S + (6 n,)``) approximating E g(X) by sum w g(x).

    Parameters
    ----------
    m, s : ndarray
        Broadcast float64 arrays of shape ``S`` with s > 0.
    n : int
        Gauss-Legendre nodes per piece.

    Equations
    ---------
    With c = -m/s, L = sqrt(92), and a piece [a, b] mapped from the Legendre nodes t_j
    and weights omega_j on [-1, 1]:

    .. math::

        x_j = \\tfrac{a + b}{2} + \\tfrac{b - a}{2} t_j, \\qquad
        w_j = \\tfrac{|b - a|}{2}\\, \\omega_j\\, \\varphi(x_j).

    For |c| < L the pieces are [a, q, p, c, p', q', b] (consecutive pairs), with
    a = -sqrt(c^2 + 92) (c < 0) or -L, b = sqrt(c^2 + 92) (c > 0) or L,
    p = c - min(6/s, (c - a)/2), p' = c + min(6/s, (b - c)/2), q and q' the midpoints
    of [a, p] and [p', b]; for |c| >= L, [-L, L] and [c, sign(c) sqrt(c^2 + 92)] each
    in thirds.
    """
    t, omega = _legendre(n)
    # Beyond |c| = 1e300 the far piece carries weight phi(c) = 0 in float64 anyway; the
    # clip only keeps m/s for a subnormal s (and c^2, via hypot) from overflowing.
    with np.errstate(over="ignore"):  # m/s = inf for a subnormal s: clipped just below
        c = np.clip(-m / s, -1e300, 1e300)
        scale_width = SCALE / s  # inf likewise; min() below then takes the half side
    far = np.abs(c) >= CUT
    reach = np.hypot(c, CUT)
    # Near case (|c| < L): the sides [a, c] and [c, b].
    a = np.where(c < 0.0, -reach, -CUT)
    b = np.where(c > 0.0, reach, CUT)
    # Next to c, a piece of width min(SCALE / s, half the side): the activation varies on
    # the scale 1/s in x around c (tanh's poles sit pi / (2 s) off the real axis there).
    # The rest of each side, which holds the Gaussian's bulk, is halved so that no piece
    # is longer than about 9 (32 nodes then resolve phi to rounding).
    near_left = c - np.minimum(scale_width, 0.5 * (c - a))
    near_right = c + np.minimum(scale_width, 0.5 * (b - c))
    near_case = (a, 0.5 * (a + near_left), near_left, c,
                 near_right, 0.5 * (near_right + b), b)
    # Far case (|c| >= L): [-L, L] in thirds, then the far piece in thirds, ordered
    # along the direction of c (weights use |b - a|, so orientation does not matter).
    end = np.sign(c) * reach
    far_case = (-CUT + 0.0 * c, -CUT / 3.0 + 0.0 * c, CUT / 3.0 + 0.0 * c, CUT + 0.0 * c,
                c, c + (end - c) / 3.0, c + 2.0 * (end - c) / 3.0, end)
    near_pieces = list(zip(near_case[:-1], near_case[1:], strict=True))
    far_pieces = [far_case[0:2], far_case[1:3], far_case[2:4], far_case[4:6],
                  far_case[5:7], far_case[6:8]]
    pieces = [(np.where(far, fa, na), np.where(far, fb, nb))
              for (na, nb), (fa, fb) in zip(near_pieces, far_pieces, strict=True)]
    x_parts, w_parts = [], []
    for lo, hi in pieces:
        half = 0.5 * (hi - lo)
        x = 0.5 * (lo + hi)[..., None] + half[..., None] * t
        x_parts.append(x)
        w_parts.append(np.abs(half)[..., None] * omega * _normal_pdf(x))
    return np.concatenate(x_parts, axis=-1), np.concatenate(w_parts, axis=-1)


def _sigmoid_difference(m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """sigmoid(m + d) - sigmoid(m) without cancellation.

    For d >= 0: sigmoid(m + d) - sigmoid(m) = -sigmoid(m + d) sigmoid(-m) expm1(-d)
    (nothing overflows); for d < 0 the same with the roles of the two points swapped.
    """
    z = m + d
    upper = np.where(d >= 0.0, z, m)
    lower = np.where(d >= 0.0, m, z)
    gap = -expit(upper) * expit(-lower) * np.expm1(-np.abs(d))
    return np.where(d >= 0.0, gap, -gap)


def _tanh_difference(m: np.ndarray, d: np.ndarray) -> np.ndarray:
    """tanh(m + d) - tanh m = 2 (sigmoid(2 (m + d)) - sigmoid(2 m))."""
    return 2.0 * _sigmoid_difference(2.0 * m, 2.0 * d)


def _piecewise_linear_difference(act):
    """f(m + d) - f(m) for identity, relu, leaky_relu: slope * d on one side of 0."""

    def difference(m: np.ndarray, d: np.ndarray) -> np.ndarray:
        z = m + d
        same_side = (z > 0.0) == (m > 0.0)
        return np.where(same_side, act.df(m) * d, act.f(z) - act.f(m))

    return difference


def _elu_difference(act):
    """elu(m + d) - elu(m): d when both are > 0, alpha e^m expm1(d) when both are <= 0."""
    alpha = act.params["alpha"]

    def difference(m: np.ndarray, d: np.ndarray) -> np.ndarray:
        z = m + d
        # alpha (e^z - e^m) for z, m <= 0, factored at the larger of the two so that no
        # exponential overflows: e^z (1 - e^-d) for d >= 0, e^m (e^d - 1) for d < 0.
        decay = np.expm1(-np.abs(d))
        both_negative = alpha * decay * np.where(
            d >= 0.0, -np.exp(np.minimum(z, 0.0)), np.exp(np.minimum(m, 0.0))
        )
        mixed = act.f(z) - act.f(m)  # opposite signs: the two terms add, no cancellation
        return np.where(
            (z > 0.0) & (m > 0.0), d, np.where((z <= 0.0) & (m <= 0.0), both_negative, mixed)
        )

    return difference


def _difference_for(act):
    """A cancellation-free f(m + d) - f(m) where one is known, else None.

    With it the variance of a nearly constant f (tanh, sigmoid or ELU far from 0, any
    piecewise-linear f at s << |m|) is not limited by the rounding of f(m + s x): the
    two-pass floor eps |f(m)| / (s |f'(m)|) disappears (docs/proxy-moments.md).
    """
    if act.name in ("identity", "relu", "leaky_relu"):
        return _piecewise_linear_difference(act)
    if act.name == "elu":
        return _elu_difference(act)
    return {"tanh": _tanh_difference, "sigmoid": _sigmoid_difference}.get(act.name)


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
        x, w = nodes(m[positive], s[positive], n)
        for out, value in zip(
            outs,
            weighted_moments(
                act, m[positive], s[positive], x, w, derivatives, _difference_for(act)
            ),
            strict=True,
        ):
            out[positive] = value
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
        Nodes per piece (default 32; six pieces).
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
