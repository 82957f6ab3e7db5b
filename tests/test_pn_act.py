"""Tests for pnref.pn_act: act, pn_act and their hand-derived VJPs.

Three independent references:

* a plain ``autograd.numpy`` composition of the same math (below), differentiated by HIPS
  autograd: the quantile estimator is a finite sum autograd can differentiate directly;
* central finite differences in float64 for every argument, every method of the proxy
  moments and several activations, in both layouts;
* properties with a derivation: identity activation, Normal data, gamma = 0, the official
  reference values, reparametrization invariance.
"""

from __future__ import annotations

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import erf as anp_erf
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import erfinv

from pnref.activations import activation as make_activation
from pnref.moments import proxy_moments
from pnref.pn_act import act, act_vjp, pn_act, pn_act_vjp

F64_EPS = np.finfo(np.float64).eps
LEAKY_ALPHA = 0.01  # pnref.activation("leaky_relu") default slope
PARAM_NAMES = ("gamma", "beta", "gamma_tilde", "beta_tilde")

# ---------------------------------------------------------------------------
# Plain autograd.numpy reference (tests only), channels-first (N, C, *spatial)
# ---------------------------------------------------------------------------


def anp_activation(name: str):
    """The activation written with autograd.numpy primitives."""
    if name == "identity":
        return lambda z: z
    if name == "relu":
        return lambda z: anp.where(z > 0.0, z, 0.0)
    if name == "leaky_relu":
        return lambda z: anp.where(z > 0.0, z, LEAKY_ALPHA * z)
    if name == "silu":
        return lambda z: z / (1.0 + anp.exp(-z))
    if name == "gelu":
        return lambda z: z * 0.5 * (1.0 + anp_erf(z / math.sqrt(2.0)))
    if name == "tanh":
        return anp.tanh
    raise KeyError(name)


def quantile_points(n: int) -> np.ndarray:
    """The official estimator's points u_i = sqrt(2) erfinv(2 (i + 1/2) / n - 1), in float64."""
    return math.sqrt(2.0) * erfinv(2.0 * (np.arange(n) + 0.5) / n - 1.0)


def anp_quantile_moments(phi, gamma, beta, gamma_tilde, beta_tilde, n: int):
    """Mean and biased variance over the n quantile points of phi(gamma * Y + beta)."""
    u = quantile_points(n)
    proxy = (1.0 + gamma_tilde)[:, None] * u[None, :] + beta_tilde[:, None]
    activated = phi(gamma[:, None] * proxy + beta[:, None])
    mean = anp.mean(activated, axis=1)
    var = anp.mean((activated - mean[:, None]) ** 2, axis=1)
    return mean, var


def channel_first_shape(ndim: int, channels: int) -> tuple[int, ...]:
    return (1, channels) + (1,) * (ndim - 2)


def anp_pn_act(y, gamma, beta, gamma_tilde, beta_tilde, phi, eps: float, n: int):
    """PN-Act on channels-first data with the quantile estimator, in autograd.numpy."""
    shape = channel_first_shape(y.ndim, y.shape[1])
    mean, var = anp_quantile_moments(phi, gamma, beta, gamma_tilde, beta_tilde, n)
    activated = phi(anp.reshape(gamma, shape) * y + anp.reshape(beta, shape))
    return (activated - anp.reshape(mean, shape)) / anp.sqrt(anp.reshape(var, shape) + eps)


def anp_act(y, gamma, beta, phi):
    shape = channel_first_shape(y.ndim, y.shape[1])
    return phi(anp.reshape(gamma, shape) * y + anp.reshape(beta, shape))


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def random_case(seed: int, shape=(2, 3, 4)):
    """Channels-first data, PN-Act parameters, a random cotangent.

    Channel 0 is near initialization, channel 1 has gamma < 0 and channel 2 has
    1 + gamma_tilde < 0, so the proxy's signed scale sigma = gamma (1 + gamma_tilde) takes
    both signs (the sign(sigma) factor of the moments path is exercised).
    """
    rng = np.random.default_rng(seed)
    channels = shape[1]
    y = rng.standard_normal(shape)
    params = {
        "gamma": 1.0 + 0.3 * rng.standard_normal(channels),
        "beta": 0.3 * rng.standard_normal(channels),
        "gamma_tilde": 0.2 * rng.standard_normal(channels),
        "beta_tilde": 0.3 * rng.standard_normal(channels),
    }
    if channels >= 3:
        params["gamma"][1] *= -1.0
        params["gamma_tilde"][2] -= 1.8
    dout = rng.standard_normal(shape)
    return y, params, dout


