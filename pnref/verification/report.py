"""The outcome of a verification run: per-case results, the table, the JSON report, JUnit XML.

Statuses of a case (`STATUSES`):

- ``passed``: every checked array within its tolerance (gradients the adapter does not
  support are listed in ``unsupported_arrays``);
- ``failed``: a wrong, missing or malformed result, or the adapter raised (``SystemExit``
  and a crashed worker included); with ``--strict``, an unsupported case or gradient too;
- ``unsupported``: the adapter declined the case (``NotImplementedError`` from ``forward``
  or ``supports()`` answering False);
- ``timeout``: an adapter call exceeded ``--timeout``;
- ``error``: the case could not be judged because its file is damaged (unreadable, an
  array missing or unlisted, a checksum mismatch): the suite is not trustworthy.

The JSON report's schema is `REPORT_SCHEMA`, documented field by field in
``docs/verification.md``.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pnref.golden.compare import Check

__all__ = ["STATUSES", "REPORT_SCHEMA", "CaseResult", "Report", "format_table", "write_junit",
           "describe_failure"]

#: Every status a case can end with.
STATUSES = ("passed", "failed", "unsupported", "timeout", "error")
#: Identifier and version of the JSON report's schema.
REPORT_SCHEMA = "pnref-golden-report/2"


@dataclass
class CaseResult:
    """Outcome of one case.

    Attributes
    ----------
    case_id, op, profile, dtype, description : str
        The case, as in the manifest.
    status : str
        One of `STATUSES`.
    checks : list of Check
        One per compared array.
    messages : list of str
        What went wrong (failed, timeout, error), in order.
    unsupported_reason : str
        The adapter's reason when the case or its gradients are unsupported.
    unsupported_arrays : list of str
        Expected arrays not checked because the adapter does not support them.
    seconds : float
        Wall time of the case's adapter calls and comparisons.
    diagnosis : list of dict or None
        For a failed comparison: the known deviations that best explain it (each ``id``,
        ``description``, ``err_over_tol``), best first; None when not diagnosed.
    """

    case_id: str
    op: str
    profile: str
    dtype: str
    description: str = ""
    status: str = "passed"
    checks: list[Check] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    unsupported_reason: str = ""
    unsupported_arrays: list[str] = field(default_factory=list)
    seconds: float = 0.0
    diagnosis: list[dict[str, Any]] | None = None

    @property
    def passed(self) -> bool:
        """Whether the case passed."""
        return self.status == "passed"

    @property
    def worst_ratio(self) -> float | None:
        """Largest error/tolerance ratio of the checked arrays (None if none was checked)."""
        return max((c.tolerance_ratio for c in self.checks), default=None)

    def fail(self, message: str, status: str = "failed") -> CaseResult:
        """Record ``message`` and set the status (an ``error`` or ``timeout`` is kept)."""
        self.messages.append(message)
        if self.status not in ("error", "timeout"):
            self.status = status
        return self

    def to_json(self) -> dict[str, Any]:
        """The case's entry of the JSON report."""
        arrays = []
        for c in self.checks:
            arrays.append({
                "array": c.array, "kind": c.kind, "metric": c.metric, "passed": c.passed,
                "max_err_over_tol": c.tolerance_ratio, "median_err_over_tol": c.median_ratio,
                "max_abs_error": c.max_abs_error, "rel_l2_error": c.rel_l2_error,
                "worst_index": c.worst_index, "worst_actual": c.worst_actual,
                "worst_expected": c.worst_expected,
                "tolerance": {"rtol": c.rtol, "atol": c.atol, "reason": c.reason,
                              "source": c.source},
            })
        return {
            "case_id": self.case_id, "op": self.op, "profile": self.profile,
            "dtype": self.dtype, "description": self.description, "status": self.status,
            "worst_err_over_tol": self.worst_ratio, "messages": self.messages,
            "unsupported_reason": self.unsupported_reason or None,
            "unsupported_arrays": self.unsupported_arrays, "seconds": round(self.seconds, 4),
            "arrays": arrays, "diagnosis": self.diagnosis,
        }


