"""Tests for pnref.blocks_ref: norm -> PN-Act and norm -> act, forward and composed VJPs.

References: a plain ``autograd.numpy`` composition (norm without affine, then PN-Act with the
quantile estimator, or norm with affine then the activation) differentiated by HIPS autograd,
and central finite differences in float64 for every argument.
"""

from __future__ import annotations

import math

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import erf as anp_erf
from scipy.special import erfinv

from pnref import norms
from pnref.activations import activation as make_activation
from pnref.blocks_ref import norm_act, norm_act_vjp, norm_pn_act, norm_pn_act_vjp
from pnref.pn_act import pn_act

NORMS = ["bn", "ln", "in", "gn"]
GROUPS = 2  # for "gn" with C = 4: two groups of two channels
PARAM_NAMES = ("gamma", "beta", "gamma_tilde", "beta_tilde")

# ---------------------------------------------------------------------------
# Plain autograd.numpy reference (tests only), channels-first (N, C, *spatial)
# ---------------------------------------------------------------------------


def anp_activation(name: str):
    if name == "relu":
        return lambda z: anp.where(z > 0.0, z, 0.0)
    if name == "silu":
        return lambda z: z / (1.0 + anp.exp(-z))
    if name == "gelu":
        return lambda z: z * 0.5 * (1.0 + anp_erf(z / math.sqrt(2.0)))
    raise KeyError(name)


def anp_normalize(x, norm: str, groups: int | None, eps: float):
    """Standardize without affine: population statistics over the norm's reduction set."""
    batch = x.shape[0]
    if norm in ("bn", "in"):
        spatial = tuple(range(2, x.ndim))
        axes = (0,) + spatial if norm == "bn" else spatial
        mean = anp.mean(x, axis=axes, keepdims=True)
        var = anp.mean((x - mean) ** 2, axis=axes, keepdims=True)
        return (x - mean) / anp.sqrt(var + eps)
    count = 1 if norm == "ln" else groups
    grouped = anp.reshape(x, (batch, count, -1))
    mean = anp.mean(grouped, axis=2, keepdims=True)
    var = anp.mean((grouped - mean) ** 2, axis=2, keepdims=True)
    return anp.reshape((grouped - mean) / anp.sqrt(var + eps), x.shape)


def per_channel(p, ndim: int):
    return anp.reshape(p, (1, p.shape[0]) + (1,) * (ndim - 2))


def anp_pn_act(y, gamma, beta, gamma_tilde, beta_tilde, phi, eps=0.03, n=200):
    u = math.sqrt(2.0) * erfinv(2.0 * (np.arange(n) + 0.5) / n - 1.0)
    proxy = (1.0 + gamma_tilde)[:, None] * u[None, :] + beta_tilde[:, None]
    activated_proxy = phi(gamma[:, None] * proxy + beta[:, None])
    mean = anp.mean(activated_proxy, axis=1)
    var = anp.mean((activated_proxy - mean[:, None]) ** 2, axis=1)
    activated = phi(per_channel(gamma, y.ndim) * y + per_channel(beta, y.ndim))
    return (activated - per_channel(mean, y.ndim)) / anp.sqrt(per_channel(var, y.ndim) + eps)


def anp_norm_pn_act(x, gamma, beta, gamma_tilde, beta_tilde, norm, phi, norm_eps=1e-5):
    groups = GROUPS if norm == "gn" else None
    return anp_pn_act(anp_normalize(x, norm, groups, norm_eps), gamma, beta, gamma_tilde,
                      beta_tilde, phi)


def anp_norm_act(x, gamma, beta, norm, phi, norm_eps=1e-5):
    groups = GROUPS if norm == "gn" else None
    xhat = anp_normalize(x, norm, groups, norm_eps)
    return phi(per_channel(gamma, x.ndim) * xhat + per_channel(beta, x.ndim))


# ---------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------


def random_case(seed: int, shape=(3, 4, 2, 3)):
    """Channels-first pre-activations with an offset and scale, parameters, a cotangent."""
    rng = np.random.default_rng(seed)
    channels = shape[1]
    x = 1.5 + 2.0 * rng.standard_normal(shape)
    params = {
        "gamma": 1.0 + 0.3 * rng.standard_normal(channels),
        "beta": 0.3 * rng.standard_normal(channels),
        "gamma_tilde": 0.2 * rng.standard_normal(channels),
        "beta_tilde": 0.3 * rng.standard_normal(channels),
    }
    return x, params, rng.standard_normal(shape)


def to_layout(a, axis):
    return a if axis == 1 else np.moveaxis(a, 1, -1)


def from_layout(a, axis):
    return a if axis == 1 else np.moveaxis(a, -1, 1)


def groups_for(norm: str) -> int | None:
    return GROUPS if norm == "gn" else None


