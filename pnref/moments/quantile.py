"""The official proxy-moment estimator: n deterministic quantiles of Normal(0, 1).

The authors' code estimates the proxy moments from the points

    u_i = sqrt(2) erfinv(2 (i + 1/2) / n - 1),   i = 0, ..., n - 1,

as the sample mean and the population (biased) variance of f(m + s u_i). This module
reproduces that estimator in float64, and its derivatives are the exact derivatives of
the discrete estimator (what automatic differentiation of the official code computes),
not those of the exact moments it approximates.
"""

from __future__ import annotations

import functools

import numpy as np
from scipy.special import erfinv

from pnref.activations import Activation
from pnref.moments._estimator import sample_moments

__all__ = ["DEFAULT_N", "points", "moments", "moments_with_derivatives"]

DEFAULT_N = 200
"""Number of quantile points used by the official code."""


@functools.lru_cache(maxsize=64)
def _points(n: int) -> np.ndarray:
    index = np.arange(n, dtype=np.float64)
    # 2 (i + 1/2) / n - 1 written as (2 i + 1 - n) / n: the numerator is an exact integer
    # that changes sign under i -> n - 1 - i, so the rounded quotient does too, and the
    # set is exactly symmetric in float64 (the literal form is not: at n = 200 it is off
    # by up to 7e-15). Both forms agree to rounding.
    probabilities = (2.0 * index + 1.0 - n) / n
    u = np.sqrt(2.0) * erfinv(probabilities)
    u.setflags(write=False)
    return u


def points(n: int = DEFAULT_N) -> np.ndarray:
    """The official quantile points of Normal(0, 1), cached and read-only.

    Parameters
    ----------
    n : int
        Number of points, >= 2.

    Returns
    -------
    ndarray, shape (n,), float64
        Increasing, with ``u[n - 1 - i] == -u[i]`` exactly.

    Equations
    ---------
    .. math::

        u_i = \\sqrt{2}\\, \\operatorname{erfinv}\\!\\left(\\frac{2 i + 1 - n}{n}\\right),
        \\qquad i = 0, \\dots, n - 1.

    Their sample variance is below 1 (0.993596 at n = 200): the points are the medians
    of n equal-probability cells, which sit inside the cells, closer to 0 than the cell
    mass they stand for.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 2:
        raise ValueError(f"n must be >= 2 (a sample variance needs two points), got n={n}")
    return _points(int(n))


def moments(
    act: Activation, m: np.ndarray, s: np.ndarray, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Official quantile estimate of the proxy mean and population variance.

    Parameters
    ----------
    act : Activation
    m, s : ndarray
        Broadcast float64 arrays: the proxy pre-activation is Normal(m, s^2), s >= 0.
    n : int, optional
        Number of quantile points (default 200).
    seed : None
        Unused (the estimator is deterministic); accepted for the common signature.

    Returns
    -------
    mean, var : ndarray

    Equations
    ---------
    .. math::

        \\hat\\mu = \\frac1n \\sum_i f(m + s u_i), \\qquad
        \\hat v = \\frac1n \\sum_i \\big(f(m + s u_i) - \\hat\\mu\\big)^2 .
    """
    u = points(DEFAULT_N if n is None else n)
    return sample_moments(act, m, s, u, derivatives=False)


def moments_with_derivatives(
    act: Activation, m: np.ndarray, s: np.ndarray, n: int | None = None, seed: int | None = None
) -> tuple[np.ndarray, ...]:
    """The estimate and its exact derivatives with respect to m and s.

    Returns
    -------
    mean, var, dmean_dm, dmean_ds, dvar_dm, dvar_ds : ndarray

    Equations
    ---------
    With :math:`Z_i = m + s u_i`, :math:`f_i = f(Z_i)`, :math:`f'_i = f'(Z_i)` (left
    derivative at a kink) and bars for the mean over i:

    .. math::

        \\partial_m \\hat\\mu = \\overline{f'}, \\quad
        \\partial_s \\hat\\mu = \\overline{f' u}, \\quad
        \\partial_m \\hat v = 2\\, \\overline{(f - \\hat\\mu)(f' - \\overline{f'})}, \\quad
        \\partial_s \\hat v = 2\\, \\overline{(f - \\hat\\mu)(f' u - \\overline{f' u})}.
    """
    u = points(DEFAULT_N if n is None else n)
    return sample_moments(act, m, s, u, derivatives=True)
