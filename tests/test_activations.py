"""Tests for pnref.activations: values, derivatives, stability, kinks, errors.

References used:
* an independent ``autograd.numpy`` re-implementation of each activation in its textbook form
  (derivatives by autograd, so they share no code with the hand-written ones);
* mpmath at 40 digits for the function values (derivatives by mpmath's own high-precision
  numerical differentiation), which also checks the stable forms far out in the tails;
* central finite differences in float64.
"""

from __future__ import annotations

import warnings

import autograd.numpy as anp
import mpmath as mp
import numpy as np
import pytest
from autograd import elementwise_grad
from autograd.scipy.special import erf as a_erf
from hypothesis import given, settings
from hypothesis import strategies as st

import pnref
from pnref.activations import ACTIVATIONS, Activation, activation

RNG_SEED = 20211102

# Every (name, params) combination exercised; alpha values cover defaults, a mid value and
# the alpha = 1 edge (leaky_relu becomes the identity, elu loses its kink).
CASES = [
    ("identity", {}),
    ("relu", {}),
    ("leaky_relu", {}),
    ("leaky_relu", {"alpha": 0.2}),
    ("elu", {}),
    ("elu", {"alpha": 0.5}),
    ("gelu", {}),
    ("gelu_tanh", {}),
    ("silu", {}),
    ("softplus", {}),
    ("tanh", {}),
    ("sigmoid", {}),
]
CASE_IDS = [n + "".join(f"-{k}{v}" for k, v in p.items()) for n, p in CASES]


# --------------------------------------------------------------------- autograd references
def _autograd_f(name: str, params: dict):
    """Plain textbook forms in autograd.numpy (fine for |z| <= 8, where they are used)."""
    alpha = params.get("alpha")
    c = anp.sqrt(2.0 / anp.pi)
    forms = {
        "identity": lambda z: z * 1.0,
        "relu": lambda z: anp.where(z > 0, z, 0.0 * z),
        "leaky_relu": lambda z: anp.where(z > 0, z, alpha * z),
        "elu": lambda z: anp.where(z > 0, z, alpha * (anp.exp(z) - 1.0)),
        "gelu": lambda z: 0.5 * z * (1.0 + a_erf(z / anp.sqrt(2.0))),
        "gelu_tanh": lambda z: 0.5 * z * (1.0 + anp.tanh(c * (z + 0.044715 * z**3))),
        "silu": lambda z: z / (1.0 + anp.exp(-z)),
        "softplus": lambda z: anp.log(1.0 + anp.exp(z)),
        "tanh": lambda z: anp.tanh(z),
        "sigmoid": lambda z: 1.0 / (1.0 + anp.exp(-z)),
    }
    return forms[name]


def _mp_f(name: str, params: dict):
    """The activations in mpmath (no stability tricks needed at 40 digits)."""
    alpha = mp.mpf(params["alpha"]) if "alpha" in params else None
    forms = {
        "identity": lambda z: z,
        "relu": lambda z: z if z > 0 else mp.mpf(0),
        "leaky_relu": lambda z: z if z > 0 else alpha * z,
        "elu": lambda z: z if z > 0 else alpha * mp.expm1(z),
        "gelu": lambda z: z * mp.ncdf(z),
        # z (1 + tanh u) / 2 written as z / (1 + exp(-2u)) (the same number; at 40 digits
        # 1 + tanh u would itself round to 0 for u < -46)
        "gelu_tanh": lambda z: z
        / (1 + mp.exp(-2 * mp.sqrt(2 / mp.pi) * (z + mp.mpf("0.044715") * z**3))),
        "silu": lambda z: z / (1 + mp.exp(-z)),
        "softplus": lambda z: mp.log1p(mp.exp(z)),
        "tanh": mp.tanh,
        "sigmoid": lambda z: 1 / (1 + mp.exp(-z)),
    }
    return forms[name]


def _random_points(n: int = 200, scale: float = 3.0) -> np.ndarray:
    """Random points away from 0 (|z| >= 1e-3) so no finite difference straddles a kink."""
    rng = np.random.default_rng(RNG_SEED)
    z = rng.normal(0.0, scale, n)
    return np.where(np.abs(z) < 1e-3, 0.5, z)


