"""Judge one returned array against its expected value under a `Tolerance`.

The two metrics of `pnref.golden.tolerances`:

- ``elementwise``: element ``i`` passes when ``|a_i - e_i| <= rtol * (|e_i| + floor) + atol``,
  ``floor`` the root mean square of the finite expected values (1 where that is 0); the
  array's error/tolerance ratio is the largest of the elementwise ratios.
- ``relative_l2``: ``||a - e||_2 <= rtol * max(||e||_2, rms(cotangent)) + atol * sqrt(size)``;
  the ratio is the left side over the right side.

Non-finite values: a NaN where NaN is expected and an infinity where the same infinity is
expected are exact matches (error 0); any other disagreement involving NaN or an infinity
(a finite value met by inf, inf of the wrong sign, NaN where a number is expected) is an
infinite error.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pnref.golden.tolerances import Tolerance

__all__ = ["Check", "compare", "absolute_errors"]


@dataclass
class Check:
    """The comparison of one returned array with its expected value.

    Attributes
    ----------
    array : str
        The expected array's key (``expected.y``, ``expected_grad.gamma``).
    kind, metric : str
        The tolerance's output kind and metric.
    passed : bool
        ``tolerance_ratio <= 1``.
    max_abs_error, rel_l2_error : float
        Largest absolute error, and ``||a - e|| / ||e||``.
    tolerance_ratio : float
        Error over allowed error (the verdict's number; see the module docstring).
    median_ratio : float
        Median over the elements of ``|a_i - e_i|`` over the elementwise allowed error
        (``relative_l2``: over the allowed norm's per-element share ``allowed / sqrt(size)``).
    worst_index : list of int
        Index of the worst element.
    worst_actual, worst_expected : float or None
        The worst element's returned and expected values.
    rtol, atol : float
        The tolerance applied.
    reason : str
        Why that tolerance (from the suite, or the override's reason).
    source : str
        ``"suite"``, or ``"override: <rule>"`` when a user override replaced it.
    message : str
        Empty when passed, else a one-line explanation.
    """

    array: str
    kind: str
    metric: str
    passed: bool
    max_abs_error: float
    rel_l2_error: float
    tolerance_ratio: float
    median_ratio: float
    worst_index: list[int]
    worst_actual: float | None
    worst_expected: float | None
    rtol: float
    atol: float
    reason: str = ""
    source: str = "suite"
    message: str = ""


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) if a.size else 0.0


def absolute_errors(actual: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """``|actual - expected|`` in float64, with matching NaN and matching infinities at 0.

    Any other non-finite disagreement (NaN against a number, a finite value against inf,
    +inf against -inf) is ``inf``.
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    same = (np.isnan(a) & np.isnan(e)) | (np.isinf(a) & (a == e))
    with np.errstate(invalid="ignore"):
        diff = np.abs(a - e)
    diff = np.where(same, 0.0, diff)
    return np.where(np.isnan(diff), np.inf, diff)


def compare(name: str, actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance,
            cotangent_rms: float = 0.0, *, source: str = "suite") -> Check:
    """Judge ``actual`` against ``expected`` with ``tolerance``.

    Parameters
    ----------
    name : str
        The expected array's key, for the report.
    actual, expected : ndarray
        Same shape; compared in float64.
    tolerance : Tolerance
        Kind, metric, rtol, atol and reason.
    cotangent_rms : float
        RMS of the case's cotangents (the scale floor of gradient checks).
    source : str
        Where the tolerance comes from (``"suite"`` or the override rule), for the report.

    Returns
    -------
    Check
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    diff = absolute_errors(a, e)
    max_abs = float(diff.max()) if diff.size else 0.0
    e_finite = np.where(np.isfinite(e), e, 0.0)
    e_norm = float(np.linalg.norm(e_finite))
    err_norm = float(np.sqrt(np.sum(np.square(diff)))) if diff.size else 0.0
    if err_norm == 0.0:
        rel_l2 = 0.0
    else:
        rel_l2 = err_norm / e_norm if e_norm > 0 else float("inf")
    with np.errstate(divide="ignore", invalid="ignore"):
        if tolerance.metric == "elementwise":
            rms = _rms(e_finite)
            floor = rms if rms > 0 else 1.0
            allowed = tolerance.rtol * (np.abs(e_finite) + floor) + tolerance.atol
            ratios = np.where(diff == 0, 0.0, diff / allowed)
            ratio = float(ratios.max()) if ratios.size else 0.0
            worst = int(np.argmax(ratios)) if ratios.size else 0
        else:
            denominator = max(e_norm, cotangent_rms)
            allowed_norm = tolerance.rtol * denominator + tolerance.atol * np.sqrt(max(e.size, 1))
            ratio = 0.0 if err_norm == 0 else (err_norm / allowed_norm if allowed_norm > 0
                                                else float("inf"))
            share = allowed_norm / np.sqrt(max(e.size, 1))
            ratios = np.where(diff == 0, 0.0, diff / share)
            worst = int(np.argmax(diff)) if diff.size else 0
    median = float(np.median(ratios)) if ratios.size else 0.0
    ratio = float(ratio)
    passed = bool(ratio <= 1.0)
    index = [int(i) for i in np.unravel_index(worst, e.shape)] if e.size else []
    return Check(
        array=name, kind=tolerance.kind, metric=tolerance.metric, passed=passed,
        max_abs_error=max_abs, rel_l2_error=rel_l2, tolerance_ratio=ratio, median_ratio=median,
        worst_index=index,
        worst_actual=float(a.flat[worst]) if a.size else None,
        worst_expected=float(e.flat[worst]) if e.size else None,
        rtol=tolerance.rtol, atol=tolerance.atol, reason=tolerance.reason, source=source,
        message="" if passed else f"{name}: error is {ratio:.3g} x the tolerance",
    )
