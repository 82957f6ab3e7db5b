"""Arbitrary-precision oracle for the proxy moments (mpmath).

``moments(name, m, s)`` integrates f(m + s x) against the standard normal density with
mpmath at 30 significant digits or more. It is slow (about a second per point) and is
the judge for every fast method in the tests and the golden vectors.

It has its own mpmath versions of the activations, written from their definitions and
independent of `pnref.activations`, so that a mistake there cannot hide here.

Numerical care (docs/proxy-moments.md, "The oracle"):

- the real line is split at x = 0 (the Gaussian's centre) and at x0 = (k - m)/s for
  every kink k and for z = 0 (where every activation here changes behaviour), so each
  piece is analytic; a far breakpoint (|x0| > 3) gets extra points on its own 1/|x0|
  scale, and for s > 1 the scale 1/s of the activation gets points around x0;
- mpmath's ``quad`` tolerance is absolute (about 10^-dps), so each integral is first
  sized at low precision (the integral of |g|) and the integrand divided by that size
  before the accurate pass: a tail integral of 1e-200 is computed to full relative
  precision instead of being returned at once and wrong;
- the mean integrates f(Z) - f(m) - f'(m) (Z - m), and in the derivatives f' is
  replaced by f' - f'(m) where that leaves the integral unchanged (against E X = 0 or
  E (f - mean) = 0): this removes the bulk of the integrand when f is nearly affine
  over the Gaussian's mass;
- those differences are formed from a residual r = f - c z that carries the small part
  of f exactly: for the activations with f(z) = z + f(-z) (GELU, tanh-GELU, SiLU,
  softplus) and m > 0, r(z) = f(-z) (c = 1), because f'(z) = 1 - (tiny) rounds to 1 at
  working precision once the tiny part is below 10^-dps, and f'(Z) - f'(m) would then
  lose the whole of E[f'(Z) X] (GELU at m/s >= 30, tanh-GELU at m = 39.7, s = 1: the
  table's dmean_ds and dvar_dm were 100 % wrong before this);
- constants (alpha, 0.044715, pi) are built at the working precision from decimal
  strings; the variance is two-pass, E[(f - mean)^2];
- for s < 1e-3 the working precision is raised so that f - mean (of size s |f'|) keeps
  ``dps`` digits;
- adaptive precision: the digits that f(Z) - mean loses to cancellation (the ratio of
  |E f| to the standard deviation: 33 digits for tanh at m = -40, s = 1) are measured on
  a first pass and added to the working precision before the final pass, so the
  variance and its derivatives keep ``dps`` digits however small they are.

Requires mpmath (a test dependency; pnref itself does not import this module).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Iterable
from pathlib import Path

import mpmath as mp

__all__ = [
    "ACTIVATIONS",
    "TABLE_COLUMNS",
    "activation_functions",
    "estimator_moments",
    "load_table",
    "moments",
    "moments_float",
]

#: Activation names the oracle knows (same names as `pnref.activations.ACTIVATIONS`).
ACTIVATIONS: tuple[str, ...] = (
    "identity",
    "relu",
    "leaky_relu",
    "elu",
    "gelu",
    "gelu_tanh",
    "silu",
    "softplus",
    "tanh",
    "sigmoid",
)

#: Columns of the committed table tests/data/oracle_moments.csv.
TABLE_COLUMNS: tuple[str, ...] = (
    "activation", "alpha", "m", "s", "mean", "var",
    "dmean_dm", "dmean_ds", "dvar_dm", "dvar_ds",
)

_DEFAULT_ALPHA = {"leaky_relu": "0.01", "elu": "1"}
_KINKED = {"relu", "leaky_relu", "elu"}
#: Activations with f(z) = z + f(-z) (see `_residual`).
_REFLECTED = {"gelu", "gelu_tanh", "silu", "softplus"}

MpFunction = Callable[[mp.mpf], mp.mpf]


def _sigmoid(x):
    return 1 / (1 + mp.exp(-x))


def activation_functions(
    name: str, alpha: float | None = None
) -> tuple[MpFunction, MpFunction, tuple]:
    """``(f, df, kinks)`` in mpmath at the current working precision.

    ``df`` is the derivative away from the kinks (its value at a kink has measure zero
    in every integral here). ``alpha`` (leaky_relu, elu) is converted from its decimal
    representation (``repr``) at working precision.

    Equations
    ---------
    .. math::

        \\mathrm{gelu}(z) = z \\Phi(z), \\quad
        \\mathrm{gelu\\_tanh}(z) = z\\, \\sigma(2u), \\;
        u = \\sqrt{2/\\pi} (z + 0.044715 z^3), \\quad
        \\mathrm{silu}(z) = z \\sigma(z),

        \\mathrm{softplus}(z) = \\log(1 + e^z), \\quad
        \\mathrm{elu}(z) = z \\;(z > 0), \\; \\alpha (e^z - 1) \\;(z \\le 0).
    """
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; known: {', '.join(ACTIVATIONS)}")
    if name in _DEFAULT_ALPHA:
        a = mp.mpf(_DEFAULT_ALPHA[name] if alpha is None else repr(float(alpha)))
    elif alpha is not None:
        raise TypeError(f"activation {name!r} takes no alpha")
    if name == "identity":
        return (lambda z: z), (lambda z: mp.mpf(1)), ()
    if name == "relu":
        return (lambda z: z if z > 0 else mp.mpf(0)), (
            lambda z: mp.mpf(1) if z > 0 else mp.mpf(0)
        ), (0,)
    if name == "leaky_relu":
        return (lambda z: z if z > 0 else a * z), (lambda z: mp.mpf(1) if z > 0 else a), (0,)
    if name == "elu":
        return (lambda z: z if z > 0 else a * mp.expm1(z)), (
            lambda z: mp.mpf(1) if z > 0 else a * mp.exp(z)
        ), (0,)
    if name == "gelu":
        return (lambda z: z * mp.ncdf(z)), (lambda z: mp.ncdf(z) + z * mp.npdf(z)), ()
    if name == "gelu_tanh":
        c = mp.mpf("0.044715")
        k = mp.sqrt(2 / mp.pi)

        def gelu_tanh(z):
            return z * _sigmoid(2 * k * (z + c * z**3))

        def gelu_tanh_df(z):
            u2 = 2 * k * (z + c * z**3)
            du2 = 2 * k * (1 + 3 * c * z**2)
            return _sigmoid(u2) + z * du2 * _sigmoid(u2) * _sigmoid(-u2)

        return gelu_tanh, gelu_tanh_df, ()
    if name == "silu":
        return (lambda z: z * _sigmoid(z)), (
            lambda z: _sigmoid(z) * (1 + z * _sigmoid(-z))
        ), ()
    if name == "softplus":
        return (lambda z: mp.log1p(mp.exp(z))), _sigmoid, ()
    if name == "tanh":
        return mp.tanh, (lambda z: 1 / mp.cosh(z) ** 2), ()
    # sigmoid
    return _sigmoid, (lambda z: _sigmoid(z) * _sigmoid(-z)), ()


def _residual(name: str, f: MpFunction, df: MpFunction, m: mp.mpf) -> tuple:
    """``(c, r, dr)`` with f(z) = c z + r(z) exactly and r, r' free of rounding to 1.

    GELU, tanh-GELU, SiLU and softplus satisfy the reflection f(z) = z + f(-z). For
    m > 0 that gives c = 1, r(z) = f(-z), r'(z) = -f'(-z); evaluated this way r and r'
    keep their relative precision where f'(z) = 1 - (tiny) would round to 1 at working
    precision (gelu_tanh: 1 - f'(z) ~ e^(-0.07 z^3), below 10^-40 from z ~ 11). Everywhere
    else c = 0 and r = f.

    Equations
    ---------
    .. math::

        f(z) = z + f(-z), \\quad r(z) = f(-z), \\quad r'(z) = -f'(-z)
        \\quad (\\mathrm{gelu}: r(z) = -z \\Phi(-z)) .
    """
    if name in _REFLECTED and m > 0:
        return mp.mpf(1), (lambda z: f(-z)), (lambda z: -df(-z))
    return mp.mpf(0), f, df


def _breakpoints(m: mp.mpf, s: mp.mpf, kinks: tuple) -> list:
    """Sorted breakpoints in x (standard normal variable), with -inf and +inf."""
    centres = {mp.mpf(0), -m / s}
    for kink in kinks:
        centres.add((kink - m) / s)
    points = set(centres)
    for x0 in centres:
        if x0 == 0:
            continue
        if abs(x0) > 3:
            # The Gaussian falls like exp(-|x0| t) beyond x0: resolve that scale.
            for d in (0.25, 1, 4, 16, 64):
                step = mp.mpf(d) / abs(x0)
                points.add(x0 + mp.sign(x0) * step)
                if step < abs(x0):
                    points.add(x0 - mp.sign(x0) * step)
        if s > 1:
            # The activation changes on a scale 1/s in x around x0.
            for d in (1, 4, 16):
                points.add(x0 + mp.mpf(d) / s)
                points.add(x0 - mp.mpf(d) / s)
    if s > 1:
        for d in (1, 4, 16):
            points.add(-m / s + mp.mpf(d) / s)
            points.add(-m / s - mp.mpf(d) / s)
    return [mp.mpf("-inf"), *sorted(points), mp.mpf("inf")]


def _integrate(g: MpFunction, points: list, dps: int) -> mp.mpf:
    """Integral of g over the real line, to about ``dps`` digits relative to int |g|.

    mpmath's ``quad`` stops at an absolute error near 10^-dps, so the integrand is first
    divided by a low-precision estimate of int |g| (repeated until that estimate is of
    order 1) and multiplied back after the accurate pass.
    """
    scale = mp.mpf(1)
    with mp.workdps(15):
        for _ in range(12):
            size = mp.quad(lambda x, scale=scale: abs(g(x)) / scale, points)
            if size == 0:
                return mp.mpf(0)
            scale *= size
            if mp.mpf("1e-5") <= size <= mp.mpf("1e5"):
                break
    with mp.workdps(dps):
        return mp.quad(lambda x: g(x) / scale, points) * scale


#: Activations with f(-z) = 2 f(0) - f(z) (point-symmetric about (0, f(0))): at m = 0
#: their mean is f(0) and d(mean)/ds and d(var)/dm vanish, exactly.
_POINT_SYMMETRIC = frozenset({"identity", "tanh", "sigmoid"})


def moments(
    name: str,
    m: float,
    s: float,
    *,
    dps: int = 30,
    derivatives: bool = False,
    alpha: float | None = None,
) -> tuple:
    """Proxy mean and population variance of f(Z), Z ~ Normal(m, s^2), in mpmath.

    Parameters
    ----------
    name : str
        Activation name (see `ACTIVATIONS`).
    m : float
        Mean of the pre-activation (taken exactly, as a binary float).
    s : float
        Standard deviation, > 0.
    dps : int
        Significant decimal digits of the working precision (>= 15; default 30).
    derivatives : bool
        Also return ``dmean_dm, dmean_ds, dvar_dm, dvar_ds``.
    alpha : float, optional
        Slope/scale for ``leaky_relu`` (default 0.01) and ``elu`` (default 1).

    Returns
    -------
    tuple of mpmath.mpf
        ``(mean, var)`` or ``(mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds)``.

    Equations
    ---------
    With X ~ Normal(0, 1), Z = m + s X (Stein's identity for the s-derivatives):

    .. math::

        \\mu = \\mathbb E f(Z), \\quad v = \\mathbb E (f(Z) - \\mu)^2, \\quad
        \\partial_m \\mu = \\mathbb E f'(Z), \\quad \\partial_s \\mu = \\mathbb E f'(Z) X,

        \\partial_m v = 2\\, \\mathbb E (f(Z) - \\mu) f'(Z), \\quad
        \\partial_s v = 2\\, \\mathbb E (f(Z) - \\mu) f'(Z) X .
    """
    if not isinstance(dps, int) or dps < 15:
        raise ValueError(f"dps must be an int >= 15, got {dps!r}")
    m = float(m)
    s = float(s)
    if not (math.isfinite(m) and math.isfinite(s)):
        raise ValueError(f"m and s must be finite, got m={m}, s={s}")
    if s <= 0:
        raise ValueError(f"s must be > 0, got {s}")
    # f - mean has size s |f'|: keep dps digits of it when s is small.
    work = dps + 10 + max(0, math.ceil(-math.log10(s)))
    # Adaptive precision: f(Z) - mean loses log10(|E r| / sqrt(var)) digits to
    # cancellation (tanh at m = -40: f = -1 + 2 e^(2Z), var 4e-66, 33 digits; at 40
    # working digits var came out 2e-17 and d(var) 1e-11 wrong). Measure the loss from a
    # first pass and redo the pass with that many more digits, until none is missing.
    for _ in range(8):
        mean_r, var, lost = _centred_pass(name, alpha, m, s, work)
        need = dps + 10 + max(0, math.ceil(-math.log10(s))) + lost
        if work >= need:
            break
        work = need + 5
    else:  # pragma: no cover - the loss is bounded for every activation on finite input
        raise ArithmeticError(f"oracle.moments({name!r}, {m!r}, {s!r}): precision did not settle")
    with mp.workdps(work):
        f, df, kinks = activation_functions(name, alpha)
        mm, ss = mp.mpf(m), mp.mpf(s)
        points = _breakpoints(mm, ss, kinks)

        def expect(g):
            return _integrate(lambda x: g(x, mm + ss * x) * mp.npdf(x), points, work)

        c, r, dr = _residual(name, f, df, mm)
        slope = dr(mm)
        mean = c * mm + mean_r
        symmetric_zero = m == 0.0 and name in _POINT_SYMMETRIC
        if symmetric_zero:
            # f(-z) = 2 f(0) - f(z): the odd-in-m outputs are exactly 0 at m = 0 (and the
            # mean is f(0)); quadrature would return rounding noise of size 10^-work.
            mean = f(mm)
        if not derivatives:
            return +mean, +var

        def centred(x, z):  # f(Z) - mean = c s X + r(Z) - E r(Z)
            return c * ss * x + (r(z) - mean_r)

        # E X = 0 and E (f - mean) = 0, so f' = c + r' may be replaced by r' - r'(m) in
        # the next two integrals. That removes the bulk where f is nearly affine, so that
        # a derivative far smaller than its integrand (ReLU at m/s = 30: dmean/ds =
        # phi(30); GELU at m/s = 40: -2.2e-172) keeps its relative accuracy despite quad's
        # absolute tolerance.
        dmean_dm = c + expect(lambda x, z: dr(z))
        dmean_ds = expect(lambda x, z: (dr(z) - slope) * x)
        dvar_dm = 2 * expect(lambda x, z: centred(x, z) * (dr(z) - slope))
        dvar_ds = 2 * expect(lambda x, z: centred(x, z) * (c + dr(z)) * x)
        if symmetric_zero:
            dmean_ds = dvar_dm = mp.mpf(0)
        return +mean, +var, +dmean_dm, +dmean_ds, +dvar_dm, +dvar_ds


def _centred_pass(name: str, alpha, m: float, s: float, work: int) -> tuple:
    """``(E r(Z), var, digits lost)`` at ``work`` digits (r: the residual of `_residual`).

    The digits lost are those of f(Z) - mean against the values it is formed from,
    log10(max(|E r|, |r(m)|) / sqrt(var)) (0 when there is no cancellation).
    """
    with mp.workdps(work):
        f, df, kinks = activation_functions(name, alpha)
        mm, ss = mp.mpf(m), mp.mpf(s)
        points = _breakpoints(mm, ss, kinks)

        def expect(g):
            return _integrate(lambda x: g(x, mm + ss * x) * mp.npdf(x), points, work)

        # f = c z + r (see _residual): the affine part c z is integrated exactly and every
        # difference below is formed from r, which keeps its small part.
        c, r, dr = _residual(name, f, df, mm)
        # E (Z - m) = 0: integrating only what f adds to its tangent at m keeps a mean far
        # smaller than its integrand (identity at m = -1e-300, s = 1e-8) exact.
        slope = dr(mm)
        r_m = r(mm)
        mean_r = r_m + expect(lambda x, z: r(z) - r_m - slope * ss * x)  # E r(Z)
        var = expect(lambda x, z: (c * ss * x + (r(z) - mean_r)) ** 2)
        size = max(abs(mean_r), abs(r_m))
        if var == 0:
            lost = work  # nothing resolved: double the precision
        elif size == 0:
            lost = 0
        else:
            lost = max(0, math.ceil(float(mp.log10(size / mp.sqrt(var)))))
        return mean_r, var, lost


def moments_float(
    name: str, m: float, s: float, **kwargs: int | bool | float | None
) -> tuple[float, ...]:
    """`moments` rounded to float64 (same arguments)."""
    return tuple(float(v) for v in moments(name, m, s, **kwargs))


def _estimator_at(f, df, mm, ss, points):
    """The six sums of `estimator_moments` at the current working precision."""
    n = len(points)
    z = [mm + ss * u for u in points]
    values = [f(zi) for zi in z]
    slopes = [df(zi) for zi in z]
    mean = mp.fsum(values) / n
    deviations = [v - mean for v in values]
    var = mp.fsum(d * d for d in deviations) / n
    dmean_dm = mp.fsum(slopes) / n
    weighted = [g * u for g, u in zip(slopes, points, strict=True)]
    dmean_ds = mp.fsum(weighted) / n
    dvar_dm = 2 * mp.fsum(d * (g - dmean_dm) for d, g in zip(deviations, slopes, strict=True)) / n
    dvar_ds = 2 * mp.fsum(d * (w - dmean_ds) for d, w in zip(deviations, weighted, strict=True)) / n
    return mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds


def estimator_moments(
    name: str,
    m: float,
    s: float,
    points: Iterable[float],
    *,
    alpha: float | None = None,
    digits: int = 25,
) -> tuple:
    r"""A sample estimator evaluated in exact arithmetic on given float64 points.

    The quantile and Monte Carlo methods are estimators; their reference is the same
    estimator with every operation exact: Z_i = m + s u_i formed exactly from the binary
    values of m, s and the points, f and f' evaluated in mpmath, two-pass sums. The
    working precision starts at 340 digits (so that parts down to 1e-290 of an O(1)
    value are seen) and is raised (400, 520, 760, ... up to 3200 digits) until two
    successive precisions agree to ``digits`` significant digits in every output, so
    deviations far smaller than the values (tanh at m = -40: f = -1 + 2e-35 u) are
    resolved. An output below 10^-(p - 40) at two successive precisions p < p' is an exact
    zero seen through rounding noise (sigmoid at m = 0 on symmetric points: d(var)/dm is
    an odd sum) and is returned as 0.

    Parameters
    ----------
    name : str
        Activation name (see `ACTIVATIONS`).
    m, s : float
        Mean and standard deviation (s >= 0), taken exactly.
    points : sequence of float
        The estimator's points u_i (``pnref.moments.quantile.points(n)`` or the Monte Carlo
        draws).
    alpha : float, optional
        As for `moments`.
    digits : int
        Significant digits required (default 25).

    Returns
    -------
    tuple of mpmath.mpf
        ``(mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds)``.

    Equations
    ---------
    With :math:`f_i = f(m + s u_i)`, :math:`f'_i = f'(m + s u_i)` (left derivative at a
    kink) and bars for means over i:

    .. math::

        \hat\mu = \bar f, \quad \hat v = \overline{(f - \hat\mu)^2}, \quad
        \partial_m \hat\mu = \overline{f'}, \quad
        \partial_s \hat\mu = \overline{f' u},

        \partial_m \hat v = 2\, \overline{(f - \hat\mu)(f' - \overline{f'})}, \quad
        \partial_s \hat v = 2\, \overline{(f - \hat\mu)(f' u - \overline{f' u})} .
    """
    m, s = float(m), float(s)
    if not (math.isfinite(m) and math.isfinite(s)) or s < 0:
        raise ValueError(f"m and s must be finite with s >= 0, got m={m}, s={s}")
    values = [float(u) for u in points]
    if len(values) < 2:
        raise ValueError(f"points must hold at least 2 values, got {len(values)}")
    # Start where a part 1e-290 of an O(1) value (f' = 1 - 1e-296 for GELU at m/s = 37)
    # still shows with 40 digits to spare: two precisions that both round such a part away
    # would agree and prove nothing.
    previous = None
    previous_dps = None
    dps, step = 340, 60
    while True:
        with mp.workdps(dps):
            f, df, _ = activation_functions(name, alpha)
            current = _estimator_at(f, df, mp.mpf(m), mp.mpf(s), [mp.mpf(u) for u in values])
            if previous is not None:
                # An output that is exactly 0 (an odd sum over symmetric points: sigmoid at
                # m = 0 on the official points) is, at each precision, only that precision's
                # rounding noise, which never settles relatively. Both precisions below
                # 10^-(previous_dps - 40) of an O(1) scale (< 1e-260 here, so below every
                # magnitude that is judged relatively) means "zero".
                zero = mp.mpf(10) ** -(previous_dps - 40)
                is_zero = [abs(a) <= zero and abs(b) <= zero
                           for a, b in zip(current, previous, strict=True)]
                if all(z or abs(a - b) <= mp.mpf(10) ** -digits * abs(a)
                       for z, a, b in zip(is_zero, current, previous, strict=True)):
                    return tuple(mp.mpf(0) if z else +v
                                 for z, v in zip(is_zero, current, strict=True))
            if dps >= 3200:
                raise ArithmeticError(
                    f"estimator_moments({name!r}, {m!r}, {s!r}) did not settle by 3200 digits"
                )
        previous, previous_dps = current, dps
        dps, step = dps + step, 2 * step


def load_table(path: str | Path) -> list[dict]:
    """Read an oracle table written by ``scripts/make_oracle_table.py``.

    Returns
    -------
    list of dict
        One dict per row: ``activation`` (str), ``alpha`` (float or None) and the
        float64 values of the other `TABLE_COLUMNS`.
    """
    rows = []
    with Path(path).open(newline="") as handle:
        for record in csv.DictReader(handle):
            row: dict = {"activation": record["activation"]}
            row["alpha"] = float(record["alpha"]) if record["alpha"] else None
            for column in TABLE_COLUMNS[2:]:
                row[column] = float(record[column])
            rows.append(row)
    return rows
