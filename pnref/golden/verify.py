"""Verify an implementation against a golden suite; never crash on bad data or a bad adapter.

Each case becomes a `CaseResult`: its checks (one per expected array, with the
maximum absolute error, the relative L2 error, the worst element's index and both values)
or the message of what went wrong (unreadable file, checksum mismatch, missing array,
adapter exception, wrong shape or dtype). `verify_suite` returns a `Report`
that prints as a table (`format_table`) and serializes to JSON
(`Report.to_json`).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pnref.golden.format import (
    SuiteFormatError,
    array_sha256,
    read_case_file,
    read_manifest,
)
from pnref.golden.ops import OPS
from pnref.golden.tolerances import Tolerance

__all__ = ["Check", "CaseResult", "Report", "verify_suite", "compare", "format_table",
           "REPORT_SCHEMA"]

#: Identifier of the JSON report's schema.
REPORT_SCHEMA = "pnref-golden-report/1"


@dataclass
class Check:
    """The comparison of one returned array with its expected value."""

    array: str
    kind: str
    metric: str
    passed: bool
    max_abs_error: float
    rel_l2_error: float
    tolerance_ratio: float
    worst_index: list[int]
    worst_actual: float | None
    worst_expected: float | None
    rtol: float
    atol: float
    message: str = ""


@dataclass
class CaseResult:
    """Outcome of one case: passed only if every check passed and nothing went wrong."""

    case_id: str
    op: str
    profile: str
    dtype: str
    passed: bool
    checks: list[Check] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def fail(self, message: str) -> CaseResult:
        """Record an error and mark the case failed; returns self."""
        self.errors.append(message)
        self.passed = False
        return self


@dataclass
class Report:
    """Every case's result, with the suite and the implementation it is about."""

    suite: str
    suite_dir: str
    implementation: str
    cases: list[CaseResult]

    @property
    def passed(self) -> int:
        """Number of cases that passed."""
        return sum(case.passed for case in self.cases)

    @property
    def failed(self) -> int:
        """Number of cases that failed."""
        return len(self.cases) - self.passed

    def by_op_profile(self) -> list[dict[str, Any]]:
        """Summary rows: op, profile, cases, passed, failed, worst error/tolerance ratio."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for case in self.cases:
            row = rows.setdefault((case.op, case.profile), {
                "op": case.op, "profile": case.profile, "cases": 0, "passed": 0, "failed": 0,
                "worst_ratio": 0.0})
            row["cases"] += 1
            row["passed" if case.passed else "failed"] += 1
            ratios = [c.tolerance_ratio for c in case.checks]
            if case.errors:
                ratios.append(float("inf"))
            row["worst_ratio"] = max([row["worst_ratio"], *ratios])
        return [rows[key] for key in sorted(rows)]

    def failures(self) -> list[CaseResult]:
        """The failed cases."""
        return [case for case in self.cases if not case.passed]

    def to_json(self) -> dict[str, Any]:
        """The JSON report (``REPORT_SCHEMA``); infinities are written as strings."""
        return _json_safe({
            "schema": REPORT_SCHEMA,
            "suite": self.suite,
            "suite_dir": self.suite_dir,
            "implementation": self.implementation,
            "summary": {"cases": len(self.cases), "passed": self.passed, "failed": self.failed},
            "by_op_profile": self.by_op_profile(),
            "cases": [asdict(case) for case in self.cases],
        })


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)
    return value


def _rms(a: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(a)))) if a.size else 0.0


def compare(name: str, actual: np.ndarray, expected: np.ndarray, tolerance: Tolerance,
            cotangent_rms: float = 0.0) -> Check:
    """Judge ``actual`` against ``expected`` with ``tolerance`` (see pnref.golden.tolerances).

    Parameters
    ----------
    name : str
        The expected array's key, for the report.
    actual, expected : ndarray
        Same shape; compared in float64.
    tolerance : Tolerance
        Kind, metric, rtol and atol.
    cotangent_rms : float
        RMS of the case's cotangents (the scale floor of gradient checks).
    """
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    diff = np.abs(a - e)
    both_nan = np.isnan(a) & np.isnan(e)
    diff = np.where(both_nan, 0.0, diff)
    diff = np.where(np.isnan(diff), np.inf, diff)
    max_abs = float(diff.max()) if diff.size else 0.0
    e_norm = float(np.linalg.norm(np.where(np.isnan(e), 0.0, e)))
    err_norm = float(np.sqrt(np.sum(np.square(diff)))) if diff.size else 0.0
    if err_norm == 0.0:
        rel_l2 = 0.0
    else:
        rel_l2 = err_norm / e_norm if e_norm > 0 else float("inf")
    if tolerance.metric == "elementwise":
        rms = _rms(np.where(np.isfinite(e), e, 0.0))
        floor = rms if rms > 0 else 1.0
        allowed = tolerance.rtol * (np.abs(np.where(np.isfinite(e), e, 0.0)) + floor)
        allowed = allowed + tolerance.atol
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(diff == 0, 0.0, diff / allowed)
        ratio = float(ratios.max()) if ratios.size else 0.0
        worst = int(np.argmax(ratios)) if ratios.size else 0
    else:
        denominator = max(e_norm, cotangent_rms)
        allowed_norm = tolerance.rtol * denominator + tolerance.atol * np.sqrt(max(e.size, 1))
        ratio = 0.0 if err_norm == 0 else (err_norm / allowed_norm if allowed_norm > 0
                                            else float("inf"))
        worst = int(np.argmax(diff)) if diff.size else 0
    ratio = float(ratio)
    passed = bool(ratio <= 1.0)
    index = [int(i) for i in np.unravel_index(worst, e.shape)] if e.size else []
    return Check(
        array=name, kind=tolerance.kind, metric=tolerance.metric, passed=passed,
        max_abs_error=max_abs, rel_l2_error=rel_l2, tolerance_ratio=ratio, worst_index=index,
        worst_actual=float(a.flat[worst]) if a.size else None,
        worst_expected=float(e.flat[worst]) if e.size else None,
        rtol=tolerance.rtol, atol=tolerance.atol,
        message="" if passed else f"{name}: error is {ratio:.3g} x the tolerance",
    )


def _load_case(entry: Mapping[str, Any], suite_dir: Path, result: CaseResult):
    """The case's arrays after every integrity check, or ``None`` (result marked failed)."""
    try:
        arrays = read_case_file(suite_dir / str(entry["file"]))
    except SuiteFormatError as exc:
        result.fail(str(exc))
        return None
    unlisted = sorted(set(arrays) - set(entry["arrays"]))
    if unlisted:
        result.fail(f"{entry['file']} holds array(s) {unlisted} that the manifest does not "
                    "list (no checksum to verify them against): the file or the manifest was "
                    "edited")
    for key, meta in entry["arrays"].items():
        if key not in arrays:
            result.fail(f"array {key!r} is missing from {entry['file']}")
            continue
        value = arrays[key]
        if value.dtype.name != meta["dtype"] or list(value.shape) != list(meta["shape"]):
            result.fail(f"array {key!r} is {value.dtype.name}{list(value.shape)}, the manifest "
                        f"says {meta['dtype']}{list(meta['shape'])}")
        elif array_sha256(value) != meta["sha256"]:
            result.fail(f"checksum mismatch for array {key!r} of {entry['file']}: the file is "
                        "corrupted or was edited")
    return None if result.errors else arrays


