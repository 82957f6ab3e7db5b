"""The autograd primitives: finite-difference checks, and that autograd runs pnref's own VJPs.

``_check`` is ``autograd.test_util.check_grads`` (reverse mode, order 1) with seeded
directions: it compares <v, J u> from central differences (autograd's step 1e-6) with
<VJP(v), u> for random u and v, in float64, with autograd's fixed tolerance (abs 1e-6 or
rel 1e-6, ``scalar_close``): the framework's own float64 policy. check_grads itself draws u
and v from NumPy's unseeded global state, so a failure would not reproduce; here they come
from a seeded Generator. Inputs are drawn away from ReLU's kink (|z| > 1e-3 is
overwhelmingly likely at these sizes), so central differences are valid.
"""

from __future__ import annotations

import autograd
import numpy as np
import pytest
from autograd.test_util import EPS, scalar_close

from pnref import autograd_ops as ops
from pnref.blocks import norm_pn_act_vjp
from pnref.nn.conv import conv2d, conv2d_vjp
from pnref.norms import group_norm_vjp, layer_norm_vjp, weight_standardization_vjp
from pnref.pn_act import pn_act_vjp


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _affine(rng, channels):
    """gamma near 1, beta near 0 (not at the identity, so every term of the VJP is exercised)."""
    return 1.0 + 0.3 * rng.normal(size=channels), 0.3 * rng.normal(size=channels)


def _check(fun, args, argnums, seed=0):
    """<VJP(v), u> against the central difference <v, (f(a + u h/2) - f(a - u h/2)) / h>."""
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    rng = _rng(seed)
    vjp, y = autograd.make_vjp(fun, argnums)(*args)
    directions = [rng.standard_normal(np.shape(args[i])) for i in argnums]
    cotangent = rng.standard_normal(np.shape(y))  # random, never all-ones
    exact = sum(np.sum(u * g) for u, g in zip(directions, vjp(cotangent), strict=True))

    def moved(sign):
        shifted = list(args)
        for i, u in zip(argnums, directions, strict=True):
            shifted[i] = args[i] + sign * (EPS / 2) * u
        return fun(*shifted)

    numeric = np.sum(cotangent * (moved(1.0) - moved(-1.0)) / EPS)
    assert scalar_close(numeric, exact), (numeric, exact)


@pytest.mark.parametrize(
    ("op", "shape"),
    [
        (ops.batch_norm, (5, 3, 4)),
        (ops.instance_norm, (2, 3, 3, 4)),
        (ops.layer_norm, (3, 4, 2, 2)),
    ],
)
def test_norm_primitives_check_grads(op, shape):
    rng = _rng(1)
    x = rng.normal(size=shape)
    gamma, beta = _affine(rng, shape[1])
    _check(op, (x, gamma, beta), (0, 1, 2))


def test_group_norm_check_grads():
    rng = _rng(2)
    x = rng.normal(size=(2, 6, 3, 3))
    gamma, beta = _affine(rng, 6)
    _check(lambda x, g, b: ops.group_norm(x, 3, g, b), (x, gamma, beta), (0, 1, 2))


def test_batch_norm_eval_check_grads():
    rng = _rng(3)
    x = rng.normal(size=(4, 3, 2, 2))
    mean = 0.2 * rng.normal(size=3)
    var = rng.uniform(0.5, 2.0, size=3)
    gamma, beta = _affine(rng, 3)
    _check(ops.batch_norm_eval, (x, mean, var, gamma, beta), (0, 1, 2, 3, 4))


def test_weight_standardization_check_grads():
    w = _rng(4).normal(size=(4, 3, 3, 3))
    _check(ops.weight_standardization, (w,), 0)
    _check(lambda w: ops.weight_standardization(w, axis=1), (w[:, :, 0, 0],), 0)


@pytest.mark.parametrize("name", ["relu", "silu", "gelu"])
def test_activation_check_grads(name):
    z = _rng(5).normal(size=(3, 4, 5))
    _check(lambda z: ops.activation(z, name), (z,), 0)


def test_act_check_grads():
    rng = _rng(6)
    y = rng.normal(size=(3, 4, 5))
    gamma, beta = _affine(rng, 4)
    _check(lambda y, g, b: ops.act(y, g, b, activation="silu"), (y, gamma, beta), (0, 1, 2))


@pytest.mark.parametrize("activation", ["relu", "silu"])
def test_pn_act_check_grads(activation):
    rng = _rng(7)
    y = rng.normal(size=(3, 4, 2, 3))
    gamma, beta = _affine(rng, 4)
    gamma_tilde, beta_tilde = 0.2 * rng.normal(size=4), 0.2 * rng.normal(size=4)

    def fun(y, g, b, gt, bt):
        return ops.pn_act(y, g, b, gt, bt, activation=activation)

    _check(fun, (y, gamma, beta, gamma_tilde, beta_tilde), (0, 1, 2, 3, 4))


@pytest.mark.parametrize(("norm", "groups"), [("gn", 2), ("ln", None)])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_norm_pn_act_check_grads(norm, groups, backend):
    rng = _rng(8)
    x = rng.normal(size=(2, 4, 3, 3))
    gamma, beta = _affine(rng, 4)
    gamma_tilde, beta_tilde = 0.2 * rng.normal(size=4), 0.2 * rng.normal(size=4)

    def fun(x, g, b, gt, bt):
        return ops.norm_pn_act(x, g, b, gt, bt, norm=norm, groups=groups, backend=backend)

    _check(fun, (x, gamma, beta, gamma_tilde, beta_tilde), (0, 1, 2, 3, 4))


