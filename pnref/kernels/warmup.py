"""Compile (or load from the on-disk cache) every fused kernel, and time it."""

from __future__ import annotations

import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

__all__ = ["KERNEL_DTYPES", "warmup"]

#: The data dtypes the kernels are specialised for (float16 data runs as float32).
KERNEL_DTYPES: tuple[np.dtype, ...] = (np.dtype(np.float32), np.dtype(np.float64))

#: The specialisations, in two groups of about equal compile time: one per process when
#: two cores compile at once. Each kernel function is in one group only, so no two
#: processes write the same kernel's cache index (the small helpers both groups call are
#: compiled with the same signatures in both, which leaves their index complete).
_GROUPS: tuple[tuple[str, ...], ...] = (
    ("forward float32", "forward float64", "quantile moments", "max pool float64"),
    ("backward float32", "backward float64", "im2col float64"),
)


def _compile(names: tuple[str, ...]) -> dict[str, float]:
    """Run each named specialisation once on a tiny input; seconds per name."""
    from pnref.kernels._activation_rows import ACTIVATION_CODES
    from pnref.kernels._fused import fused_backward, fused_forward
    from pnref.kernels._im2col import batch_first, batch_last, im2col
    from pnref.kernels._pool import window_max, window_max_vjp
    from pnref.kernels._quantile import quantile_moments

    parameters = np.ones(2), np.zeros(2), np.zeros(2), np.ones(2)
    code = ACTIVATION_CODES["relu"]
    timings: dict[str, float] = {}
    for name in names:
        start = time.perf_counter()
        kind, _, dtype = name.partition(" ")
        if kind in ("forward", "backward"):
            x3 = np.arange(8, dtype=dtype).reshape(1, 2, 4)
            out3 = np.empty_like(x3)
            statistics = np.empty((2, 1, 2))
            partials = np.empty((4, 1, 2))
            if kind == "forward":
                fused_forward(x3, False, 1, 2, 2, 1e-5, *parameters, code, 0.0, out3,
                              statistics[0], statistics[1], 0, 1)
            else:
                fused_backward(x3, x3, False, 1, 2, 2, 1e-5, *parameters, code, 0.0, out3,
                               partials[0], partials[1], partials[2], partials[3],
                               statistics[0], statistics[1], False, 0, 1)
        elif name == "quantile moments":
            quantile_moments(np.array([-1.0, 0.0, 1.0]), np.zeros(2), np.ones(2), code, 0.0,
                             np.empty((6, 2)), np.empty(2, dtype=np.bool_))
        elif name == "max pool float64":  # pnref.nn.layers.max_pool2d
            image = np.zeros((1, 1, 2, 2))
            window_max(image, 2, np.empty((1, 1, 1, 1)))
            window_max_vjp(np.ones((1, 1, 1, 1)), image, np.zeros((1, 1, 1, 1)), 2,
                           np.empty((1, 1, 2, 2)))
        else:  # "im2col float64": pnref.nn.conv (batch-last layouts and im2col)
            images = np.zeros((1, 3, 3, 1))
            batch_last(np.zeros((1, 1, 3, 3)), images)
            batch_first(images, np.empty((1, 1, 3, 3)))
            im2col(images, 3, 3, np.empty((9, 9)))
        timings[name] = time.perf_counter() - start
    return timings


def _default_jobs() -> int:
    """2 when a second core is free (load average below cores - 1), else 1.

    On a busy machine two compiling processes only compete with the other jobs and with
    each other (measured on the 2-core machine of docs/performance.md at load 4: 101 s
    wall-clock against 82 s for one process).
    """
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on every platform
        return 1
    return 2 if cores >= 2 and load < cores - 1 else 1


def warmup(jobs: int | None = None) -> dict[str, float]:
    """Compile every kernel specialisation (or load it from Numba's disk cache).

    Each kernel is specialised by the data dtype only (layout, norm and activation are
    run-time arguments), so two dtypes times forward and backward, plus the float64
    quantile-moment kernel, cover everything; plus the float64 data movement of
    `pnref.nn.conv` (batch-last layouts, im2col) and the max pooling of `pnref.nn.layers`.
    With ``jobs`` > 1 the two halves (`_GROUPS`) compile in two fresh processes at once,
    then this process loads everything from the cache (which also checks the cache).
    The first call in a fresh installation compiles and writes Numba's cache; later
    calls, in any process, load from it.

    Parameters
    ----------
    jobs : int, optional
        Processes that compile at once (1 or 2; default: 2 when a second core is free,
        see `_default_jobs`). With 1, everything compiles in this process.

    Returns
    -------
    dict
        Seconds per specialisation (``"forward float32"``, ..., ``"quantile moments"``,
        ``"im2col float64"``, ``"max pool float64"``; the compiling process's figure),
        ``"load"`` (this process, after the parallel compile) and ``"total"``
        (wall-clock).

    Equations
    ---------
    None: this runs the kernels of `pnref.kernels._fused` once per dtype.
    """
    if jobs is None:
        jobs = _default_jobs()
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs must be a positive int, got {jobs!r}")
    start = time.perf_counter()
    timings: dict[str, float] = {}
    names = tuple(name for group in _GROUPS for name in group)
    if jobs == 1:
        timings.update(_compile(names))
    else:
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=len(_GROUPS), mp_context=context) as pool:
            for result in pool.map(_compile, _GROUPS):
                timings.update(result)
        load_start = time.perf_counter()
        _compile(names)
        timings["load"] = time.perf_counter() - load_start
    timings["total"] = time.perf_counter() - start
    return timings
