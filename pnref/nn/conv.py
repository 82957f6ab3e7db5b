"""Channels-first 2-D convolution (stride 1, zero "same" padding) as an autograd primitive.

Forward and backward are each one large matrix product (GEMM) per output, on the im2col
matrix of the zero-padded input windows (written by one Numba loop,
`pnref.kernels._im2col.im2col`). The input gradient is itself a "same" correlation (with
the flipped filters), so it is the forward's code. The backward pass is hand-derived and
registered with ``autograd.extend``; it reuses the forward's im2col
(`pnref.autograd_ops.make_primitive_with_residuals`) and computes only the gradients
autograd asks for.
"""

from __future__ import annotations

import numpy as np

from pnref._validation import as_float_array
from pnref.autograd_ops import make_primitive_with_residuals

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


def _columns(x: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """The im2col matrix, shape (C * KH * KW, N * H * W), C-contiguous.

    Row ``(c, a, b)``, column ``(n, i, j)`` holds ``xpad[n, c, i + a, j + b]`` (written by
    the Numba loop `pnref.kernels._im2col.im2col`, imported on first use).
    """
    from pnref.kernels._im2col import im2col

    n, c, h, w = x.shape
    columns = np.empty((c * kh * kw, n * h * w), dtype=x.dtype)
    im2col(np.ascontiguousarray(x), kh, kw, columns)
    return columns


def _correlate_columns(columns: np.ndarray, weight: np.ndarray, n: int, h: int,
                       w: int) -> np.ndarray:
    """The correlation from the im2col matrix: (O, C KH KW) @ (C KH KW, N H W), one GEMM,
    then one copy from (O, N, H, W) to (N, O, H, W)."""
    o = weight.shape[0]
    out = weight.reshape(o, -1) @ columns
    return np.ascontiguousarray(out.reshape(o, n, h, w).transpose(1, 0, 2, 3))


def _correlate(x: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``out[n, o] = sum_{c, a, b} weight[o, c, a, b] xpad[n, c, i + a, j + b]``."""
    n, _, h, w = x.shape
    return _correlate_columns(_columns(x, *weight.shape[2:]), weight, n, h, w)


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
    return _conv2d_saving(x, weight)[0]


def _conv2d_saving(x, weight) -> tuple[np.ndarray, tuple]:
    """`_conv2d_forward` and what the backward pass reuses: (x, weight, im2col of x)."""
    x, weight = _check_conv_args(x, weight)
    n, _, h, w = x.shape
    columns = _columns(x, *weight.shape[2:])
    return _correlate_columns(columns, weight, n, h, w), (x, weight, columns)


def _input_gradient(dout: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """dx: the cotangent correlated with the spatially flipped, transposed filters.

    With stride 1 and "same" padding of an odd kernel, the adjoint of the correlation is
    again a "same" correlation: dx[n, c, i, j] = sum_{o, a, b} weight[o, c, KH-1-a, KW-1-b]
    * doutpad[n, o, i + a, j + b].
    """
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    return _correlate(dout, flipped)


def _weight_gradient(dout: np.ndarray, columns: np.ndarray, weight_shape) -> np.ndarray:
    """dweight (O, C, KH, KW): (O, N H W) @ (N H W, C KH KW), one GEMM on the im2col of x."""
    o = dout.shape[1]
    dout_rows = np.ascontiguousarray(dout.transpose(1, 0, 2, 3)).reshape(o, -1)
    return (dout_rows @ columns.T).reshape(weight_shape)


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
    return _conv2d_vjp_saved(dout, _conv2d_saving(x, weight)[1], (0, 1))


def _conv2d_vjp_saved(dout, saved: tuple, positions: tuple[int, ...]) -> tuple:
    """The gradients with respect to ``positions`` (0: x, 1: weight) only."""
    x, weight, columns = saved
    dout = _check_cotangent(dout, x, weight)
    grads = []
    for position in positions:
        if position == 0:
            grads.append(_input_gradient(dout, weight).astype(x.dtype, copy=False))
        else:
            dweight = _weight_gradient(dout, columns, weight.shape)
            grads.append(dweight.astype(weight.dtype, copy=False))
    return tuple(grads)


#: The autograd primitive (docstring of `_conv2d_forward`); backward: `conv2d_vjp`, reusing
#: the forward's im2col matrix and computing only the gradients autograd asks for.
conv2d = make_primitive_with_residuals(_conv2d_saving, _conv2d_vjp_saved, conv2d_vjp, (0, 1))
conv2d.__doc__ = _conv2d_forward.__doc__