def to_layout(a: np.ndarray, axis: int) -> np.ndarray:
    """Channels-first array in the layout with the channel axis at ``axis``."""
    return a if axis == 1 else np.moveaxis(a, 1, -1)


def from_layout(a: np.ndarray, axis: int) -> np.ndarray:
    return a if axis == 1 else np.moveaxis(a, -1, 1)


def central_difference_vjp(f, args: list[np.ndarray], index: int, cotangent, step: float):
    """<cotangent, d f / d args[index][k]> for every element k, by central differences."""
    base = args[index]
    grad = np.empty_like(base)
    for k in np.ndindex(base.shape):
        shifted = []
        for sign in (1.0, -1.0):
            moved = base.copy()
            moved[k] += sign * step
            call_args = list(args)
            call_args[index] = moved
            shifted.append(f(*call_args))
        grad[k] = np.sum(cotangent * (shifted[0] - shifted[1])) / (2.0 * step)
    return grad


# Method -> (n passed, activations it is checked with). "exact" only where closed forms exist;
# Monte Carlo with 2000 draws (seeded by proxy_moments, seed 0) keeps the chance that one
# draw crosses the ReLU kink inside a finite-difference step negligible (about 2000 * 0.4 *
# 2e-6 = 2e-3 per perturbation).
METHOD_CASES = {
    "exact": (None, ("relu", "leaky_relu", "gelu")),
    "quadrature": (None, ("relu", "leaky_relu", "silu", "gelu", "tanh")),
    "quantile": (200, ("relu", "leaky_relu", "silu", "gelu", "tanh")),
    "montecarlo": (2000, ("relu", "leaky_relu", "silu", "gelu", "tanh")),
}
FD_CASES = [
    (method, name, axis)
    for method, (_, names) in METHOD_CASES.items()
    for name in names
    for axis in (1, -1)
]


# ---------------------------------------------------------------------------
# pn_act against the autograd.numpy reference (quantile estimator)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "silu", "gelu", "tanh", "identity"])
def test_pn_act_and_vjp_match_autograd_reference(name, axis):
    y, params, dout = random_case(seed=11)
    phi = anp_activation(name)
    values = [params[p] for p in PARAM_NAMES]

    expected = anp_pn_act(y, *values, phi, 0.03, 200)
    got = pn_act(to_layout(y, axis), *values, activation=name, axis=axis)
    # Same float64 math in a different summation order: a few ulp of O(1) outputs
    # (measured worst 1.3e-15).
    np.testing.assert_allclose(from_layout(got, axis), expected, rtol=2e-14, atol=2e-14)

    grads = pn_act_vjp(to_layout(dout, axis), to_layout(y, axis), *values,
                       activation=name, axis=axis)
    for index, grad in enumerate(grads):
        reference = autograd.grad(
            lambda *a, index=index: anp.sum(dout * anp_pn_act(*a, phi, 0.03, 200)), index
        )(y, *values)
        if index == 0:
            grad = from_layout(grad, axis)
        # Both are exact derivatives of the same float64 function; they differ by
        # summation order only. Parameter gradients sum ~24 terms of O(1), each a few ulp
        # (measured worst 2.2e-15 relative to 1 + |reference|).
        np.testing.assert_allclose(grad, reference, rtol=1e-13, atol=1e-13)


