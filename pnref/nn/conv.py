"""Channels-first 2-D convolution (stride 1, zero "same" padding) as an autograd primitive.

Forward and backward are each one large matrix product (GEMM) per output: the windows of
the padded input are a strided view, copied once into the im2col matrix. The input gradient
is itself a "same" correlation (with the flipped filters), so it is the forward's code. The
backward pass is hand-derived and registered with ``autograd.extend``; it computes only the
gradients autograd asks for.
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


def _padded(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """``x`` with ``ph`` rows and ``pw`` columns of zeros on each side (one allocation)."""
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=x.dtype)
    padded[:, :, ph : ph + h, pw : pw + w] = x
    return padded


def _columns(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """The im2col matrix, shape (C * KH * KW, N * H * W), C-contiguous.

    Row ``(c, a, b)``, column ``(n, i, j)`` holds ``xpad[n, c, i + a, j + b]``: the windows
    are a strided view of the padded input (no copy), made contiguous by one copy.
    """
    n, c, h, w = x.shape
    padded = _padded(x, kh // 2, kw // 2)
    s_n, s_c, s_h, s_w = padded.strides
    windows = np.lib.stride_tricks.as_strided(
        padded, (c, kh, kw, n, h, w), (s_c, s_h, s_w, s_n, s_h, s_w), writeable=False)
    return windows.reshape(c * kh * kw, n * h * w)


def _correlate(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``out[n, o] = sum_{c, a, b} weight[o, c, a, b] xpad[n, c, i + a, j + b]`` as one GEMM.

    (O, C KH KW) @ (C KH KW, N H W), then one copy from (O, N, H, W) to (N, O, H, W).
    """
    n, _, h, w = x.shape
    o, _, kh, kw = weight.shape
    out = weight.reshape(o, -1) @ _columns(x, kh, kw)
    return np.ascontiguousarray(out.reshape(o, n, h, w).transpose(1, 0, 2, 3))


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
    return _correlate(x, weight)


#: The autograd primitive (docstring of `_conv2d_forward`); backward: `conv2d_vjp`.
conv2d = primitive(_conv2d_forward)


def _input_gradient(dout: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """dx: the cotangent correlated with the spatially flipped, transposed filters.

    With stride 1 and "same" padding of an odd kernel, the adjoint of the correlation is
    again a "same" correlation: dx[n, c, i, j] = sum_{o, a, b} weight[o, c, KH-1-a, KW-1-b]
    * doutpad[n, o, i + a, j + b].
    """
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return _correlate(dout, flipped)


def _weight_gradient(dout: np.ndarray, x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """dweight (O, C, KH, KW): (O, N H W) @ (N H W, C KH KW), one GEMM."""
    o = dout.shape[1]
    dout_rows = np.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(o, -1)
    return (dout_rows @ _columns(x, kh, kw).T).reshape(o, x.shape[1], kh, kw)


def _check_cotangent(dout, x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    dout = as_float_array(dout, "dout")
    n, _, h, w = x.shape
    if dout.shape != (n, weight.shape[0], h, w):
        raise ValueError(f"dout must have shape {(n, weight.shape[0], h, w)}, got {dout.shape}")
    return dout


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
    dx[n, c, i, j] = sum_{o, a, b} weight[o, c, KH-1-a, KW-1-b] * doutpad[n, o, i + a, j + b]
    (the second is the adjoint of the "same" correlation: a "same" correlation with the
    flipped, transposed filters).
    """
    x, weight = _check_conv_args(x, weight)
    dout = _check_cotangent(dout, x, weight)
    kh, kw = weight.shape[2:]
    dx = _input_gradient(dout, weight)
    dweight = _weight_gradient(dout, x, kh, kw)
    return dx.astype(x.dtype, copy=False), dweight.astype(weight.dtype, copy=False)


def _conv2d_vjp_maker(argnums, ans, args, kwargs):
    """Only the gradients autograd asks for (the input images of a network need none)."""
    x, weight = args

    def vjp(g):
        g = _check_cotangent(g, x, weight)
        grads = []
        for i in argnums:
            if i == 0:
                grads.append(_input_gradient(g, weight).astype(x.dtype, copy=False))
            else:
                kh, kw = weight.shape[2:]
                grads.append(_weight_gradient(g, x, kh, kw).astype(weight.dtype, copy=False))
        return tuple(grads)

    return vjp


defvjp_argnums(conv2d, _conv2d_vjp_maker)
