"""Weighted sums shared by the quadrature, quantile and Monte Carlo methods.

All three methods approximate E g(X), X ~ Normal(0, 1), by a weighted sum
sum_i w_i g(x_i); they differ only in the points x_i and weights w_i. This module
evaluates, for Z_i = m + s x_i, the mean, the (two-pass) variance and their exact
derivatives with respect to m and s of that weighted sum.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pnref.moments._special import two_prod

__all__ = ["weighted_moments"]

# Work on blocks of channels so that a block's (channels x points) arrays stay near this
# many float64 numbers (16 MB): Monte Carlo with 1e5 draws and 1024 channels would
# otherwise allocate 800 MB per temporary.
_BLOCK_ELEMENTS = 2_000_000


def _steps(m: np.ndarray, s: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d = s x and Z = m + s x with Z correct to a few ulp of itself.

    Equations
    ---------
    With s x = p + e exactly (Dekker's two-product), Z = fl(fl(m + p) + e). Near the split
    point x = -m/s, m + p cancels (Sterbenz: exactly), and e carries the rounding of s x that a
    plain m + s x would leave in Z as an error of eps |m| (1e-11 at m = -4e4 against Z = 1).
    """
    d = s * x
    z = m + d
    # Only where m + s x can cancel: |m| > 2 s (|x| up to 40), and both factors small enough
    # for Dekker's product.
    m_b, s_b = np.broadcast_to(m, z.shape), np.broadcast_to(s, z.shape)
    x_b = np.broadcast_to(x, z.shape)
    exact = (np.abs(m_b) > 2.0 * np.abs(s_b)) & (np.abs(s_b) < 1.0e150) & (np.abs(x_b) < 1.0e150)
    if np.any(exact):
        p, e = two_prod(s_b[exact], x_b[exact])
        z[exact] = (m_b[exact] + p) + e
    return d, z


def weighted_moments(
    act,
    m: np.ndarray,
    s: np.ndarray,
    x: np.ndarray,
    w: np.ndarray | None,
    derivatives: bool,
    difference: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
) -> tuple[np.ndarray, ...]:
    """Mean, variance (and derivatives) of f(m + s x_i) under the weights w_i.

    Parameters
    ----------
    act : Activation
        Supplies ``f`` and ``df`` (the left derivative at a kink).
    m, s : ndarray
        Broadcast float64 arrays of the same shape ``S``.
    x : ndarray
        Points, shape ``(N,)`` (shared by every channel) or ``S + (N,)``.
    w : ndarray or None
        Weights of the same shape as ``x``, summing to 1; ``None`` means ``1/N`` each
        (then sums are NumPy's pairwise ``mean``).
    derivatives : bool
        Also return ``dmean_dm, dmean_ds, dvar_dm, dvar_ds``.
    difference : callable, optional
        ``difference(m, d, z) = f(z) - f(m)`` with ``d = s x`` and ``z = m + d`` (formed
        to a few ulp, see `_steps`), computed without cancellation. The sums always
        run over f(Z_i) - f(m), with f(m) added back to the mean (so a constant f has
        variance exactly 0); by default the difference is formed by subtraction, and a
        cancellation-free one removes the two-pass floor eps |f(m)| / (s |f'(m)|) on
        the relative error of the variance of a nearly constant f.

    Equations
    ---------
    With :math:`Z_i = m + s x_i`, :math:`f_i = f(Z_i)`, :math:`f'_i = f'(Z_i)`:

    .. math::

        \\mu = f(m) + \\sum_i w_i (f_i - f(m)), \\quad v = \\sum_i w_i (f_i - \\mu)^2,

        \\partial_m \\mu = \\sum_i w_i f'_i, \\quad \\partial_s \\mu = \\sum_i w_i f'_i x_i,

        \\partial_m v = 2 \\sum_i w_i (f_i - \\mu)(f'_i - \\partial_m \\mu), \\quad
        \\partial_s v = 2 \\sum_i w_i (f_i - \\mu)(f'_i x_i - \\partial_s \\mu).

    The centring of the derivative sums changes nothing in exact arithmetic (the
    deviations sum to zero) and keeps them free of cancellation.
    """
    shape = m.shape
    n_out = 6 if derivatives else 2
    outs = [np.empty(shape) for _ in range(n_out)]
    n_points = x.shape[-1]
    per_channel_points = x.ndim > 1
    m_flat = m.reshape(-1)
    s_flat = s.reshape(-1)
    x_flat = x.reshape(-1, n_points) if per_channel_points else x
    w_flat = None if w is None else (w.reshape(-1, n_points) if w.ndim > 1 else w)
    outs_flat = [o.reshape(-1) for o in outs]
    block = max(1, _BLOCK_ELEMENTS // max(n_points, 1))

    def wsum(values: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
        if weights is None:
            return np.mean(values, axis=-1)
        return np.sum(weights * values, axis=-1)

    for start in range(0, m_flat.size, block):
        stop = min(start + block, m_flat.size)
        xb = x_flat[start:stop] if per_channel_points else x_flat[None, :]
        wb = None
        if w_flat is not None:
            wb = w_flat[start:stop] if w_flat.ndim > 1 else w_flat[None, :]
        centre = m_flat[start:stop]
        step, z = _steps(centre[:, None], s_flat[start:stop, None], xb)
        # Sums run over f(Z_i) - f(m): a constant f then has variance exactly 0 (with
        # f itself, the rounding of the weights' sum would leave (eps f)^2), and a known
        # cancellation-free difference removes the two-pass floor as well.
        f_centre = act.f(centre)
        if difference is None:
            shifted = act.f(z) - f_centre[:, None]
        else:
            shifted = difference(centre[:, None], step, z)
        shifted_mean = wsum(shifted, wb)
        deviation = shifted - shifted_mean[:, None]
        mean = f_centre + shifted_mean
        outs_flat[0][start:stop] = mean
        outs_flat[1][start:stop] = wsum(deviation * deviation, wb)
        if derivatives:
            df = act.df(z)
            dmean_dm = wsum(df, wb)
            df_x = df * xb
            dmean_ds = wsum(df_x, wb)
            outs_flat[2][start:stop] = dmean_dm
            outs_flat[3][start:stop] = dmean_ds
            outs_flat[4][start:stop] = 2.0 * wsum(deviation * (df - dmean_dm[:, None]), wb)
            outs_flat[5][start:stop] = 2.0 * wsum(deviation * (df_x - dmean_ds[:, None]), wb)
    return tuple(outs)
