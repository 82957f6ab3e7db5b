"""Batch normalization's running statistics: their update in training and their use in evaluation.

Two momentum conventions are in use and they mean opposite things:

- ``"torch"`` (PyTorch): ``new = (1 - momentum) * old + momentum * batch``, default momentum
  0.1, and the running variance is fed the **unbiased** batch variance (divisor M - 1).
- ``"tf"`` (Keras 3, Flax, ONNX): ``new = momentum * old + (1 - momentum) * batch``,
  default momentum 0.9 to 0.99, and the running variance is fed the **biased** batch variance.
- ``"tf_fused"`` (TensorFlow's fused batch-norm kernel, ``FusedBatchNormV3``: TF1's
  ``tf.compat.v1.nn.fused_batch_norm`` and the layers built on it with ``fused=True``, i.e.
  TF1 and tf.keras 2): the ``"tf"`` momentum rule, but the running variance is fed the
  **unbiased** batch variance (divisor M - 1), as measured with TensorFlow 2.21
  (docs/conventions.md).

``momentum`` therefore has no default here: the caller says which convention and value.
The normalization itself (training and evaluation) always uses the biased variance.
"""

from __future__ import annotations

import numbers

import numpy as np

from pnref._validation import (
    as_float_array,
    channel_shape,
    check_eps,
    per_channel,
    result_dtype,
)
from pnref.norms.core import _check_cotangent, grouped_layout, mean_and_variance

__all__ = ["batch_norm_running_update", "batch_norm_eval", "batch_norm_eval_vjp"]

CONVENTIONS = ("torch", "tf", "tf_fused")


def _check_momentum(momentum) -> float:
    if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real):
        raise TypeError(f"momentum must be a real number, got {type(momentum).__name__}")
    momentum = float(momentum)
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    return momentum


