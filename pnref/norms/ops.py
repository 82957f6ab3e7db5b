"""Batch, instance, group and layer normalization: each one choice of groups and axes.

Every op here is `pnref.norms.core.grouped_norm` with a fixed number of groups G and a
fixed reduction set, in the grouped layout ``(N, G, K = C // G, L)``:

| op             | groups G  | statistics over |
|----------------|-----------|-----------------|
| batch_norm     | C         | n, l            |
| instance_norm  | C         | l               |
| group_norm     | given     | k, l            |
| layer_norm     | 1         | k, l            |

Common conventions: batch on axis 0, channels on ``axis`` (1 channels-first, -1 channels-last),
0 to 3 (or more) spatial axes; population variance with ``eps`` inside the square root;
statistics in float64 (shifted two-pass) whatever the input dtype; output in the widest dtype of
``x``, ``gamma``, ``beta``. A constant group gives ``y = beta`` when ``eps > 0``; with
``eps = 0`` it gives NaN (0 * inf) and NumPy's RuntimeWarnings. NaN in a group makes that
group's outputs NaN. An empty input (N = 0) returns an empty array (and zero parameter
gradients).
"""

from __future__ import annotations

import numpy as np

from pnref.norms.core import grouped_norm, grouped_norm_vjp

__all__ = [
    "batch_norm",
    "batch_norm_vjp",
    "instance_norm",
    "instance_norm_vjp",
    "group_norm",
    "group_norm_vjp",
    "layer_norm",
    "layer_norm_vjp",
]

Gradients = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


