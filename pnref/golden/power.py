"""The power of a golden suite: which catalogued mistakes it catches, case by case and per family.

Every variant of every deviation of `pnref.golden.deviations` is simulated on every case it
applies to: the deviant answer, rounded to the case's dtype as an implementation returns it,
is judged against the case's expected values with the case's tolerances (`compare`).
For one case the variant is

- *caught* if some array fails (error/tolerance ratio above 1);
- *passed while visible* if no array fails but some array changed by more than one rounding
  unit of the case (ratio above ``1 / FACTORS[kind]``: the tolerance is ``FACTORS[kind]``
  rounding units times the condition; for float16 cases, whose tolerance is essentially
  four float16 roundings, ratio above 1/4), i.e. the
  mistake changes the answer and the suite does not see it there;
- *invisible* otherwise (the mistake does not change this case's answer beyond rounding).

A *family* is an op and a dtype (``group_norm x float32``), or an edge-case label
(`EDGE_FAMILIES`). The suite has power for a variant in a family if, whenever the variant is
visible on some case of the family, some case of the family catches it.
`tests/test_golden_power.py` requires power in every family.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pnref.golden.compare import compare
from pnref.golden.deviations import CATALOGUE, applicable, deviant_outputs
from pnref.golden.format import read_case_file, read_manifest
from pnref.golden.tolerances import FACTORS, Tolerance

__all__ = ["EDGE_FAMILIES", "PowerRow", "simulate_power", "format_power_table"]

#: Roundings a float16 tolerance allows (`pnref.golden.tolerances.FLOAT16_ROUNDINGS`
#: epsilons = four roundings of eps/2): a change of less than one of them is not visible.
FLOAT16_ROUNDING_COUNT = 4.0

#: Edge-case labels that form a family of their own.
EDGE_FAMILIES = ("large_offset", "constant_group", "float16_overflow")


@dataclass
class PowerRow:
    """One simulated bug (a deviation's variant) across a suite."""

    deviation: str
    variant: str
    caught: list[str] = field(default_factory=list)
    passed_visible: list[str] = field(default_factory=list)
    families_visible: set[str] = field(default_factory=set)
    families_caught: set[str] = field(default_factory=set)

    @property
    def bug(self) -> str:
        """``id (variant)`` as printed in the table."""
        return f"{self.deviation} ({self.variant})"

    @property
    def families_without_power(self) -> list[str]:
        """Families where the bug is visible on some case and no case catches it."""
        return sorted(self.families_visible - self.families_caught)


def _families(entry) -> list[str]:
    families = [f"{entry['op']} x {entry['dtype']}"]
    families += [f"edge {label}" for label in entry.get("edge_cases", ())
                 if label in EDGE_FAMILIES]
    return families


def _case_parts(entry, suite_dir: Path):
    arrays = read_case_file(suite_dir / entry["file"])
    inputs = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("input.")}
    cotangents = {k.split(".", 1)[1]: v for k, v in arrays.items()
                  if k.startswith("cotangent.")}
    tolerances = {k: Tolerance.from_json(v) for k, v in entry["tolerances"].items()}
    return arrays, inputs, cotangents, tolerances


def _verdict(outputs, arrays, tolerances, dtype, cotangent_rms) -> str:
    visible = False
    for name, tolerance in tolerances.items():
        if name not in outputs:
            continue
        with np.errstate(all="ignore"):
            returned = outputs[name].astype(dtype)
        ratio = compare(name, returned, arrays[name], tolerance, cotangent_rms).tolerance_ratio
        if ratio > 1.0:
            return "caught"
        rounding_unit = (1.0 / FLOAT16_ROUNDING_COUNT if dtype == np.float16
                         else 1.0 / FACTORS[tolerance.kind])
        visible |= ratio > rounding_unit
    return "passed_visible" if visible else "invisible"


def simulate_power(suite_dir: str | Path, deviation_ids: Iterable[str] | None = None
                   ) -> list[PowerRow]:
    """Simulate every catalogued mistake on every case of the suite in ``suite_dir``.

    Parameters
    ----------
    suite_dir : str or Path
        A golden suite directory.
    deviation_ids : iterable of str, optional
        Only these deviations (default: the whole catalogue).

    Returns
    -------
    list of PowerRow
        One per variant that applies to at least one case, in catalogue order.
    """
    suite_dir = Path(suite_dir)
    wanted = None if deviation_ids is None else set(deviation_ids)
    deviations = [d for d in CATALOGUE if wanted is None or d.id in wanted]
    rows = {(d.id, v.label): PowerRow(d.id, v.label) for d in deviations for v in d.variants}
    used: set[tuple[str, str]] = set()
    for entry in read_manifest(suite_dir)["cases"]:
        arrays, inputs, cotangents, tolerances = _case_parts(entry, suite_dir)
        flat = np.concatenate([np.zeros(0)] + [c.astype(np.float64).ravel()
                                               for c in cotangents.values()])
        ct_rms = float(np.sqrt(np.mean(np.square(flat)))) if flat.size else 0.0
        dtype = np.dtype(entry["dtype"])
        for deviation in deviations:
            for variant in applicable(deviation, entry["op"]):
                outputs = deviant_outputs(entry["op"], inputs, entry["attrs"], cotangents,
                                          variant)
                if outputs is None:
                    continue
                row = rows[(deviation.id, variant.label)]
                used.add((deviation.id, variant.label))
                verdict = _verdict(outputs, arrays, tolerances, dtype, ct_rms)
                if verdict == "invisible":
                    continue
                row.families_visible.update(_families(entry))
                if verdict == "caught":
                    row.caught.append(entry["id"])
                    row.families_caught.update(_families(entry))
                else:
                    row.passed_visible.append(entry["id"])
    return [row for key, row in rows.items() if key in used]


def format_power_table(rows: list[PowerRow], *, detail: bool = False) -> str:
    """The power table as Markdown: simulated bug | cases it passes | cases that catch it.

    "Cases it passes" counts the cases where the bug changes the answer beyond rounding and
    still passes; the last column lists the families without power (it must be empty).
    With ``detail``, the passing cases are named.
    """
    lines = ["| simulated bug | cases it passes (visible) | cases that catch it | "
             "families without power |", "|---|---|---|---|"]
    for row in rows:
        passes = str(len(row.passed_visible))
        if detail and row.passed_visible:
            passes += " (" + ", ".join(row.passed_visible) + ")"
        lines.append(f"| {row.bug} | {passes} | {len(row.caught)} | "
                     f"{', '.join(row.families_without_power) or '-'} |")
    return "\n".join(lines)