def _check_returned(kind: str, returned, wanted: list[str], arrays, prefix: str, dtype: str,
                    result: CaseResult) -> dict[str, np.ndarray]:
    if not isinstance(returned, Mapping):
        result.fail(f"adapter {kind}() returned {type(returned).__name__}, expected a mapping "
                    "of name to array")
        return {}
    checked = {}
    for name in wanted:
        if name not in returned or returned[name] is None:
            result.fail(f"adapter {kind}() returned no {name!r} (got keys "
                        f"{sorted(map(str, returned))})")
            continue
        try:
            value = np.asarray(returned[name])
        except Exception as exc:  # an object NumPy cannot convert
            result.fail(f"adapter {kind}() returned {name!r} that is not an array: {exc}")
            continue
        expected = arrays[f"{prefix}.{name}"]
        if value.shape != expected.shape:
            result.fail(f"adapter {kind}() returned {name!r} with shape {value.shape}, "
                        f"expected {expected.shape}")
        elif value.dtype != np.dtype(dtype):
            result.fail(f"adapter {kind}() returned {name!r} with dtype {value.dtype}, "
                        f"expected {dtype}")
        else:
            checked[name] = value
    return checked


def _call(result: CaseResult, kind: str, function, *args):
    try:
        return function(*args), True
    except Exception as exc:  # the adapter's failure is a failed case, never a crash
        where = traceback.extract_tb(exc.__traceback__)[-1]
        result.fail(f"adapter {kind}() raised {type(exc).__name__}: {exc} "
                    f"(at {Path(where.filename).name}:{where.lineno})")
        return None, False


