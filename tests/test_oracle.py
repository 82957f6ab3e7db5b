"""The mpmath oracle: agreement with closed forms, self-consistency, and the committed table."""

from __future__ import annotations

import os
from pathlib import Path

import mpmath as mp
import numpy as np
import pytest

import pnref
from pnref import oracle

TABLE = Path(__file__).parent / "data" / "oracle_moments.csv"


def _relative(a, b):
    return abs(a - b) / abs(b) if b != 0 else abs(a)


def _relu_closed_form(m, s, dps=200):
    """ReLU moments and derivatives at 200 digits (docs/proxy-moments.md, ReLU):
    mu = m Phi(a) + s phi(a), E2 = (m^2 + s^2) Phi(a) + m s phi(a), a = m/s;
    dmu/dm = Phi(a), dmu/ds = phi(a), dv/dm = 2 mu Phi(-a),
    dv/ds = 2 s [Phi(a) - phi(a) (a Phi(a) + phi(a))]. 200 digits absorb the
    cancellation in E2 - mu^2 (at most ~100 digits for |a| <= 40)."""
    with mp.workdps(dps):
        m, s = mp.mpf(m), mp.mpf(s)
        a = m / s
        cdf, pdf = mp.ncdf(a), mp.npdf(a)
        mean = m * cdf + s * pdf
        var = (m * m + s * s) * cdf + m * s * pdf - mean**2
        return (mean, var, cdf, pdf, 2 * mean * mp.ncdf(-a),
                2 * s * (cdf - pdf * (a * cdf + pdf)))


@pytest.mark.parametrize(("m", "s"), [(-30.0, 1.0), (30.0, 1.0), (0.25, 1e-8), (-1e-3, 1e3)])
def test_relu_against_closed_form_in_the_tails(m, s):
    got = oracle.moments("relu", m, s, derivatives=True)
    expected = _relu_closed_form(m, s)
    for value, reference in zip(got, expected, strict=True):
        # 30 working digits, rescaled integrals: 1e-25 relative leaves 5 digits of margin
        # while still catching any absolute-tolerance failure (those lose everything).
        assert _relative(value, reference) <= 1e-25


def test_gelu_mean_against_closed_form():
    # GELU: mu = m Phi(h) + s^2 phi(h) / t0, t0 = sqrt(1 + s^2), h = m / t0.
    for m, s in [(-30.0, 1.0), (-10.0, 3.0), (3.0, 1e3)]:
        with mp.workdps(100):
            t0 = mp.sqrt(1 + mp.mpf(s) ** 2)
            h = mp.mpf(m) / t0
            expected = m * mp.ncdf(h) + s**2 * mp.npdf(h) / t0
        assert _relative(oracle.moments("gelu", m, s)[0], expected) <= 1e-25  # as above


@pytest.mark.parametrize(("m", "s"), [(40.0, 1.0), (30.0, 1.0)])
def test_gelu_right_tail_derivatives(m, s):
    # Far right, f' = 1 - Phi(-z) + z phi(z) with Phi(-z) below the working precision: the
    # oracle must form f' - f'(m) from the residual gelu(-z) (before the fix the table had
    # dmean_ds = -1.4e-185 at m = 40, s = 1 instead of -2.1529e-172, and dvar_dm 100 % off).
    # dmean_ds = s E f'' = s phi(h) (2 + s^2 - h^2) / t0^3 (closed form, 100 digits), and by
    # the reflection gelu(z) = z + gelu(-z), dvar_dm(m) = 2 s dmean_ds - dvar_dm(-m), where
    # |dvar_dm(-m)| = 2 |Cov(f, f')| at -m is below e^(-m^2 / (2 + 4 s^2)) ~ 1e-130 (m = 30),
    # under 1e-30 of 2 s dmean_ds.
    _, _, _, dmean_ds, dvar_dm, _ = oracle.moments("gelu", m, s, derivatives=True)
    with mp.workdps(100):
        mm, ss = mp.mpf(m), mp.mpf(s)
        t0 = mp.sqrt(1 + ss**2)
        h = mm / t0
        expected = ss * mp.npdf(h) * (2 + ss**2 - h**2) / t0**3
        expected_dvar_dm = 2 * ss * expected
    # 1e-25 as for the ReLU tails above; a lost tail term is an O(1) relative error.
    assert _relative(dmean_ds, expected) <= 1e-25
    assert _relative(dvar_dm, expected_dvar_dm) <= 1e-25


