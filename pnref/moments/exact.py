"""Closed-form proxy moments E f(Z), Var f(Z) for Z ~ Normal(m, s^2), and their derivatives.

Every formula here is derived in docs/proxy-moments.md ("Closed forms") and evaluated in the
cancellation-free way described there ("Stable evaluation"); the symbols below match the page:
a = m / s, x = |a|, phi / Phi the standard normal pdf / cdf, I_k the scaled tail integrals of
`pnref.moments._special`.

s = 0 is allowed and returns the s -> 0+ limits:

    mean = f(m), var = 0, dmean_dm = f'(m) (at a kink the average of the one-sided
    derivatives), dmean_ds = J phi(0) at a kink with jump J (0 elsewhere),
    dvar_dm = 0, dvar_ds = 0.

``n`` and ``seed`` are accepted for a uniform method interface and ignored.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike
from scipy.special import erf, erfcx, owens_t

from pnref._validation import as_float_array, result_dtype
from pnref.activations import Activation
from pnref.moments._special import (
    dd_div,
    mills_ratio,
    normal_cdf,
    normal_pdf,
    normal_pdf_of_half_square,
    ratio_with_residual,
    tail_integrals,
    two_prod,
    two_sum,
)

__all__ = ["SUPPORTED", "moments", "moments_with_derivatives"]

#: Activations with closed forms here (equal to the names with ``Activation.has_exact``).
SUPPORTED = frozenset({"identity", "relu", "leaky_relu", "elu", "gelu"})

_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_PHI_0 = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2PI = math.sqrt(2.0 * math.pi)

# GELU regimes (docs/proxy-moments.md, "Stable evaluation"):
_GELU_NEGLIGIBLE_H = 50.0  # |m| / sqrt(1 + s^2) beyond which phi(h) factors are exactly 0
_GELU_TAYLOR_S = 0.35  # heat-kernel series when s <= this ...
_GELU_TAYLOR_SPREAD = 1.2  # ... and s |m| <= this (measured: the series reaches 2e-15 there
_GELU_TAYLOR_TERMS = 60  # with 60 terms; the closed form loses 2e-12 at m = -2.4, s = 0.12)
_LAGUERRE_NODES, _LAGUERRE_WEIGHTS = np.polynomial.laguerre.laggauss(96)
# Far left (m/s < -2, s > 0.15): E f^2, E f f', E (f^2)''/2 by Gauss-Legendre on the tilted
# law and on the tail Z > 0 (docs/proxy-moments.md, "GELU in the far left"). 80 nodes per
# piece: against mpmath on 300 seeded points, worst relative error of v, dv/dm, dv/ds
# 1.5e-15, 9e-15, 3e-15 with 80 nodes, 8e-15, 1.1e-14, 1.9e-14 with 64, 2.5e-9 with 32 (the
# exponential kernel e^(-c t) of the tail piece, c up to 40, sets the count; NumPy's weights
# degrade above 80 nodes).
_FAR_LEFT_RATIO = -2.0  # closed form: 4e-13 on v at m/s = -4, 1.3e-13 at -3, 3e-14 at -2
_FAR_LEFT_S = 0.15  # below, |m/s| <= 40 is the series' regime; at s = 0.17..0.2 the closed
# form still lost 4e-14 on v where the quadrature gave 3e-15
_LEGENDRE_NODES, _LEGENDRE_WEIGHTS = np.polynomial.legendre.leggauss(80)
_GAUSS_CUT = 9.59  # phi(9.59) / phi(0) = e^-46: the standard normal mass beyond is < 1e-21
_TAIL_SPAN = 92.0  # e^(-c t - t^2 / 2) = e^-46 at t = sqrt(c^2 + 92) - c
_TAIL_SPLIT = 10.0  # Phi(z), phi(z) change on z in [0, 10]; beyond, Phi = 1 - O(1e-23)
# Root r of gelu'(z) = Phi(z) + z phi(z) (GELU's minimum) as a double-double: mpmath
# findroot at 40 digits gives r = -0.75179152469356445745790494677952403966; _HI is its
# float64 rounding, _LO the remainder.
_GELU_ROOT_HI = -0.7517915246935645
_GELU_ROOT_LO = 1.4956759177009883e-17


# --------------------------------------------------------------------------- validation


def _prepare(act, m, s, n, seed) -> tuple[Activation, np.ndarray, np.ndarray, np.dtype]:
    if not isinstance(act, Activation):
        raise TypeError(
            f"act must be an Activation (pnref.activation(name)), got {type(act).__name__}"
        )
    if act.name not in SUPPORTED:
        raise ValueError(
            f"no closed-form proxy moments for activation {act.name!r}; closed forms exist "
            f"for {', '.join(sorted(SUPPORTED))}; use method='quadrature' instead"
        )
    if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral)):
        raise TypeError(f"n must be None or an int (it is ignored here), got {type(n).__name__}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, numbers.Integral)):
        raise TypeError(
            f"seed must be None or an int (it is ignored here), got {type(seed).__name__}"
        )
    m_in = as_float_array(m, "m")
    s_in = as_float_array(s, "s")
    dtype = result_dtype(m_in, s_in)
    try:
        m64, s64 = np.broadcast_arrays(
            m_in.astype(np.float64, copy=False), s_in.astype(np.float64, copy=False)
        )
    except ValueError:
        raise ValueError(
            f"m and s must broadcast together, got shapes {m_in.shape} and {s_in.shape}"
        ) from None
    if np.any(s64 < 0.0):
        raise ValueError(f"s must be >= 0 (it is a standard deviation), got min {s64.min()}")
    if np.any(np.isinf(m64)) or np.any(np.isinf(s64)):
        raise ValueError("m and s must be finite (NaN propagates; +-inf is rejected)")
    return act, m64, s64, dtype


# --------------------------------------------------------------------------- ReLU family


def _relu(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """Six ReLU outputs for s > 0, by the tail integrals at x = |m|/s and reflection."""
    a, a_residual = ratio_with_residual(m, s)
    x = np.abs(a)
    # phi at the exact m/s: phi(x + d) = phi(x) exp(-d (x + d/2)), d the rounding of |a|.
    # (only where phi(x) is representable: beyond x = 40 it underflows and exp(-d x) could
    # overflow)
    d = np.where(x < 40.0, np.sign(a) * a_residual, 0.0)
    phi_x = normal_pdf(x) * np.exp(-d * (x + 0.5 * d))
    i0, i1, i2 = tail_integrals(x, 2)
    tail_cdf = phi_x * i0  # Phi(-x)
    # Moments of relu at the reflected point -|m| (all terms >= 0):
    mean_left = s * phi_x * i1
    var_left = s * s * phi_x * (i2 - phi_x * i1 * i1)
    dvar_ds_left = 2.0 * s * phi_x * (i0 - phi_x * i1)
    positive = a > 0.0
    # Reflection relu(z) = z + relu(-z) for a > 0:
    mean = np.where(positive, m + mean_left, mean_left)
    var = np.where(positive, s * s * erf(x * _INV_SQRT_2) + var_left, var_left)
    dmean_dm = np.where(positive, 1.0 - tail_cdf, tail_cdf)  # Phi(a)
    dmean_ds = phi_x  # phi(a)
    dvar_dm = 2.0 * mean * np.where(positive, tail_cdf, 1.0 - tail_cdf)  # 2 mean Phi(-a)
    dvar_ds = np.where(
        positive,
        2.0 * s * (erf(x * _INV_SQRT_2) - x * phi_x) + dvar_ds_left,
        dvar_ds_left,
    )
    return mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds


def _leaky_relu(m: np.ndarray, s: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    """f = alpha z + (1 - alpha) relu(z); every variance term >= 0 for 0 <= alpha <= 1."""
    mean_r, var_r, dmean_dm_r, dmean_ds_r, _, dvar_ds_r = _relu(m, s)
    a = m / s
    cdf = dmean_dm_r  # Phi(a)
    pdf = dmean_ds_r  # phi(a)
    beta = 1.0 - alpha
    # Phi(-a) from the same corrected phi(a): phi(a) R(a) when small (a > 0), else 1 - Phi(a)
    tail_cdf = np.where(a > 0.0, pdf * mills_ratio(np.abs(a)), 1.0 - cdf)
    mean = alpha * m + beta * mean_r
    var = s * s * (alpha * alpha + 2.0 * alpha * beta * cdf) + beta * beta * var_r
    dmean_dm = alpha + beta * cdf
    dmean_ds = beta * pdf
    dvar_dm = 2.0 * beta * (alpha * s * pdf + beta * mean_r * tail_cdf)
    dvar_ds = (
        2.0 * s * (alpha * alpha + 2.0 * alpha * beta * (cdf - 0.5 * a * pdf))
        + beta * beta * dvar_ds_r
    )
    return mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds


def _identity(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    zero = np.zeros_like(m)
    return m.copy(), s * s, np.ones_like(m), zero, zero.copy(), 2.0 * s


# --------------------------------------------------------------------------- GELU


def _gelu_exponents(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """phi(h) and phi(h2) with h^2 = m^2 / t0^2 and h2^2 = h^2 / t1^2 formed in double-double."""
    m2_hi, m2_lo = two_prod(m, m)
    s2_hi, s2_lo = two_prod(s, s)
    t0sq_hi, t0sq_lo = two_sum(np.ones_like(s), s2_hi)
    t0sq_lo = t0sq_lo + s2_lo
    t1sq_hi, t1sq_lo = two_sum(np.ones_like(s), 2.0 * s2_hi)
    t1sq_lo = t1sq_lo + 2.0 * s2_lo
    hsq_hi, hsq_lo = dd_div(m2_hi, m2_lo, t0sq_hi, t0sq_lo)
    h2sq_hi, h2sq_lo = dd_div(hsq_hi, hsq_lo, t1sq_hi, t1sq_lo)
    phi_h = normal_pdf_of_half_square(0.5 * hsq_hi, 0.5 * hsq_lo)
    phi_h2 = normal_pdf_of_half_square(0.5 * h2sq_hi, 0.5 * h2sq_lo)
    return phi_h, phi_h2


def _phi_sq_minus_owens(h, h2, t1, phi_h, phi_h2):
    """C0 = E[Phi(Z)^2] = Phi(h) - 2 T(h, b), b = 1/t1, for h <= 0, by three forms.

    * Owen's T (SciPy) for |h| <= 6 and h2 >= -2, where the difference does not cancel much;
    * for h2 below -2 (-2.5 when |h| > 6), x^2 = b^2 + 2u/h^2 in the integral definition
      C0 = (1/pi) int_b^inf exp(-h^2 (1 + x^2)/2) / (1 + x^2) dx gives
      C0 = (2 phi(h) phi(h2) / h^2) int_0^inf e^-u du / ((1 + b^2 + 2u/h^2) sqrt(b^2 + 2u/h^2));
    * for |h| > 6 and h2 >= -2.5 (large s), writing 1/(1 + 2y^2/h^2) as a Laplace integral,
      C0 = (sqrt(2 pi) phi(h) phi(h2) / |h|) int_0^inf e^(-(1 + b^2) t) erfcx(y0 r) / r dt,
      r = sqrt(1 + 2t/h^2), y0 = |h2| / sqrt(2).
    Both integrals are summed by 96-node Gauss-Laguerre (measured 1e-13 worst, at the
    regime boundaries; far inside each regime 1e-15).
    """
    b = 1.0 / t1
    abs_h = np.abs(h)
    with np.errstate(invalid="ignore"):
        direct = normal_cdf(h) - 2.0 * owens_t(h, b)
    use_u = np.where(abs_h <= 6.0, h2 < -2.0, h2 < -2.5)
    use_t = (abs_h > 6.0) & ~use_u
    hh = np.where(abs_h > 1.0, h * h, 1.0)[..., None]
    bb = (b * b)[..., None]
    nodes = _LAGUERRE_NODES
    u = nodes * (2.0 / hh)
    u_integral = np.sum(_LAGUERRE_WEIGHTS / ((1.0 + bb + u) * np.sqrt(bb + u)), axis=-1)
    u_form = 2.0 * phi_h * phi_h2 / hh[..., 0] * u_integral
    r = np.sqrt(1.0 + nodes * (2.0 / hh))
    y0 = (np.abs(h2) * _INV_SQRT_2)[..., None]
    t_integral = np.sum(_LAGUERRE_WEIGHTS * np.exp(-bb * nodes) * erfcx(y0 * r) / r, axis=-1)
    t_form = _SQRT_2PI * phi_h * phi_h2 / np.sqrt(hh[..., 0]) * t_integral
    return np.where(use_u, u_form, np.where(use_t, t_form, direct))


def _legendre(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on [lo, hi] (elementwise), shape (..., 80)."""
    half = (0.5 * (hi - lo))[..., None]
    mid = (0.5 * (hi + lo))[..., None]
    return mid + half * _LEGENDRE_NODES, half * _LEGENDRE_WEIGHTS


