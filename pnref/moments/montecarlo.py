"""Proxy moments by plain Monte Carlo (for teaching and for checking the others).

``n`` standard normal draws X_i from ``numpy.random.default_rng(seed)`` are shared by
every channel; the estimate is the sample mean and the population variance of
f(m + s X_i), and its derivatives are the exact derivatives of that sampled estimator
with the same draws. The statistical error of the mean is about sqrt(v / n).
"""

from __future__ import annotations

import functools

import numpy as np

from pnref.activations import Activation
from pnref.moments._estimator import sample_moments

__all__ = ["DEFAULT_N", "DEFAULT_SEED", "draws", "moments", "moments_with_derivatives"]

DEFAULT_N = 100_000
DEFAULT_SEED = 0


@functools.lru_cache(maxsize=8)
def _draws(n: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal(n)
    x.setflags(write=False)
    return x


def draws(n: int = DEFAULT_N, seed: int = DEFAULT_SEED) -> np.ndarray:
    """The standard normal draws used for ``(n, seed)``, cached and read-only.

    Equations
    ---------
    .. math::

        X_i \\sim \\mathcal N(0, 1) \\text{ i.i.d.}, \\quad i = 0, \\dots, n - 1,
        \\text{ from } \\texttt{default\\_rng(seed).standard\\_normal(n)} .
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n must be an int >= 2 (a sample variance needs two draws), got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    return _draws(int(n), int(seed))


def moments(
    act: Activation, m: np.ndarray, s: np.ndarray, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Monte Carlo estimate of the proxy mean and population variance.

    Parameters
    ----------
    act : Activation
    m, s : ndarray
        Broadcast float64 arrays, s >= 0.
    n : int, optional
        Number of draws (default 100000).
    seed : int, optional
        Seed of ``numpy.random.default_rng`` (default 0).

    Returns
    -------
    mean, var : ndarray

    Equations
    ---------
    .. math::

        \\hat\\mu = \\frac1n \\sum_i f(m + s X_i), \\qquad
        \\hat v = \\frac1n \\sum_i \\big(f(m + s X_i) - \\hat\\mu\\big)^2 .
    """
    x = draws(DEFAULT_N if n is None else n, DEFAULT_SEED if seed is None else seed)
    return sample_moments(act, m, s, x, derivatives=False)


def moments_with_derivatives(
    act: Activation, m: np.ndarray, s: np.ndarray, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, ...]:
    """The Monte Carlo estimate and its exact derivatives (same draws).

    Returns
    -------
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds : ndarray

    Equations
    ---------
    With bars for sample means over the draws, Z_i = m + s X_i:

    .. math::

        \\partial_m \\hat\\mu = \\overline{f'(Z)}, \\quad
        \\partial_s \\hat\\mu = \\overline{f'(Z) X}, \\quad
        \\partial_m \\hat v = 2\\, \\overline{(f - \\hat\\mu)(f' - \\overline{f'})}, \\quad
        \\partial_s \\hat v = 2\\, \\overline{(f - \\hat\\mu)(f' X - \\overline{f' X})}.
    """
    x = draws(DEFAULT_N if n is None else n, DEFAULT_SEED if seed is None else seed)
    return sample_moments(act, m, s, x, derivatives=True)