def central_difference_vjp(f, args, index, cotangent, step):
    """<cotangent, d f / d args[index][k]> for every element k, by central differences."""
    base = args[index]
    grad = np.empty_like(base)
    for k in np.ndindex(base.shape):
        values = []
        for sign in (1.0, -1.0):
            moved = base.copy()
            moved[k] += sign * step
            call_args = list(args)
            call_args[index] = moved
            values.append(f(*call_args))
        grad[k] = np.sum(cotangent * (values[0] - values[1])) / (2.0 * step)
    return grad


# ---------------------------------------------------------------------------
# Against autograd
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("name", ["relu", "silu"])
@pytest.mark.parametrize("norm", NORMS)
def test_norm_pn_act_and_vjp_match_autograd(norm, name, axis):
    x, params, dout = random_case(seed=101)
    values = [params[p] for p in PARAM_NAMES]
    phi = anp_activation(name)
    kwargs = dict(norm=norm, groups=groups_for(norm), activation=name, axis=axis)

    got = norm_pn_act(to_layout(x, axis), *values, **kwargs)
    # Same float64 math, different summation order (the library's norm is a shifted
    # two-pass, the reference a plain one): a few ulp of O(1) outputs, measured 1.3e-14.
    np.testing.assert_allclose(from_layout(got, axis), anp_norm_pn_act(x, *values, norm, phi),
                               rtol=1e-13, atol=1e-13)

    grads = norm_pn_act_vjp(to_layout(dout, axis), to_layout(x, axis), *values, **kwargs)
    for index, grad in enumerate(grads):
        reference = autograd.grad(
            lambda *a, index=index: anp.sum(dout * anp_norm_pn_act(*a, norm, phi)), index
        )(x, *values)
        if index == 0:
            grad = from_layout(grad, axis)
        # Exact derivatives of the same function; summation order only. Parameter gradients
        # sum 72 O(1) terms (measured worst 5.5e-15 relative to 1 + |reference|).
        np.testing.assert_allclose(grad, reference, rtol=1e-13, atol=1e-13,
                                   err_msg=f"argument {index}")


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("name", ["relu", "gelu"])
@pytest.mark.parametrize("norm", NORMS)
def test_norm_act_and_vjp_match_autograd(norm, name, axis):
    x, params, dout = random_case(seed=103)
    gamma, beta = params["gamma"], params["beta"]
    phi = anp_activation(name)
    kwargs = dict(norm=norm, groups=groups_for(norm), activation=name, axis=axis)

    got = norm_act(to_layout(x, axis), gamma, beta, **kwargs)
    # Same float64 math, different summation order (measured worst 6.7e-16).
    np.testing.assert_allclose(from_layout(got, axis), anp_norm_act(x, gamma, beta, norm, phi),
                               rtol=1e-14, atol=1e-14)
    grads = norm_act_vjp(to_layout(dout, axis), to_layout(x, axis), gamma, beta, **kwargs)
    for index, grad in enumerate(grads):
        reference = autograd.grad(
            lambda *a, index=index: anp.sum(dout * anp_norm_act(*a, norm, phi)), index
        )(x, gamma, beta)
        if index == 0:
            grad = from_layout(grad, axis)
        # As above: summation order only (measured worst 5.2e-16).
        np.testing.assert_allclose(grad, reference, rtol=1e-13, atol=1e-13,
                                   err_msg=f"argument {index}")


# ---------------------------------------------------------------------------
# Against central finite differences
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize(("method", "n", "name"),
                         [("exact", None, "gelu"), ("quantile", 200, "relu"),
                          ("quadrature", None, "silu")])
@pytest.mark.parametrize("norm", NORMS)
def test_norm_pn_act_vjp_matches_finite_differences(norm, method, n, name, axis):
    x, params, dout = random_case(seed=107, shape=(2, 4, 3))
    x, dout = to_layout(x, axis), to_layout(dout, axis)
    args = [x] + [params[p] for p in PARAM_NAMES]
    kwargs = dict(norm=norm, groups=groups_for(norm), activation=name, method=method, n=n,
                  axis=axis)
    grads = norm_pn_act_vjp(dout, *args, **kwargs)
    for index, grad in enumerate(grads):
        numeric = central_difference_vjp(lambda *a: norm_pn_act(*a, **kwargs), args, index,
                                         dout, 1e-6)
        # h = 1e-6: rounding ~ eps * sum|dout * out| / h ~ 24 * 2e-16 / 1e-6 ~ 5e-9 (the
        # norm's 1/std = 1/2 only shrinks dx); truncation ~ h^2 ~ 1e-12. Measured worst
        # 2e-9; 2e-8 leaves 10x margin and is far below any missing term (O(0.1)).
        scale = max(1.0, np.max(np.abs(numeric)))
        np.testing.assert_allclose(grad, numeric, rtol=0, atol=2e-8 * scale,
                                   err_msg=f"argument {index}")