def _verify_case(entry: Mapping[str, Any], suite_dir: Path, adapter) -> CaseResult:
    result = CaseResult(str(entry.get("id", "?")), str(entry.get("op", "?")),
                        str(entry.get("profile", "?")), str(entry.get("dtype", "?")), True)
    try:
        spec = OPS[entry["op"]]
        tolerances = {k: Tolerance.from_json(v) for k, v in entry["tolerances"].items()}
        attrs = dict(entry["attrs"])
        dtype = str(entry["dtype"])
        for meta in entry["arrays"].values():
            meta["sha256"], meta["dtype"], meta["shape"]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return result.fail(f"malformed manifest entry: {type(exc).__name__}: {exc}")
    arrays = _load_case(entry, suite_dir, result)
    if arrays is None:
        return result
    inputs = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("input.")}
    cotangents = {k.split(".", 1)[1]: v for k, v in arrays.items()
                  if k.startswith("cotangent.")}
    untoleranced = sorted(k for k in arrays if k.startswith(("expected.", "expected_grad."))
                          and k not in tolerances)
    if untoleranced:
        return result.fail(f"malformed manifest entry: no tolerance for expected array(s) "
                           f"{untoleranced}, so they would go unchecked")
    outputs = [k.split(".", 1)[1] for k in tolerances if k.startswith("expected.")]
    grads = [k.split(".", 1)[1] for k in tolerances if k.startswith("expected_grad.")]
    for key in [*(f"expected.{k}" for k in outputs), *(f"expected_grad.{k}" for k in grads)]:
        if key not in arrays:
            return result.fail(f"array {key!r} is missing from {entry['file']}")
    ct_rms = _rms(np.concatenate([c.astype(np.float64).ravel() for c in cotangents.values()])
                  ) if cotangents else 0.0

    # every call gets fresh copies: an adapter that writes into its inputs cannot affect the
    # next call or the comparison
    def fresh(arrays):
        return {k: v.copy() for k, v in arrays.items()}

    returned, ok = _call(result, "forward", adapter.forward, spec.name, fresh(inputs),
                         json.loads(json.dumps(attrs)))
    if ok:
        checked = _check_returned("forward", returned, outputs, arrays, "expected", dtype, result)
        for name, value in checked.items():
            key = f"expected.{name}"
            result.checks.append(compare(key, value, arrays[key], tolerances[key]))
    if grads:
        returned, ok = _call(result, "vjp", adapter.vjp, spec.name, fresh(inputs),
                             json.loads(json.dumps(attrs)), fresh(cotangents))
        if ok:
            checked = _check_returned("vjp", returned, grads, arrays, "expected_grad", dtype,
                                      result)
            for name, value in checked.items():
                key = f"expected_grad.{name}"
                result.checks.append(compare(key, value, arrays[key], tolerances[key], ct_rms))
    if not all(check.passed for check in result.checks):
        result.passed = False
    return result


