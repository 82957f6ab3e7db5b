"""Channels-first 2-D convolution (stride 1, zero "same" padding) as an autograd primitive.

Forward and backward are each one large matrix product (GEMM) per output, on the im2col
matrix of the zero-padded input windows. Internally the images are stored batch-last,
(C, H, W, N), so that the im2col rows are runs of N contiguous values rather than runs of
W (4 to 8 in the small networks); the copies in and out of that layout and the im2col are
Numba loops (`pnref.kernels._im2col`). The input gradient is itself a "same" correlation (with
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


def _batch_last(x: np.ndarray) -> np.ndarray:
    """``x`` (N, C, H, W) copied to the batch-last layout (C, H, W, N)."""
    from pnref.kernels._im2col import batch_last

    n, c, h, w = x.shape
    out = np.empty((c, h, w, n), dtype=x.dtype)
    batch_last(np.ascontiguousarray(x), out)
    return out


def _columns(images: np.ndarray, kh: int, kw: int) -> np.ndarray:
    """The im2col matrix of batch-last ``images`` (C, H, W, N): shape (C KH KW, H W N).

    Row ``(c, a, b)``, column ``(i, j, n)`` holds ``xpad[n, c, i + a, j + b]`` (written by
    the Numba loop `pnref.kernels._im2col.im2col`, imported on first use).
    """
    from pnref.kernels._im2col import im2col

    c, h, w, n = images.shape
    columns = np.empty((c * kh * kw, h * w * n), dtype=images.dtype)
    im2col(images, kh, kw, columns)
    return columns


def _correlate_columns(columns: np.ndarray, weight: np.ndarray, n: int, h: int,
                       w: int) -> np.ndarray:
    """The correlation from the im2col matrix: (O, C KH KW) @ (C KH KW, H W N), one GEMM,
    then one copy from the batch-last (O, H, W, N) to (N, O, H, W)."""
    from pnref.kernels._im2col import batch_first

    o = weight.shape[0]
    out_last = (weight.reshape(o, -1) @ columns).reshape(o, h, w, n)
    out = np.empty((n, o, h, w), dtype=out_last.dtype)
    batch_first(out_last, out)
    return out


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
    columns = _columns(_batch_last(x), *weight.shape[2:])
    return _correlate_columns(columns, weight, n, h, w), (x, weight, columns)


def _input_gradient(dout_last: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """dx from the batch-last cotangent (O, H, W, N): a correlation with the spatially
    flipped, transposed filters.

    With stride 1 and "same" padding of an odd kernel, the adjoint of the correlation is
    again a "same" correlation: dx[n, c, i, j] = sum_{o, a, b} weight[o, c, KH-1-a, KW-1-b]
    * doutpad[n, o, i + a, j + b].
    """
    flipped = np.ascontiguousarray(weight[:, :, ::-1, ::-1].transpose(1, 0, 2, 3))
    _, h, w, n = dout_last.shape
    return _correlate_columns(_columns(dout_last, *weight.shape[2:]), flipped, n, h, w)


def _weight_gradient(dout_last: np.ndarray, columns: np.ndarray, weight_shape) -> np.ndarray:
    """dweight (O, C, KH, KW): (O, H W N) @ (H W N, C KH KW), one GEMM on the im2col of x."""
    o = dout_last.shape[0]
    return (dout_last.reshape(o, -1) @ columns.T).reshape(weight_shape)


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
    dout_last = _batch_last(_check_cotangent(dout, x, weight))
    grads = []
    for position in positions:
        if position == 0:
            grads.append(_input_gradient(dout_last, weight).astype(x.dtype, copy=False))
        else:
            dweight = _weight_gradient(dout_last, columns, weight.shape)
            grads.append(dweight.astype(weight.dtype, copy=False))
    return tuple(grads)


#: The autograd primitive (docstring of `_conv2d_forward`); backward: `conv2d_vjp`, reusing
#: the forward's im2col matrix and computing only the gradients autograd asks for.
conv2d = make_primitive_with_residuals(_conv2d_saving, _conv2d_vjp_saved, conv2d_vjp, (0, 1))
conv2d.__doc__ = _conv2d_forward.__doc__
