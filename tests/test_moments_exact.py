"""Tests for pnref.moments.exact: closed-form proxy moments and their derivatives.

References:
* the textbook closed forms evaluated in mpmath at 50+ digits, precision doubled until two
  evaluations agree (no stability tricks are needed at that precision; the GELU tails need
  hundreds of digits, reached adaptively). Owen's T and the GELU second moment come from
  mpmath quadrature of their integral definitions, not from the float64 series;
* central finite differences of the float64 moments themselves (derivatives);
* the committed oracle table tests/data/oracle_moments.csv (mpmath quadrature, written by
  scripts/make_oracle_table.py), when present;
* the textbook float64 formulas, to show they fail where docs/proxy-moments.md says.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pnref.activations import ACTIVATIONS, activation
from pnref.moments import exact

SEED = 20211207
ORACLE_TABLE = Path(__file__).parent / "data" / "oracle_moments.csv"
NAMES = ("mean", "var", "dmean_dm", "dmean_ds", "dvar_dm", "dvar_ds")


# --------------------------------------------------------------------- mpmath references
def _relu_mp(m, s):
    a = m / s
    cdf, pdf = mp.ncdf(a), mp.npdf(a)
    mean = m * cdf + s * pdf
    second = (m * m + s * s) * cdf + m * s * pdf
    values = [
        mean,
        second - mean**2,
        cdf,
        pdf,
        2 * mean * mp.ncdf(-a),
        2 * s * (cdf - pdf * (a * cdf + pdf)),
    ]
    return values + [mp.mpf(0)] * 6  # every output is > 0: no absolute floor needed


def _leaky_mp(alpha):
    def moments_mp(m, s):
        r = _relu_mp(m, s)
        a = m / s
        cdf, pdf = mp.ncdf(a), mp.npdf(a)
        beta = 1 - alpha
        mean = alpha * m + beta * r[0]
        # E f^2 = alpha^2 E[Z^2 1(Z<0)] + E[Z^2 1(Z>0)], with E[Z^2 1(Z>0)] the ReLU E2.
        relu_second = (m * m + s * s) * cdf + m * s * pdf
        second = alpha**2 * (m * m + s * s - relu_second) + relu_second
        # Derivatives of E f^2 by Stein: d/dm E f^2 = E[2 f f'], d/ds E f^2 = s E[(f^2)''];
        # (f^2)'' = 2 on z > 0 and 2 alpha^2 on z < 0 (f^2 has no kink: f(0) = 0).
        d_second_dm = 2 * (alpha**2 * (m * (1 - cdf) - s * pdf) + (m * cdf + s * pdf))
        d_second_ds = s * (2 * alpha**2 * (1 - cdf) + 2 * cdf)
        dmean_dm = alpha + beta * cdf
        dmean_ds = beta * pdf
        values = [
            mean,
            second - mean**2,
            dmean_dm,
            dmean_ds,
            d_second_dm - 2 * mean * dmean_dm,
            d_second_ds - 2 * mean * dmean_ds,
        ]
        # Only the mean changes sign (alpha m < 0 < (1 - alpha) mean_relu): its scale is
        # the sum of the magnitudes of its two terms.
        scales = [abs(alpha * m) + beta * r[0]] + [mp.mpf(0)] * 5
        return values + scales

    return moments_mp


def _identity_mp(m, s):
    return [m, s * s, mp.mpf(1), mp.mpf(0), mp.mpf(0), 2 * s] + [mp.mpf(0)] * 6


def _elu_mp(alpha):
    def moments_mp(m, s):
        """f = relu(z) - alpha h(z), h = (1 - e^z) 1(z < 0): E h^j from P_j = E[e^(jZ) 1(Z<0)]."""
        r = _relu_mp(m, s)
        a = m / s
        cdf, pdf = mp.ncdf(a), mp.npdf(a)
        q = mp.ncdf(-a)
        p1 = mp.exp(m + s * s / 2) * mp.ncdf(-a - s)
        p2 = mp.exp(2 * m + 2 * s * s) * mp.ncdf(-a - 2 * s)
        h1, h2 = q - p1, q - 2 * p1 + p2
        mean = r[0] - alpha * h1
        relu_second = (m * m + s * s) * cdf + m * s * pdf
        second = relu_second + alpha**2 * h2  # disjoint supports
        dmean_dm = cdf + alpha * p1
        dmean_ds = alpha * s * p1 + (1 - alpha) * pdf
        # Stein: d/dm E f^2 = E (f^2)', d/ds E f^2 = s E (f^2)'' (f^2 has no kink at 0):
        # (f^2)' = 2 relu + 2 alpha^2 (e^(2z) - e^z) 1(z<0), (f^2)'' = 2 1(z>0) +
        # 2 alpha^2 (2 e^(2z) - e^z) 1(z<0).
        d_second_dm = 2 * r[0] + 2 * alpha**2 * (p2 - p1)
        d_second_ds = s * (2 * cdf + 2 * alpha**2 * (2 * p2 - p1))
        values = [
            mean,
            second - mean**2,
            dmean_dm,
            dmean_ds,
            d_second_dm - 2 * mean * dmean_dm,
            d_second_ds - 2 * mean * dmean_ds,
        ]
        # The mean changes sign (relu part >= 0, -alpha h <= 0); so can dvar/dm and dvar/ds
        # (the variance is not monotone in m): scales are the magnitudes of their terms.
        scales = [
            r[0] + alpha * h1,
            mp.mpf(0),
            mp.mpf(0),
            mp.mpf(0),
            abs(d_second_dm) + abs(2 * mean * dmean_dm),
            abs(d_second_ds) + abs(2 * mean * dmean_ds),
        ]
        return values + scales

    return moments_mp


def _phi_sq_mp(h, b):
    """E[Phi(Z)^2] = Phi(h) - 2 T(h, b) from the integral definition of Owen's T."""
    if h < -1:  # (1/pi) int_b^inf exp(-h^2 (1 + x^2)/2) / (1 + x^2) dx, scaled to O(1)
        scale = mp.exp(-h * h * (1 + b * b) / 2) / mp.pi
        width = 1 / abs(h)
        body = mp.quad(
            lambda x: mp.exp(-h * h * (x * x - b * b) / 2) / (1 + x * x),
            [b, b + width, b + 10 * width + 1, mp.inf],
        )
        return scale * body
    owen = mp.quad(lambda x: mp.exp(-h * h * (1 + x * x) / 2) / (1 + x * x), [0, b])
    return mp.ncdf(h) - owen / mp.pi