def batch_norm_running_update(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    *,
    momentum: float,
    convention: str = "torch",
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """New running mean and variance after one training batch ``x`` (inputs are not modified).

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        The training batch; batch on axis 0, channels on ``axis``.
    running_mean, running_var : ndarray of shape (C,)
        The current running statistics.
    momentum : float in [0, 1]
        Meaning depends on ``convention`` (see the module docstring); no default on purpose.
    convention : {"torch", "tf", "tf_fused"}
        ``"torch"``: weight ``momentum`` on the batch, unbiased batch variance.
        ``"tf"``: weight ``momentum`` on the old value, biased batch variance.
        ``"tf_fused"``: weight ``momentum`` on the old value, unbiased batch variance.
    axis : int, default 1
        Channel axis.

    Returns
    -------
    new_running_mean, new_running_var : ndarray of shape (C,)
        In the widest dtype of ``x``, ``running_mean``, ``running_var``.

    Raises
    ------
    ValueError
        If the batch has no value per channel (N * spatial = 0), or exactly one under
        ``"torch"`` or ``"tf_fused"`` (the unbiased variance would divide by M - 1 = 0;
        PyTorch refuses such a batch in training too). Under ``"tf"`` one value per channel
        is fine: its biased variance is 0.

    Equations
    ---------
    With M = N * (spatial size) values per channel, batch_mean[c] and batch_var[c] their
    population mean and variance:

        torch: new_mean = (1 - momentum) * running_mean + momentum * batch_mean
               new_var  = (1 - momentum) * running_var  + momentum * batch_var * M / (M - 1)
        tf:    new_mean = momentum * running_mean + (1 - momentum) * batch_mean
               new_var  = momentum * running_var  + (1 - momentum) * batch_var
        tf_fused: new_mean as tf,
               new_var  = momentum * running_var  + (1 - momentum) * batch_var * M / (M - 1)
    """
    x = as_float_array(x, "x")
    layout = grouped_layout(x, axis, None)
    channels = layout.channels
    running_mean = per_channel(running_mean, channels, "running_mean")
    running_var = per_channel(running_var, channels, "running_var")
    if running_mean is None or running_var is None:
        raise TypeError("running_mean and running_var are required arrays, got None")
    if np.any(running_var < 0):
        raise ValueError("running_var must be >= 0 in every channel, got a negative entry")
    momentum = _check_momentum(momentum)
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    out_dtype = result_dtype(x, running_mean, running_var)

    batch, _groups, _per_group, spatial = layout.grouped_shape
    count = batch * spatial
    if count == 0:
        raise ValueError(
            f"x has no value per channel (shape {x.shape}): batch statistics are undefined"
        )
    if convention in ("torch", "tf_fused") and count == 1:
        raise ValueError(
            f"x has a single value per channel (shape {x.shape}): the unbiased running variance "
            f"of the {convention!r} convention divides by M - 1 = 0; use a larger batch or "
            "convention='tf'"
        )
    batch_mean, batch_var = mean_and_variance(layout.to_grouped(x), (0, 2, 3))
    batch_mean = batch_mean.reshape(channels)
    batch_var = batch_var.reshape(channels)
    old_mean = running_mean.astype(np.float64)
    old_var = running_var.astype(np.float64)
    if convention == "torch":
        unbiased_var = batch_var * (count / (count - 1))
        new_mean = (1.0 - momentum) * old_mean + momentum * batch_mean
        new_var = (1.0 - momentum) * old_var + momentum * unbiased_var
    else:
        fed_var = batch_var * (count / (count - 1)) if convention == "tf_fused" else batch_var
        new_mean = momentum * old_mean + (1.0 - momentum) * batch_mean
        new_var = momentum * old_var + (1.0 - momentum) * fed_var
    return new_mean.astype(out_dtype), new_var.astype(out_dtype)


def _prepare_eval(x, running_mean, running_var, gamma, beta, eps, axis):
    x = as_float_array(x, "x")
    layout = grouped_layout(x, axis, None)
    channels = layout.channels
    running_mean = per_channel(running_mean, channels, "running_mean")
    running_var = per_channel(running_var, channels, "running_var")
    if running_mean is None or running_var is None:
        raise TypeError("running_mean and running_var are required arrays, got None")
    if np.any(running_var < 0):
        raise ValueError("running_var must be >= 0 in every channel, got a negative entry")
    gamma = per_channel(gamma, channels, "gamma")
    beta = per_channel(beta, channels, "beta")
    eps = check_eps(eps)
    shape = channel_shape(x.ndim, layout.axis, channels)
    sum_axes = tuple(a for a in range(x.ndim) if a != layout.axis)
    return x, running_mean, running_var, gamma, beta, eps, shape, sum_axes


def batch_norm_eval(
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> np.ndarray:
    """Batch normalization in evaluation mode, with given running statistics.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Real floating input; batch on axis 0, channels on ``axis``.
    running_mean, running_var : ndarray of shape (C,)
        The statistics to normalize with (``running_var >= 0``; NaN propagates).
    gamma, beta : ndarray of shape (C,), optional
        Per-channel scale and shift; absent means 1 and 0.
    eps : float, default 1e-5
        Added to ``running_var`` inside the square root; must be >= 0.
    axis : int, default 1
        Channel axis.

    Returns
    -------
    y : ndarray
        Shape of ``x``, widest dtype of all array arguments.

    Equations
    ---------
        inv_std[c]   = 1 / sqrt(running_var[c] + eps)
        y[n, c, ...] = gamma[c] * (x[n, c, ...] - running_mean[c]) * inv_std[c] + beta[c]
    """
    x, running_mean, running_var, gamma, beta, eps, shape, _sum_axes = _prepare_eval(
        x, running_mean, running_var, gamma, beta, eps, axis
    )
    out_dtype = result_dtype(x, running_mean, running_var, gamma, beta)
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    xhat = (x.astype(np.float64) - running_mean.astype(np.float64).reshape(shape)) * (
        inv_std.reshape(shape)
    )
    y = xhat
    if gamma is not None:
        y = y * gamma.astype(np.float64).reshape(shape)
    if beta is not None:
        y = y + beta.astype(np.float64).reshape(shape)
    return y.astype(out_dtype)


def batch_norm_eval_vjp(
    dy: np.ndarray,
    x: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    gamma: np.ndarray | None = None,
    beta: np.ndarray | None = None,
    *,
    eps: float = 1e-5,
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Backward of `batch_norm_eval`: ``(dx, drunning_mean, drunning_var, dgamma, dbeta)``.

    ``dgamma`` / ``dbeta`` are ``None`` when ``gamma`` / ``beta`` is absent. The statistics are
    constants here (no term through a batch mean), so ``dx`` is a per-channel scaling of ``dy``.

    Equations
    ---------
    With inv_std[c] = 1 / sqrt(running_var[c] + eps), xhat = (x - running_mean[c]) * inv_std[c],
    dxhat = gamma[c] * dy and sums over the batch and spatial positions of channel c:

        dx               = dxhat * inv_std[c]
        drunning_mean[c] = -inv_std[c] * sum(dxhat)
        drunning_var[c]  = -(1/2) * inv_std[c]^2 * sum(dxhat * xhat)
        dgamma[c]        = sum(dy * xhat),   dbeta[c] = sum(dy)
    """
    x, running_mean, running_var, gamma, beta, eps, shape, sum_axes = _prepare_eval(
        x, running_mean, running_var, gamma, beta, eps, axis
    )
    dy = _check_cotangent(dy, x)
    out_dtype = result_dtype(dy, x, running_mean, running_var, gamma, beta)

    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    xhat = (x.astype(np.float64) - running_mean.astype(np.float64).reshape(shape)) * (
        inv_std.reshape(shape)
    )
    dy64 = dy.astype(np.float64)
    dxhat = dy64 if gamma is None else dy64 * gamma.astype(np.float64).reshape(shape)
    dx = dxhat * inv_std.reshape(shape)
    drunning_mean = -inv_std * np.sum(dxhat, axis=sum_axes)
    drunning_var = -0.5 * inv_std * inv_std * np.sum(dxhat * xhat, axis=sum_axes)
    dgamma = None if gamma is None else np.sum(dy64 * xhat, axis=sum_axes).astype(out_dtype)
    dbeta = None if beta is None else np.sum(dy64, axis=sum_axes).astype(out_dtype)
    return (
        dx.astype(out_dtype),
        drunning_mean.astype(out_dtype),
        drunning_var.astype(out_dtype),
        dgamma,
        dbeta,
    )
