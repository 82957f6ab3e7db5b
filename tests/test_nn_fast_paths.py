"""The training step's fast paths return exactly what the plain paths return.

- `pnref.autograd_ops.norm_pn_act` with ``backend="numba"`` hands its forward's set-up to the
  VJP (`make_primitive_with_residuals`); `pnref.nn.conv.conv2d` hands its im2col. The
  gradients autograd gets must be those of the stand-alone VJP functions, bit for bit (the
  same code runs on the same numbers).
- `pnref.nn.layers.max_pool2d` is one primitive whose VJP follows autograd's rule for
  ``numpy.max`` (ties share the gradient equally): bit for bit on inputs full of ties.
- The Numba im2col and batch-last layout copies equal NumPy's strided-view constructions.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np

from pnref import autograd_ops as ops
from pnref.blocks import norm_pn_act_vjp
from pnref.kernels._im2col import batch_first, batch_last, im2col
from pnref.nn.conv import conv2d, conv2d_vjp
from pnref.nn.layers import max_pool2d


def _pullback(function, args, cotangent):
    """All gradients of ``sum(function(*args) * cotangent)`` through autograd."""
    def scalar(*a):
        return anp.sum(function(*a) * cotangent)

    return [autograd.grad(scalar, i)(*args) for i in range(len(args))]


def test_norm_pn_act_saved_setup_gives_the_vjp_bit_for_bit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 8, 5, 5))
    params = [1.0 + 0.2 * rng.normal(size=8)] + [0.2 * rng.normal(size=8) for _ in range(3)]
    kw = {"norm": "gn", "groups": 4, "activation": "relu", "backend": "numba"}
    cotangent = rng.normal(size=x.shape)  # random, never all-ones

    def block(x_in, gamma, beta, gamma_tilde, beta_tilde):
        return ops.norm_pn_act(x_in, gamma, beta, gamma_tilde, beta_tilde, **kw)

    got = _pullback(block, (x, *params), cotangent)
    want = norm_pn_act_vjp(cotangent, x, *params, **kw)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_conv2d_saved_columns_give_the_vjp_bit_for_bit():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 5, 4))
    weight = rng.normal(size=(4, 3, 3, 3))
    cotangent = rng.normal(size=(2, 4, 5, 4))
    got = _pullback(conv2d, (x, weight), cotangent)
    for g, w in zip(got, conv2d_vjp(cotangent, x, weight), strict=True):
        np.testing.assert_array_equal(g, w)
    # Only the weight's gradient asked for (the input images of a network): the same value.
    only_weight = autograd.grad(lambda w: anp.sum(conv2d(x, w) * cotangent))(weight)
    np.testing.assert_array_equal(only_weight, got[1])


def test_max_pool_gradient_shares_ties_like_autograd_bit_for_bit():
    rng = np.random.default_rng(2)
    # Rounded values: many windows hold two, three or four equal maxima.
    x = np.round(rng.normal(size=(2, 3, 6, 4)))
    cotangent = rng.normal(size=(2, 3, 3, 2))

    def reference(x_in):
        windows = anp.reshape(x_in, (2, 3, 3, 2, 2, 2))
        return anp.sum(anp.max(windows, axis=(3, 5)) * cotangent)

    want = autograd.grad(reference)(x)
    got = autograd.grad(lambda x_in: anp.sum(max_pool2d(x_in, 2) * cotangent))(x)
    assert np.any((want != 0) & (want != np.repeat(np.repeat(cotangent, 2, 2), 2, 3)))  # ties
    np.testing.assert_array_equal(got, want)


def test_im2col_equals_the_strided_window_view():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 4, 5))
    for kh, kw in ((3, 3), (1, 3), (5, 1)):
        padded = np.pad(x, ((0, 0), (0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2)))
        windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
        # rows (c, a, b), columns (i, j, n): the batch-last order of pnref.nn.conv
        want = windows.transpose(1, 4, 5, 2, 3, 0).reshape(3 * kh * kw, -1)
        images = np.empty((3, 4, 5, 2))
        batch_last(x, images)
        np.testing.assert_array_equal(images, x.transpose(1, 2, 3, 0))
        got = np.empty_like(want)
        im2col(images, kh, kw, got)
        np.testing.assert_array_equal(got, want)
        back = np.empty_like(x)
        batch_first(images, back)
        np.testing.assert_array_equal(back, x)


def test_max_pool_propagates_nan_like_numpy_max():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 2, 4, 4))
    x[0, 1, 2, 3] = np.nan  # one window of channel 1
    cotangent = rng.normal(size=(1, 2, 2, 2))

    def reference(x_in):
        windows = anp.reshape(x_in, (1, 2, 2, 2, 2, 2))
        return anp.sum(anp.max(windows, axis=(3, 5)) * cotangent)

    out = max_pool2d(x, 2)
    assert np.isnan(out[0, 1, 1, 1]) and np.isfinite(np.delete(out.ravel(), 7)).all()
    with np.errstate(invalid="ignore"):  # autograd's rule divides 0 by 0 in the NaN window
        want = autograd.grad(reference)(x)
    got = autograd.grad(lambda x_in: anp.sum(max_pool2d(x_in, 2) * cotangent))(x)
    np.testing.assert_array_equal(got, want)  # NaN where NumPy's rule gives NaN, equal elsewhere
