"""Diagnose pnref's mutant adapters on the bundled suite; print the docs' diagnosis section.

Usage::

    .venv/bin/python scripts/diagnose_mutants.py [--per-mutant 3] [--all] [--power]

For every mutant of `pnref.adapters.mutants` (one catalogued mistake each): run it on every
case of the bundled suite, count the failed cases, and diagnose (`pnref.golden.diagnosis`)
the first failing case of each op, up to ``--per-mutant`` cases, printing what ``pnref golden
verify`` will print for them once the diagnosis is wired into the verifier. ``--power``
appends the power table of the suite (`pnref.golden.power`). The output is Markdown, pasted
into ``docs/verification.md``.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from pnref.adapters import mutants
from pnref.golden import bundled_suite_dir
from pnref.golden.compare import compare
from pnref.golden.diagnosis import diagnose, rank_key
from pnref.golden.format import read_case_file, read_manifest
from pnref.golden.power import format_power_table, simulate_power
from pnref.golden.tolerances import Tolerance


def _run_case(adapter, entry, arrays):
    inputs = {k.split(".", 1)[1]: v for k, v in arrays.items() if k.startswith("input.")}
    cotangents = {k.split(".", 1)[1]: v for k, v in arrays.items()
                  if k.startswith("cotangent.")}
    tolerances = {k: Tolerance.from_json(v) for k, v in entry["tolerances"].items()}
    actual = {f"expected.{k}": v for k, v in adapter.forward(entry["op"], inputs,
                                                             entry["attrs"]).items()}
    if cotangents and any(k.startswith("expected_grad.") for k in tolerances):
        actual.update({f"expected_grad.{k}": v for k, v in adapter.vjp(
            entry["op"], inputs, entry["attrs"], cotangents).items()})
    flat = np.concatenate([np.zeros(0)] + [c.astype(np.float64).ravel()
                                           for c in cotangents.values()])
    ct_rms = float(np.sqrt(np.mean(np.square(flat)))) if flat.size else 0.0
    worst = max(compare(k, actual[k], arrays[k], t, ct_rms).tolerance_ratio
                for k, t in tolerances.items())
    return inputs, cotangents, tolerances, actual, worst


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-mutant", type=int, default=3,
                        help="failing cases diagnosed per mutant (default 3)")
    parser.add_argument("--all", action="store_true",
                        help="diagnose every failing case for the 'named first' count (the "
                        "examples printed stay --per-mutant)")
    parser.add_argument("--power", action="store_true", help="append the power table")
    args = parser.parse_args(argv)
    directory = bundled_suite_dir()
    entries = read_manifest(directory)["cases"]
    cases = [(entry, read_case_file(directory / entry["file"])) for entry in entries]
    summary = ["| mutant (`--impl pnref.adapters.mutants:...`) | cases failed | diagnosed | "
               "named first |", "|---|---|---|---|"]
    details = []
    for class_name, deviation_id in mutants.MUTANTS.items():
        adapter = getattr(mutants, class_name)()
        failed, diagnosed, first = 0, 0, 0
        seen_ops: set[str] = set()
        lines = [f"`{class_name}` ({deviation_id}):", "", "```text"]
        for entry, arrays in cases:
            inputs, cotangents, tolerances, actual, worst = _run_case(adapter, entry, arrays)
            if worst <= 1.0:
                continue
            failed += 1
            example = entry["op"] not in seen_ops and len(seen_ops) < args.per_mutant
            if not (example or args.all):
                continue
            found = diagnose(entry["op"], inputs, entry["attrs"], cotangents, actual,
                             tolerances)
            diagnosed += 1
            named = bool(found) and any(
                f["id"] == deviation_id
                and rank_key(f["err_over_tol"]) <= rank_key(found[0]["err_over_tol"])
                for f in found)
            first += named
            if not named:
                print(f"  {class_name}: {entry['id']} diagnosed {found[:2]}", file=sys.stderr)
            if not example:
                continue
            seen_ops.add(entry["op"])
            likely = ", ".join(f"{f['id']} ({f['err_over_tol']:.2g} x tol)" for f in found[:3])
            lines.append(f"FAIL {entry['id']}  worst err/tol {worst:.3g}")
            lines.append(f"     likely: {likely or 'no catalogued deviation explains it'}")
        lines += ["```", ""]
        summary.append(f"| `{class_name}` | {failed} | {diagnosed} | {first} of {diagnosed} |")
        details += lines
        print(f"{class_name}: {failed} failed, named first in {first} of {diagnosed}",
              file=sys.stderr)
    print("\n".join(summary))
    print()
    print("\n".join(details))
    if args.power:
        print(format_power_table(simulate_power(directory)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