@pytest.mark.parametrize("axis", [1, -1])
@pytest.mark.parametrize("norm", NORMS)
def test_norm_act_vjp_matches_finite_differences(norm, axis):
    x, params, dout = random_case(seed=109, shape=(2, 4, 3))
    x, dout = to_layout(x, axis), to_layout(dout, axis)
    args = [x, params["gamma"], params["beta"]]
    kwargs = dict(norm=norm, groups=groups_for(norm), activation="silu", axis=axis)
    grads = norm_act_vjp(dout, *args, **kwargs)
    for index, grad in enumerate(grads):
        numeric = central_difference_vjp(lambda *a: norm_act(*a, **kwargs), args, index, dout,
                                         1e-6)
        # Same error budget as above (measured worst 8e-10).
        np.testing.assert_allclose(grad, numeric, rtol=0, atol=2e-8,
                                   err_msg=f"argument {index}")


# ---------------------------------------------------------------------------
# Composition and conventions
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("norm", NORMS)
def test_blocks_are_the_documented_compositions(norm):
    x, params, _ = random_case(seed=113)
    values = [params[p] for p in PARAM_NAMES]
    public = {
        "bn": lambda *a, **k: norms.batch_norm(*a, **k),
        "ln": lambda *a, **k: norms.layer_norm(*a, **k),
        "in": lambda *a, **k: norms.instance_norm(*a, **k),
        "gn": lambda *a, **k: norms.group_norm(a[0], GROUPS, *a[1:], **k),
    }[norm]
    groups = groups_for(norm)
    # norm_pn_act = pn_act(norm without affine): the same float64 operations.
    xhat = public(x, eps=1e-5)
    np.testing.assert_allclose(norm_pn_act(x, *values, norm=norm, groups=groups),
                               pn_act(xhat, *values), rtol=1e-15, atol=1e-15)
    # norm_act = activation(norm with its affine): the affine is applied in the same order.
    silu = make_activation("silu")
    with_affine = public(x, params["gamma"], params["beta"], eps=1e-5)
    np.testing.assert_allclose(
        norm_act(x, params["gamma"], params["beta"], norm=norm, groups=groups,
                 activation="silu"),
        silu.f(with_affine), rtol=1e-15, atol=1e-15,
    )


def test_norm_act_without_affine_has_no_parameter_gradients():
    x, _, dout = random_case(seed=127)
    dx, dgamma, dbeta = norm_act_vjp(dout, x, norm="ln")
    assert dgamma is None and dbeta is None
    # The normalized output sums to zero over each sample, so dx of LN sums to 0 per sample
    # (the group-sum of the norm's gradient vanishes); rounding of 72 O(1) terms.
    np.testing.assert_allclose(dx.reshape(3, -1).sum(axis=1), 0.0, atol=1e-13)
    assert np.all(np.isfinite(dx)) and np.any(dx != 0.0)


def test_float32_blocks_return_float32_close_to_float64():
    x, params, dout = random_case(seed=131)
    values32 = [params[p].astype(np.float32) for p in PARAM_NAMES]
    x32, dout32 = x.astype(np.float32), dout.astype(np.float32)
    out = norm_pn_act(x32, *values32, norm="gn", groups=GROUPS, axis=1)
    grads = norm_pn_act_vjp(dout32, x32, *values32, norm="gn", groups=GROUPS, axis=1)
    assert out.dtype == np.float32 and all(g.dtype == np.float32 for g in grads)
    as64 = norm_pn_act(x32.astype(np.float64), *(v.astype(np.float64) for v in values32),
                       norm="gn", groups=GROUPS, axis=1)
    # Computed in float64 and rounded once: 2^-24 relative (half a float32 ulp); rtol
    # 2^-23 is one float32 ulp.
    np.testing.assert_allclose(out, as64, rtol=2**-23, atol=0)
    out_act = norm_act(x32, values32[0], values32[1], norm="bn")
    assert out_act.dtype == np.float32


def test_block_arguments_give_clear_errors():
    x, params, dout = random_case(seed=137)
    with pytest.raises(ValueError, match="groups is required for norm='gn'"):
        norm_pn_act(x, **params, norm="gn")
    with pytest.raises(ValueError, match="groups is only used by norm='gn'"):
        norm_pn_act(x, **params, norm="ln", groups=1)
    with pytest.raises(ValueError, match="groups is only used by norm='gn'"):
        norm_act_vjp(dout, x, norm="bn", groups=4)
    with pytest.raises(ValueError, match="groups=3"):
        norm_act(x, norm="gn", groups=3)
    with pytest.raises(TypeError, match="groups must be an int"):
        norm_act(x, norm="gn", groups=2.0)
    with pytest.raises(ValueError, match="norm must be one of"):
        norm_act(x, norm="batch")
    with pytest.raises(ValueError, match="norm_eps"):
        norm_pn_act(x, **params, norm="bn", norm_eps=-1e-5)
    with pytest.raises(ValueError, match="eps"):
        norm_pn_act(x, **params, norm="bn", eps=0.0)
    with pytest.raises(ValueError, match="gamma"):
        norm_pn_act(x, np.ones(3), params["beta"], norm="in")
    with pytest.raises(ValueError, match="axis"):
        norm_act(x, norm="in", axis=0)