@dataclass
class Report:
    """Every case's result, with the suite, the implementation and the run's options."""

    suite: str
    suite_dir: str
    implementation: str
    cases: list[CaseResult]
    suite_digest: str = ""
    impl: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    overrides: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    selected: int = 0

    def count(self, status: str) -> int:
        """Number of cases with ``status``."""
        return sum(case.status == status for case in self.cases)

    @property
    def passed(self) -> int:
        """Number of passed cases."""
        return self.count("passed")

    @property
    def failed(self) -> int:
        """Number of cases that failed, timed out or could not be judged."""
        return sum(case.status in ("failed", "timeout", "error") for case in self.cases)

    @property
    def unsupported(self) -> int:
        """Number of unsupported cases."""
        return self.count("unsupported")

    def summary(self) -> dict[str, int]:
        """Counts per status, plus ``cases``, ``selected`` and ``gradients_unsupported``."""
        counts = {"cases": len(self.cases), "selected": self.selected or len(self.cases)}
        counts.update({status: self.count(status) for status in STATUSES})
        counts["gradients_unsupported"] = sum(
            case.status == "passed" and bool(case.unsupported_arrays) for case in self.cases)
        return counts

    def summary_line(self) -> str:
        """``total: 125 cases, 120 passed, 1 failed, 4 unsupported`` plus what else applies.

        "failed" counts timed-out and damaged cases too (named in brackets).
        """
        s = self.summary()
        failed = f"{self.failed} failed"
        detail = [f"{s[k]} {word}" for k, word in (("timeout", "timed out"),
                                                    ("error", "damaged")) if s[k]]
        if detail:
            failed += f" ({', '.join(detail)})"
        parts = [f"{s['passed']} passed", failed, f"{s['unsupported']} unsupported"]
        line = f"total: {s['cases']} cases, " + ", ".join(parts)
        if s["gradients_unsupported"]:
            line += f" ({s['gradients_unsupported']} passed without their gradients)"
        if self.interrupted:
            line += f"; INTERRUPTED after {s['cases']} of {s['selected']} cases"
        if self.overrides:
            line += "; tolerance overrides: " + ", ".join(
                f"{o['rule']} ({o['arrays_changed']} arrays)" for o in self.overrides)
        return line

    def by_op_profile(self) -> list[dict[str, Any]]:
        """Summary rows: op, profile, cases, passed, failed, unsupported, worst ratio."""
        rows: dict[tuple[str, str], dict[str, Any]] = {}
        for case in self.cases:
            row = rows.setdefault((case.op, case.profile), {
                "op": case.op, "profile": case.profile, "cases": 0, "passed": 0, "failed": 0,
                "unsupported": 0, "worst_ratio": 0.0})
            row["cases"] += 1
            key = case.status if case.status in ("passed", "unsupported") else "failed"
            row[key] += 1
            ratios = [c.tolerance_ratio for c in case.checks]
            if case.status in ("failed", "timeout", "error") and not any(
                    r > 1 for r in ratios):
                ratios.append(math.inf)
            row["worst_ratio"] = max([row["worst_ratio"], *ratios])
        return [rows[key] for key in sorted(rows)]

    def failures(self) -> list[CaseResult]:
        """The cases that failed, timed out or could not be judged."""
        return [case for case in self.cases if case.status in ("failed", "timeout", "error")]

    def to_json(self) -> dict[str, Any]:
        """The JSON report (`REPORT_SCHEMA`); non-finite numbers are written as strings."""
        return _json_safe({
            "schema": REPORT_SCHEMA,
            "suite": self.suite,
            "suite_dir": self.suite_dir,
            "suite_digest": self.suite_digest,
            "implementation": self.implementation,
            "impl": self.impl,
            "options": self.options,
            "tolerance_overrides": self.overrides,
            "interrupted": self.interrupted,
            "summary": self.summary(),
            "by_op_profile": self.by_op_profile(),
            "cases": [case.to_json() for case in self.cases],
        })


def _json_safe(value):
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def describe_failure(case: CaseResult) -> list[str]:
    """The lines that explain a failed, timed-out or damaged case (messages, arrays, diagnosis)."""
    label = {"failed": "FAIL", "timeout": "TIMEOUT", "error": "ERROR"}[case.status]
    lines = [f"  {label} {case.case_id}"]
    lines += [f"       {message}" for message in case.messages]
    for check in case.checks:
        if check.passed:
            continue
        lines.append(
            f"       {check.array} [{check.kind}, {check.metric}]: max abs err "
            f"{check.max_abs_error:.3g}, rel L2 {check.rel_l2_error:.3g}, "
            f"{check.tolerance_ratio:.3g} x tol (median {check.median_ratio:.3g}); worst at "
            f"{tuple(check.worst_index)}: got {check.worst_actual:.9g}, expected "
            f"{check.worst_expected:.9g}"
        )
    if case.diagnosis is not None:
        if case.diagnosis:
            best = case.diagnosis[0]
            lines.append(f"       likely: {best['id']} ({best['description']}; explains it to "
                         f"{float(best['err_over_tol']):.3g} x tol)")
        else:
            lines.append("       no known deviation explains it")
    return lines