@pytest.mark.parametrize("name", ["gelu_tanh", "gelu", "silu"])
def test_reflection_identity_for_derivatives(name):
    # f(z) = z + f(-z) for these activations, so mean(m) = m + mean(-m) and, with
    # Z' = -m + s X, var(m) = s^2 (1 - 2 E f'(Z')) + var(-m). Differentiating:
    #   dmean_dm(m) = 1 - dmean_dm(-m),   dmean_ds(m) = dmean_ds(-m),
    #   dvar_dm(m) = 2 s dmean_ds(-m) - dvar_dm(-m)   (d/dm E f'(Z') = E f''(Z') = dmean_ds / s).
    # At m = -39.7 nothing rounds (every term is small); at m = +39.7 f'(z) = 1 - (tiny) and
    # the tiny part (1e-225 for gelu_tanh, e^(-0.07 z^3)) is below the working precision
    # unless the oracle integrates the reflected residual f(-z) (before the fix:
    # gelu_tanh dmean_ds(39.7) = -3.0e-226 against -7.93e-225).
    m, s = 39.7, 1.0
    right = oracle.moments(name, m, s, derivatives=True, dps=16)
    left = oracle.moments(name, -m, s, derivatives=True, dps=16)
    mean_r, var_r, dmean_dm_r, dmean_ds_r, dvar_dm_r, _ = right
    mean_l, var_l, dmean_dm_l, dmean_ds_l, dvar_dm_l, _ = left
    # The tiny tails: each side is its own 16-digit computation, so 1e-13 leaves 3 digits of
    # margin while a lost tail term is an O(1) relative error.
    assert _relative(dmean_ds_r, dmean_ds_l) <= 1e-13
    assert _relative(dvar_dm_r, 2 * s * dmean_ds_l - dvar_dm_l) <= 1e-13
    # The O(1) outputs carry the tail only beyond float64 for gelu and gelu_tanh (1e-170,
    # 1e-226) and at 1e-16 for silu: both sides agree to a few units of 1e-16 (4e-16 allows
    # two roundings of the 16-digit results and of the sums formed here).
    with mp.workdps(40):
        assert _relative(mean_r, m + mean_l) <= 4e-16
        assert _relative(dmean_dm_r, 1 - dmean_dm_l) <= 4e-16
        assert _relative(var_r, s**2 * (1 - 2 * dmean_dm_l) + var_l) <= 4e-16


def test_identity_is_exact_even_for_tiny_means():
    # mean = m and var = s^2 exactly; m = -1e-300 with s = 1e-8 would be lost to quad's
    # absolute tolerance without the tangent subtraction.
    mean, var, dm, ds, dvm, dvs = oracle.moments("identity", -1e-300, 1e-8, derivatives=True)
    with mp.workdps(50):  # the references themselves at more than 30 digits
        assert _relative(mean, mp.mpf(-1e-300)) <= 1e-25
        assert _relative(var, mp.mpf(1e-8) ** 2) <= 1e-25
        assert _relative(dm, 1) <= 1e-25 and abs(dvm) <= 1e-40
        assert _relative(dvs, 2 * mp.mpf(1e-8)) <= 1e-25  # d s^2 / ds = 2 s
        assert abs(ds) <= 1e-40  # d m / ds = 0


@pytest.mark.parametrize(("name", "m", "s"), [("tanh", 5.0, 0.05), ("elu", -3.0, 5.0),
                                              ("gelu_tanh", -2.0, 0.7)])
def test_precision_is_self_consistent(name, m, s):
    low = oracle.moments(name, m, s, derivatives=True, dps=30)
    high = oracle.moments(name, m, s, derivatives=True, dps=40)
    scale_mean = abs(high[0]) + mp.sqrt(high[1])
    assert abs(low[0] - high[0]) <= 1e-26 * scale_mean  # 30 digits, 4 spare
    for value, reference in zip(low[1:], high[1:], strict=True):
        assert _relative(value, reference) <= 1e-26


