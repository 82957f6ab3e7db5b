"""The tolerance policy of the golden suites: how far an implementation may be from a case.

Every expected array of a case has an *output kind*; the kind chooses the metric and the
base factor, the case's dtype and moment method choose the unit, and the case's conditioning
number scales it. Nothing here depends on which implementation is being judged, and the
numbers are fixed by this policy, not tuned to let an implementation pass.

Kinds and metrics
-----------------
``output``, ``statistics``
    Elementwise: ``|actual - expected| <= rtol * (|expected| + floor)`` where ``floor`` is the
    root mean square of the expected array (1 where that is 0). The floor is the absolute
    part: an element near zero in a tensor of size one is judged on the tensor's scale, since
    its absolute error comes from operands of that scale.
``input_grad``, ``param_grad``
    Relative L2, as oneDNN's benchdnn judges backward passes:
    ``||actual - expected||_2 <= rtol * max(||expected||_2, rms(cotangent))``. A gradient
    smaller than one cotangent entry is the result of cancellation and is judged on the
    cotangent's scale.

Unit and factors
----------------
``rtol = factor(kind) * unit * condition``, with

- ``unit`` the machine epsilon of the case's dtype (spacing of floats at 1: 2**-23,
  2**-52), i.e. the tolerance scales with the dtype's mantissa; for a float64 case whose
  proxy moments use the official quantile estimator a second term ``factor x eps(float32) x
  (PN-Act's own conditioning)`` is added, because that estimator is defined in float32 (the
  official code builds its quantile points in float32, and frameworks' float32 ``erfinv``
  differs from a float64 one by up to 5e-7) and only PN-Act's division by the proxy standard
  deviation amplifies its error, not the norm before it;
- float16 cases are expected to be computed with float32 statistics (as frameworks do, and
  as the eps-underflow case requires): the condition multiplies float32's unit, and the
  result may be rounded to float16 four times (``FLOAT16_ROUNDINGS`` = 2 x 2**-10, four
  roundings of half an eps each, not amplified by the condition);
- ``factor`` 16 for outputs and statistics (a few roundings plus a pairwise-summed
  reduction of at most a few hundred terms), 32 for input gradients (two reductions and
  the forward's errors), 64 for parameter gradients (reductions over batch and space plus
  the chain through the proxy moments);
- ``condition`` the case's conditioning number recorded by the generator (1 + the largest
  |value| / standard deviation of a normalization group, so that a correct two-pass
  float32 implementation of a group with a large offset is not failed for the rounding of
  its mean, see ``docs/golden-format.md``);
- for cases whose moments are the exact ones (``method`` ``exact`` or ``quadrature``), a
  floor of 1e-12: the closed forms and split quadratures reach 1e-14 to 8e-14 of mpmath
  (``shared/moments.md``), so 1e-12 is their attainable accuracy with a margin of ten;
- for ``montecarlo`` moment cases, whose expected values are the exact moments, an
  absolute statistical tolerance of six standard errors of the ``n``-sample estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = [
    "KINDS",
    "FACTORS",
    "EXACT_MOMENTS_FLOOR",
    "MONTECARLO_SIGMAS",
    "FLOAT16_ROUNDINGS",
    "Tolerance",
    "tolerance_for",
    "montecarlo_tolerance",
    "unit_roundoff",
]

#: Output kinds and the metric each is judged with.
KINDS: dict[str, str] = {
    "output": "elementwise",
    "statistics": "elementwise",
    "input_grad": "relative_l2",
    "param_grad": "relative_l2",
}

#: Base factor per kind, in units of the case's machine epsilon.
FACTORS: dict[str, float] = {
    "output": 16.0,
    "statistics": 16.0,
    "input_grad": 32.0,
    "param_grad": 64.0,
}

#: Relative floor for cases whose proxy moments are exact (closed form or quadrature).
EXACT_MOMENTS_FLOOR = 1e-12

#: Standard errors allowed for a Monte Carlo estimate of the exact moments.
MONTECARLO_SIGMAS = 6.0

#: float16 machine epsilons allowed on top of the float32 arithmetic: four roundings to
#: float16 of at most eps/2 each (the affine, the activation, the centering and the scaling
#: may each round to float16 once).
FLOAT16_ROUNDINGS = 2.0

_REASONS = {
    "output": "elementwise, {factor:g} x eps({unit_dtype}) x condition {condition:.4g}: "
    "a few roundings and one pairwise reduction; absolute floor = rms of the expected array",
    "statistics": "elementwise, {factor:g} x eps({unit_dtype}) x condition {condition:.4g}: "
    "a reduction of a few hundred terms; absolute floor = rms of the expected array",
    "input_grad": "relative L2, {factor:g} x eps({unit_dtype}) x condition {condition:.4g}: "
    "two reductions on top of the forward's errors",
    "param_grad": "relative L2, {factor:g} x eps({unit_dtype}) x condition {condition:.4g}: "
    "reductions over batch and space and the chain through the statistics",
}


@dataclass(frozen=True)
class Tolerance:
    """How one expected array is judged.

    Attributes
    ----------
    kind : str
        One of `KINDS`.
    metric : str
        ``"elementwise"`` or ``"relative_l2"``.
    rtol : float
        Relative tolerance (see the module docstring for the exact inequality).
    atol : float
        Absolute tolerance added to the allowed error (0 except for Monte Carlo cases).
    reason : str
        Why this value, in words; stored in the manifest next to it.
    """

    kind: str
    metric: str
    rtol: float
    atol: float
    reason: str

    def to_json(self) -> dict:
        """The manifest entry for this tolerance."""
        return {
            "kind": self.kind,
            "metric": self.metric,
            "rtol": self.rtol,
            "atol": self.atol,
            "reason": self.reason,
        }

    @classmethod
    def from_json(cls, entry: dict) -> Tolerance:
        """Rebuild a tolerance from its manifest entry (raises KeyError/ValueError if bad)."""
        kind = str(entry["kind"])
        metric = str(entry["metric"])
        if kind not in KINDS or KINDS[kind] != metric:
            raise ValueError(f"unknown tolerance kind/metric pair {kind!r}/{metric!r}")
        rtol, atol = float(entry["rtol"]), float(entry["atol"])
        if not (np.isfinite(rtol) and np.isfinite(atol) and rtol >= 0 and atol >= 0):
            raise ValueError(f"tolerance rtol={rtol}, atol={atol} must be finite and >= 0")
        return cls(kind, metric, rtol, atol, str(entry.get("reason", "")))


def unit_roundoff(dtype: str | np.dtype, method: str | None = None) -> tuple[float, str]:
    """The unit of the tolerance for a case: ``(eps, name of the dtype it comes from)``.

    Parameters
    ----------
    dtype : str or dtype
        The case's floating dtype.
    method : str or None
        The case's proxy-moment method, if it has one. ``"quantile"`` raises the unit to
        at least float32's (the estimator is defined in float32).
    """
    dtype = np.dtype(dtype)
    if not np.issubdtype(dtype, np.floating):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    unit_dtype = dtype
    if method == "quantile" and np.finfo(dtype).eps < np.finfo(np.float32).eps:
        unit_dtype = np.dtype(np.float32)
    return float(np.finfo(unit_dtype).eps), unit_dtype.name


def tolerance_for(
    kind: str, dtype: str | np.dtype, *, condition: float = 1.0, method: str | None = None,
    moments_condition: float | None = None,
) -> Tolerance:
    """The tolerance of one expected array of a case.

    Parameters
    ----------
    kind : str
        Output kind, one of `KINDS`.
    dtype : str or dtype
        The case's dtype (that of its inputs).
    condition : float
        The case's conditioning number, >= 1.
    method : str or None
        The case's proxy-moment method (``None`` for plain normalizations).
    moments_condition : float or None
        For a float64 case using the float32 quantile estimator: the conditioning of
        PN-Act's division by the proxy standard deviation alone (the part of ``condition``
        that amplifies an error of the proxy moments). The float32 unit is then applied to
        it only, and float64's to ``condition``: the norm's conditioning does not amplify
        the estimator's float32 error. ``None``: the float32 unit applies to ``condition``.

    Returns
    -------
    Tolerance

    Notes
    -----
    ``rtol = factor * unit * condition``, except:

    - float16 cases: the policy expects float32 statistics (``shared/conventions.md``), so
      ``condition`` multiplies float32's unit, and float16 adds `FLOAT16_ROUNDINGS`
      roundings of the result, not amplified: ``factor * eps32 * condition + 2 * eps16``;
    - float64 quantile cases with ``moments_condition``:
      ``factor * (eps64 * condition + eps32 * moments_condition)``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {sorted(KINDS)}, got {kind!r}")
    if not (np.isfinite(condition) and condition >= 1.0):
        raise ValueError(f"condition must be a finite number >= 1, got {condition}")
    if moments_condition is not None and not (np.isfinite(moments_condition)
                                              and 1.0 <= moments_condition <= condition):
        raise ValueError(f"moments_condition must be a finite number in [1, condition], got "
                         f"{moments_condition}")
    factor = FACTORS[kind]
    if np.dtype(dtype) == np.float16:
        unit32 = float(np.finfo(np.float32).eps)
        unit16 = float(np.finfo(np.float16).eps)
        rtol = factor * unit32 * condition + FLOAT16_ROUNDINGS * unit16
        reason = _REASONS[kind].format(factor=factor, unit_dtype="float32",
                                       condition=condition)
        reason += (f"; float16 case: float32 statistics expected, so the condition multiplies "
                   f"float32's eps, plus {FLOAT16_ROUNDINGS:g} x eps(float16): up to four "
                   "elementwise float16 roundings of eps/2 (affine, activation, centering, "
                   "scaling), not amplified")
        return Tolerance(kind, KINDS[kind], float(rtol), 0.0, reason)
    unit, unit_dtype = unit_roundoff(dtype, method)
    rtol = factor * unit * condition
    reason = _REASONS[kind].format(factor=factor, unit_dtype=unit_dtype, condition=condition)
    if method == "quantile" and unit_dtype != np.dtype(dtype).name:
        if moments_condition is None:
            reason += "; unit raised to float32's: the official quantile estimator is float32"
        else:
            own = float(np.finfo(np.dtype(dtype)).eps)
            rtol = factor * (own * condition + unit * moments_condition)
            reason = _REASONS[kind].format(factor=factor, unit_dtype=np.dtype(dtype).name,
                                           condition=condition)
            reason += (f"; plus {factor:g} x eps(float32) x {moments_condition:.4g} (the "
                       "conditioning of the division by the proxy standard deviation): the "
                       "official quantile estimator is float32, and only PN-Act's "
                       "conditioning amplifies its error")
    if method in ("exact", "quadrature") and rtol < EXACT_MOMENTS_FLOOR:
        rtol = EXACT_MOMENTS_FLOOR
        reason += (
            f"; floor {EXACT_MOMENTS_FLOOR:g}: attainable accuracy of exact proxy moments "
            "(closed forms and quadrature reach 1e-14 to 8e-14 of mpmath)"
        )
    return Tolerance(kind, KINDS[kind], float(rtol), 0.0, reason)


def montecarlo_tolerance(kind: str, standard_error: float, samples: int) -> Tolerance:
    """Statistical tolerance of a Monte Carlo estimate judged against the exact moments.

    Parameters
    ----------
    kind : str
        ``"statistics"`` (the estimated mean or variance).
    standard_error : float
        The largest standard error of one estimated element for ``samples`` draws.
    samples : int
        Number of draws (recorded in the reason).
    """
    if KINDS.get(kind) != "elementwise":
        raise ValueError(f"Monte Carlo tolerances are elementwise; kind {kind!r} is not")
    atol = MONTECARLO_SIGMAS * float(standard_error)
    reason = (
        f"absolute, {MONTECARLO_SIGMAS:g} standard errors of a {samples}-draw Monte Carlo "
        "estimate against the exact moments (false alarm odds about 2e-9 per element)"
    )
    return Tolerance(kind, KINDS[kind], 0.0, atol, reason)
