"""The one normalization core that every op of `pnref.norms` is a choice of axes of.

Two levels, each with its forward and its backward side by side:

1. ``center`` / ``normalize`` / ``normalize_vjp``: standardize an array (in float64) over any set
   of reduction axes, without affine. Others (PN-Act blocks, the Numba kernels' reference) call
   these directly: ``normalize`` returns ``xhat`` together with the float64 statistics
   ``mean`` and ``inv_std``, and ``normalize_vjp_from_stats`` back-propagates from them.
2. ``grouped_norm`` / ``grouped_norm_vjp``: view ``x`` as ``(N, G, C // G, L)`` (batch, group,
   channel within the group, flattened spatial positions), normalize over the within-group axes
   ``(2, 3)`` (and the batch axis 0 for batch norm), then apply a per-channel affine.

The derivation is in ``docs/normalization.md``; the symbols there are the names here.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pnref._validation import (
    as_float_array,
    check_eps,
    normalize_axis,
    per_channel,
    result_dtype,
)

__all__ = [
    "center",
    "mean_and_variance",
    "normalize",
    "normalize_vjp",
    "normalize_vjp_from_stats",
    "GroupedLayout",
    "grouped_layout",
    "grouped_norm",
    "grouped_norm_vjp",
]

Axes = tuple[int, ...]


# --------------------------------------------------------------------------------------------
# Level 1: normalize over reduction axes, no affine
# --------------------------------------------------------------------------------------------


def _as_axes(axes: int | Sequence[int], ndim: int) -> Axes:
    if isinstance(axes, numbers.Integral):
        axes = (axes,)
    return tuple(sorted({normalize_axis(a, ndim, "axes") for a in axes}))


def center(x: np.ndarray, axes: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Deviations from the mean over ``axes`` and that mean, both float64 (shifted two-pass).

    Parameters
    ----------
    x : ndarray
        Real floating input of any dtype; it is converted to float64 first.
    axes : int or sequence of int
        The reduction axes. Every group (one index of the remaining axes) must be non-empty.

    Returns
    -------
    centered : ndarray
        ``x - mean``, float64, shape of ``x``.
    mean : ndarray
        Float64, ``x.shape`` with the reduction axes set to 1.

    Equations
    ---------
    With x_0 the first element of the group (the shift) and M the group size,

        shifted_i  = x_i - x_0
        mean       = x_0 + (1/M) sum_j shifted_j
        centered_i = shifted_i - (1/M) sum_j shifted_j

    Notes
    -----
    The shift is exact when the group's values lie within a factor 2 of ``x_0`` (Sterbenz), so
    a constant group gives exactly zero deviations and a group at 1e4 with a spread of 1e-3
    loses no digits to the float64 rounding of its mean (a plain two-pass would: the rounding
    of a mean near 1e4, about 1e-12, is 1e-9 of the spread). The second pass is the ordinary
    two-pass over the shifted values; nothing squares the raw input (no E[x^2] - E[x]^2).
    """
    x64 = as_float_array(x, "x").astype(np.float64, copy=False)
    axes = _as_axes(axes, x64.ndim)
    first = tuple(slice(0, 1) if a in axes else slice(None) for a in range(x64.ndim))
    shift = x64[first]
    shifted = x64 - shift
    shifted_mean = np.mean(shifted, axis=axes, keepdims=True)
    return shifted - shifted_mean, shift + shifted_mean


