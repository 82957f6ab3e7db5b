"""Name the mistake: which catalogued deviations reproduce a failing implementation's output.

For a failed case, every deviation of `pnref.golden.deviations` that applies to the case's op
is evaluated (each of its variants, keeping the best), then pairs of the most promising ones.
A candidate *explains* the implementation's output when both hold:

1. it is visible on this case: the deviant answer differs from the reference answer by more
   than the case's tolerance on at least one array (a deviation that changes nothing cannot
   be told apart from a correct implementation);
2. it reproduces the output: its error/tolerance ratio ``r`` (the worst over the arrays the
   implementation returned, judged exactly as verify judges the reference: `compare`) is
   at most 1, or at most ``R / FAR_CLOSER`` where ``R`` is the implementation's ratio
   against the reference (the candidate is "far closer" than the reference: it accounts for
   at least 90 % of the error on the log scale of tolerances, e.g. a port with the mistake
   plus a second, unknown one).

Candidates are returned best first (smallest ``r``; at equal `rank_key` single deviations
before pairs, then catalogue order). Pairs are tried only when no
single deviation is within tolerance, among the `PAIR_POOL` visible single variants that came
closest to the output (a mistake can move the answer away from a port's output alone and
still be half of it).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import numpy as np

from pnref.golden.compare import compare
from pnref.golden.deviations import (
    CATALOGUE,
    Variant,
    applicable,
    combine,
    deviant_outputs,
    reference_outputs,
)
from pnref.golden.ops import OPS
from pnref.golden.tolerances import Tolerance

__all__ = ["diagnose", "rank_key", "FAR_CLOSER", "PAIR_POOL"]

#: How many times closer than the reference a candidate must be when not within tolerance.
FAR_CLOSER = 10.0
#: Single variants (the closest ones) combined in pairs when no single one explains the output.
PAIR_POOL = 8


def rank_key(ratio: float) -> float:
    """The error/tolerance ratio as the diagnosis ranks it: ratios with equal keys are ties.

    Within tolerance, ratios are compared to 0.01 (two mistakes whose answers differ by less
    than a hundredth of the tolerance are the same explanation of this case, e.g. eps 1e-10
    inside or outside the square root); beyond it, to three significant digits.
    """
    return round(ratio, 2) if ratio <= 1.0 else float(f"{ratio:.3g}")


def _rms(arrays: Mapping[str, np.ndarray]) -> float:
    if not arrays:
        return 0.0
    flat = np.concatenate([np.asarray(a, dtype=np.float64).ravel() for a in arrays.values()])
    return float(np.sqrt(np.mean(np.square(flat)))) if flat.size else 0.0


def _ratio(actual: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
           tolerances: Mapping[str, Tolerance], cotangent_rms: float) -> float:
    """Worst error/tolerance of ``actual`` against ``candidate`` over the shared arrays."""
    worst = 0.0
    for name, tolerance in tolerances.items():
        if name not in actual or actual[name] is None or name not in candidate:
            continue
        a = np.asarray(actual[name])
        c = np.asarray(candidate[name])
        if a.shape != c.shape:
            return float("inf")
        check = compare(name, a, c, tolerance, cotangent_rms)
        worst = max(worst, check.tolerance_ratio)
    return worst


def diagnose(op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
             cotangents: Mapping[str, np.ndarray], actual: Mapping[str, np.ndarray],
             tolerances: Mapping[str, Tolerance]) -> list[dict[str, Any]]:
    """The catalogued deviations that explain an implementation's output on one case.

    Parameters
    ----------
    op : str
        The case's op (a key of `pnref.golden.ops.OPS`).
    inputs, attrs, cotangents : mapping
        The case's inputs (in its dtype), attributes and cotangents (empty if none).
    actual : mapping
        What the implementation returned, keyed like the case's expected arrays
        (``"expected.y"``, ``"expected_grad.x"`` ...); arrays it did not return may be absent.
    tolerances : mapping
        The case's tolerances, same keys.

    Returns
    -------
    list of dict
        ``{"id", "description", "err_over_tol"}`` best first (see the module docstring for
        the rule); ``id`` is ``"a+b"`` for a pair. Empty when nothing explains the output.
    """
    if op not in OPS:
        raise ValueError(f"op must be one of {sorted(OPS)}, got {op!r}")
    cotangents = dict(cotangents or {})
    actual = {k: np.asarray(v) for k, v in actual.items() if v is not None}
    ct_rms = _rms(cotangents)
    reference = reference_outputs(op, inputs, attrs, cotangents)
    reference_ratio = _ratio(actual, reference, tolerances, ct_rms)

    def evaluate(variant: Variant) -> float | None:
        outputs = deviant_outputs(op, inputs, attrs, cotangents, variant)
        if outputs is None:
            return None
        if _ratio(outputs, reference, tolerances, ct_rms) <= 1.0:
            return None  # invisible on this case
        return _ratio(actual, outputs, tolerances, ct_rms)

    def explains(ratio: float) -> bool:
        return bool(np.isfinite(ratio)) and (ratio <= 1.0
                                             or ratio * FAR_CLOSER <= reference_ratio)

    singles: list[tuple[float, int, str, str, Variant]] = []
    for order, deviation in enumerate(CATALOGUE):
        best = None
        for variant in applicable(deviation, op):
            ratio = evaluate(variant)
            if ratio is not None and (best is None or ratio < best[0]):
                best = (ratio, variant)
        if best is not None:
            singles.append((best[0], order, deviation.id, deviation.description, best[1]))
    found = [(ratio, 0, order, dev_id, f"{description} ({variant.label})")
             for ratio, order, dev_id, description, variant in singles if explains(ratio)]
    if not any(ratio <= 1.0 for ratio, *_ in found):
        pool = sorted(singles, key=lambda s: s[0])
        for first, second in itertools.combinations(pool[:PAIR_POOL], 2):
            if first[2] == second[2]:
                continue
            pair = combine(first[4], second[4])
            if pair is None:
                continue
            ratio = evaluate(pair)
            if ratio is not None and explains(ratio) and ratio < min(first[0], second[0]):
                a, b = sorted((first, second), key=lambda s: s[1])
                found.append((ratio, 1, a[1], f"{a[2]}+{b[2]}",
                              f"{a[3]} ({a[4].label}); and {b[3]} ({b[4].label})"))
    found.sort(key=lambda f: (rank_key(f[0]), f[1], f[2]))
    return [{"id": dev_id, "description": description, "err_over_tol": float(ratio)}
            for ratio, _, _, dev_id, description in found]
