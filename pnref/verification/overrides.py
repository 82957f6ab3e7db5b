"""Explicit tolerance overrides: the only way to judge a suite with other tolerances.

A suite's tolerances are covered by its digest, so an edited manifest is refused. A user who
needs other tolerances states them, with a reason, as

- ``--scale-tolerance CASES=FACTOR`` (repeatable): multiply rtol and atol of every array of
  the cases matching the glob ``CASES`` by ``FACTOR``; or
- ``--tolerance-overrides FILE``, a JSON file::

      {"overrides": [
        {"cases": "group_norm.*.f16", "arrays": "expected_grad.*", "scale": 4,
         "reason": "our float16 kernel accumulates in float16"},
        {"cases": "proxy_moments.official.*", "rtol": 1e-5,
         "reason": "float32 erfinv on device"}
      ]}

  each entry with ``cases`` (glob, required), ``arrays`` (glob, default ``*``), either
  ``scale`` or ``rtol``/``atol`` (values replacing the suite's), and a ``reason``.

The first override matching an array applies. Every override, with the number of arrays it
changed, is shown in the table, the summary line and the JSON report, and each changed
array's tolerance says ``source: "override: <rule>"``.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

from pnref.golden.tolerances import Tolerance

__all__ = ["ToleranceOverride", "parse_scale_option", "read_override_file"]


@dataclass(frozen=True)
class ToleranceOverride:
    """One explicit change of the suite's tolerances.

    Attributes
    ----------
    cases, arrays : str
        Globs matched against whole case ids and expected-array keys.
    scale : float or None
        Factor on rtol and atol.
    rtol, atol : float or None
        Values replacing the suite's (when ``scale`` is None).
    reason : str
        Why, in the user's words.
    """

    cases: str
    arrays: str = "*"
    scale: float | None = None
    rtol: float | None = None
    atol: float | None = None
    reason: str = ""

    def __post_init__(self) -> None:
        numbers = {"scale": self.scale, "rtol": self.rtol, "atol": self.atol}
        for name, value in numbers.items():
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"tolerance override {self.cases!r}: {name} must be a finite "
                                 f"number >= 0, got {value}")
        if (self.scale is None) == (self.rtol is None and self.atol is None):
            raise ValueError(f"tolerance override {self.cases!r}: give either scale or "
                             "rtol/atol")

    def rule(self) -> str:
        """The override in one line, e.g. ``group_norm.*.f16 expected_grad.* x4``."""
        target = self.cases if self.arrays == "*" else f"{self.cases} {self.arrays}"
        if self.scale is not None:
            change = f"x{self.scale:g}"
        else:
            change = " ".join(f"{k}={v:g}" for k, v in (("rtol", self.rtol), ("atol", self.atol))
                              if v is not None)
        return f"{target} {change}"

    def matches(self, case_id: str, array: str) -> bool:
        """Whether this override applies to ``array`` of case ``case_id``."""
        return fnmatch.fnmatchcase(case_id, self.cases) and fnmatch.fnmatchcase(array,
                                                                                  self.arrays)

    def apply(self, tolerance: Tolerance) -> Tolerance:
        """The overridden tolerance (its reason records the override's)."""
        if self.scale is not None:
            rtol, atol = tolerance.rtol * self.scale, tolerance.atol * self.scale
        else:
            rtol = tolerance.rtol if self.rtol is None else self.rtol
            atol = tolerance.atol if self.atol is None else self.atol
        return replace(tolerance, rtol=float(rtol), atol=float(atol),
                       reason=f"{self.reason} (override {self.rule()}; suite: "
                              f"rtol={tolerance.rtol:.3g}, atol={tolerance.atol:.3g})")


def parse_scale_option(text: str) -> ToleranceOverride:
    """``CASES=FACTOR`` of ``--scale-tolerance`` as an override.

    Raises
    ------
    ValueError
        If the text is not of that form or the factor is not a number >= 0.
    """
    cases, sep, factor = text.rpartition("=")
    try:
        value = float(factor)
    except ValueError:
        value = None
    if not sep or not cases or value is None:
        raise ValueError(f"--scale-tolerance must look like CASES=FACTOR (e.g. "
                         f"'group_norm.*.f16=4'), got {text!r}")
    return ToleranceOverride(cases=cases, scale=value, reason="--scale-tolerance")


def read_override_file(path: str | Path) -> list[ToleranceOverride]:
    """The overrides of a ``--tolerance-overrides`` JSON file (format: module docstring).

    Raises
    ------
    ValueError
        If the file is missing, not JSON, or an entry is malformed (the message names it).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"--tolerance-overrides {path}: cannot read it as JSON: {exc}"
                         ) from None
    entries = data.get("overrides") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ValueError(f"--tolerance-overrides {path}: expected an object with an "
                         "'overrides' list")
    overrides = []
    allowed = {"cases", "arrays", "scale", "rtol", "atol", "reason"}
    for number, entry in enumerate(entries, 1):
        where = f"--tolerance-overrides {path}, entry {number}"
        if not isinstance(entry, dict) or not isinstance(entry.get("cases"), str):
            raise ValueError(f"{where}: needs a 'cases' glob")
        unknown = sorted(set(entry) - allowed)
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; allowed {sorted(allowed)}")
        if not str(entry.get("reason", "")).strip():
            raise ValueError(f"{where}: needs a 'reason' (why this tolerance)")
        try:
            numbers = {k: None if entry.get(k) is None else float(entry[k])
                       for k in ("scale", "rtol", "atol")}
            overrides.append(ToleranceOverride(entry["cases"], str(entry.get("arrays", "*")),
                                               reason=str(entry["reason"]), **numbers))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{where}: {exc}") from None
    return overrides
