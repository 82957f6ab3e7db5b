"""Weight standardization: each output filter of a weight tensor standardized over its fan-in.

Used by the paper's LN+WS baseline. The weight is standardized (not the activations), so the
statistics are over everything one output filter sees: for a convolution weight of shape
(C_out, C_in, kh, kw) with ``axis=0``, the C_in * kh * kw entries of each filter.

Choice of eps: ``WS_EPS = 1e-10``, inside the square root with the population variance. A
He-initialized filter has variance 2 / fan_in, about 2e-4 for a 3x3x1024 filter and still
above 1e-5 for fan-ins up to 2e5. The usual activation eps of 1e-5 would shrink a 3x3x1024
filter by 2.4 % in scale (sqrt(2e-4 / (2e-4 + 1e-5)) = 0.976, 4.8 % in variance), which is no
longer a standardization. With 1e-10 the standardized variance var / (var + eps) (exact, with
the population variance) is 1 to better than 1e-5 for every such fan-in, and a constant (for
instance zero-initialized) filter still maps to exactly 0 instead of NaN.
"""

from __future__ import annotations

import numpy as np

from pnref._validation import as_float_array, check_eps, normalize_axis
from pnref.norms.core import _check_cotangent, normalize, normalize_vjp_from_stats

__all__ = [
    "WS_EPS",
    "weight_standardization",
    "weight_standardization_saving",
    "weight_standardization_vjp",
    "weight_standardization_vjp_saved",
]

WS_EPS = 1e-10


def _filters(w, axis: int) -> tuple[np.ndarray, int]:
    w = as_float_array(w, "w")
    if w.ndim < 2:
        raise ValueError(
            f"w must have at least 2 dimensions (output filters and fan-in), got shape {w.shape}"
        )
    return w, normalize_axis(axis, w.ndim, "axis")


def _as_rows(w: np.ndarray, filter_axis: int) -> np.ndarray:
    """The weight as (C_out, fan_in): one row per output filter."""
    moved = np.moveaxis(w, filter_axis, 0)
    return moved.reshape(moved.shape[0], -1)


def _from_rows(rows: np.ndarray, w: np.ndarray, filter_axis: int) -> np.ndarray:
    moved_shape = list(w.shape)
    moved_shape.insert(0, moved_shape.pop(filter_axis))  # the shape of moveaxis(w, axis, 0)
    return np.moveaxis(rows.reshape(moved_shape), 0, filter_axis)


def weight_standardization(w: np.ndarray, *, eps: float = WS_EPS, axis: int = 0) -> np.ndarray:
    """Standardize each output filter of ``w`` over its fan-in.

    Parameters
    ----------
    w : ndarray, at least 2-D
        A weight whose ``axis`` indexes output filters, e.g. (C_out, C_in, kh, kw) for a
        convolution or (C_out, C_in) for a dense layer.
    eps : float, optional
        Default ``WS_EPS = 1e-10``.
        Added to the population variance inside the square root, >= 0 (why this value: see the
        module docstring). With ``eps = 0`` a constant filter gives NaN.
    axis : int, default 0
        The output-filter axis.

    Returns
    -------
    w_hat : ndarray
        Shape and dtype of ``w``.

    Equations
    ---------
    For output filter o, with mean[o] and var[o] the population mean and variance of its
    fan-in entries w[o, i] (i running over all the other axes):

        w_hat[o, i] = (w[o, i] - mean[o]) / sqrt(var[o] + eps)
    """
    return weight_standardization_saving(w, eps=eps, axis=axis)[0]


def weight_standardization_saving(
    w: np.ndarray, *, eps: float = WS_EPS, axis: int = 0
) -> tuple[np.ndarray, tuple | None]:
    """`weight_standardization` and what its VJP needs (``None`` for an empty ``w``).

    A training step standardizes the weight and then differentiates through it; handing
    the second element to `weight_standardization_vjp_saved` spares the VJP the statistics
    the forward computed. The results are those of `weight_standardization` and
    `weight_standardization_vjp`, bit for bit (the same code computes the statistics).
    """
    w, filter_axis = _filters(w, axis)
    eps = check_eps(eps)
    if w.size == 0:
        return np.empty(w.shape, dtype=w.dtype), None
    w_hat_rows, _mean, inv_std = normalize(_as_rows(w, filter_axis), 1, eps)
    w_hat = _from_rows(w_hat_rows, w, filter_axis).astype(w.dtype)
    return w_hat, (w, filter_axis, w_hat_rows, inv_std)


def weight_standardization_vjp(
    dw_hat: np.ndarray, w: np.ndarray, *, eps: float = WS_EPS, axis: int = 0
) -> tuple[np.ndarray]:
    """Backward of `weight_standardization`: the 1-tuple ``(dw,)``.

    Equations
    ---------
    With inv_std[o] = 1 / sqrt(var[o] + eps) and means over the fan-in of filter o:

        dw[o, i] = inv_std[o] * (dw_hat[o, i] - mean_i(dw_hat[o, :])
                                 - w_hat[o, i] * mean_i(dw_hat[o, :] * w_hat[o, :]))
    """
    w, filter_axis = _filters(w, axis)
    eps = check_eps(eps)
    dw_hat = _check_cotangent(dw_hat, w, "dw_hat", "w")
    if w.size == 0:
        return (np.empty(w.shape, dtype=np.result_type(dw_hat.dtype, w.dtype)),)
    return weight_standardization_vjp_saved(
        dw_hat, weight_standardization_saving(w, eps=eps, axis=axis)[1])


def weight_standardization_vjp_saved(dw_hat: np.ndarray, saved: tuple) -> tuple[np.ndarray]:
    """`weight_standardization_vjp` from the ``saved`` of `weight_standardization_saving`.

    Equations
    ---------
    As `weight_standardization_vjp`, with ``w_hat`` and ``inv_std`` read from ``saved``.
    """
    w, filter_axis, w_hat_rows, inv_std = saved
    dw_hat = _check_cotangent(dw_hat, w, "dw_hat", "w")
    out_dtype = np.result_type(dw_hat.dtype, w.dtype)
    dw = normalize_vjp_from_stats(_as_rows(dw_hat, filter_axis), w_hat_rows, inv_std, 1)
    return (_from_rows(dw, w, filter_axis).astype(out_dtype),)