def format_table(report: Report, *, verbose: bool = False) -> str:
    """The human-readable summary: one row per (op, profile), then every failure."""
    lines = [
        f"pnref golden verify: suite {report.suite!r} ({len(report.cases)} cases) from "
        f"{report.suite_dir}, implementation {report.implementation!r}",
        "",
        f"{'op':<27}{'profile':<10}{'cases':>6}{'passed':>8}{'failed':>8}{'unsupp.':>8}"
        f"{'worst err/tol':>15}",
    ]
    for row in report.by_op_profile():
        lines.append(f"{row['op']:<27}{row['profile']:<10}{row['cases']:>6}{row['passed']:>8}"
                     f"{row['failed']:>8}{row['unsupported']:>8}{row['worst_ratio']:>15.3g}")
    if verbose:
        lines.append("")
        for case in report.cases:
            worst = case.worst_ratio
            shown = "-" if worst is None else f"{worst:.3g}"
            lines.append(f"  {case.status:<11} {case.case_id:<48} worst err/tol {shown}")
    unsupported: dict[str, int] = {}
    for case in report.cases:
        if case.status == "unsupported" or (case.status == "passed" and case.unsupported_arrays):
            what = "gradients: " if case.status == "passed" else ""
            reason = what + case.unsupported_reason
            unsupported[reason] = unsupported.get(reason, 0) + 1
    if unsupported:
        lines += ["", "Unsupported (not counted as failures; --strict counts them):"]
        lines += [f"  {n:>4} case(s): {reason}" for reason, n in unsupported.items()]
    if report.overrides:
        lines += ["", "Tolerance overrides (explicit, not the suite's):"]
        lines += [f"  {o['rule']}: {o['arrays_changed']} arrays; reason: {o['reason']}"
                  for o in report.overrides]
    failures = report.failures()
    if failures:
        lines += ["", "Failed cases:"]
        for case in failures:
            lines += describe_failure(case)
    lines += ["", report.summary_line()]
    return "\n".join(lines)


def write_junit(report: Report, path: str | Path) -> None:
    """Write the report as JUnit XML: one ``testcase`` per case.

    ``classname`` is ``pnref.golden.<op>``, ``name`` the case id; a failed case has a
    ``failure`` element, a timed-out or damaged one an ``error``, an unsupported one
    ``skipped`` with the adapter's reason; each case's worst err/tol is a ``property``.
    """
    s = report.summary()
    suite = ET.Element("testsuite", {
        "name": f"pnref golden verify ({report.suite})", "tests": str(s["cases"]),
        "failures": str(s["failed"]), "errors": str(s["timeout"] + s["error"]),
        "skipped": str(s["unsupported"]),
        "time": f"{sum(case.seconds for case in report.cases):.3f}",
    })
    properties = ET.SubElement(suite, "properties")
    for name, value in (("implementation", report.implementation),
                        ("suite_digest", report.suite_digest)):
        ET.SubElement(properties, "property", {"name": name, "value": value})
    for o in report.overrides:
        ET.SubElement(properties, "property", {"name": "tolerance_override",
                                               "value": f"{o['rule']}: {o['reason']}"})
    for case in report.cases:
        element = ET.SubElement(suite, "testcase", {
            "classname": f"pnref.golden.{case.op}", "name": case.case_id,
            "time": f"{case.seconds:.3f}"})
        if case.worst_ratio is not None:
            props = ET.SubElement(element, "properties")
            ET.SubElement(props, "property", {"name": "worst_err_over_tol",
                                              "value": f"{case.worst_ratio:.6g}"})
        text = "\n".join(describe_failure(case)) if case.status in (
            "failed", "timeout", "error") else ""
        first = case.messages[0] if case.messages else next(
            (c.message for c in case.checks if not c.passed), case.status)
        if case.status == "failed":
            ET.SubElement(element, "failure", {"message": first}).text = text
        elif case.status in ("timeout", "error"):
            ET.SubElement(element, "error", {"message": first, "type": case.status}).text = text
        elif case.status == "unsupported":
            ET.SubElement(element, "skipped", {"message": case.unsupported_reason})
    tree = ET.ElementTree(ET.Element("testsuites"))
    tree.getroot().append(suite)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


