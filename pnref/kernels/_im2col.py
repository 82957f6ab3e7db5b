"""Data movement for the convolution of `pnref.nn.conv`: batch-last layouts and im2col.

The convolution works on images stored batch-last, (C, H, W, N): then a row of the im2col
matrix, for one filter tap (c, a, b), is H W runs of N contiguous values (each run the
shifted pixel (i + a, j + b) of all N images, or N zeros in the padding). The small
networks have 4 x 4 to 8 x 8 images, so the batch-first layout's runs would be only W
values long, and a loop over such short runs costs several times more than the copy it
does (measured: 430 us against 49 us for the (32, 32, 4, 4) input of the CNN's second
stage). These kernels only move values (no arithmetic), so they have no numerics of
their own.
"""

from __future__ import annotations

from numba import njit

__all__ = ["batch_first", "batch_last", "im2col"]

_JIT = {"cache": True, "error_model": "numpy", "fastmath": False}


@njit(**_JIT)
def batch_last(x, out) -> None:
    """Copy ``x`` (N, C, H, W) into ``out`` (C, H, W, N).

    Equations
    ---------
    ``out[c, i, j, n] = x[n, c, i, j]``
    """
    n, c, h, w = x.shape
    for k in range(n):  # read contiguously, write with a stride of N values
        for ci in range(c):
            for i in range(h):
                for j in range(w):
                    out[ci, i, j, k] = x[k, ci, i, j]


@njit(**_JIT)
def batch_first(y, out) -> None:
    """Copy ``y`` (C, H, W, N) into ``out`` (N, C, H, W) (the inverse of `batch_last`).

    Equations
    ---------
    ``out[n, c, i, j] = y[c, i, j, n]``
    """
    c, h, w, n = y.shape
    for k in range(n):
        for ci in range(c):
            for i in range(h):
                for j in range(w):
                    out[k, ci, i, j] = y[ci, i, j, k]


@njit(**_JIT)
def im2col(images, kh: int, kw: int, columns) -> None:
    """Fill ``columns`` (C KH KW, H W N) with the zero-padded windows of batch-last images.

    Parameters
    ----------
    images : ndarray, shape (C, H, W, N), C-contiguous
        The input in the layout of `batch_last`.
    kh, kw : int
        The (odd) kernel size; the padding is KH // 2 and KW // 2 on each side.
    columns : ndarray, shape (C KH KW, H W N), C-contiguous
        Written in full.

    Equations
    ---------
    ``columns[(c, a, b), (i, j, n)] = images[c, i + a - KH // 2, j + b - KW // 2, n]``, and 0
    where that index falls outside the image.
    """
    c, h, w, n = images.shape
    ph = kh // 2
    pw = kw // 2
    for ci in range(c):
        for a in range(kh):
            for b in range(kw):
                row = columns[(ci * kh + a) * kw + b]
                for i in range(h):
                    si = i + a - ph
                    for j in range(w):
                        sj = j + b - pw
                        start = (i * w + j) * n
                        if si < 0 or si >= h or sj < 0 or sj >= w:
                            for k in range(n):
                                row[start + k] = 0.0
                        else:
                            source = images[ci, si, sj]
                            for k in range(n):
                                row[start + k] = source[k]