def batch_norm(
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """Batch normalization in training mode: statistics per channel over batch and space.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Real floating input; batch on axis 0, channels on ``axis``.
    gamma, beta : ndarray of shape (C,), optional
        Per-channel scale and shift; absent means 1 and 0.
    eps : float, default 1e-5
        Added to the batch variance inside the square root; must be >= 0.
    axis : int, default 1
        Channel axis: 1 for channels-first, -1 for channels-last.

    Returns
    -------
    y : ndarray
        Shape of ``x``, widest dtype of ``x``, ``gamma``, ``beta``.

    Equations
    ---------
    For channel c, with mean[c] and var[c] the population mean and variance of x[:, c, ...]
    over the batch and every spatial position:

        y[n, c, ...] = gamma[c] * (x[n, c, ...] - mean[c]) / sqrt(var[c] + eps) + beta[c]

    The running-statistics update and evaluation mode are in `pnref.norms.batch_running`.
    """
    return grouped_norm(x, None, gamma, beta, eps=eps, axis=axis, over_batch=True)


def batch_norm_vjp(
    dy: np.ndarray,
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> Gradients:
    """Backward of `batch_norm`: ``(dx, dgamma, dbeta)``, ``None`` for an absent parameter.

    Equations
    ---------
    With xhat the normalized input, inv_std[c] = 1 / sqrt(var[c] + eps), dxhat = gamma[c] * dy
    and mean_c the mean over the batch and spatial positions of channel c:

        dx     = inv_std[c] * (dxhat - mean_c(dxhat) - xhat * mean_c(dxhat * xhat))
        dgamma = sum over n and space of dy * xhat,   dbeta = sum over n and space of dy
    """
    return grouped_norm_vjp(dy, x, None, gamma, beta, eps=eps, axis=axis, over_batch=True)


def instance_norm(
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """Instance normalization: statistics per sample and channel over the spatial positions.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Real floating input; batch on axis 0, channels on ``axis``. With no spatial axis each
        group holds one value, so ``y = beta`` for ``eps > 0``.
    gamma, beta : ndarray of shape (C,), optional
        Per-channel scale and shift; absent means 1 and 0.
    eps : float, default 1e-5
        Added to the variance inside the square root; must be >= 0.
    axis : int, default 1
        Channel axis: 1 for channels-first, -1 for channels-last.

    Returns
    -------
    y : ndarray
        Shape of ``x``, widest dtype of ``x``, ``gamma``, ``beta``.

    Equations
    ---------
    For sample n and channel c, with mean[n, c] and var[n, c] over the spatial positions:

        y[n, c, ...] = gamma[c] * (x[n, c, ...] - mean[n, c]) / sqrt(var[n, c] + eps) + beta[c]
    """
    return grouped_norm(x, None, gamma, beta, eps=eps, axis=axis)


def instance_norm_vjp(
    dy: np.ndarray,
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> Gradients:
    """Backward of `instance_norm`: ``(dx, dgamma, dbeta)``, ``None`` when absent.

    Equations
    ---------
    With dxhat = gamma[c] * dy and mean_nc the mean over the spatial positions of (n, c):

        dx     = inv_std[n, c] * (dxhat - mean_nc(dxhat) - xhat * mean_nc(dxhat * xhat))
        dgamma = sum over n and space of dy * xhat,   dbeta = sum over n and space of dy
    """
    return grouped_norm_vjp(dy, x, None, gamma, beta, eps=eps, axis=axis)


def group_norm(
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """Group normalization: per sample, over contiguous blocks of C // groups channels and space.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Real floating input; batch on axis 0, channels on ``axis``.
    groups : int
        Number of groups G, a positive divisor of C. Group g holds the channels
        g * C // G to (g + 1) * C // G - 1 (PyTorch's and ONNX-21's convention).
    gamma, beta : ndarray of shape (C,), optional
        Per-channel scale and shift (not per group); absent means 1 and 0.
    eps : float, default 1e-5
        Added to the variance inside the square root; must be >= 0.
    axis : int, default 1
        Channel axis: 1 for channels-first, -1 for channels-last.

    Returns
    -------
    y : ndarray
        Shape of ``x``, widest dtype of ``x``, ``gamma``, ``beta``.

    Equations
    ---------
    For sample n and group g, with mean[n, g] and var[n, g] over the group's K = C // G
    channels and every spatial position, and c = g * K + k:

        y[n, c, ...] = gamma[c] * (x[n, c, ...] - mean[n, g]) / sqrt(var[n, g] + eps) + beta[c]

    ``groups = 1`` is `layer_norm`; ``groups = C`` is `instance_norm`.
    """
    return grouped_norm(x, groups, gamma, beta, eps=eps, axis=axis)


def group_norm_vjp(
    dy: np.ndarray,
    x: np.ndarray,
    groups: int,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> Gradients:
    """Backward of `group_norm`: ``(dx, dgamma, dbeta)``, ``None`` when absent.

    ``groups`` is not differentiable and gets no gradient.

    Equations
    ---------
    With dxhat = gamma[c] * dy and mean_ng the mean over the K channels and the spatial
    positions of group (n, g):

        dx     = inv_std[n, g] * (dxhat - mean_ng(dxhat) - xhat * mean_ng(dxhat * xhat))
        dgamma = sum over n and space of dy * xhat,   dbeta = sum over n and space of dy
    """
    return grouped_norm_vjp(dy, x, groups, gamma, beta, eps=eps, axis=axis)


def layer_norm(
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """Layer normalization in the CNN sense of the paper: one group holding a whole sample.

    Statistics per sample over all channels and all spatial positions; the affine is per
    channel. This is `group_norm` with ``groups = 1``.

    It differs from a transformer-style LayerNorm (PyTorch ``nn.LayerNorm(normalized_shape)``),
    which normalizes over the trailing axes given by ``normalized_shape`` and has an
    elementwise affine of that whole shape: on an (N, C, H, W) input with
    ``normalized_shape = (C, H, W)`` the statistics are the same, but the transformer affine has
    C * H * W entries where this one has C. On a channels-last sequence (N, T, C) the usual
    transformer LayerNorm over the last axis normalizes each position t separately over its C
    features; this function pools all T positions of the sample. On a rank-2 (N, C) input the
    two coincide.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Real floating input; batch on axis 0, channels on ``axis``.
    gamma, beta : ndarray of shape (C,), optional
        Per-channel scale and shift; absent means 1 and 0.
    eps : float, default 1e-5
        Added to the variance inside the square root; must be >= 0.
    axis : int, default 1
        Channel axis: 1 for channels-first, -1 for channels-last.

    Returns
    -------
    y : ndarray
        Shape of ``x``, widest dtype of ``x``, ``gamma``, ``beta``.

    Equations
    ---------
    For sample n, with mean[n] and var[n] over every channel and spatial position of x[n]:

        y[n, c, ...] = gamma[c] * (x[n, c, ...] - mean[n]) / sqrt(var[n] + eps) + beta[c]
    """
    return grouped_norm(x, 1, gamma, beta, eps=eps, axis=axis)


def layer_norm_vjp(
    dy: np.ndarray,
    x: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> Gradients:
    """Backward of `layer_norm`: ``(dx, dgamma, dbeta)``, ``None`` when absent.

    Equations
    ---------
    With dxhat = gamma[c] * dy and mean_n the mean over all of sample n:

        dx     = inv_std[n] * (dxhat - mean_n(dxhat) - xhat * mean_n(dxhat * xhat))
        dgamma = sum over n and space of dy * xhat,   dbeta = sum over n and space of dy
    """
    return grouped_norm_vjp(dy, x, 1, gamma, beta, eps=eps, axis=axis)