def _gelu_mp(m, s):
    """GELU moments; the variance derivatives via Stein's identities (derived on the page)."""
    t0, t1 = mp.sqrt(1 + s * s), mp.sqrt(1 + 2 * s * s)
    h = m / t0
    h2 = h / t1
    pdf_h, cdf_h, pdf_h2, cdf_h2 = mp.npdf(h), mp.ncdf(h), mp.npdf(h2), mp.ncdf(h2)
    s2 = s * s
    mean = m * cdf_h + s2 * pdf_h / t0
    dmean_dm = cdf_h + pdf_h * m / t0**3
    ef2 = pdf_h * (2 + s2 - h * h) / t0**3
    c0 = _phi_sq_mp(h, 1 / t1)
    b0 = pdf_h * cdf_h2 / t0
    b1 = (pdf_h / t0) * ((m / t0**2) * cdf_h2 + s2 * pdf_h2 / (t0 * t1))
    q0 = pdf_h * pdf_h2 / t1
    ez2_phiphi = (m * b1 + s2 * b0 + s2 * m * q0 / t1**2) / t0**2
    ez2_phi2 = q0 * (m * m / t1**2 + s2) / t1**2
    ez3_phiphi = (m * ez2_phiphi + s2 * (2 * b1 + ez2_phi2)) / t0**2
    second = (m * m + s2) * c0 + 2 * s2 * (m * b0 + b1)
    eff1 = m * c0 + 2 * s2 * b0 + ez2_phiphi
    ef1sq = c0 + 2 * b1 + ez2_phi2
    eff2 = 2 * b1 - ez3_phiphi
    values = [
        mean,
        second - mean**2,
        dmean_dm,
        s * ef2,
        2 * (eff1 - mean * dmean_dm),
        2 * s * (ef1sq + eff2 - mean * ef2),
    ]
    # Everything but the variance changes sign somewhere: the scale of each is the sum of
    # the magnitudes of the terms of its formula (its condition number times its value).
    scales = [
        abs(m * cdf_h) + s2 * pdf_h / t0,
        mp.mpf(0),
        cdf_h + abs(m) * pdf_h / t0**3,
        s * pdf_h * (2 + s2 + h * h) / t0**3,
        2 * (abs(eff1) + abs(mean * dmean_dm)),
        2 * s * (abs(ef1sq) + abs(eff2) + abs(mean * ef2)),
    ]
    return values + scales