def test_pn_act_vjp_omits_absent_tilde_parameters():
    y, params, dout = random_case(seed=3)
    phi = anp_activation("silu")
    grads = pn_act_vjp(dout, y, params["gamma"], params["beta"], activation="silu")
    assert grads[3] is None and grads[4] is None
    zeros = np.zeros_like(params["gamma"])
    for index in range(3):
        # Absent tilde parameters are zeros that are not learned. Tolerance as above.
        reference = autograd.grad(
            lambda *a, index=index: anp.sum(dout * anp_pn_act(*a, zeros, zeros, phi, 0.03, 200)),
            index,
        )(y, params["gamma"], params["beta"])
        np.testing.assert_allclose(grads[index], reference, rtol=1e-13, atol=1e-13)


@settings(max_examples=40)
@given(seed=st.integers(0, 2**16), name=st.sampled_from(["relu", "leaky_relu", "silu", "tanh"]),
       spread=st.floats(0.1, 2.0))
def test_pn_act_vjp_matches_autograd_over_wide_parameters(seed, name, spread):
    # Parameters of either sign and up to a few units, where the proxy can sit far in an
    # activation's tail or have nearly zero variance (1 + gamma_tilde near 0).
    rng = np.random.default_rng(seed)
    y = rng.standard_normal((3, 4, 2))
    dout = rng.standard_normal(y.shape)
    values = [spread * rng.uniform(-2.0, 2.0, 4) for _ in PARAM_NAMES]
    phi = anp_activation(name)
    grads = pn_act_vjp(dout, y, *values, activation=name)
    for index, grad in enumerate(grads):
        reference = autograd.grad(
            lambda *a, index=index: anp.sum(dout * anp_pn_act(*a, phi, 0.03, 200)), index
        )(y, *values)
        # Summation order only, but inv_std reaches 1/sqrt(eps) = 5.8 and parameters reach
        # 4: 1e-12 relative to 1 + |reference|.
        np.testing.assert_allclose(grad, reference, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------
# pn_act_vjp against central finite differences, every method
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "name", "axis"), FD_CASES)
def test_pn_act_vjp_matches_finite_differences(method, name, axis):
    n = METHOD_CASES[method][0]
    y, params, dout = random_case(seed=5)
    y, dout = to_layout(y, axis), to_layout(dout, axis)
    args = [y] + [params[p] for p in PARAM_NAMES]

    def forward(*a):
        return pn_act(*a, activation=name, method=method, n=n, axis=axis)

    grads = pn_act_vjp(dout, *args, activation=name, method=method, n=n, axis=axis)
    step = 1e-6
    for index, grad in enumerate(grads):
        numeric = central_difference_vjp(forward, args, index, dout, step)
        # Central differences with h = 1e-6: truncation h^2 |f'''| ~ 1e-12; rounding
        # ~ eps * |sum dout * out| / h ~ 2e-16 * 5 / 1e-6 ~ 1e-9 (measured worst over all
        # cases: 5e-10). 1e-8 is 20x that and still 1e7 below a missing term (O(0.1)).
        scale = max(1.0, np.max(np.abs(numeric)))
        np.testing.assert_allclose(grad, numeric, rtol=0, atol=1e-8 * scale,
                                   err_msg=f"argument {index}")


# ---------------------------------------------------------------------------
# act and act_vjp
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("name", ["relu", "leaky_relu", "silu", "gelu", "tanh"])
def test_act_and_vjp_match_autograd_and_finite_differences(name, axis):
    y, params, dout = random_case(seed=7)
    gamma, beta = params["gamma"], params["beta"]
    phi = anp_activation(name)

    got = act(to_layout(y, axis), gamma, beta, activation=name, axis=axis)
    # Elementwise float64 evaluation of the same expression: a few ulp.
    np.testing.assert_allclose(from_layout(got, axis), anp_act(y, gamma, beta, phi),
                               rtol=1e-14, atol=1e-15)

    grads = act_vjp(to_layout(dout, axis), to_layout(y, axis), gamma, beta,
                    activation=name, axis=axis)
    args = [to_layout(y, axis), gamma, beta]
    for index, grad in enumerate(grads):
        reference = autograd.grad(
            lambda *a, index=index: anp.sum(dout * anp_act(*a, phi)), index
        )(y, gamma, beta)
        numeric = central_difference_vjp(
            lambda *a: act(*a, activation=name, axis=axis), args, index, to_layout(dout, axis),
            1e-6,
        )
        if index == 0:
            grad, numeric = from_layout(grad, axis), from_layout(numeric, axis)
        # autograd: same derivative formula up to summation order (a few ulp).
        np.testing.assert_allclose(grad, reference, rtol=1e-13, atol=1e-13)
        # Central differences, h = 1e-6: rounding ~ eps * |sum dout * out| / h ~ 1e-9.
        np.testing.assert_allclose(grad, numeric, rtol=0, atol=1e-8)


