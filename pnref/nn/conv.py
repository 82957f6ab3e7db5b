"""Channels-first 2-D convolution (stride 1, zero "same" padding) as an autograd primitive.

Forward and backward are im2col matrix products (the windows are gathered through a strided
view of the padded input); the backward pass is hand-derived and registered with
``autograd.extend``.
"""

from __future__ import annotations

import numpy as np
from autograd.extend import defvjp_argnums, primitive

from pnref._validation import as_float_array

__all__ = ["conv2d", "conv2d_vjp"]


def _check_conv_args(x, weight) -> tuple[np.ndarray, np.ndarray]:
    x = as_float_array(x, "x")
    weight = as_float_array(weight, "weight")
    if x.ndim != 4:
        raise ValueError(f"x must have shape (N, C, H, W), got {x.ndim} dimensions")
    if weight.ndim != 4:
        raise ValueError(f"weight must have shape (O, C, KH, KW), got {weight.ndim} dimensions")
    if weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"weight has {weight.shape[1]} input channels but x has {x.shape[1]} channels"
        )
    kh, kw = weight.shape[2:]
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"weight's kernel size must be odd for 'same' padding, got {(kh, kw)}")
    return x, weight


def _im2col(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """Rows (N * H * W, C * KH * KW): the zero-padded input window at every position."""
    n, c, h, w = x.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (kh, kw), axis=(2, 3))
    return np.ascontiguousarray(windows.transpose(0, 2, 3, 1, 4, 5)).reshape(n * h * w, -1)


def _conv2d_forward(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """2-D cross-correlation, channels-first, stride 1, zero padding that keeps H and W.

    Parameters
    ----------
    x : ndarray, shape (N, C, H, W)
        Input images.
    weight : ndarray, shape (O, C, KH, KW)
        Filters; KH and KW odd.

    Returns
    -------
    ndarray, shape (N, O, H, W)

    Equations
    ---------
    out[n, o, i, j] = sum_{c, a, b} weight[o, c, a, b] * xpad[n, c, i + a, j + b],
    with xpad the input padded by KH // 2 and KW // 2 zeros on each side.
    """
    x, weight = _check_conv_args(x, weight)
    n, _, h, w = x.shape
    out = _im2col(x, *weight.shape[2:]) @ weight.reshape(weight.shape[0], -1).T
    return np.ascontiguousarray(out.reshape(n, h, w, -1).transpose(0, 3, 1, 2))


#: The autograd primitive (docstring of `_conv2d_forward`); backward: `conv2d_vjp`.
conv2d = primitive(_conv2d_forward)


def conv2d_vjp(dout: np.ndarray, x: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, ...]:
    """Gradients of `conv2d` with respect to ``x`` and ``weight``.

    Parameters
    ----------
    dout : ndarray, shape (N, O, H, W)
        Cotangent of the output.
    x, weight : ndarray
        The forward arguments.

    Returns
    -------
    (dx, dweight) : tuple of ndarray
        Shapes of ``x`` and ``weight``.

    Equations
    ---------
    dweight[o, c, a, b] = sum_{n, i, j} dout[n, o, i, j] * xpad[n, c, i + a, j + b]
    dxpad[n, c, i + a, j + b] += sum_o dout[n, o, i, j] * weight[o, c, a, b]
    """
    x, weight = _check_conv_args(x, weight)
    dout = as_float_array(dout, "dout")
    n, _, h, w = x.shape
    if dout.shape != (n, weight.shape[0], h, w):
        raise ValueError(f"dout must have shape {(n, weight.shape[0], h, w)}, got {dout.shape}")
    o, c, kh, kw = weight.shape
    dout_rows = dout.transpose(0, 2, 3, 1).reshape(n * h * w, o)
    dweight = (dout_rows.T @ _im2col(x, kh, kw)).reshape(weight.shape)
    dcols = (dout_rows @ weight.reshape(o, -1)).reshape(n, h, w, c, kh, kw)
    dpadded = np.zeros((n, c, h + kh - 1, w + kw - 1), dtype=dcols.dtype)
    for a in range(kh):
        for b in range(kw):
            dpadded[:, :, a : a + h, b : b + w] += dcols[:, :, :, :, a, b].transpose(0, 3, 1, 2)
    ph, pw = kh // 2, kw // 2
    dx = np.ascontiguousarray(dpadded[:, :, ph : ph + h, pw : pw + w])
    return dx.astype(x.dtype, copy=False), dweight.astype(weight.dtype, copy=False)


def _conv2d_vjp_maker(argnums, ans, args, kwargs):
    def vjp(g):
        grads = conv2d_vjp(g, *args)
        return tuple(grads[i] for i in argnums)

    return vjp


defvjp_argnums(conv2d, _conv2d_vjp_maker)
