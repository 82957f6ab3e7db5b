"""Conditioning numbers of golden cases: how much rounding a correct implementation amplifies.

A normalization computes ``x - mean`` and divides by ``sqrt(var + eps)``; a correct
implementation working in precision ``u`` makes an error of about ``u * max|x|`` in that
difference, i.e. ``u * max|x| / sqrt(var + eps)`` in the normalized value. The conditioning
number of a case is therefore ``1 + max over groups of max|x| / sqrt(var + eps)`` (a group
of identical values whose sum is exact in any order contributes nothing: its centered values
are exactly 0); the
tolerance policy multiplies its unit by it (``pnref.golden.tolerances``). For PN-Act the same
reasoning applies to ``phi(z) - proxy_mean`` over ``sqrt(proxy_var + eps)``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["grouped_condition", "pn_condition"]


def grouped_condition(
    x: np.ndarray, axis: int, groups: int | None, eps: float, *, over_batch: bool = False
) -> float:
    """Conditioning of normalizing ``x`` per group (``groups=None``: one group per channel).

    Parameters
    ----------
    x : ndarray
        The (rounded) input, batch on axis 0, channels on ``axis``.
    axis : int
        Channel axis.
    groups : int or None
        Number of groups; ``None`` means one per channel.
    eps : float
        The norm's eps.
    over_batch : bool
        Statistics over the batch too (batch normalization).
    """
    x_in = x
    x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, 1)
    if x.size == 0:
        return 1.0
    batch, channels = x.shape[0], x.shape[1]
    groups = channels if groups is None else groups
    grouped = x.reshape(batch, groups, -1)
    if over_batch:
        grouped = np.moveaxis(grouped, 0, 1).reshape(1, groups, -1)
    mean = grouped.mean(axis=2, keepdims=True)
    var = ((grouped - mean) ** 2).mean(axis=2)
    largest = np.abs(grouped).max(axis=2)
    amplification = largest / np.sqrt(var + eps)
    exact = _exactly_constant(grouped, np.dtype(np.asarray(x_in).dtype))
    amplification = np.where(exact, 0.0, amplification)
    return float(1.0 + np.max(amplification))


def _exactly_constant(grouped: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Groups whose values are all equal to a v whose multiples k v (k <= count) are exact.

    Any summation order then gives the mean v exactly and ``x - mean`` is exactly 0: the
    group's output (0) carries no rounding error, however large ``v / sqrt(eps)`` is.
    """
    count = grouped.shape[2]
    first = grouped[:, :, :1]
    constant = np.all(grouped == first, axis=2)
    if not np.issubdtype(dtype, np.floating):
        dtype = np.dtype(np.float64)
    mantissa = np.finfo(dtype).nmant + 1
    value = first[:, :, 0]
    _, exponent = np.frexp(value)
    # v = integer * 2**(exponent - mantissa); its significant bits plus log2(count) must fit
    scaled = np.ldexp(value, mantissa - exponent)
    bits = mantissa - _trailing_zero_bits(scaled)
    fits = bits + int(np.ceil(np.log2(max(count, 1)))) <= mantissa
    return constant & (fits | (value == 0))


def _trailing_zero_bits(integers: np.ndarray) -> np.ndarray:
    as_int = np.abs(integers).astype(np.int64)
    zeros = np.zeros(as_int.shape, dtype=np.int64)
    for _ in range(64):
        even = (as_int % 2 == 0) & (as_int != 0)
        if not even.any():
            break
        zeros += even
        as_int = np.where(even, as_int // 2, as_int)
    return zeros


def pn_condition(activated: np.ndarray, proxy_mean: np.ndarray, proxy_var: np.ndarray,
                 eps: float, axis: int) -> float:
    """Conditioning of ``(phi(z) - proxy_mean) / sqrt(proxy_var + eps)`` per channel.

    Parameters
    ----------
    activated : ndarray
        ``phi(gamma * y + beta)`` in float64.
    proxy_mean, proxy_var : ndarray of shape (C,)
        The proxy moments.
    eps : float
        PN's eps.
    axis : int
        Channel axis of ``activated``.
    """
    moved = np.moveaxis(np.asarray(activated, dtype=np.float64), axis, -1)
    flat = moved.reshape(-1, moved.shape[-1])
    largest = np.maximum(np.abs(flat).max(axis=0, initial=0.0), np.abs(proxy_mean))
    return float(1.0 + np.max(largest / np.sqrt(proxy_var + eps)))