def test_act_without_affine_is_the_activation_and_has_no_parameter_gradients():
    y, _, dout = random_case(seed=8)
    np.testing.assert_array_equal(act(y, activation="relu"), np.maximum(y, 0.0))
    dy, dgamma, dbeta = act_vjp(dout, y, activation="relu")
    assert dgamma is None and dbeta is None
    np.testing.assert_array_equal(dy, np.where(y > 0, dout, 0.0))


# ---------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------

finite = st.floats(min_value=-2.0, max_value=2.0, allow_nan=False)
nonzero_scale = st.floats(min_value=0.25, max_value=3.0).flatmap(
    lambda v: st.sampled_from([v, -v])
)


@settings(max_examples=40)
@given(gamma=nonzero_scale, beta=finite, gamma_tilde=finite, beta_tilde=finite,
       seed=st.integers(0, 2**16))
def test_identity_activation_with_exact_moments_is_a_closed_form(
    gamma, beta, gamma_tilde, beta_tilde, seed
):
    # Identity: proxy mean = gamma * beta~ + beta, proxy var = gamma^2 (1 + gamma~)^2, so
    # out = (gamma y + beta - gamma beta~ - beta) / sqrt(var + eps) = gamma (y - beta~) / sqrt(...).
    y = np.random.default_rng(seed).normal(size=(3, 1, 5))
    one = np.ones(1)
    got = pn_act(y, gamma * one, beta * one, gamma_tilde * one, beta_tilde * one,
                 activation="identity", method="exact", n=None)
    denominator = math.sqrt(gamma**2 * (1.0 + gamma_tilde) ** 2 + 0.03)
    expected = gamma * (y - beta_tilde) / denominator
    # The code forms gamma y + beta and subtracts gamma beta~ + beta: each rounding is at most
    # eps times the magnitudes involved; 8 eps of them (plus 8 eps of the result for the
    # division and square root) bounds the difference.
    magnitudes = (np.abs(gamma * y) + 2 * abs(beta) + abs(gamma * beta_tilde)) / denominator
    bound = 8 * F64_EPS * (magnitudes + np.abs(expected))
    assert np.all(np.abs(got - expected) <= bound)


@pytest.mark.parametrize("name", ["relu", "gelu", "identity"])
def test_output_of_proxy_distributed_data_is_standardized(name):
    # If y_c ~ Normal(beta~_c, (1 + gamma~_c)^2), then gamma y + beta has exactly the proxy's
    # law, so E out = 0 and Var out = var / (var + eps) with (mean, var) the exact moments.
    rng = np.random.default_rng(2024)
    samples = 200_000
    gamma = np.array([1.3, -0.7])
    beta = np.array([0.2, -0.4])
    gamma_tilde = np.array([0.25, -0.3])
    beta_tilde = np.array([-0.5, 0.8])
    y = beta_tilde + (1.0 + gamma_tilde) * rng.standard_normal((samples, 2))
    out = pn_act(y, gamma, beta, gamma_tilde, beta_tilde, activation=name, method="exact",
                 n=None, eps=0.03, axis=-1)
    _, var = proxy_moments(name, gamma, beta, gamma_tilde, beta_tilde, method="exact")
    target_var = var / (var + 0.03)
    sample_mean = out.mean(axis=0)
    sample_var = out.var(axis=0)
    # Standard errors: sd(mean) = sqrt(Var out / N); sd(var) = sqrt((mu4 - Var^2) / N) with
    # the fourth central moment estimated from the sample. 5 standard errors: a false alarm
    # has probability below 1e-6 (and the seed is fixed).
    se_mean = np.sqrt(target_var / samples)
    mu4 = np.mean((out - sample_mean) ** 4, axis=0)
    se_var = np.sqrt((mu4 - sample_var**2) / samples)
    assert np.all(np.abs(sample_mean) < 5 * se_mean)
    assert np.all(np.abs(sample_var - target_var) < 5 * se_var)