@pytest.mark.parametrize("name", oracle.ACTIVATIONS)
def test_own_activations_agree_with_pnref(name):
    # Two independent implementations (mpmath here, NumPy in pnref.activations) of the
    # same definitions. float64 rounding of f and f' is a few ulps; 1e-14 relative to
    # max(|f|, 1) allows for the different evaluation orders.
    act = pnref.activation(name)
    f, df, _ = oracle.activation_functions(name)
    z = np.linspace(-8.0, 8.0, 33) + 0.0123
    for value, derivative, point in zip(act.f(z), act.df(z), z, strict=True):
        with mp.workdps(30):
            assert abs(value - float(f(mp.mpf(point)))) <= 1e-14 * max(abs(value), 1.0)
            assert abs(derivative - float(df(mp.mpf(point)))) <= 1e-14 * max(abs(derivative), 1)


def test_bad_arguments():
    with pytest.raises(ValueError, match="s must be > 0"):
        oracle.moments("relu", 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown activation"):
        oracle.moments("relu6", 0.0, 1.0)
    with pytest.raises(ValueError, match="dps"):
        oracle.moments("relu", 0.0, 1.0, dps=10)


# ------------------------------------------------------------------- committed table


def test_table_shape_and_coverage():
    rows = oracle.load_table(TABLE)
    names = {row["activation"] for row in rows}
    assert names == set(oracle.ACTIVATIONS)
    for name in ("identity", "relu", "leaky_relu", "elu", "gelu"):
        selected = [r for r in rows if r["activation"] == name]
        assert max(abs(r["m"] / r["s"]) for r in selected) >= 40
        assert min(r["s"] for r in selected) <= 1e-8 and max(r["s"] for r in selected) >= 1e3
    for row in rows:
        assert row["var"] >= 0.0 and row["s"] > 0.0


def test_table_rows_recomputed_live():
    # A sample of rows recomputed live at the table's 30 digits, so the table cannot drift
    # from the oracle unnoticed. The sample is seeded (CI must be reproducible); set
    # PNREF_ORACLE_SEED to check other rows.
    rows = oracle.load_table(TABLE)
    seed = int(os.environ.get("PNREF_ORACLE_SEED", "0"))
    rng = np.random.default_rng(seed)
    for index in rng.choice(len(rows), size=4, replace=False):
        row = rows[index]
        kwargs = {} if row["alpha"] is None else {"alpha": row["alpha"]}
        fresh = oracle.moments_float(row["activation"], row["m"], row["s"], derivatives=True,
                                     **kwargs)
        stored = [row[c] for c in oracle.TABLE_COLUMNS[4:]]
        # Same computation rounded once to float64: identical up to 1 ulp (mpmath
        # releases may change the last of 30 digits, which can move a rounding).
        for value, reference in zip(fresh, stored, strict=True):
            assert abs(value - reference) <= 2.3e-16 * abs(reference), (seed, row, value)


# ------------------------------------------ proof on the closed forms at 300+ digits


def _owens_t(h, a):
    """Owen's T(h, a) = (1/2 pi) int_0^a exp(-h^2 (1 + x^2) / 2) / (1 + x^2) dx (smooth,
    finite range: mpmath's quadrature at the working precision)."""
    return mp.quad(lambda x: mp.exp(-h * h * (1 + x * x) / 2) / (1 + x * x), [0, a]) / (2 * mp.pi)


def _closed_mean_var(name, m, s, alpha):
    """Closed-form mean and variance (docs/proxy-moments.md, "Closed forms"), in mpmath.

    ReLU: mu = m Phi(a) + s phi(a), E2 = (m^2 + s^2) Phi(a) + m s phi(a), a = m/s;
    leaky: alpha m + (1 - alpha) mu_relu, s^2 [alpha^2 + 2 alpha (1 - alpha) Phi(a)]
    + (1 - alpha)^2 v_relu; ELU: P1 = e^(m + s^2/2) Phi(-a - s), P2 = e^(2m + 2s^2)
    Phi(-a - 2s), mu = mu_relu + alpha (P1 - Phi(-a)), E2 = E2_relu + alpha^2 (P2 - 2 P1 +
    Phi(-a)); GELU: mu = m Phi(h) + s^2 phi(h) / t0, E2 = (m^2 + s^2) C0 + 2 s^2 (m B0 +
    B1) with Owen's T in C0. The variance is E2 - mu^2: at enough digits the cancellation
    costs nothing (the caller checks that two precisions agree).
    """
    a = m / s
    cdf, pdf = mp.ncdf(a), mp.npdf(a)
    mu_relu = m * cdf + s * pdf
    e2_relu = (m * m + s * s) * cdf + m * s * pdf
    if name == "relu":
        return mu_relu, e2_relu - mu_relu**2
    al = mp.mpf(repr(alpha)) if alpha is not None else None
    if name == "leaky_relu":
        return (al * m + (1 - al) * mu_relu,
                s * s * (al**2 + 2 * al * (1 - al) * cdf) + (1 - al) ** 2 * (e2_relu - mu_relu**2))
    if name == "elu":
        p1 = mp.exp(m + s * s / 2) * mp.ncdf(-a - s)
        p2 = mp.exp(2 * m + 2 * s * s) * mp.ncdf(-a - 2 * s)
        mean = mu_relu + al * (p1 - mp.ncdf(-a))
        return mean, e2_relu + al**2 * (p2 - 2 * p1 + mp.ncdf(-a)) - mean**2
    t0, t1 = mp.sqrt(1 + s * s), mp.sqrt(1 + 2 * s * s)
    h = m / t0
    h2 = h / t1
    mean = m * mp.ncdf(h) + s * s * mp.npdf(h) / t0
    c0 = mp.ncdf(h) - 2 * _owens_t(h, 1 / t1)
    b0 = (mp.npdf(h) / t0) * mp.ncdf(h2)
    b1 = (mp.npdf(h) / t0) * ((m / t0**2) * mp.ncdf(h2) + s * s * mp.npdf(h2) / (t0 * t1))
    return mean, (m * m + s * s) * c0 + 2 * s * s * (m * b0 + b1) - mean**2


def _closed_form(name, m, s, alpha, derivatives):
    """Closed forms (derivatives by mpmath's numerical differentiation of them) at 300
    digits, doubled until two successive precisions agree to 1e-60 in every output."""
    previous, dps = None, 300
    while True:
        with mp.workdps(dps):
            mm, ss = mp.mpf(m), mp.mpf(s)
            values = list(_closed_mean_var(name, mm, ss, alpha))
            if derivatives:
                for k in (0, 1):  # d/dm then d/ds of the mean, then of the variance
                    values.append(mp.diff(
                        lambda x, k=k, ss=ss: _closed_mean_var(name, x, ss, alpha)[k], mm))
                    values.append(mp.diff(
                        lambda y, k=k, mm=mm: _closed_mean_var(name, mm, y, alpha)[k], ss))
            if previous is not None and all(
                    abs(v - p) <= mp.mpf(10) ** -60 * abs(v)
                    for v, p in zip(values, previous, strict=True)):
                return values
        previous, dps = values, 2 * dps
        assert dps <= 2400, "closed form did not settle"


# (activation, alpha, m, s, with derivatives): m/s = -40 (variances of 1e-353 and 1e-35,
# the latter riding on an O(1) mean; d(mean)/ds = phi(40) = 1.5e-348), s = 1e-8 and s = 1e3.
# (ELU alpha = 2 at m/s = +40, d(var)/dm = -2.8e-348 beside a variance of 1, and ELU
# alpha = 0.5 at m = -4e4, s = 1e3 were checked the same way once, 70-80 s each: too slow
# for the suite.)
PROOF_POINTS = [
    ("relu", None, -40.0, 1.0, True),
    ("leaky_relu", 0.2, -40.0, 1.0, False),
    ("elu", 1.0, -40.0, 1.0, True),
    ("relu", None, -4e4, 1e3, True),
    ("elu", 1.0, -4e-7, 1e-8, False),
    ("gelu", None, -40.0, 1.0, False),
    ("gelu", None, 3e-8, 1e-8, False),
]


@pytest.mark.parametrize(("name", "alpha", "m", "s", "derivatives"), PROOF_POINTS)
def test_oracle_against_closed_forms_at_300_digits(name, alpha, m, s, derivatives):
    kwargs = {} if alpha is None else {"alpha": alpha}
    got = oracle.moments(name, m, s, derivatives=derivatives, **kwargs)
    expected = _closed_form(name, m, s, alpha, derivatives)
    # The oracle works at 30 digits plus its adaptive margin; 1e-25 relative leaves 5 digits
    # of slack and is still 10^20 below any failure mode (a lost tail or a cancelled
    # variance is an O(1) relative error), for magnitudes down to 1e-353.
    for k, (value, reference) in enumerate(zip(got, expected, strict=True)):
        assert _relative(value, reference) <= 1e-25, (k, value, reference)


def test_tanh_far_left_needs_and_gets_more_digits():
    # tanh at m = -40: f = -1 + 2 e^(2 Z) and var = 3.8e-66, so f - mean loses 33 digits.
    # Before the adaptive precision the default 30-digit oracle had var 2e-17 and d(var)
    # 1e-11 relative wrong. The reference is the same oracle at 45 digits (the margins
    # are independent: 45 + 10 + 33 working digits against 30 + 10 + 33).
    low = oracle.moments("tanh", -40.0, 1.0, derivatives=True)
    high = oracle.moments("tanh", -40.0, 1.0, derivatives=True, dps=45)
    for value, reference in zip(low, high, strict=True):
        assert _relative(value, reference) <= 1e-25  # as above


def test_estimator_exact_zeros_settle_to_zero():
    """Odd sums over the symmetric official points are exactly 0 in exact arithmetic.

    For sigmoid at m = 0, f - 1/2 is odd and f' even in u, so d(mean)/ds and d(var)/dm
    vanish; at every precision they are only rounding noise (which never agrees
    relatively between two precisions), and the oracle must return 0, not give up.
    """
    from pnref.moments import quantile

    points = np.array(quantile.points(200))
    assert np.array_equal(points, -points[::-1])  # symmetric to the last bit
    values = oracle.estimator_moments("sigmoid", 0.0, 1.0, points)
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds = values
    assert mean == mp.mpf("0.5") and dmean_ds == 0 and dvar_dm == 0
    # the non-zero outputs are unaffected: var against the same sum written out here
    with mp.workdps(60):
        deviations = [mp.mpf(1) / (1 + mp.exp(-mp.mpf(u))) - mp.mpf("0.5") for u in points]
        want = mp.fsum(d * d for d in deviations) / len(points)
    assert abs(var - want) <= mp.mpf(10) ** -45 * want
    assert dmean_dm > 0 and dvar_ds > 0


@pytest.mark.parametrize(("name", "value_at_0"), [("tanh", 0.0), ("sigmoid", 0.5),
                                                  ("identity", 0.0)])
def test_point_symmetric_outputs_are_exact_at_m_zero(name, value_at_0):
    """f(-z) = 2 f(0) - f(z): at m = 0 the mean is f(0), d(mean)/ds = d(var)/dm = 0.

    A quadrature of the odd integrand would leave rounding noise (tanh at s = 1000 gave
    a mean of 3e-31), which a relative comparison would then hold against an exact 0.
    """
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds = oracle.moments(
        name, 0.0, 1000.0, derivatives=True, dps=16)
    assert mean == value_at_0 and dmean_ds == 0 and dvar_dm == 0
    assert var > 0 and dmean_dm > 0 and dvar_ds > 0
    # off m = 0 nothing is forced: the odd outputs take their (small) computed values
    _, _, _, dmean_ds, dvar_dm, _ = oracle.moments(name, 1e-3, 1.0, derivatives=True, dps=16)
    assert (dvar_dm != 0) == (name != "identity")