def _reference(moments_mp, m: float, s: float) -> np.ndarray:
    """Evaluate at 50, 100, ... digits until two precisions agree to 1e-25 relative."""
    dps = 50
    previous = None
    while True:
        with mp.workdps(dps):
            current = moments_mp(mp.mpf(m), mp.mpf(s))
        # An exact 0 is accepted only from 800 digits on: a cancelling difference (the
        # leaky-ReLU dvar/dm in the far tail is 1e-242 against terms of 1e-5) reads 0
        # until the precision covers the cancellation.
        zeros_ok = dps >= 800 or all(c != 0 for c in current[:6])
        if (
            previous is not None
            and zeros_ok
            and all(
                abs(c - p) <= mp.mpf(10) ** -25 * abs(c)
                for c, p in zip(current[:6], previous[:6], strict=True)
            )
        ):
            return np.array([float(c) for c in current])
        if dps > 1600:
            raise AssertionError(f"mpmath reference did not converge at m={m}, s={s}")
        previous = current
        dps *= 2


MP_REFERENCES = {
    "identity": _identity_mp,
    "relu": _relu_mp,
    "leaky_relu": None,  # built per alpha
    "elu": None,  # built per alpha
    "gelu": _gelu_mp,
}


def _reference_for(act):
    """The mpmath reference function for an activation (alpha taken as its float64 value)."""
    if act.name == "leaky_relu":
        return _leaky_mp(mp.mpf(act.params["alpha"]))
    if act.name == "elu":
        return _elu_mp(mp.mpf(act.params["alpha"]))
    return MP_REFERENCES[act.name]