@pytest.mark.parametrize(
    ("method", "n"), [("exact", None), ("quadrature", None), ("quantile", 200),
                      ("montecarlo", 2000)]
)
def test_tilde_gradients_vanish_when_gamma_is_zero(method, n):
    # With gamma = 0 neither the data path (gamma y) nor the proxy (gamma Y) sees beta~ or
    # gamma~: m = gamma beta~ + beta and sigma = gamma (1 + gamma~) have zero derivative in them.
    y, params, dout = random_case(seed=9)
    gamma = np.array([0.0, 0.0, 1.2])
    grads = pn_act_vjp(dout, y, gamma, params["beta"], params["gamma_tilde"],
                       params["beta_tilde"], method=method, n=n)
    np.testing.assert_array_equal(grads[3][:2], 0.0)
    np.testing.assert_array_equal(grads[4][:2], 0.0)
    # The third channel (gamma != 0) does depend on them: the zeros above are not vacuous.
    assert grads[3][2] != 0.0 and grads[4][2] != 0.0


@pytest.mark.parametrize(
    ("name", "mean", "var", "inv_std"),
    [("relu", 0.398451, 0.338035, 1.648373), ("silu", 0.206048, 0.310004, 1.714977)],
)
def test_official_reference_values_at_initialization(name, mean, var, inv_std):
    # The official estimator (n = 200, eps = 0.03) at gamma = 1, beta = beta~ = gamma~ = 0;
    # the published values have 6 decimals, so they are matched to half a unit: 5e-7.
    proxy_mean, proxy_var = proxy_moments(name, 1.0, 0.0, method="quantile", n=200)
    assert abs(proxy_mean - mean) <= 5e-7
    assert abs(proxy_var - var) <= 5e-7
    assert abs(1.0 / math.sqrt(proxy_var + 0.03) - inv_std) <= 5e-7

    # Channels-last, official profile; y = 0 gives -mean * inv_std, y = 1 gives
    # (phi(1) - mean) * inv_std with phi(1) = 1 (relu) or 1 / (1 + e^-1) (silu).
    channels = 4
    y = np.zeros((2, 3, channels))
    y[1] = 1.0
    out = pn_act(y, np.ones(channels), np.zeros(channels), np.zeros(channels),
                 np.zeros(channels), activation=name, axis=-1)
    phi_one = 1.0 if name == "relu" else 1.0 / (1.0 + math.exp(-1.0))
    exact_inv_std = 1.0 / math.sqrt(proxy_var + 0.03)
    # One subtraction and one multiplication in float64 on O(1) numbers: 4 ulp.
    np.testing.assert_allclose(out[0], -proxy_mean * exact_inv_std, rtol=4 * F64_EPS)
    np.testing.assert_allclose(out[1], (phi_one - proxy_mean) * exact_inv_std, rtol=4 * F64_EPS)
    # Against the published numbers: the product of two 6-decimal values carries at most
    # |a| 5e-7 + |b| 5e-7 < 1.1e-6 of rounding.
    np.testing.assert_allclose(out[0], -mean * inv_std, rtol=0, atol=1.1e-6)