@pytest.mark.parametrize(("norm", "groups"), [("bn", None), ("in", None), ("gn", 2)])
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_norm_act_check_grads(norm, groups, backend):
    rng = _rng(9)
    x = rng.normal(size=(3, 4, 2, 2))
    gamma, beta = _affine(rng, 4)

    def fun(x, g, b):
        return ops.norm_act(x, g, b, norm=norm, groups=groups, backend=backend)

    _check(fun, (x, gamma, beta), (0, 1, 2))


def test_conv2d_check_grads():
    rng = _rng(10)
    x = rng.normal(size=(2, 3, 5, 4))
    w = rng.normal(size=(4, 3, 3, 3))
    _check(conv2d, (x, w), (0, 1))


def test_conv2d_matches_direct_sum():
    """The im2col forward against the definition written as explicit loops."""
    rng = _rng(11)
    x = rng.normal(size=(2, 2, 4, 5))
    w = rng.normal(size=(3, 2, 3, 3))
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    expected = np.zeros((2, 3, 4, 5))
    for i in range(4):
        for j in range(5):
            patch = padded[:, :, i:i + 3, j:j + 3]
            expected[:, :, i, j] = np.einsum("ncab,ocab->no", patch, w)
    # float64, same products summed in a different order: rounding only
    np.testing.assert_allclose(conv2d(x, w), expected, rtol=1e-12, atol=1e-12)


# --- autograd really calls pnref's hand-written VJPs ------------------------------------


def _grads_through_autograd(prim, args, cotangent, argnums, **kwargs):
    """Gradients of sum(prim(*args) * cotangent) with respect to ``argnums``."""
    return autograd.grad(lambda *a: np.sum(prim(*a, **kwargs) * cotangent), argnums)(*args)


def test_autograd_returns_exactly_the_layer1_vjp():
    """Bit-identical to calling the VJP directly: autograd's result *is* our backward pass."""
    rng = _rng(12)
    x = rng.normal(size=(3, 4, 2, 2))
    gamma, beta = _affine(rng, 4)
    gamma_tilde, beta_tilde = 0.1 * rng.normal(size=4), 0.1 * rng.normal(size=4)
    cot = rng.normal(size=x.shape)

    got = _grads_through_autograd(ops.group_norm, (x, 2, gamma, beta), cot, (0, 2, 3))
    want = group_norm_vjp(cot, x, 2, gamma, beta)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

    args = (x, gamma, beta, gamma_tilde, beta_tilde)
    got = _grads_through_autograd(ops.pn_act, args, cot, (0, 1, 2, 3, 4), activation="silu")
    want = pn_act_vjp(cot, *args, activation="silu")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

    got = _grads_through_autograd(ops.norm_pn_act, args, cot, (0, 1, 2, 3, 4), norm="ln",
                                  backend="numba")
    want = norm_pn_act_vjp(cot, *args, norm="ln", backend="numba")
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)

    # Weight standardization's VJP reads the statistics its forward saved.
    w_ws = rng.normal(size=(5, 4, 3, 3))
    cot_ws = rng.normal(size=w_ws.shape)
    for axis in (0, 1):
        got = _grads_through_autograd(
            lambda w, axis=axis: ops.weight_standardization(w, axis=axis), (w_ws,), cot_ws,
            (0,))
        want = weight_standardization_vjp(cot_ws, w_ws, axis=axis)
        np.testing.assert_array_equal(got[0], want[0])

    w4 = rng.normal(size=(2, 4, 3, 3))
    cot_conv = rng.normal(size=(3, 2, 2, 2))
    got = _grads_through_autograd(conv2d, (x, w4), cot_conv, (0, 1))
    for g, w in zip(got, conv2d_vjp(cot_conv, x, w4), strict=True):
        np.testing.assert_array_equal(g, w)


def test_absent_affine_is_not_traced():
    """gamma/beta = None: the gradient of x alone is the VJP's first entry."""
    rng = _rng(13)
    x = rng.normal(size=(2, 3, 4))
    cot = rng.normal(size=x.shape)
    got = autograd.grad(lambda x: np.sum(ops.layer_norm(x) * cot))(x)
    np.testing.assert_array_equal(got, layer_norm_vjp(cot, x)[0])


def test_gradient_for_a_constant_argument_is_refused():
    """groups is an int: asking for its gradient is an error, not a silent zero."""
    x = _rng(14).normal(size=(2, 4, 3))
    fun = ops.make_primitive(lambda x, k: x * k, lambda g, x, k: (g * k,), (0,))
    with pytest.raises(NotImplementedError, match="positional argument"):
        autograd.grad(lambda k: np.sum(fun(x, k)))(2.0)


def test_primitives_keep_validation_errors():
    with pytest.raises(TypeError, match="x"):
        ops.layer_norm(np.ones((2, 3), dtype=np.int64))
    with pytest.raises(ValueError, match="weight"):
        conv2d(np.ones((1, 2, 3, 3)), np.ones((1, 3, 3, 3)))
