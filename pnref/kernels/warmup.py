"""Compile (or load from the on-disk cache) every fused kernel, and time it."""

from __future__ import annotations

import time

import numpy as np

from pnref.kernels._activation_rows import ACTIVATION_CODES
from pnref.kernels._fused import fused_backward, fused_forward
from pnref.kernels._im2col import im2col
from pnref.kernels._quantile import quantile_moments

__all__ = ["KERNEL_DTYPES", "warmup"]

#: The data dtypes the kernels are specialised for (float16 data runs as float32).
KERNEL_DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float64))


def warmup() -> dict[str, float]:
    """Compile every kernel specialisation and run it once on a tiny input.

    Each kernel is specialised by the data dtype only (layout, norm and activation are
    run-time arguments), so two dtypes times forward and backward, plus the float64
    quantile-moment kernel, cover everything; plus the float64 im2col of
    `pnref.nn.conv`.
    The first call in a fresh installation compiles and writes Numba's cache; later
    calls, in any process, load from it.

    Returns
    -------
    dict
        Seconds spent per specialisation (``"forward float32"``, ...,
        ``"quantile moments"``, ``"im2col float64"``) and ``"total"``.

    Equations
    ---------
    None: this runs the kernels of `pnref.kernels._fused` once per dtype.
    """
    timings: dict[str, float] = {}
    start_all = time.perf_counter()
    parameters = np.ones(2), np.zeros(2), np.zeros(2), np.ones(2)
    code = ACTIVATION_CODES["relu"]
    for dtype in KERNEL_DTYPES:
        x3 = np.arange(8, dtype=dtype).reshape(1, 2, 4)
        out3 = np.empty_like(x3)
        statistics = np.empty((2, 1, 2))
        start = time.perf_counter()
        fused_forward(x3, False, 1, 2, 2, 1e-5, *parameters, code, 0.0, out3, statistics[0],
                      statistics[1], 0, 1)
        timings[f"forward {dtype.name}"] = time.perf_counter() - start
        partials = np.zeros((4, 1, 2))
        start = time.perf_counter()
        fused_backward(x3, x3, False, 1, 2, 2, 1e-5, *parameters, code, 0.0, out3,
                       partials[0], partials[1], partials[2], partials[3], statistics[0],
                       statistics[1], False, 0, 1)
        timings[f"backward {dtype.name}"] = time.perf_counter() - start
    start = time.perf_counter()
    quantile_moments(np.array([-1.0, 0.0, 1.0]), np.zeros(2), np.ones(2), code, 0.0,
                     np.empty((6, 2)))
    timings["quantile moments"] = time.perf_counter() - start
    start = time.perf_counter()
    im2col(np.zeros((1, 1, 3, 3)), 3, 3, np.empty((9, 9)))  # pnref.nn.conv (float64)
    timings["im2col float64"] = time.perf_counter() - start
    timings["total"] = time.perf_counter() - start_all
    return timings