def test_worked_example_of_the_docs_by_hand():
    # docs/proxy-norm.md, "A worked example": ReLU at initialization, exact moments, one
    # channel. Every expected number is the hand derivation of that page:
    # mu = phi(0) = 1/sqrt(2 pi), v = 1/2 - 1/(2 pi), r = 1/sqrt(v + eps); moment
    # derivatives at (m, s) = (0, 1): dmu/dm = 1/2, dmu/ds = phi(0), dv/dm = phi(0),
    # dv/ds = 2 (1/2 - phi(0)^2).
    y = np.array([[-1.0], [0.5], [2.0]])
    dout = np.array([[0.5], [-1.0], [2.0]])
    one, zero = np.ones(1), np.zeros(1)
    pdf0 = 1.0 / math.sqrt(2.0 * math.pi)
    var = 0.5 - pdf0**2
    inv_std = 1.0 / math.sqrt(var + 0.03)
    out = (np.maximum(y, 0.0) - pdf0) * inv_std
    g = dout * inv_std * (y > 0)
    dmean = -inv_std * dout.sum()
    dvar = -0.5 * inv_std**2 * np.sum(dout * out)
    m_bar = dmean * 0.5 + dvar * pdf0
    sigma_bar = dmean * pdf0 + dvar * 2.0 * (0.5 - pdf0**2)
    expected_grads = [g, np.sum(g * y) + sigma_bar, g.sum() + m_bar, sigma_bar, m_bar]

    got = pn_act(y, one, zero, zero, zero, method="exact", n=None)
    grads = pn_act_vjp(dout, y, one, zero, zero, zero, method="exact", n=None)
    # The closed-form moments are accurate to ~1e-16 and the rest is a handful of float64
    # operations on O(1) numbers: 1e-14 absolute.
    np.testing.assert_allclose(got, out, rtol=0, atol=1e-14)
    for grad, expected in zip(grads, expected_grads, strict=True):
        np.testing.assert_allclose(np.ravel(grad), np.ravel(expected), rtol=0, atol=1e-14)
    # The page prints these to 8 significant digits, e.g. dgamma = 0.38545 (0.3854499971).
    assert round(float(grads[1][0]), 7) == 0.38545


@settings(max_examples=30)
@given(scale=nonzero_scale, shift=finite, seed=st.integers(0, 2**16),
       method=st.sampled_from(["exact", "quantile"]))
def test_pn_act_is_invariant_under_affine_reparametrization(scale, shift, seed, method):
    # y' = a y + b, gamma' = gamma / a, beta' = beta - gamma b / a, 1 + gamma~' = a (1 + gamma~),
    # beta~' = a beta~ + b leaves gamma y + beta and the proxy gamma Y + beta unchanged:
    # m' = gamma/a (a beta~ + b) + beta - gamma b / a = m and sigma' = sigma.
    y, params, _ = random_case(seed)
    g, b, gt, bt = (params[p] for p in PARAM_NAMES)
    n = None if method == "exact" else 200
    before = pn_act(y, g, b, gt, bt, method=method, n=n)
    after = pn_act(scale * y + shift, g / scale, b - g * shift / scale,
                   scale * (1.0 + gt) - 1.0, scale * bt + shift, method=method, n=n)
    # Only roundings of the reparametrization (a few ulp of O(1) numbers, amplified by the
    # ReLU proxy derivatives of order 1 and inv_std <= 1/sqrt(eps) = 5.8): 1e-12 absolute.
    np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)


@settings(max_examples=30)
@given(seed=st.integers(0, 2**16), spatial=st.lists(st.integers(1, 3), max_size=2),
       name=st.sampled_from(["relu", "silu", "gelu"]))
def test_pn_act_is_layout_and_channel_permutation_equivariant(seed, spatial, name):
    y, params, _ = random_case(seed, shape=(2, 3, *spatial))
    values = [params[p] for p in PARAM_NAMES]
    permutation = np.random.default_rng(seed).permutation(3)
    first = pn_act(y, *values, activation=name)
    last = pn_act(np.moveaxis(y[:, permutation], 1, -1), *(v[permutation] for v in values),
                  activation=name, axis=-1)
    # Per-channel moments of a permuted parameter vector: the same numbers per channel up
    # to the blocking of vectorized sums (a few ulp).
    np.testing.assert_allclose(np.moveaxis(last, -1, 1), first[:, permutation],
                               rtol=1e-14, atol=1e-14)