def mean_and_variance(x: np.ndarray, axes: int | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Float64 mean and population (biased) variance over ``axes``, keeping the reduced axes.

    Equations
    ---------
        mean = (1/M) sum_i x_i,    var = (1/M) sum_i (x_i - mean)^2

    computed with the shifted two-pass of `center`.
    """
    centered, mean = center(x, axes)
    axes = _as_axes(axes, centered.ndim)
    return mean, np.mean(centered * centered, axis=axes, keepdims=True)


def normalize(
    x: np.ndarray, axes: int | Sequence[int], eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standardize ``x`` over ``axes``: the normalized values and the float64 statistics.

    Parameters
    ----------
    x : ndarray
        Real floating input (any dtype; computed in float64).
    axes : int or sequence of int
        Reduction axes; one group per index of the other axes.
    eps : float
        Added to the variance inside the square root, >= 0.

    Returns
    -------
    xhat : ndarray
        Float64, shape of ``x``.
    mean : ndarray, float64, reduced axes kept with size 1
    inv_std : ndarray
        Float64, same shape as ``mean``: ``1 / sqrt(var + eps)``.

    Equations
    ---------
        xhat_i = (x_i - mean) * inv_std,    inv_std = 1 / sqrt(var + eps)

    with mean and var the group's mean and population variance. With ``eps = 0`` a constant
    group has ``inv_std = inf`` and ``xhat = 0 * inf = NaN``, with NumPy's RuntimeWarnings.
    """
    eps = check_eps(eps)
    centered, mean = center(x, axes)
    axes = _as_axes(axes, centered.ndim)
    # out-of-range groups are rescued below; a constant group with eps = 0 still warns
    # (0 * inf in the return) and gives NaN
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        variance = np.mean(centered * centered, axis=axes, keepdims=True)
        inv_std = 1.0 / np.sqrt(variance + eps)
    _rescue_out_of_range(inv_std, centered, variance, axes, eps)
    return centered * inv_std, mean, inv_std


def _rescue_out_of_range(inv_std, centered, variance, axes, eps) -> None:
    """Fix, in place, ``inv_std`` where squaring the deviations left float64's range.

    Deviations above about 1e154 overflow the variance to inf (``inv_std = 0``: a silent
    all-zero output) and, with ``eps = 0``, deviations below about 1e-154 underflow it to 0
    or to a subnormal (``inv_std = inf`` or digits lost). For those groups only, the
    deviations are divided by a power of two (exact) near their largest magnitude before
    squaring; every other group keeps the plain formula bit for bit. NaN passes through.
    """
    tiny = np.finfo(np.float64).tiny
    with np.errstate(invalid="ignore"):
        bad = np.isposinf(variance) | ((eps == 0.0) & (variance < tiny))
    if not np.any(bad):
        return
    largest = np.max(np.abs(centered), axis=axes, keepdims=True)
    bad &= np.isfinite(largest) & (largest > 0.0)
    if not np.any(bad):
        return
    _, exponent = np.frexp(np.where(bad, largest, 1.0))
    scale = np.ldexp(1.0, exponent)  # a power of two: scaling by it is exact
    scaled = centered / scale
    scaled_variance = np.mean(scaled * scaled, axis=axes, keepdims=True)
    # var + eps = scale^2 (scaled_variance + eps / scale^2); eps / scale^2 only matters (and
    # stays finite) for the overflow case, where scale is large
    rescued = 1.0 / (scale * np.sqrt(scaled_variance + (eps / scale) / scale))
    inv_std[bad] = rescued[bad]


def normalize_vjp_from_stats(
    dxhat: np.ndarray, xhat: np.ndarray, inv_std: np.ndarray, axes: int | Sequence[int]
) -> np.ndarray:
    """Backward of `normalize` from its saved outputs: the float64 gradient on ``x``.

    Equations
    ---------
    With g = dL/dxhat and mean_S the mean over the group,

        dL/dx_i = inv_std * (g_i - mean_S(g) - xhat_i * mean_S(g * xhat))

    This form is exact for every eps (derivation in docs/normalization.md), uses only O(1)
    quantities (xhat, never x - mean divided by a small variance), stays finite on a constant
    group when eps > 0, and makes the group-sum of the gradient vanish up to rounding
    (sum_i xhat_i = 0).
    """
    g = np.asarray(dxhat, dtype=np.float64)
    axes = _as_axes(axes, g.ndim)
    mean_g = np.mean(g, axis=axes, keepdims=True)
    mean_g_xhat = np.mean(g * xhat, axis=axes, keepdims=True)
    return inv_std * (g - mean_g - xhat * mean_g_xhat)


def normalize_vjp(
    dxhat: np.ndarray, x: np.ndarray, axes: int | Sequence[int], eps: float
) -> np.ndarray:
    """Backward of `normalize` with the forward's arguments (recomputes the statistics).

    Equations
    ---------
        dL/dx_i = inv_std * (g_i - mean_S(g) - xhat_i * mean_S(g * xhat)),   g = dL/dxhat

    See `normalize_vjp_from_stats`.
    """
    xhat, _mean, inv_std = normalize(x, axes, eps)
    return normalize_vjp_from_stats(dxhat, xhat, inv_std, axes)


# --------------------------------------------------------------------------------------------
# Level 2: grouped layout (N, G, C // G, L) and the per-channel affine
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GroupedLayout:
    """How an input of shape ``shape`` with channel axis ``axis`` maps to ``(N, G, K, L)``.

    ``N`` is the batch (axis 0), ``G`` the number of groups, ``K = C // G`` the channels per
    group (contiguous blocks of the channel axis), ``L`` the product of the spatial sizes (1 when
    there are none).
    """

    shape: tuple[int, ...]
    axis: int
    groups: int

    @property
    def channels(self) -> int:
        return self.shape[self.axis]

    @property
    def grouped_shape(self) -> tuple[int, int, int, int]:
        spatial = [n for a, n in enumerate(self.shape) if a not in (0, self.axis)]
        return (
            self.shape[0],
            self.groups,
            self.channels // self.groups,
            math.prod(spatial),
        )

    def to_grouped(self, a: np.ndarray) -> np.ndarray:
        """View (or copy, for non-contiguous input) ``a`` as ``(N, G, K, L)``."""
        return np.moveaxis(a, self.axis, 1).reshape(self.grouped_shape)

    def from_grouped(self, a4: np.ndarray) -> np.ndarray:
        """Inverse of `to_grouped`."""
        moved = list(self.shape)
        moved.insert(1, moved.pop(self.axis))  # the shape of moveaxis(x, axis, 1)
        return np.moveaxis(a4.reshape(moved), 1, self.axis)

    def per_channel_grouped(self, p: np.ndarray) -> np.ndarray:
        """A per-channel vector of length C as a float64 ``(1, G, K, 1)`` array."""
        _n, groups, per_group, _l = self.grouped_shape
        return np.asarray(p, dtype=np.float64).reshape(1, groups, per_group, 1)


def grouped_layout(x: np.ndarray, axis: int, groups: int | None) -> GroupedLayout:
    """Validate ``x``'s rank, the channel ``axis`` and ``groups``; return the layout.

    ``groups=None`` means one group per channel. The batch axis is axis 0, so the channel axis
    may not be 0.

    Equations
    ---------
        C = x.shape[axis] = G * K,   channel c = g * K + k,   L = product of the spatial sizes
    """
    if x.ndim < 2:
        raise ValueError(
            f"x must have at least 2 dimensions (batch, channels, *spatial), got shape {x.shape}"
        )
    channel_axis = normalize_axis(axis, x.ndim, "axis")
    if channel_axis == 0:
        raise ValueError(
            f"axis={axis} is the batch axis 0; the channel axis must be another axis "
            "(1 for channels-first, -1 for channels-last)"
        )
    channels = x.shape[channel_axis]
    if groups is None:
        groups = channels
    elif isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
        raise TypeError(f"groups must be an int, got {type(groups).__name__}")
    elif groups < 1 or channels % groups != 0:
        raise ValueError(
            f"groups={groups} must be a positive divisor of the number of channels C={channels}"
        )
    return GroupedLayout(tuple(x.shape), channel_axis, int(groups))


def _reduction_axes(over_batch: bool) -> Axes:
    return (0, 2, 3) if over_batch else (2, 3)


def _prepare(x, gamma, beta, eps, axis, groups):
    x = as_float_array(x, "x")
    layout = grouped_layout(x, axis, groups)
    gamma = per_channel(gamma, layout.channels, "gamma")
    beta = per_channel(beta, layout.channels, "beta")
    eps = check_eps(eps)
    return x, gamma, beta, eps, layout


def _check_cotangent(dy, x: np.ndarray, name: str = "dy", like: str = "x") -> np.ndarray:
    """Validate a cotangent: a float array with the shape of the forward input ``like``."""
    dy = as_float_array(dy, name)
    if dy.shape != x.shape:
        raise ValueError(f"{name} must have the shape of {like}, {x.shape}, got shape {dy.shape}")
    return dy


def grouped_norm(
    x: np.ndarray,
    groups: int | None,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
    over_batch: bool = False,
) -> np.ndarray:
    """Normalize over each group of channels (and the batch if ``over_batch``), affine per channel.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Batch on axis 0, channels on ``axis``, any other axes spatial.
    groups : int or None
        Number of contiguous channel blocks; ``None`` means one group per channel.
    gamma, beta : ndarray of shape (C,) or None
        Per-channel scale and shift (absent means 1 and 0).
    eps : float
        Added to the variance inside the square root, >= 0.
    axis : int
        The channel axis (1 channels-first, -1 channels-last).
    over_batch : bool
        Also reduce over the batch axis (batch norm's training statistics).

    Returns
    -------
    y : ndarray
        Shape and dtype of ``x`` (the widest dtype of ``x``, ``gamma``, ``beta``).

    Equations
    ---------
    In the grouped layout x[n, g, k, l] (channel c = g * K + k), with S the reduction set
    (k and l, plus n when ``over_batch``) and mean_S, var_S its population mean and variance:

        xhat[n, g, k, l] = (x[n, g, k, l] - mean_S) * inv_std,   inv_std = 1 / sqrt(var_S + eps)
        y[n, g, k, l]    = gamma[c] * xhat[n, g, k, l] + beta[c]
    """
    x, gamma, beta, eps, layout = _prepare(x, gamma, beta, eps, axis, groups)
    out_dtype = result_dtype(x, gamma, beta)
    if x.size == 0:
        return np.empty(x.shape, dtype=out_dtype)
    xhat, _mean, _inv_std = normalize(layout.to_grouped(x), _reduction_axes(over_batch), eps)
    y = xhat
    if gamma is not None:
        y = y * layout.per_channel_grouped(gamma)
    if beta is not None:
        y = y + layout.per_channel_grouped(beta)
    return layout.from_grouped(y).astype(out_dtype)


def grouped_norm_vjp(
    dy: np.ndarray,
    x: np.ndarray,
    groups: int | None,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
    over_batch: bool = False,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backward of `grouped_norm`: ``(dx, dgamma, dbeta)``, ``None`` for an absent parameter.

    Equations
    ---------
    With dxhat = gamma[c] * dy and mean_S the mean over the reduction set S:

        dx     = inv_std * (dxhat - mean_S(dxhat) - xhat * mean_S(dxhat * xhat))
        dgamma = sum over n, l of dy * xhat        (per channel c)
        dbeta  = sum over n, l of dy               (per channel c)
    """
    x, gamma, beta, eps, layout = _prepare(x, gamma, beta, eps, axis, groups)
    dy = _check_cotangent(dy, x)
    out_dtype = result_dtype(dy, x, gamma, beta)
    channels = layout.channels
    if x.size == 0:
        dx = np.empty(x.shape, dtype=out_dtype)
        dgamma = None if gamma is None else np.zeros(channels, dtype=out_dtype)
        dbeta = None if beta is None else np.zeros(channels, dtype=out_dtype)
        return dx, dgamma, dbeta

    axes = _reduction_axes(over_batch)
    xhat, _mean, inv_std = normalize(layout.to_grouped(x), axes, eps)
    dy4 = layout.to_grouped(dy).astype(np.float64)
    dgamma = dbeta = None
    if gamma is not None:
        dgamma = np.sum(dy4 * xhat, axis=(0, 3)).reshape(channels).astype(out_dtype)
    if beta is not None:
        dbeta = np.sum(dy4, axis=(0, 3)).reshape(channels).astype(out_dtype)
    dxhat = dy4 if gamma is None else dy4 * layout.per_channel_grouped(gamma)
    dx = normalize_vjp_from_stats(dxhat, xhat, inv_std, axes)
    return layout.from_grouped(dx).astype(out_dtype), dgamma, dbeta