def verify_suite(suite_dir: str | Path, adapter, *, select: str | None = None) -> Report:
    """Run ``adapter`` on every case of the suite in ``suite_dir``.

    Parameters
    ----------
    suite_dir : str or Path
        A directory holding ``manifest.json`` and the case files.
    adapter : GoldenAdapter
        The implementation (see `pnref.golden.adapter`).
    select : str, optional
        Only the cases whose id contains this substring.

    Raises
    ------
    SuiteFormatError
        If the manifest itself is missing or unreadable (no case can be run). Everything
        that goes wrong inside a case becomes that case's failure instead.
    """
    suite_dir = Path(suite_dir)
    manifest = read_manifest(suite_dir)
    results = []
    seen: set = set()
    for entry in manifest["cases"]:
        if not isinstance(entry, Mapping):
            results.append(CaseResult("?", "?", "?", "?", False,
                                      errors=["malformed manifest entry: not an object"]))
            continue
        if select and select not in str(entry.get("id", "")):
            continue
        case_id = entry.get("id")
        if isinstance(case_id, str) and case_id in seen:
            results.append(CaseResult(str(case_id), str(entry.get("op", "?")),
                                      str(entry.get("profile", "?")), str(entry.get("dtype", "?")),
                                      False, errors=[f"malformed manifest: case id {case_id!r} "
                                                     "appears more than once"]))
            continue
        if isinstance(case_id, str):
            seen.add(case_id)
        try:
            results.append(_verify_case(entry, suite_dir, adapter))
        except Exception as exc:  # a malformed entry must not stop the other cases
            message = f"malformed case: {type(exc).__name__}: {exc}"
            results.append(CaseResult(*(str(entry.get(k, "?")) for k in ("id", "op", "profile",
                                                                          "dtype")),
                                      False, errors=[message]))
    return Report(str(manifest.get("suite", "?")), str(suite_dir),
                  str(getattr(adapter, "name", type(adapter).__name__)), results)


def _describe_failure(case: CaseResult) -> list[str]:
    lines = [f"  FAIL {case.case_id}"]
    lines += [f"       {message}" for message in case.errors]
    for check in case.checks:
        if check.passed:
            continue
        lines.append(
            f"       {check.array} [{check.kind}, {check.metric}]: max abs err "
            f"{check.max_abs_error:.3g}, rel L2 {check.rel_l2_error:.3g}, "
            f"{check.tolerance_ratio:.3g} x tol; worst at {tuple(check.worst_index)}: got "
            f"{check.worst_actual:.9g}, expected {check.worst_expected:.9g}"
        )
    return lines


def format_table(report: Report, *, verbose: bool = False) -> str:
    """The human-readable summary: one row per (op, profile), then every failure."""
    lines = [
        f"pnref golden verify: suite {report.suite!r} ({len(report.cases)} cases) from "
        f"{report.suite_dir}, implementation {report.implementation!r}",
        "",
        f"{'op':<27}{'profile':<10}{'cases':>6}{'passed':>8}{'failed':>8}{'worst err/tol':>15}",
    ]
    for row in report.by_op_profile():
        lines.append(f"{row['op']:<27}{row['profile']:<10}{row['cases']:>6}{row['passed']:>8}"
                     f"{row['failed']:>8}{row['worst_ratio']:>15.3g}")
    if verbose:
        lines.append("")
        for case in report.cases:
            worst = max([c.tolerance_ratio for c in case.checks], default=0.0)
            lines.append(f"  {'ok  ' if case.passed else 'FAIL'} {case.case_id:<48} "
                         f"worst err/tol {worst:.3g}")
    failures = report.failures()
    if failures:
        lines += ["", "Failed cases:"]
        for case in failures:
            lines += _describe_failure(case)
    lines += ["", f"total: {len(report.cases)} cases, {report.passed} passed, "
                  f"{report.failed} failed"]
    return "\n".join(lines)