# --------------------------------------------------------------------- values and derivatives
# autograd warns that the second derivative of a piecewise-linear function is constant.
@pytest.mark.filterwarnings("ignore:Output seems independent of input")
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_matches_autograd_reference(name, params):
    act = activation(name, **params)
    ref = _autograd_f(name, act.params)
    z = _random_points()
    # rtol 1e-13 / atol 1e-15: both sides are float64 evaluations of the same function by
    # different formulas (a few ulp each); |z| <= ~10 keeps the textbook forms accurate.
    np.testing.assert_allclose(act.f(z), ref(z), rtol=1e-13, atol=1e-15)
    # Derivatives: autograd chains the textbook form's operations (more roundings per value,
    # e.g. softplus'' as exp(z) / (1 + exp(z))^2 by the quotient rule). Measured worst
    # 5.3e-15 for df (gelu_tanh) and 1.5e-14 for d2f (softplus) relative to |ref| + atol/rtol;
    # rtol 1e-12 / 1e-11 leave two to three orders of margin, far below a wrong formula.
    np.testing.assert_allclose(act.df(z), elementwise_grad(ref)(z), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(
        act.d2f(z), elementwise_grad(elementwise_grad(ref))(z), rtol=1e-11, atol=1e-13
    )


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_derivatives_match_central_differences(name, params):
    act = activation(name, **params)
    z = _random_points(100)
    # Step h = 1e-5: central difference error is h^2 |f'''| / 6 ~ 2e-11 (|f'''| <= ~1 here,
    # larger only for gelu_tanh's cubic, still < 10) plus rounding eps |f| / h ~ 1e-10 for
    # |f| <= 10; points are >= 1e-3 from the kink, so no difference straddles it.
    h = 1e-5
    fd1 = (act.f(z + h) - act.f(z - h)) / (2 * h)
    fd2 = (act.df(z + h) - act.df(z - h)) / (2 * h)
    np.testing.assert_allclose(act.df(z), fd1, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(act.d2f(z), fd2, rtol=1e-8, atol=1e-8)


def _mp_reference(f_mp, x: float, order: int, ours: float) -> float:
    """f^(order)(x) in mpmath, at a precision that covers the magnitude ratio |f| / |f^(k)|.

    mp.diff differences values of f, so it loses log10(|f| / |f^(k)|) digits (tanh' at 35 is
    4e-31 while tanh is 1). Our own float64 value only sets the working precision; were it
    wrong by orders of magnitude, the reference would be garbage and the comparison fail.
    Where ours underflowed to 0, 330 extra digits certify that the truth is below 1e-300.
    """
    with mp.workdps(40):
        f_abs = abs(f_mp(mp.mpf(x)))
    scale = max(f_abs, mp.mpf(1e-300))
    lost = 330 if ours == 0.0 else max(0, int(mp.log10(scale / abs(ours))))
    with mp.workdps(40 + lost):
        if order == 0:
            return float(f_mp(mp.mpf(x)))
        return float(mp.diff(f_mp, mp.mpf(x), order))


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_matches_mpmath_far_into_the_tails(name, params):
    """Values and derivatives over |z| <= 36.5 (z != 0), where textbook forms fail."""
    act = activation(name, **params)
    f_mp = _mp_f(name, act.params)
    z = np.concatenate([np.linspace(-36.5, 35.5, 37), [-0.3, 0.7, 1e-6, -1e-6]])
    # rtol 2e-14: a handful of ulp for the stable forms; textbook forms fail this by orders
    # of magnitude in the tails (gelu_tanh as z (1 + tanh u)/2 returns 0 at z = -10,
    # 1 - tanh^2 returns 0 at z = 20, sigma (1 - sigma) loses everything at z = 40).
    # gelu_tanh: u = sqrt(2/pi)(z + 0.044715 z^3) is itself rounded (relative eps), which
    # moves exp(2u) by eps |2u| relative: the function's own conditioning, added here.
    # atol 1e-300 only accepts values that are subnormal in truth (their relative accuracy
    # is limited by the format itself).
    rtol = np.full(z.shape, 2e-14)
    if name == "gelu_tanh":
        u = np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)
        rtol += 2 * np.finfo(float).eps * np.abs(2 * u)
    for order, fn in enumerate((act.f, act.df, act.d2f)):
        ours = fn(z)
        ref = np.array([_mp_reference(f_mp, x, order, o) for x, o in zip(z, ours, strict=True)])
        # d2f gets 5x the tolerance: a few more roundings (products of three factors).
        tol = rtol * (5 if order == 2 else 1)
        bad = np.abs(ours - ref) > tol * np.abs(ref) + 1e-300
        assert not np.any(bad), (order, z[bad], ours[bad], ref[bad])


@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_large_arguments_no_warnings_and_correct_limits(name, params):
    act = activation(name, **params)
    z = np.array([-np.inf, -1e308, -1e3, 1e3, 1e308, np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any overflow / invalid RuntimeWarning fails
        f, df, d2f = act.f(z), act.df(z), act.d2f(z)
    alpha = act.params.get("alpha")
    # Limits as z -> -inf (and the value at -1e3) and as z -> +inf, derived per activation.
    left_f = {
        "identity": -np.inf, "relu": 0.0, "leaky_relu": -np.inf,
        "elu": -alpha if alpha is not None else None,
        "gelu": 0.0, "gelu_tanh": 0.0, "silu": 0.0, "softplus": 0.0, "tanh": -1.0,
        "sigmoid": 0.0,
    }[name]  # fmt: skip
    right_f = {"tanh": 1.0, "sigmoid": 1.0}.get(name, np.inf)
    left_df = {"identity": 1.0, "leaky_relu": alpha}.get(name, 0.0)
    right_df = {"tanh": 0.0, "sigmoid": 0.0}.get(name, 1.0)
    assert np.all(np.isfinite(f[1:-1]) | (np.abs(z[1:-1]) > 1e300))
    assert f[0] == left_f and f[-1] == right_f
    if name == "leaky_relu":
        assert f[2] == alpha * -1e3
    elif name != "identity":
        assert f[2] == pytest.approx(left_f, abs=1e-300)
    assert f[3] == pytest.approx(min(right_f, 1e3), rel=1e-15)  # exact (or 1) at 1e3
    np.testing.assert_array_equal(df[[0, 1, 2]], left_df)
    np.testing.assert_array_equal(df[[3, 4, 5]], right_df)
    np.testing.assert_array_equal(d2f, 0.0)  # every d2f decays (or is 0) at |z| >= 1e3


def test_gelu_tanh_does_not_cancel_in_the_left_tail():
    act = activation("gelu_tanh")
    z = np.array([-6.0, -8.0, -10.0])
    naive = 0.5 * z * (1.0 + np.tanh(np.sqrt(2 / np.pi) * (z + 0.044715 * z**3)))
    with mp.workdps(40):
        f_mp = _mp_f("gelu_tanh", {})
        ref = np.array([float(f_mp(mp.mpf(x))) for x in z])
    # the textbook form keeps 6 digits at z = -6 (measured 2.7e-7) and none at z = -10 ...
    assert abs(naive[0] / ref[0] - 1) > 1e-7 and naive[2] == 0.0
    np.testing.assert_allclose(act.f(z), ref, rtol=1e-14)  # ... the sigmoid form nothing


# --------------------------------------------------------------------- kinks and jumps
@pytest.mark.parametrize(("name", "params"), CASES, ids=CASE_IDS)
def test_kinks_and_jumps_consistent_with_df(name, params):
    act = activation(name, **params)
    assert len(act.kinks) == len(act.jumps)
    delta = 1e-12
    for kink, jump in zip(act.kinks, act.jumps, strict=True):
        assert jump != 0.0
        k = np.array([kink])
        left, right = act.df(k - delta)[0], act.df(k + delta)[0]
        # atol 1e-11: df is Lipschitz on each side (|f''| <= 1), so moving delta changes it
        # by at most 1e-12.
        assert right - left == pytest.approx(jump, abs=1e-11)
        assert act.df(k)[0] == pytest.approx(left, abs=1e-11)  # left derivative at the kink
        assert act.f(k)[0] == pytest.approx(act.f(k + delta)[0], abs=1e-11)  # f continuous
    # Away from declared kinks, df is continuous: check a fine grid for jumps larger than
    # the grid step times max |f''| (<= 1 for every activation here except gelu_tanh: 2).
    z = np.linspace(-4, 4, 80001)  # step 1e-4; includes 0
    steps = np.abs(np.diff(act.df(z)))
    undeclared = steps > 1e-3
    kink_cells = np.zeros_like(undeclared)
    for kink in act.kinks:
        kink_cells |= (z[:-1] <= kink) & (kink <= z[1:])
    assert not np.any(undeclared & ~kink_cells)


def test_relu_contract_example():
    relu = activation("relu")
    assert relu.kinks == (0.0,) and relu.jumps == (1.0,)
    assert relu.df(np.array([0.0]))[0] == 0.0  # left derivative, as PyTorch's backward
    assert relu.d2f(np.array([0.0, 1.0]))[1] == 0.0
    elu = activation("elu", alpha=0.5)
    assert elu.kinks == (0.0,) and elu.jumps == (0.5,)
    assert elu.df(np.array([0.0]))[0] == 0.5
    assert activation("elu").kinks == ()  # alpha = 1: f' continuous (1 on both sides)
    assert activation("leaky_relu", alpha=1.0).kinks == ()


# --------------------------------------------------------------------- invariances
@settings(max_examples=40)
@given(st.floats(min_value=-700.0, max_value=700.0, allow_nan=False))
def test_reflection_identities(x):
    z = np.array([x, -x])
    # relu(z) - relu(-z) = z and gelu(z) - gelu(-z) = z (Phi(z) + Phi(-z) = 1);
    # softplus(z) - softplus(-z) = z; sigmoid(z) + sigmoid(-z) = 1; tanh odd.
    # Tolerances: a few ulp of the largest term involved.
    relu, gelu = activation("relu").f(z), activation("gelu").f(z)
    assert relu[0] - relu[1] == x
    assert gelu[0] - gelu[1] == pytest.approx(x, rel=1e-15, abs=1e-300)
    sp = activation("softplus").f(z)
    assert sp[0] - sp[1] == pytest.approx(x, rel=4e-16, abs=2e-16)
    sig = activation("sigmoid").f(z)
    assert sig[0] + sig[1] == pytest.approx(1.0, abs=2.3e-16)
    th = activation("tanh").f(z)
    assert th[0] == -th[1]


@settings(max_examples=40)
@given(st.floats(min_value=-50.0, max_value=50.0, allow_nan=False))
def test_silu_and_softplus_relations(x):
    z = np.array([x])
    sig = activation("sigmoid").f(z)[0]
    # silu = z sigmoid(z) and softplus' = sigmoid, the same float operations: exact.
    assert activation("silu").f(z)[0] == x * sig
    assert activation("softplus").df(z)[0] == sig


# --------------------------------------------------------------------- API and errors
def test_names_and_exports():
    assert ACTIVATIONS == (
        "identity", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu",
        "softplus", "tanh", "sigmoid",
    )  # fmt: skip
    assert pnref.activation is activation and pnref.Activation is Activation
    for name in ACTIVATIONS:
        assert activation(name).name == name
    assert activation("swish") == activation("silu")
    assert activation("leaky_relu").params == {"alpha": 0.01}
    assert activation("elu").params == {"alpha": 1.0}
    assert activation("leaky_relu", alpha=0.01) == activation("leaky_relu")
    assert activation("leaky_relu", alpha=0.1) != activation("leaky_relu")
    assert len({activation("relu"), activation("relu")}) == 1  # hashable
    assert repr(activation("elu", alpha=0.5)) == "activation('elu', alpha=0.5)"


def test_instance_returned_as_is():
    act = activation("elu", alpha=0.3)
    assert activation(act) is act
    with pytest.raises(TypeError, match="cannot be given together"):
        activation(act, alpha=0.1)


def test_unknown_name_lists_known_ones():
    with pytest.raises(ValueError, match="unknown activation 'mish'") as info:
        activation("mish")
    for name in ACTIVATIONS:
        assert name in str(info.value)
    with pytest.raises(TypeError, match="name must be a str"):
        activation(3)


@pytest.mark.parametrize(
    ("name", "params", "error", "match"),
    [
        ("relu", {"alpha": 0.1}, TypeError, "unexpected parameter.*alpha.*no parameters"),
        ("elu", {"beta": 1.0}, TypeError, "unexpected parameter.*beta.*accepts: alpha"),
        ("leaky_relu", {"alpha": 1.5}, ValueError, "0 <= alpha <= 1"),
        ("leaky_relu", {"alpha": -0.1}, ValueError, "0 <= alpha <= 1"),
        ("elu", {"alpha": -1.0}, ValueError, "alpha must be >= 0"),
        ("elu", {"alpha": float("inf")}, ValueError, "alpha must be finite"),
        ("elu", {"alpha": "1"}, TypeError, "alpha must be a real number"),
        ("elu", {"alpha": True}, TypeError, "alpha must be a real number"),
    ],
)
def test_invalid_parameters(name, params, error, match):
    with pytest.raises(error, match=match):
        activation(name, **params)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_dtype_nan_and_type_errors(name):
    act = activation(name)
    z32 = np.array([-2.0, 0.5, np.nan], dtype=np.float32)
    for fn in (act.f, act.df, act.d2f):
        out = fn(z32)
        assert out.dtype == np.float32
        assert np.isnan(out[2])  # NaN propagates through every piece
        # float32 result = float64 evaluation rounded once: within half an ulp of float32.
        np.testing.assert_allclose(out[:2], fn(z32[:2].astype(np.float64)), rtol=6e-8, atol=0)
    with pytest.raises(TypeError, match="z must have a real floating dtype"):
        act.f(np.array([1, 2]))