# ---------------------------------------------------------------------------
# The official float32 profile
# ---------------------------------------------------------------------------


def official_float32(y, gamma, beta, gamma_tilde, beta_tilde, name, eps=0.03, n=200):
    """The official computation order in float32 (channels-last): affine, activation,
    subtract the proxy mean, multiply by the inverse proxy standard deviation; the moments
    in float32 from quantiles generated in float64 and rounded."""
    f32 = np.float32

    def phi(z):
        if name == "relu":
            return np.maximum(z, f32(0))
        return z * (f32(1) / (f32(1) + np.exp(-z)))

    u = quantile_points(n).astype(f32)
    proxy = (f32(1) + gamma_tilde)[:, None] * u[None, :] + beta_tilde[:, None]
    activated_proxy = phi(gamma[:, None] * proxy + beta[:, None])
    proxy_mean = np.mean(activated_proxy, axis=1, dtype=f32)
    proxy_var = np.mean(np.square(activated_proxy - proxy_mean[:, None]), axis=1, dtype=f32)
    inv_std = f32(1) / np.sqrt(proxy_var + f32(eps))
    return (phi(gamma * y + beta) - proxy_mean) * inv_std


@pytest.mark.parametrize("name", ["relu", "silu"])
def test_float32_profile_matches_official_order_and_float64(name):
    rng = np.random.default_rng(31)
    channels = 16
    y = rng.standard_normal((4, 5, 5, channels)).astype(np.float32)
    params = [
        (1.0 + 0.3 * rng.standard_normal(channels)).astype(np.float32),
        (0.3 * rng.standard_normal(channels)).astype(np.float32),
        (0.2 * rng.standard_normal(channels)).astype(np.float32),
        (0.3 * rng.standard_normal(channels)).astype(np.float32),
    ]
    got = pn_act(y, *params, activation=name, axis=-1)
    assert got.dtype == np.float32

    as64 = pn_act(y.astype(np.float64), *(p.astype(np.float64) for p in params),
                  activation=name, axis=-1)
    # pn_act computes in float64 and rounds once: elementwise relative error <= 2^-24 = 6e-8.
    # The requirement is 1e-6.
    assert np.all(np.abs(got - as64) <= 1e-6 * np.abs(as64))

    emulated = official_float32(y, *params, name)
    # Relative to each channel's output scale (max |out| in the channel): float32's
    # (z - mean) cancels where z ~ mean, so an elementwise relative error is unbounded there;
    # every term of the official order is O(1), each float32 rounding 6e-8. Requirement 2e-6.
    scale = np.max(np.abs(as64), axis=(0, 1, 2))
    relative = np.max(np.abs(got.astype(np.float64) - emulated), axis=(0, 1, 2)) / scale
    assert np.all(relative <= 2e-6)


def test_float32_results_and_gradients_keep_the_input_dtype():
    y, params, dout = random_case(seed=13)
    values32 = [params[p].astype(np.float32) for p in PARAM_NAMES]
    out = pn_act(y.astype(np.float32), *values32)
    grads = pn_act_vjp(dout.astype(np.float32), y.astype(np.float32), *values32)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in grads)
    # Computed in float64 and rounded once: at most 2^-24 relative per element (half an
    # ulp of float32); rtol 2^-23 is one float32 ulp.
    grads64 = pn_act_vjp(dout.astype(np.float32).astype(np.float64),
                         y.astype(np.float32).astype(np.float64),
                         *(v.astype(np.float64) for v in values32))
    for g32, g64 in zip(grads, grads64, strict=True):
        np.testing.assert_allclose(g32, g64, rtol=2**-23, atol=0)


# ---------------------------------------------------------------------------
# Edge cases and bad input
# ---------------------------------------------------------------------------