def _grid(count: int, ratio_bound: float = 40.0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded (m, s): m/s uniform in [-40, 40], s log-uniform in [1e-8, 1e3], plus extremes."""
    rng = np.random.default_rng(SEED)
    s = 10.0 ** rng.uniform(-8.0, 3.0, count)
    m = rng.uniform(-ratio_bound, ratio_bound, count) * s
    extremes = [
        (0.0, 1.0), (-40.0, 1.0), (40.0, 1.0), (-30.0, 1.0), (30.0, 1.0), (-35.0, 1.0),
        (0.0, 1e-8), (1e-8, 1e-8), (-1e-8, 1e-8), (-5.0, 1e-8), (1.0, 1e-8),
        (-0.7518, 1e-8), (-0.7518, 1e-4), (-0.7518, 0.1), (-0.7518, 0.3), (-5.0, 1e-6),
        (0.0, 1e3), (-4e4, 1e3), (4e4, 1e3), (-5e3, 1e3), (-3e4, 1e3), (2.0, 3e-3),
        (-3.0, 0.25), (-3.0, 0.26), (-1.0, 0.25), (-1.0, 0.26), (-10.0, 0.4),
        (-20.0, 0.5), (-1927.0, 55.0), (-748.2, 25.6), (-200.0, 7.0),
    ]  # fmt: skip
    m = np.concatenate([m, [p[0] for p in extremes]])
    s = np.concatenate([s, [p[1] for p in extremes]])
    return m, s


def _compare(act, moments_mp, m, s, rtol, floor_tol):
    """Every output within rtol relative, or floor_tol of its term scale (see the references).

    The floor matters only where a quantity passes through zero (the GELU or leaky-ReLU mean,
    E f' at GELU's minimum, ...): there relative accuracy is meaningless and the natural
    accuracy is rounding of the terms that cancel. Values below 1e-300 in truth are
    subnormal and compared absolutely. Returns the worst error in units of the tolerance.
    """
    ours = np.stack(exact.moments_with_derivatives(act, m, s), axis=1)
    full = np.stack([_reference(moments_mp, mi, si) for mi, si in zip(m, s, strict=True)])
    ref, scales = full[:, :6], full[:, 6:]
    allowed = rtol * np.abs(ref) + floor_tol * scales + 1e-300
    error = np.abs(ours - ref)
    bad = error > allowed
    if np.any(bad):
        i, k = np.argwhere(bad)[0]
        raise AssertionError(
            f"{act!r} {NAMES[k]} at m={m[i]!r}, s={s[i]!r}: {ours[i, k]!r} vs {ref[i, k]!r} "
            f"({np.count_nonzero(bad)} failures)"
        )
    return np.max(error / allowed, axis=0)


# --------------------------------------------------------------------- accuracy vs mpmath
@pytest.mark.parametrize(
    ("name", "params"),
    [("identity", {}), ("relu", {}), ("leaky_relu", {"alpha": 0.2}), ("leaky_relu", {})],
)
def test_relu_family_matches_mpmath(name, params):
    act = activation(name, **params)
    m, s = _grid(150)
    # rtol 2e-14: measured worst 4.5e-15 (relu, var, near x = 1.4 where the upward
    # recurrence for I_2 loses a digit), target 1e-13. Floors 1e-15 of each quantity's
    # scale (see _compare) only matter where the leaky mean crosses zero.
    # Note: mpmath's alpha is the float64 value of alpha (mp.mpf(0.2)), the same number
    # the float64 code uses.
    _compare(act, _reference_for(act), m, s, rtol=2e-14, floor_tol=1e-15)


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_matches_mpmath(alpha):
    act = activation("elu", alpha=alpha)
    m, s = _grid(80)
    # rtol 1e-13 (the target); measured worst 5.6e-14 (dmean/dm and dmean/ds at m/s = -30,
    # s = 19, through phi(a) R(a + s)), 1.8e-14 on the variance. Floors at 1e-14 of the
    # term scales where the mean and the variance derivatives change sign.
    _compare(act, _reference_for(act), m, s, rtol=1e-13, floor_tol=1e-14)


def _gelu_grid() -> tuple[np.ndarray, np.ndarray]:
    m, s = _grid(60)
    # plus the region where the regimes (series, Owen's T, the two Laguerre forms) meet
    rng = np.random.default_rng(SEED + 2)
    m = np.concatenate([m, rng.uniform(-6.0, 2.0, 40)])
    s = np.concatenate([s, 10.0 ** rng.uniform(np.log10(0.02), np.log10(2.0), 40)])
    return m, s


def test_gelu_matches_mpmath():
    act = activation("gelu")
    m, s = _gelu_grid()
    # rtol 1e-13, the target (measured worst 3.3e-14 on the variance, 1.2e-14 on
    # dvar/dm). Floors at 1e-14 of each quantity's term scale only matter where it passes
    # through zero (mean, E f', E f'', dvar/dm change sign).
    _compare(act, _gelu_mp, m, s, rtol=1e-13, floor_tol=1e-14)


def _gelu_far_left_grid() -> tuple[np.ndarray, np.ndarray]:
    """m/s in [-40, -2], s log-uniform in [0.15, 1e3], seeded; corners and known worst points."""
    rng = np.random.default_rng(SEED + 3)
    ratio = rng.uniform(-40.0, -2.0, 30)
    s = 10.0 ** rng.uniform(np.log10(0.15), 3.0, 30)
    corners = [(-40.0, 0.2001), (-40.0, 1e3), (-4.0001, 0.2001), (-4.0001, 1e3),
               (-4.0001, 0.36), (-2.0001, 0.36), (-2.0001, 1e3), (-29.0, 7.0), (-35.2, 8.86),
               (-5.0, 5.0), (-3.0, 7.0)]  # fmt: skip
    ratio = np.concatenate([ratio, [c[0] for c in corners]])
    s = np.concatenate([s, [c[1] for c in corners]])
    return ratio * s, s


def test_gelu_far_left_matches_mpmath():
    """m/s < -2, s > 0.15: the tilted-law quadrature (docs, "GELU in the far left").

    The closed-form E2 cancels there (relative error of the variance up to 1.8e-9 at
    m/s = -35, s = 8.9; 4e-13 already at m/s = -4). Measured with the quadrature on this grid:
    v 1.1e-14, dv/dm 6.1e-15, dv/ds 2.2e-15, the mean and its derivatives (closed forms)
    1.2e-14; on 300 further seeded points 1.5e-15, 9e-15, 3e-15. rtol 1e-13 (the target)
    with no floor: every output keeps its relative accuracy here.
    """
    act = activation("gelu")
    m, s = _gelu_far_left_grid()
    assert np.all((m < -2.0 * s) & (s > 0.15))
    _compare(act, _gelu_mp, m, s, rtol=1e-13, floor_tol=0.0)


def test_gelu_far_left_is_continuous_at_its_edge():
    """Across m/s = -2 (closed form inside, quadrature outside) and across s = 0.15.

    Each pair of points is one ulp apart (m = -2 s exactly, then the next float below; s =
    0.15, then the next float above), so the true outputs differ by at most their
    logarithmic derivative (< 50 here) times 1.1e-16, i.e. < 6e-15. rtol 2e-13 = twice the
    1e-13 target, since both forms carry their own error: a jump between the two forms
    larger than their accuracies fails.
    """
    act = activation("gelu")
    s = np.array([0.36, 0.5, 1.0, 7.0, 1e3])  # s <= 0.35 at m/s = -2 is the series' regime
    edge = -2.0 * s  # exact (a power of two times s): the closed form's side
    inner = exact.moments_with_derivatives(act, edge, s)
    outer = exact.moments_with_derivatives(act, np.nextafter(edge, -np.inf), s)
    for a, b in zip(inner, outer, strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-13)
    # Below s = 0.15 the series covers |m| <= 8 (s |m| <= 1.2): the edge in s is met at
    # m/s < -53 only.
    m = np.array([-8.5, -9.0, -10.0])
    s_low = np.full(3, 0.15)
    low = exact.moments_with_derivatives(act, m, s_low)
    high = exact.moments_with_derivatives(act, m, np.nextafter(s_low, np.inf))
    for a, b in zip(low, high, strict=True):
        np.testing.assert_allclose(b, a, rtol=2e-13)


# --------------------------------------------------------------------- oracle table
def _oracle_rows() -> list[dict]:
    with ORACLE_TABLE.open(newline="") as handle:
        return [row for row in csv.DictReader(handle) if row["activation"] in exact.SUPPORTED]


@pytest.mark.skipif(not ORACLE_TABLE.exists(), reason="tests/data/oracle_moments.csv not yet built")
def test_matches_committed_oracle_table():
    rows = _oracle_rows()
    assert rows, "the oracle table has no rows for the supported activations"
    for row in rows:
        params = {"alpha": float(row["alpha"])} if row["alpha"] else {}
        act = activation(row["activation"], **params)
        m, s = float(row["m"]), float(row["s"])
        ours = np.array([o[0] for o in exact.moments_with_derivatives(act, [m], [s])])
        ref = np.array([float(row[name]) for name in NAMES])
        # The table holds 30-digit quadrature results rounded once. Tolerances as for the
        # closed-form references: rtol 1e-13, floors at 1e-14 of the term scales computed
        # by the mpmath references.
        scales = _reference(_reference_for(act), m, s)[6:]
        bad = np.abs(ours - ref) > 1e-13 * np.abs(ref) + 1e-14 * scales + 1e-300
        assert not np.any(bad), (row, ours)


# --------------------------------------------------------------------- derivatives by FD
@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("relu", {}), ("leaky_relu", {"alpha": 0.3}), ("gelu", {}), ("identity", {}),
        ("elu", {}), ("elu", {"alpha": 0.4}),
    ],
)  # fmt: skip
def test_derivatives_match_central_differences_of_the_moments(name, params):
    act = activation(name, **params)
    rng = np.random.default_rng(SEED + 1)
    s = 10.0 ** rng.uniform(-1.0, 1.0, 40)
    m = rng.uniform(-4.0, 4.0, 40) * s
    values = exact.moments_with_derivatives(act, m, s)
    # Steps relative to s: h = 1e-5 s. The moments are smooth in (m, s) for s > 0 with
    # derivatives of order k scaling like s^(2-k) (variance) and s^(1-k) (mean), so the
    # truncation error h^2 |g'''| / 6 is ~2e-11 of the derivative's scale and the rounding
    # error eps |g| / h ~1e-11 of it; rtol 1e-7 plus a floor at 1e-7 of the scale leaves a
    # wide margin while still failing any wrong formula (a wrong term is O(1) of the scale).
    h = 1e-5 * s
    plus_m = exact.moments(act, m + h, s)
    minus_m = exact.moments(act, m - h, s)
    plus_s = exact.moments(act, m, s + h)
    minus_s = exact.moments(act, m, s - h)
    scale = [np.ones_like(s), np.ones_like(s), 2.0 * s, 2.0 * s]
    pairs = [
        (values[2], (plus_m[0] - minus_m[0]) / (2 * h), scale[0]),
        (values[3], (plus_s[0] - minus_s[0]) / (2 * h), scale[1]),
        (values[4], (plus_m[1] - minus_m[1]) / (2 * h), scale[2]),
        (values[5], (plus_s[1] - minus_s[1]) / (2 * h), scale[3]),
    ]
    for analytic, numeric, sc in pairs:
        assert np.all(np.abs(analytic - numeric) <= 1e-7 * np.abs(numeric) + 1e-7 * sc)


# --------------------------------------------------------------------- naive forms fail
def test_naive_relu_variance_cancels_at_ratio_minus_30():
    """E2 - mu^2 at m/s = -30 (docs: about 2e-8 relative); the stable form is exact."""
    relu = activation("relu")
    m, s = -30.0, 1.0
    ref = _reference(_relu_mp, m, s)
    a = m / s
    pdf = math.exp(-a * a / 2) / math.sqrt(2 * math.pi)
    cdf = 0.5 * math.erfc(-a / math.sqrt(2))
    mean = m * cdf + s * pdf
    naive_var = (m * m + s * s) * cdf + m * s * pdf - mean * mean
    _, var = exact.moments(relu, np.array([m]), np.array([s]))
    naive_error = abs(naive_var / ref[1] - 1)
    stable_error = abs(var[0] / ref[1] - 1)
    assert naive_error > 1e-9  # measured 2e-8 (docs/proxy-moments.md quotes this test)
    assert stable_error < 1e-14


def test_naive_relu_dvar_dm_fails_on_the_right():
    """dv/dm as dE2/dm - 2 mu dmu/dm at m/s = 10 loses everything; 2 mu Phi(-a) does not."""
    relu = activation("relu")
    m, s = 10.0, 1.0
    ref = _reference(_relu_mp, m, s)
    cdf = 0.5 * math.erfc(-m / math.sqrt(2))
    pdf = math.exp(-m * m / 2) / math.sqrt(2 * math.pi)
    mean = m * cdf + s * pdf
    naive = 2 * (m * cdf + s * pdf) - 2 * mean * cdf  # dE2/dm = 2 E[relu] for relu
    ours = exact.moments_with_derivatives(relu, np.array([m]), np.array([s]))[4][0]
    assert abs(naive / ref[4] - 1) > 0.5  # measured: 100 % (docs)
    assert abs(ours / ref[4] - 1) < 1e-14


def test_naive_gelu_variance_fails_at_small_s():
    """Textbook E2 - mu^2 for GELU at m = -5, s = 1e-8 (docs: about 6e6 relative)."""
    gelu = activation("gelu")
    m, s = -5.0, 1e-8
    ref = _reference(_gelu_mp, m, s)
    from scipy.special import ndtr, owens_t

    t0, t1 = math.sqrt(1 + s * s), math.sqrt(1 + 2 * s * s)
    h = m / t0
    h2 = h / t1
    pdf = lambda x: math.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    mean = m * ndtr(h) + s * s * pdf(h) / t0
    c0 = ndtr(h) - 2 * owens_t(h, 1 / t1)
    b0 = pdf(h) / t0 * ndtr(h2)
    b1 = pdf(h) / t0 * ((m / t0**2) * ndtr(h2) + s * s * pdf(h2) / (t0 * t1))
    naive_var = (m * m + s * s) * c0 + 2 * s * s * (m * b0 + b1) - mean**2
    _, var = exact.moments(gelu, np.array([m]), np.array([s]))
    assert abs(naive_var / ref[1] - 1) > 1.0  # hopeless: measured in the docs
    assert abs(var[0] / ref[1] - 1) < 1e-13


def test_naive_elu_overflows_for_large_s():
    """P2 = e^(2m + 2s^2) Phi(-a - 2s) overflows for s above ~19; phi(a) R(a + 2s) does not."""
    elu = activation("elu")
    m, s = 0.0, 30.0
    with np.errstate(over="ignore", invalid="ignore"):
        naive_p2 = np.exp(2 * m + 2 * s * s) * 0.5 * math.erfc((m / s + 2 * s) / math.sqrt(2))
    assert not np.isfinite(naive_p2) or naive_p2 == 0.0  # inf * 0 or inf: unusable
    out = exact.moments_with_derivatives(elu, np.array([m]), np.array([s]))
    ref = _reference(_elu_mp(mp.mpf(1)), m, s)[:6]
    # the same 1e-13 as the grid test
    np.testing.assert_allclose(np.array([o[0] for o in out]), ref, rtol=1e-13)


# --------------------------------------------------------------------- s = 0 and limits
@pytest.mark.parametrize("name", sorted(exact.SUPPORTED))
def test_s_zero_returns_the_limits(name):
    act = activation(name)
    m = np.array([-2.0, -0.3, 0.0, 0.7, 3.0])
    out = exact.moments_with_derivatives(act, m, np.zeros_like(m))
    np.testing.assert_array_equal(out[0], act.f(m))
    np.testing.assert_array_equal(out[1], 0.0)
    expected_dm = act.df(m)
    expected_ds = np.zeros_like(m)
    for kink, jump in zip(act.kinks, act.jumps, strict=True):
        at = m == kink
        expected_dm = np.where(at, expected_dm + 0.5 * jump, expected_dm)
        expected_ds = np.where(at, jump / math.sqrt(2 * math.pi), expected_ds)
    np.testing.assert_array_equal(out[2], expected_dm)
    np.testing.assert_array_equal(out[3], expected_ds)
    np.testing.assert_array_equal(out[4], 0.0)
    np.testing.assert_array_equal(out[5], 0.0)
    # The limits are continuous with tiny s: at s = 1e-12 every output is within
    # 1e-11 (a first-order change in s, times derivatives of order 1) of the s = 0 value.
    tiny = exact.moments_with_derivatives(act, m, np.full_like(m, 1e-12))
    for limit, value in zip(out, tiny, strict=True):
        np.testing.assert_allclose(value, limit, rtol=0, atol=1e-11)


def test_relu_at_the_kink_with_s_zero():
    out = exact.moments_with_derivatives(activation("relu"), np.array([0.0]), np.array([0.0]))
    # mean 0, var 0, dmean/dm = (0 + 1)/2, dmean/ds = 1 * phi(0) = 1/sqrt(2 pi)
    assert [o[0] for o in out] == [0.0, 0.0, 0.5, 1 / math.sqrt(2 * math.pi), 0.0, 0.0]


# --------------------------------------------------------------------- invariances
@settings(max_examples=40)
@given(
    st.floats(min_value=-40.0, max_value=40.0),
    st.floats(min_value=1e-6, max_value=1e2),
    st.integers(min_value=-20, max_value=20),
)
def test_relu_is_positively_homogeneous(ratio, s, k):
    """relu(c z) = c relu(z): mean scales by c, var by c^2; with c = 2^k exactly."""
    relu = activation("relu")
    c = 2.0**k
    m = np.array([ratio * s])
    out = exact.moments_with_derivatives(relu, m, np.array([s]))
    scaled = exact.moments_with_derivatives(relu, c * m, np.array([c * s]))
    powers = (1, 2, 0, 0, 1, 1)
    for value, scaled_value, p in zip(out, scaled, powers, strict=True):
        # Scaling by a power of two commutes with every rounding (no under/overflow here):
        # the results agree to the last bit, up to 1 ulp from exp's argument.
        np.testing.assert_allclose(scaled_value, c**p * value, rtol=4e-16, atol=1e-300)


@settings(max_examples=40)
@given(st.floats(min_value=-30.0, max_value=30.0), st.floats(min_value=1e-3, max_value=10.0))
def test_reflection_and_special_alphas(ratio, s):
    """gelu/relu: mean(m) - mean(-m) = m; leaky alpha=0 is relu, alpha=1 the identity."""
    m = np.array([ratio * s])
    sv = np.array([s])
    for name in ("relu", "gelu"):
        act = activation(name)
        mean_plus, var_plus = exact.moments(act, m, sv)
        mean_minus, var_minus = exact.moments(act, -m, sv)
        # mean(m) = m + mean(-m); rtol 1e-14 of |m| + s (the scale of the terms)
        assert abs(mean_plus[0] - mean_minus[0] - m[0]) <= 1e-14 * (abs(m[0]) + s)
        assert var_plus[0] >= var_minus[0] * (1 - 1e-14) if m[0] > 0 else True
    relu_out = exact.moments_with_derivatives(activation("relu"), m, sv)
    leaky0 = exact.moments_with_derivatives(activation("leaky_relu", alpha=0.0), m, sv)
    ident = exact.moments_with_derivatives(activation("identity"), m, sv)
    leaky1 = exact.moments_with_derivatives(activation("leaky_relu", alpha=1.0), m, sv)
    for a, b in zip(relu_out, leaky0, strict=True):
        # same formulas at alpha = 0, but Phi(-a) is taken from normal_cdf in the leaky
        # code and from phi(x) I_0(x) in the relu code: a few ulp apart.
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-300)
    for a, b in zip(ident, leaky1, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-15, atol=1e-300 + 1e-15 * s)


# --------------------------------------------------------------------- API and errors
def test_supported_matches_has_exact():
    assert {n for n in ACTIVATIONS if activation(n).has_exact} == set(exact.SUPPORTED)


def test_unsupported_activation_suggests_quadrature():
    for name in sorted(set(ACTIVATIONS) - exact.SUPPORTED):
        with pytest.raises(ValueError, match="method='quadrature'"):
            exact.moments(activation(name), 0.0, 1.0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"s": np.array([-1.0])}, ValueError, "s must be >= 0"),
        ({"m": np.array([1])}, TypeError, "m must have a real floating dtype"),
        ({"s": np.array([np.inf])}, ValueError, "must be finite"),
        ({"m": np.zeros(3), "s": np.ones(2)}, ValueError, "must broadcast"),
        ({"n": 1.5}, TypeError, "n must be None or an int"),
        ({"seed": "x"}, TypeError, "seed must be None or an int"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"m": np.array([0.0]), "s": np.array([1.0])} | kwargs
    with pytest.raises(error, match=match):
        exact.moments_with_derivatives(activation("relu"), **args)
    with pytest.raises(TypeError, match="act must be an Activation"):
        exact.moments("relu", 0.0, 1.0)


def test_dtype_broadcast_and_nan():
    relu = activation("relu")
    m = np.array([[-1.0], [0.0], [np.nan]], dtype=np.float32)
    s = np.array([0.5, 2.0], dtype=np.float32)
    out = exact.moments_with_derivatives(relu, m, s)
    for o in out:
        assert o.shape == (3, 2) and o.dtype == np.float32
        assert np.all(np.isnan(o[2]))  # NaN in m propagates to every output
    # float32 results are the float64 results rounded once (half an ulp of float32).
    out64 = exact.moments_with_derivatives(relu, m[:2].astype(np.float64), s.astype(np.float64))
    for o32, o64 in zip(out, out64, strict=True):
        np.testing.assert_allclose(o32[:2], o64, rtol=6e-8, atol=0)
    mean, var = exact.moments(relu, 0.0, np.float64(1.0), n=10, seed=3)  # n, seed ignored
    # Closed forms at a = 0 against ours in float64: a few ulp (rel 1e-15).
    assert mean == pytest.approx(1 / math.sqrt(2 * math.pi), rel=1e-15)
    assert var == pytest.approx(0.5 - 1 / (2 * math.pi), rel=1e-15)  # E relu^2 - mean^2


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "elu", "gelu"])
def test_extreme_offsets_give_finite_limits(name):
    # |m| / s far beyond the documented 40 (1e18 and 1e300): no NaN may appear. Far left
    # (m -> -inf) every activation here is constant (0 or -alpha) up to terms below the
    # smallest double, so var and all derivatives except dmean_dm's constant slope are 0;
    # far right f(z) = z, so mean = m, var = s^2, dmean_dm = 1, dvar_ds = 2 s.
    act = activation(name)
    m = np.array([-1e10, -1e300, 1e10, 1e300])
    s = np.array([1e-8, 1.0, 1e-8, 1.0])
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds = exact.moments_with_derivatives(act, m, s)
    slope_left = {"relu": 0.0, "leaky_relu": 0.01, "elu": 0.0, "gelu": 0.0}[name]
    left_value = {"relu": 0.0, "elu": -1.0, "gelu": 0.0}.get(name)
    for values in (mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds):
        assert np.all(np.isfinite(values)), name
    if left_value is not None:
        assert np.all(mean[:2] == left_value)
    # leaky_relu's left: mean = alpha m exactly up to rounding of the product.
    np.testing.assert_allclose(dmean_dm, [slope_left, slope_left, 1.0, 1.0], rtol=1e-15)
    np.testing.assert_allclose(mean[2:], m[2:], rtol=1e-15)
    np.testing.assert_allclose(var[2:], s[2:] ** 2, rtol=1e-15)
    np.testing.assert_allclose(dvar_ds[2:], 2.0 * s[2:], rtol=1e-15)
    np.testing.assert_allclose(var[:2], slope_left**2 * s[:2] ** 2, rtol=1e-15, atol=0.0)