def _gelu_far_left(m, s, t1, phi_h, phi_h2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """E f^2, E f f' and E (f^2)''/2 = E[f'^2 + f f''] for m/s < -2, without cancellation.

    Parameters
    ----------
    m, s : ndarray
        m < 0, s > 0 (float64, same shape).
    t1, phi_h, phi_h2 : ndarray
        sqrt(1 + 2 s^2), phi(h), phi(h2) as in `_gelu_left`.

    Returns
    -------
    e2, eff1, ef1sq_eff2 : ndarray
        E f(Z)^2, E f(Z) f'(Z), E[f'(Z)^2 + f(Z) f''(Z)].

    Equations
    ---------
    Split at Z = 0. On Z < 0, Phi(z) = phi(z) rho(z), rho(z) = R(-z), so f = phi z rho,
    f' = phi (rho + z), f'' = phi (2 - z^2), and the tilted law (completing the square)

        phi(z)^2 phi((z - m)/s)/s = Q0 phi((z - m')/s')/s',
        m' = m / t1^2, s' = s / t1, Q0 = phi(h) phi(h2) / t1,

    gives E[g(Z) 1(Z < 0)] = Q0 int_-inf^(|a|/t1) G(m' + s' y) phi(y) dy with
    G = (z rho)^2, z rho (rho + z), (rho + z)^2 + z rho (2 - z^2), smooth and of moderate
    size (Gauss-Legendre on [-9.59, min(|a|/t1, 9.59)]). On Z > 0, with Z = s t,

        E[g(Z) 1(Z > 0)] = phi(a) int_0^inf g(s t) exp(-|a| t - t^2/2) dt

    (Gauss-Legendre on [0, 10/s] and [10/s, sqrt(a^2 + 92) - |a|]; the first piece holds
    the structure of Phi(s t) and phi(s t)). For f^2 every node adds a nonnegative term.
    """
    s_tilt = s / t1
    m_tilt = m / (t1 * t1)
    top = np.minimum(-m / (s * t1), _GAUSS_CUT)  # Z' = 0 in its standard variable
    y, wy = _legendre(np.full_like(m, -_GAUSS_CUT), top)
    z = np.minimum(m_tilt[..., None] + s_tilt[..., None] * y, 0.0)
    rho = mills_ratio(-z)
    f0 = z * rho  # f / phi
    f1 = rho + z  # f' / phi
    f2 = 2.0 - z * z  # f'' / phi
    weight = wy * normal_pdf(y) * (phi_h * phi_h2 / t1)[..., None]
    left = [
        np.sum(weight * f0 * f0, axis=-1),
        np.sum(weight * f0 * f1, axis=-1),
        np.sum(weight * (f1 * f1 + f0 * f2), axis=-1),
    ]
    a, a_residual = ratio_with_residual(m, s)
    c = -a
    exact_c_minus_c = -a_residual  # |m|/s = c + this
    phi_c = normal_pdf(c) * np.exp(-exact_c_minus_c * (c + 0.5 * exact_c_minus_c))
    end = _TAIL_SPAN / (np.sqrt(c * c + _TAIL_SPAN) + c)
    split = np.minimum(_TAIL_SPLIT / s, end)
    right = [np.zeros_like(m) for _ in range(3)]
    for lo, hi in ((np.zeros_like(m), split), (split, end)):
        t, wt = _legendre(lo, hi)
        zr = s[..., None] * t
        cdf = normal_cdf(zr)
        pdf = normal_pdf(zr)
        g0 = zr * cdf  # f
        g1 = cdf + zr * pdf  # f'
        g2 = pdf * (2.0 - zr * zr)  # f''
        kernel = wt * np.exp(-c[..., None] * t - 0.5 * t * t)
        right[0] += np.sum(kernel * g0 * g0, axis=-1)
        right[1] += np.sum(kernel * g0 * g1, axis=-1)
        right[2] += np.sum(kernel * (g1 * g1 + g0 * g2), axis=-1)
    return tuple(lv + phi_c * rv for lv, rv in zip(left, right, strict=True))


def _gelu_left(m: np.ndarray, s: np.ndarray) -> dict[str, np.ndarray]:
    """GELU moments and derivatives from the Gaussian-integral closed forms, for m <= 0."""
    t0 = np.sqrt(1.0 + s * s)
    t1 = np.sqrt(1.0 + 2.0 * s * s)
    h = m / t0
    h2 = h / t1
    x, x2 = -h, -h2
    phi_h, phi_h2 = _gelu_exponents(m, s)
    i0, i1 = tail_integrals(x, 1)
    cdf_h2 = phi_h2 * mills_ratio(x2)  # Phi(h2)
    s2 = s * s
    # mean = m Phi(h) + s^2 phi(h) / t0, written without cancellation for h <= 0
    mean = phi_h * (s2 * i1 - x * i0) / t0
    dmean_dm = phi_h * (i0 - x / (t0 * t0))  # E f'
    ef2 = phi_h * (2.0 + s2 - h * h) / t0**3  # E f''
    dmean_ds = s * ef2
    d_ds = -(h * s * phi_h / t0**4) * (4.0 + s2 - h * h)  # d/ds E f'
    c0 = _phi_sq_minus_owens(h, h2, t1, phi_h, phi_h2)  # E Phi^2
    b0 = phi_h * cdf_h2 / t0  # E phi Phi
    b1 = (phi_h / t0) * ((m / (t0 * t0)) * cdf_h2 + s2 * phi_h2 / (t0 * t1))  # E Z phi Phi
    q0 = phi_h * phi_h2 / t1  # E phi^2
    ez2_phiphi = (m * b1 + s2 * b0 + s2 * m * q0 / (t1 * t1)) / (t0 * t0)  # E Z^2 phi Phi
    ez2_phi2 = q0 * (m * m / (t1 * t1) + s2) / (t1 * t1)  # E Z^2 phi^2
    ez3_phiphi = (m * ez2_phiphi + s2 * (2.0 * b1 + ez2_phi2)) / (t0 * t0)  # E Z^3 phi Phi
    e2 = (m * m + s2) * c0 + 2.0 * s2 * (m * b0 + b1)  # E f^2
    eff1 = m * c0 + 2.0 * s2 * b0 + ez2_phiphi  # E f f'
    ef1sq = c0 + 2.0 * b1 + ez2_phi2  # E f'^2
    eff2 = 2.0 * b1 - ez3_phiphi  # E f f''
    ef1sq_eff2 = ef1sq + eff2
    far = (m < _FAR_LEFT_RATIO * s) & (s > _FAR_LEFT_S)
    if np.any(far):  # the closed-form E2 cancels there: the quadrature of _gelu_far_left
        # (np.array copies, and turns 0-d results into assignable arrays)
        e2, eff1, ef1sq_eff2 = (np.array(v, dtype=np.float64) for v in (e2, eff1, ef1sq_eff2))
        far = np.asarray(far)
        inputs = (np.broadcast_to(v, far.shape)[far] for v in (m, s, t1, phi_h, phi_h2))
        e2[far], eff1[far], ef1sq_eff2[far] = _gelu_far_left(*inputs)
    return {
        "mean": mean,
        "var": e2 - mean * mean,
        "dmean_dm": dmean_dm,
        "dmean_ds": dmean_ds,
        "dvar_dm": 2.0 * (eff1 - mean * dmean_dm),
        "dvar_ds": 2.0 * s * (ef1sq_eff2 - mean * ef2),
        "d_ds": d_ds,
        "h": h,
        "phi_h": phi_h,
        "t0": t0,
    }


def _gelu_higher_derivatives(m: np.ndarray, count: int) -> list[np.ndarray]:
    """[f''(m), ..., f^(count)(m)] for f = gelu, from f^(n) = (-1)^(n+1) phi (He_n - He_(n-2))."""
    phi_m = normal_pdf(m)
    hermite = [np.ones_like(m), m.copy()]
    for n in range(1, count):
        hermite.append(m * hermite[n] - n * hermite[n - 1])
    # Where phi(m) underflows to 0 (|m| > 38.6) the true derivatives phi(m) He(m) lie below the
    # smallest double for every |m| at which He_count(m) is finite, and He may overflow to inf
    # beyond: return the exact 0 there instead of 0 * inf = NaN.
    return [
        np.where(phi_m == 0.0, 0.0, (-1.0) ** (n + 1) * phi_m * (hermite[n] - hermite[n - 2]))
        for n in range(2, count + 1)
    ]


def _gelu_first_derivative(m: np.ndarray) -> np.ndarray:
    """f'(m) = Phi(m) + m phi(m), to full relative accuracy also at its root.

    Near the root r (GELU's minimum) the two terms cancel; there f' is summed as its Taylor
    series about r, f'(m) = sum_k f^(k+1)(r) (m - r)^k / k!, whose terms do not cancel.
    """
    direct = normal_cdf(m) + m * normal_pdf(m)
    offset = m - _GELU_ROOT_HI - _GELU_ROOT_LO  # exact to ~1e-32 near r
    near = np.abs(offset) < 0.1
    if not np.any(near):
        return direct
    series = np.zeros_like(m)
    term_factor = np.ones_like(m)
    for k, derivative in enumerate(_GELU_ROOT_DERIVATIVES, start=1):
        term_factor = term_factor * offset / k
        series = series + derivative * term_factor
    return np.where(near, series, direct)


def _gelu_derivatives_at(m: np.ndarray, count: int) -> list[np.ndarray]:
    """[f'(m), f''(m), ..., f^(count)(m)] for f = gelu."""
    return [_gelu_first_derivative(m), *_gelu_higher_derivatives(m, count)]


# f^(k+1)(r), k = 1..18, for the series of f' about its root (|m - r| < 0.1: terms fall
# below 1e-17 of the first by k = 18).
_GELU_ROOT_DERIVATIVES = _gelu_higher_derivatives(np.array(_GELU_ROOT_HI), 19)


def _taylor_weights(terms: int) -> list[list[float]]:
    """w[k][l] = (C(2k, l) - [l even] C(k, l/2)) / (2^k k!), l = 1..2k-1 (index l - 1)."""
    weights = []
    for k in range(1, terms + 1):
        scale = 1.0 / (2.0**k * math.factorial(k))
        row = []
        for ell in range(1, 2 * k):
            w = math.comb(2 * k, ell) - (math.comb(k, ell // 2) if ell % 2 == 0 else 0)
            row.append(w * scale)
        weights.append(row)
    return weights


_TAYLOR_WEIGHTS = _taylor_weights(_GELU_TAYLOR_TERMS)


def _gelu_taylor_variance(m, s) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Heat-kernel series var = sum_k s^(2k) / (2^k k!) c_k(m), its m, s derivatives, and E f'.

    c_k = sum_(l=1)^(2k-1) [C(2k, l) - [l even] C(k, l/2)] f^(l) f^(2k-l): the f f^(2k) terms
    cancel exactly in the algebra, so the sum has no numerical cancellation when f(m) is
    large compared with the variance.
    """
    d = [None, *_gelu_derivatives_at(m, 2 * _GELU_TAYLOR_TERMS + 1)]  # d[n] = f^(n)(m)
    # E f'(m + s X) = sum_k s^(2k) / (2^k k!) f^(2k+1)(m): near GELU's minimum f'(m) is
    # tiny and the closed form Phi(h) + phi(h) m / t0^3 loses its sign (m = r, s = 1e-8).
    dmean_dm = d[1].copy()
    factor = np.ones_like(s)
    for k in range(1, _GELU_TAYLOR_TERMS):
        factor = factor * (s * s) / (2.0 * k)
        dmean_dm = dmean_dm + factor * d[2 * k + 1]
    var = np.zeros_like(m)
    dvar_dm = np.zeros_like(m)
    dvar_ds = np.zeros_like(m)
    s2 = s * s
    power = np.ones_like(s)  # s^(2k-2)
    for k in range(1, _GELU_TAYLOR_TERMS + 1):
        c = np.zeros_like(m)
        c_m = np.zeros_like(m)
        for ell, w in enumerate(_TAYLOR_WEIGHTS[k - 1], start=1):
            c += w * d[ell] * d[2 * k - ell]
            c_m += w * (d[ell + 1] * d[2 * k - ell] + d[ell] * d[2 * k - ell + 1])
        dvar_ds += 2.0 * k * s * power * c
        power = power * s2
        var += power * c
        dvar_dm += power * c_m
    return var, dvar_dm, dvar_ds, dmean_dm


def _gelu(m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    """GELU: closed forms at -|m|, reflection gelu(z) = z + gelu(-z), series for small s."""
    positive = m > 0.0
    # Beyond |h| = |m| / t0 = 50 every left-side quantity carries a factor phi(h) < 1e-540
    # against polynomial factors in (m, s): its double value is exactly 0. Those channels are
    # evaluated at a harmless stand-in (m = 0) and zeroed, so that m^2 overflowing to inf or
    # exp(-h^2/2) underflowing inside the double-double exponent cannot produce NaN.
    t0_all = np.sqrt(1.0 + s * s)
    negligible = np.abs(m) > _GELU_NEGLIGIBLE_H * t0_all
    left = _gelu_left(np.where(negligible, 0.0, -np.abs(m)), s)
    if np.any(negligible):
        left = {key: np.where(negligible, 0.0, value) for key, value in left.items()}
        left["t0"] = t0_all
        left["h"] = -np.abs(m) / t0_all
    h = -left["h"]  # = |m| / t0
    t0, phi_h = left["t0"], left["phi_h"]
    # reflection: mean(m) = m + mean(-m); var(m) = s^2 (1 - 2 D(-m)) + var(-m), D = E f'
    one_minus_2d = erf(h * _INV_SQRT_2) + 2.0 * phi_h * h / (t0 * t0)
    mean = np.where(positive, m + left["mean"], left["mean"])
    var = np.where(positive, s * s * one_minus_2d + left["var"], left["var"])
    dmean_dm = np.where(positive, 1.0 - left["dmean_dm"], left["dmean_dm"])
    dmean_ds = left["dmean_ds"]
    dvar_dm = np.where(positive, 2.0 * s * left["dmean_ds"] - left["dvar_dm"], left["dvar_dm"])
    dvar_ds = np.where(
        positive,
        2.0 * s * one_minus_2d - 2.0 * s * s * left["d_ds"] + left["dvar_ds"],
        left["dvar_ds"],
    )
    taylor = (s <= _GELU_TAYLOR_S) & (s * np.abs(m) <= _GELU_TAYLOR_SPREAD)
    if np.any(taylor):
        t_var, t_dvar_dm, t_dvar_ds, t_dmean_dm = _gelu_taylor_variance(m[taylor], s[taylor])
        var = var.copy()
        dvar_dm = dvar_dm.copy()
        dvar_ds = dvar_ds.copy()
        dmean_dm = np.array(dmean_dm, dtype=np.float64)
        dmean_dm[taylor] = t_dmean_dm
        var[taylor] = t_var
        dvar_dm[taylor] = t_dvar_dm
        dvar_ds[taylor] = t_dvar_ds
    return mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds


# --------------------------------------------------------------------------- ELU

# Regime A (H2 - H1^2) for a >= -1, or a >= -4 with s < 1. For s >= 1 and a in [-4, -1) the
# event Z < 0 has probability near 1 and H1, H2 are both near 1: H2 - H1^2 cancels (3e-13 on
# var and 5.6e-13 on dvar/dm at a = -3.95, s = 5); regime B2 (a + 2s >= -2 holds there) has
# only nonnegative terms (measured against mpmath on a in [-3.95, -1], s in [0.7, 20]: 5e-15).
_ELU_REGIME_A = -1.0
_ELU_REGIME_A_S = 1.0
_ELU_TERMS = 56  # series in s^k I_k / k! with ratio <= 1/2: 2^-56 < 2e-17


def _series(pdf, s, integrals, coefficient) -> np.ndarray:
    """pdf * sum_(k>=1) coefficient(k) s^k I_k / k! (coefficient(k) = 0 terms skipped)."""
    total = np.zeros_like(s)
    power = np.ones_like(s)  # s^k / k!
    for k in range(1, len(integrals)):
        power = power * s / k
        c = coefficient(k)
        if c != 0.0:
            total = total + c * power * integrals[k]
    return pdf * total


def _elu(m: np.ndarray, s: np.ndarray, alpha: float) -> tuple[np.ndarray, ...]:
    """ELU = relu(z) - alpha h(z), h(z) = (1 - e^z) 1(z < 0); three regimes for Var h."""
    mean_r, var_r, cdf, pdf, dvar_dm_r, dvar_ds_r = _relu(m, s)
    a = m / s
    q = np.where(a > 0.0, pdf * mills_ratio(np.abs(a)), 1.0 - cdf)  # Phi(-a)
    # P_j = E[e^(jZ) 1(Z < 0)] = phi(a) R(a + j s) = e^(j m + j^2 s^2/2) Phi(-a - j s)
    p = []
    for j in (1, 2):
        y = a + j * s
        y_neg = np.minimum(y, 0.0)
        p.append(
            np.where(
                y >= 0.0,
                pdf * mills_ratio(np.maximum(y, 0.0)),
                np.exp(j * s * (a + 0.5 * j * s)) * normal_cdf(-y_neg),
            )
        )
    p1, p2 = p

    # Regime A (a >= -1, or a >= -4 with s < 1): Var h = H2 - H1^2; H1, H2 as series in s when
    # 2 s rho <= 1/4 (rho = I_1/I_0, the mean of the tail variable), else as differences.
    ints_a = tail_integrals(np.maximum(a, -4.0), _ELU_TERMS)
    rho = ints_a[1] / ints_a[0]
    series_a = 2.0 * s * rho <= 0.25
    h1 = np.where(
        series_a, _series(pdf, s, ints_a, lambda k: (-1.0) ** (k + 1)), q - p1
    )
    h2 = np.where(
        series_a,
        _series(pdf, s, ints_a, lambda k: (-1.0) ** k * (2.0**k - 2.0)),
        q - 2.0 * p1 + p2,
    )
    vh_a = h2 - h1 * h1
    dvh_dm_a = 2.0 * (h2 - h1 * (1.0 - p1))
    dvh_ds_a = 2.0 * s * (2.0 * p2 - p1) - 2.0 * h1 * (pdf - s * p1)

    # Regime B1, a < -4 and a + 2s < -2 (outside A): h = (1 - e^Z) + (e^Z - 1) 1(Z > 0) = u + k, u
    # lognormal (Var u exact), k small; Var h = Var u - K2 - K1^2 - 2 (1 - E e^Z) K1.
    x = np.maximum(-a, 4.0)
    ints_b = tail_integrals(x, _ELU_TERMS)
    series_b = 2.0 * s <= 0.5 * x
    xs1, xs2 = np.maximum(x - s, 0.0), np.maximum(x - 2.0 * s, 0.0)
    r0, r1, r2 = mills_ratio(x), mills_ratio(xs1), mills_ratio(xs2)
    q1 = pdf * r1  # E[e^Z 1(Z > 0)]
    k1 = np.where(series_b, _series(pdf, s, ints_b, lambda k: 1.0), pdf * (r1 - r0))
    k2 = np.where(
        series_b, _series(pdf, s, ints_b, lambda k: 2.0**k - 2.0), pdf * ((r2 - r1) - (r1 - r0))
    )
    d21 = np.where(  # Q2 - Q1 = E[e^Z (e^Z - 1) 1(Z > 0)]
        series_b, _series(pdf, s, ints_b, lambda k: 2.0**k - 1.0), pdf * (r2 - r1)
    )
    lognormal_exponent = np.minimum(m + 0.5 * s * s, 0.0)
    ew = np.exp(lognormal_exponent)  # E e^Z
    one_minus_ew = -np.expm1(lognormal_exponent)
    s2 = s * s
    # Var u = e^(2m + s^2) (e^(s^2) - 1) = e^(2m + 2s^2) (1 - e^(-s^2)): the second form keeps
    # the exponent of the result in one exp (e^(2m + s^2) alone underflows first: m/s = -36,
    # s = 14 gave Var u = 0 and a negative variance), with 2m + 2s^2 formed in double-double
    # (its rounding, eps |2m| ~ 1e-13 at m = -500, would be the relative error of Var u).
    square_hi, square_lo = two_prod(s, s)
    exponent_hi, exponent_lo = two_sum(2.0 * m, 2.0 * square_hi)
    exponent_lo = exponent_lo + 2.0 * square_lo
    inside = exponent_hi <= 0.0  # always true where regime B1 is used
    e2 = np.exp(np.where(inside, exponent_hi, 0.0)) * np.exp(np.where(inside, exponent_lo, 0.0))
    vu = e2 * -np.expm1(-s2)  # e^(2m + 2s^2) (1 - e^(-s^2))
    dvu_ds = 2.0 * s * (vu + e2)  # d/ds: 2s e^(2m+s^2) (2 e^(s^2) - 1) = 2s (Var u + e^(2m+2s^2))
    dk1_ds = s * q1 + pdf
    dk2_dm = 2.0 * d21
    dk2_ds = 2.0 * s * (2.0 * d21 + q1)
    vh_b1 = vu - (k2 + k1 * k1 + 2.0 * one_minus_ew * k1)
    dvh_dm_b1 = 2.0 * vu - (dk2_dm + 2.0 * k1 * q1 + 2.0 * one_minus_ew * q1 - 2.0 * ew * k1)
    dvh_ds_b1 = dvu_ds - (
        dk2_ds + 2.0 * k1 * dk1_ds + 2.0 * one_minus_ew * dk1_ds - 2.0 * s * ew * k1
    )
    h1_b1 = one_minus_ew + k1

    # Regime B2, outside A with a + 2s >= -2 (s >= 1): total variance over the event Z < 0,
    # Var h = (P2 - P1^2 / q) + (1 - q) H1^2 / q, both terms >= 0 and well separated.
    h1_b2 = q - p1
    dq_dm, dq_ds = -pdf / s, pdf * a / s
    dp1_dm, dp1_ds = p1 - pdf / s, s * p1 - pdf * (1.0 - a / s)
    dp2_dm, dp2_ds = 2.0 * p2 - pdf / s, 4.0 * s * p2 - pdf * (2.0 - a / s)
    dh1_dm, dh1_ds = -p1, pdf - s * p1
    within = p2 - p1 * p1 / q
    between = cdf * h1_b2 * h1_b2 / q
    vh_b2 = within + between

    def d_total(dq, dp1, dp2, dh1):
        d_within = dp2 - 2.0 * p1 * dp1 / q + p1 * p1 * dq / (q * q)
        d_between = (
            -dq * h1_b2 * h1_b2 / q + 2.0 * cdf * h1_b2 * dh1 / q - cdf * h1_b2**2 * dq / (q * q)
        )
        return d_within + d_between

    dvh_dm_b2 = d_total(dq_dm, dp1_dm, dp2_dm, dh1_dm)
    dvh_ds_b2 = d_total(dq_ds, dp1_ds, dp2_ds, dh1_ds)

    regime_a = (a >= _ELU_REGIME_A) | ((a >= -4.0) & (s < _ELU_REGIME_A_S))
    regime_b1 = ~regime_a & (a + 2.0 * s < -2.0)

    def pick(value_a, value_b1, value_b2):
        return np.where(regime_a, value_a, np.where(regime_b1, value_b1, value_b2))

    h1 = pick(h1, h1_b1, h1_b2)
    vh = pick(vh_a, vh_b1, vh_b2)
    dvh_dm = pick(dvh_dm_a, dvh_dm_b1, dvh_dm_b2)
    dvh_ds = pick(dvh_ds_a, dvh_ds_b1, dvh_ds_b2)

    # f = relu - alpha h with disjoint supports: Cov(relu, h) = -mean_r H1.
    mean = mean_r - alpha * h1
    # Small spread near the kink: relu mean = m + s phi(a) I_1(a) (for every a) and the
    # series of H1 starts with s phi(a) I_1(a), so the O(s) terms are combined exactly:
    # mean = m + (1 - alpha) s phi(a) I_1(a) + alpha phi(a) sum_(k>=2) (-1)^k s^k I_k / k!.
    tail = _series(pdf, s, ints_a, lambda k: 0.0 if k == 1 else (-1.0) ** k)
    mean_series = m + (1.0 - alpha) * s * pdf * ints_a[1] + alpha * tail
    mean = np.where(regime_a & series_a, mean_series, mean)
    var = var_r + alpha * alpha * vh + 2.0 * alpha * mean_r * h1
    dmean_dm = cdf + alpha * p1
    dmean_ds = alpha * s * p1 + (1.0 - alpha) * pdf
    dvar_dm = dvar_dm_r + alpha * alpha * dvh_dm + 2.0 * alpha * (cdf * h1 - mean_r * p1)
    # For a >= -4 the same sum regrouped (1 - P1 = Phi(a) + H1): nonnegative terms but one,
    # which removes the cancellation of the O(s) terms when f is smooth at 0 (alpha = 1).
    dvar_dm_a = 2.0 * (
        (1.0 - alpha) * mean_r * q
        + alpha * (1.0 - alpha) * cdf * h1
        + alpha * h1 * mean
        + alpha * alpha * h2
    )
    dvar_dm = np.where(regime_a, dvar_dm_a, dvar_dm)
    dvar_ds = (
        dvar_ds_r + alpha * alpha * dvh_ds + 2.0 * alpha * (pdf * h1 + mean_r * (pdf - s * p1))
    )
    return mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds


# --------------------------------------------------------------------------- dispatch


def _positive_s(act: Activation, m: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, ...]:
    if act.name == "identity":
        return _identity(m, s)
    if act.name == "relu":
        return _relu(m, s)
    if act.name == "leaky_relu":
        return _leaky_relu(m, s, act.params["alpha"])
    if act.name == "gelu":
        return _gelu(m, s)
    return _elu(m, s, act.params["alpha"])


def _zero_s(act: Activation, m: np.ndarray) -> tuple[np.ndarray, ...]:
    """The s -> 0+ limits (see the module docstring)."""
    mean = act.f(m)
    dmean_dm = act.df(m)  # left derivative at a kink
    dmean_ds = np.zeros_like(m)
    for kink, jump in zip(act.kinks, act.jumps, strict=True):
        at_kink = m == kink
        dmean_dm = np.where(at_kink, dmean_dm + 0.5 * jump, dmean_dm)
        dmean_ds = np.where(at_kink, jump * _PHI_0, dmean_ds)
    zero = np.zeros_like(m)
    return mean, zero, dmean_dm, dmean_ds, zero.copy(), zero.copy()


def _all_six(act, m, s, n, seed) -> tuple[tuple[np.ndarray, ...], np.dtype]:
    act, m, s, dtype = _prepare(act, m, s, n, seed)
    zero_s = s == 0.0
    s_safe = np.where(zero_s, 1.0, s)  # the s > 0 formulas never see s = 0
    with np.errstate(divide="ignore", invalid="ignore", over="ignore", under="ignore"):
        positive = _positive_s(act, m, s_safe)
    limits = _zero_s(act, m)
    out = tuple(np.where(zero_s, lim, val) for lim, val in zip(limits, positive, strict=True))
    return out, dtype


def moments(
    act: Activation, m: ArrayLike, s: ArrayLike, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact proxy mean and variance of ``act`` under Z ~ Normal(m, s^2).

    Parameters
    ----------
    act : Activation
        One of `SUPPORTED` (``pnref.activation(name, **params)``).
    m, s : array_like
        Mean and standard deviation of Z (real floating arrays that broadcast; s >= 0).
        NaN propagates; infinite values are rejected.
    n, seed : None or int
        Ignored (closed forms need neither); accepted for a uniform method interface.

    Returns
    -------
    mean, var : ndarray
        In the dtype of the widest input (computed in float64).

    Raises
    ------
    ValueError
        Activation without closed form (use ``method="quadrature"``), s < 0, infinite input,
        shapes that do not broadcast.
    TypeError
        ``act`` not an Activation, integer ``m``/``s``, non-integer ``n``/``seed``.

    Equations
    ---------
    With a = m/s and X ~ Normal(0, 1) (docs/proxy-moments.md, "Closed forms")::

        mean = E f(m + s X),    var = E[(f(m + s X) - mean)^2]
        relu:       mean = m Phi(a) + s phi(a),   var = s^2 phi(x) [I_2 - phi(x) I_1^2] (a <= 0)
        leaky_relu: mean = alpha m + (1 - alpha) mean_relu,
                    var = s^2 [alpha^2 + 2 alpha (1 - alpha) Phi(a)] + (1 - alpha)^2 var_relu
        identity:   mean = m, var = s^2
        elu:        mean = mean_relu - alpha H1,
                    var = var_relu + alpha^2 Var h + 2 alpha mean_relu H1,
                    h = (1 - e^z) 1(z < 0), H1 = E h
        gelu:       mean = m Phi(h) + s^2 phi(h) / t0, var = E2 - mean^2 (stable forms on the page)
    """
    out, dtype = _all_six(act, m, s, n, seed)
    return out[0].astype(dtype, copy=False), out[1].astype(dtype, copy=False)


def moments_with_derivatives(
    act: Activation, m: ArrayLike, s: ArrayLike, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, ...]:
    """Exact proxy mean and variance and their partial derivatives in m and s.

    Parameters and errors as `moments`.

    Returns
    -------
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds : ndarray
        In the dtype of the widest input. At s = 0 the s -> 0+ limits (module docstring).

    Equations
    ---------
    Stein's identities (docs/proxy-moments.md)::

        dmean/dm = E f'(Z),        dmean/ds = E[f'(Z) X] = s E f''(Z)  (+ J phi(a) at a kink)
        dvar/dm  = 2 Cov(f, f'),   dvar/ds  = 2 Cov(f(Z), f'(Z) X)
        relu: dmean/dm = Phi(a), dmean/ds = phi(a), dvar/dm = 2 mean Phi(-a),
              dvar/ds = 2 s [Phi(a) - phi(a) (a Phi(a) + phi(a))]
    """
    out, dtype = _all_six(act, m, s, n, seed)
    return tuple(o.astype(dtype, copy=False) for o in out)