def test_nan_in_the_data_stays_in_its_element():
    y, params, dout = random_case(seed=17)
    y[0, 1, 2] = np.nan
    out = pn_act(y, *(params[p] for p in PARAM_NAMES))
    assert np.isnan(out[0, 1, 2]) and np.isnan(out).sum() == 1
    # In the backward the NaN reaches dy at that element and, through the per-channel sums,
    # that channel's parameter gradients only.
    dy, dgamma, dbeta, dgamma_tilde, dbeta_tilde = pn_act_vjp(
        dout, y, *(params[p] for p in PARAM_NAMES)
    )
    assert np.isnan(dy).sum() == 1
    for grad in (dgamma, dbeta, dgamma_tilde, dbeta_tilde):
        np.testing.assert_array_equal(np.isnan(grad), [False, True, False])


def test_empty_batch():
    _, params, _ = random_case(seed=19)
    y = np.zeros((0, 3, 4))
    assert pn_act(y, *(params[p] for p in PARAM_NAMES)).shape == (0, 3, 4)
    grads = pn_act_vjp(y, y, *(params[p] for p in PARAM_NAMES))
    assert grads[0].shape == (0, 3, 4)
    # No data: every cotangent sum is empty, so every parameter gradient is exactly 0.
    for grad in grads[1:]:
        np.testing.assert_array_equal(grad, 0.0)


@pytest.mark.parametrize("bad", ["gamma", "beta", "gamma_tilde", "beta_tilde"])
def test_parameter_shape_mismatch_names_the_argument(bad):
    y, params, dout = random_case(seed=23)
    params[bad] = np.ones(4)
    with pytest.raises(ValueError, match=bad):
        pn_act(y, **params)
    with pytest.raises(ValueError, match=bad):
        pn_act_vjp(dout, y, **params)


@pytest.mark.parametrize("eps", [0.0, -0.03])
def test_eps_must_be_positive(eps):
    y, params, _ = random_case(seed=29)
    with pytest.raises(ValueError, match="eps"):
        pn_act(y, **params, eps=eps)


def test_bad_arguments_give_clear_errors():
    y, params, dout = random_case(seed=37)
    with pytest.raises(ValueError, match="exact.*silu"):
        pn_act(y, **params, activation="silu", method="exact", n=None)
    with pytest.raises(ValueError, match="n=None"):
        pn_act(y, **params, method="exact", n=200)
    # The default n=None means "the method's default", so exact works without naming n.
    exact_default = pn_act(y, **params, method="exact")
    assert np.array_equal(exact_default, pn_act(y, **params, method="exact", n=None))
    with pytest.raises(ValueError, match="unknown activation"):
        pn_act(y, **params, activation="swishy")
    with pytest.raises(ValueError, match="method"):
        pn_act(y, **params, method="trapezoid")
    with pytest.raises(TypeError, match="gamma and beta are required"):
        pn_act(y, None, params["beta"])
    with pytest.raises(TypeError, match="y must have a real floating dtype"):
        pn_act(np.ones((2, 3), dtype=np.int64), **params)
    with pytest.raises(ValueError, match="dout"):
        pn_act_vjp(dout[:1], y, **params)
    with pytest.raises(ValueError, match="axis"):
        pn_act(y, **params, axis=3)
    with pytest.raises(TypeError, match="activation"):
        act(y, activation=3)


def test_activation_object_with_parameters_is_honoured():
    y, params, dout = random_case(seed=41)
    leaky = make_activation("leaky_relu", alpha=0.2)
    values = [params[p] for p in PARAM_NAMES]
    got = pn_act(y, *values, activation=leaky)
    shape = channel_first_shape(3, 3)
    mean, var = proxy_moments(leaky, *values)
    pre = params["gamma"].reshape(shape) * y + params["beta"].reshape(shape)
    expected = (np.where(pre > 0, pre, 0.2 * pre) - mean.reshape(shape)) / np.sqrt(
        var.reshape(shape) + 0.03
    )
    # Same float64 operations in the same order: a couple of ulp.
    np.testing.assert_allclose(got, expected, rtol=1e-15, atol=1e-15)
