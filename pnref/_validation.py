"""Argument checks shared by every op.

Every public function validates its inputs here so that a bad call fails with a
message that names the argument and says what was wrong, instead of a traceback
from deep inside NumPy.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float_array",
    "normalize_axis",
    "check_eps",
    "per_channel",
    "channel_shape",
    "result_dtype",
    "check_out",
    "write_out",
]


def as_float_array(x, name: str) -> np.ndarray:
    """Return ``x`` as a NumPy array of a real floating dtype.

    Raises
    ------
    TypeError
        If ``x`` has an integer, boolean, complex or object dtype. Integers are
        rejected rather than silently promoted: a reference library must not guess
        the precision the caller meant.
    """
    if isinstance(x, np.ma.MaskedArray):  # np.asarray would silently drop the mask
        raise TypeError(
            f"{name} must be a plain ndarray, got a masked array (its mask would be ignored); "
            f"pass {name}.filled(np.nan) to mark the masked values as missing"
        )
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        raise TypeError(
            f"{name} must have a real floating dtype (float16, float32 or float64), "
            f"got dtype {arr.dtype}"
        )
    return arr


def result_dtype(*arrays: np.ndarray | None) -> np.dtype:
    """The floating dtype results are returned in: the widest of the given arrays."""
    present = [a.dtype for a in arrays if a is not None]
    return np.result_type(*present) if present else np.dtype(np.float64)


def normalize_axis(axis: int, ndim: int, name: str = "axis") -> int:
    """Map a possibly negative axis to ``0 <= axis < ndim``, or raise ValueError."""
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an int, got {type(axis).__name__}")
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an input with {ndim} dimensions")
    return int(axis) % ndim


def check_eps(eps, name: str = "eps", *, positive: bool = False) -> float:
    """Check that ``eps`` is a finite real number, >= 0 (or > 0 when ``positive``)."""
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(eps).__name__}")
    eps = float(eps)
    if not np.isfinite(eps):
        raise ValueError(f"{name} must be finite, got {eps}")
    if positive and eps <= 0:
        raise ValueError(f"{name} must be > 0, got {eps}")
    if eps < 0:
        raise ValueError(f"{name} must be >= 0, got {eps}")
    return eps


def channel_shape(ndim: int, axis: int, channels: int) -> tuple[int, ...]:
    """Shape that broadcasts a length-``channels`` vector along ``axis`` of an ndim array."""
    shape = [1] * ndim
    shape[axis] = channels
    return tuple(shape)


def per_channel(p, channels: int, name: str) -> np.ndarray | None:
    """Validate a per-channel parameter: ``None`` or a float array of shape ``(channels,)``."""
    if p is None:
        return None
    arr = as_float_array(p, name)
    if arr.shape != (channels,):
        raise ValueError(
            f"{name} must have shape ({channels},) to match the {channels} channels, "
            f"got shape {arr.shape}"
        )
    return arr


def check_out(out, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray | None:
    """Validate an ``out=`` argument: None, or a writable ndarray of ``shape`` and ``dtype``.

    Raises
    ------
    TypeError
        ``out`` is not a plain ndarray, or has another dtype than the result's (no silent
        cast: the caller would lose precision without knowing).
    ValueError
        ``out`` has another shape than the result's, or is read-only.
    """
    if out is None:
        return None
    if not isinstance(out, np.ndarray) or isinstance(out, np.ma.MaskedArray):
        raise TypeError(f"out must be a NumPy ndarray or None, got {type(out).__name__}")
    if out.shape != tuple(shape):
        raise ValueError(f"out must have the result's shape {tuple(shape)}, got {out.shape}")
    if out.dtype != dtype:
        raise TypeError(f"out must have the result's dtype {np.dtype(dtype)} (the widest "
                        f"floating dtype of the arguments), got {out.dtype}")
    if not out.flags.writeable:
        raise ValueError("out must be writable, got a read-only array")
    return out


def write_out(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``result``, or ``out`` holding it (already checked by `check_out`)."""
    if out is None:
        return result
    np.copyto(out, result)
    return out
