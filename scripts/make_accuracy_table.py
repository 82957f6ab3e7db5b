"""Write pnref's published error table: every method x activation against its reference.

One command, from the repository root:

    .venv/bin/python scripts/make_accuracy_table.py            # full grid, 2 processes
    .venv/bin/python scripts/make_accuracy_table.py --quick    # one point per region
    .venv/bin/python scripts/make_accuracy_table.py --reuse-reference   # methods changed:
                                      # re-judge them against the committed references

(the practice of SciPy's ``xsref``: a fixed grid, a reference computed once at high
precision, the errors published and guarded by a test).

Reference values
    ``exact`` and ``quadrature`` are judged against the mpmath oracle
    (`pnref.oracle.moments`, 16 significant digits plus whatever its adaptive precision
    adds); ``quantile`` (n = 200, the official points) and ``montecarlo`` (n = 1000 draws,
    seed 0: the same code as the default n = 100000, on a sample the exact-arithmetic
    reference can afford) are estimators and are judged against the same estimator in
    exact arithmetic on the same float64 points (`pnref.oracle.estimator_moments`).

Error
    ``|got - ref| / max(|ref|, 1e-290)`` for each of mean, var, dmean_dm, dmean_ds,
    dvar_dm, dvar_ds (relative down to magnitudes of 1e-290, absolute below).

Grid (|m|/s <= 40, s in [1e-8, 1e3]; m = ratio * s), five regions:
    centre, far_left, far_right, tiny_s, huge_s (see ``REGIONS``); --quick keeps the
    first point of each.

Outputs
    tests/data/accuracy_reference.csv   the reference values (float64 repr); while a run
                                        is in progress its finished values go to
                                        accuracy_reference.partial.csv, from which an
                                        interrupted run resumes
    tests/data/accuracy_table.csv       max and median error per method, activation,
                                        region and quantity
    docs/accuracy.md                    the table a reader scans

``tests/test_accuracy_table.py`` recomputes every method on every committed reference
point and fails if any cell's maximum error grows beyond twice the committed one; it also
recomputes a seeded, rotating sample of the references themselves.
"""

from __future__ import annotations

import argparse
import csv
import multiprocessing
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pnref  # noqa: E402
from pnref import oracle  # noqa: E402
from pnref.moments import montecarlo, quantile  # noqa: E402

REFERENCE = ROOT / "tests" / "data" / "accuracy_reference.csv"
#: Finished reference rows of a run in progress (appended as they come; the next run resumes
#: from them; deleted once the reference file is written).
PARTIAL = ROOT / "tests" / "data" / "accuracy_reference.partial.csv"
TABLE = ROOT / "tests" / "data" / "accuracy_table.csv"
DOC = ROOT / "docs" / "accuracy.md"

QUANTITIES = ("mean", "var", "dmean_dm", "dmean_ds", "dvar_dm", "dvar_ds")
REFERENCE_COLUMNS = ("kind", "activation", "alpha", "region", "m", "s", *QUANTITIES)
TABLE_COLUMNS = ("method", "activation", "alpha", "region", "quantity", "max", "median",
                 "points")
METHODS = ("exact", "quadrature", "quantile", "montecarlo")
ORACLE_DPS = 16
QUANTILE_N = 200
MONTECARLO_N = 1000
MONTECARLO_SEED = 0
FLOOR = 1e-290

#: (name, alpha) for every activation pnref offers, with other parameter values.
ACTIVATIONS: tuple[tuple[str, float | None], ...] = (
    ("identity", None), ("relu", None), ("leaky_relu", 0.01), ("leaky_relu", 0.2),
    ("elu", 1.0), ("elu", 0.2), ("elu", 0.5), ("elu", 2.0), ("gelu", None),
    ("gelu_tanh", None), ("silu", None), ("softplus", None), ("tanh", None),
    ("sigmoid", None),
)

#: Region -> (m/s, s) points; non-round ratios so that m = ratio * s is not dyadic.
REGIONS: dict[str, tuple[tuple[float, float], ...]] = {
    "centre": ((-0.7, 1.0), (-2.5, 0.3), (0.0, 1.0), (0.9, 2.0), (2.2, 0.15)),
    "far_left": ((-39.7, 1.0), (-30.3, 0.25), (-20.1, 3.0), (-12.4, 13.0)),
    "far_right": ((39.7, 1.0), (30.3, 0.25), (20.1, 3.0), (12.4, 13.0)),
    "tiny_s": ((-37.1, 1e-8), (0.0, 1e-8), (1.3, 1e-6), (-3.3, 1e-4), (25.0, 1e-3)),
    "huge_s": ((-38.2, 1e3), (0.0, 1e3), (0.77, 40.0), (-5.5, 150.0), (33.3, 300.0)),
}


def grid(quick: bool) -> list[tuple[str, float, float]]:
    """(region, m, s) for every grid point (the first of each region with ``quick``)."""
    points = []
    for region, pairs in REGIONS.items():
        for ratio, s in pairs[:1] if quick else pairs:
            points.append((region, float(ratio * s), float(s)))
    return points


def estimator_points(kind: str) -> np.ndarray:
    if kind == "quantile":
        return np.array(quantile.points(QUANTILE_N))
    return np.array(montecarlo.draws(MONTECARLO_N, MONTECARLO_SEED))


def reference_kinds(name: str) -> tuple[str, ...]:
    return ("oracle", "quantile", "montecarlo")


def compute_reference(job: tuple) -> list:
    """One reference row: (kind, activation, alpha, region, m, s) -> the six values."""
    kind, name, alpha, region, m, s = job
    kwargs = {} if alpha is None else {"alpha": alpha}
    if kind == "oracle":
        values = oracle.moments(name, m, s, derivatives=True, dps=ORACLE_DPS, **kwargs)
    else:
        values = oracle.estimator_moments(name, m, s, estimator_points(kind), **kwargs)
    return [kind, name, "" if alpha is None else repr(alpha), region, repr(m), repr(s),
            *(repr(float(v)) for v in values)]


def load_reference(path: Path = REFERENCE) -> list[dict]:
    rows = []
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            row = {"kind": record["kind"], "activation": record["activation"],
                   "alpha": float(record["alpha"]) if record["alpha"] else None,
                   "region": record["region"], "m": float(record["m"]),
                   "s": float(record["s"])}
            for q in QUANTITIES:
                row[q] = float(record[q])
            rows.append(row)
    return rows


def method_values(method: str, name: str, alpha: float | None, m: float,
                  s: float) -> tuple[float, ...] | None:
    """The method's six outputs at (m, s), or None where it does not apply."""
    act = pnref.activation(name) if alpha is None else pnref.activation(name, alpha=alpha)
    module = __import__(f"pnref.moments.{method}", fromlist=["moments_with_derivatives"])
    if method == "exact" and name not in module.SUPPORTED:
        return None
    kwargs = {}
    if method == "quantile":
        kwargs = {"n": QUANTILE_N}
    elif method == "montecarlo":
        kwargs = {"n": MONTECARLO_N, "seed": MONTECARLO_SEED}
    out = module.moments_with_derivatives(act, np.array([m]), np.array([s]), **kwargs)
    return tuple(float(np.asarray(v).reshape(-1)[0]) for v in out)


def relative_error(got: float, ref: float) -> float:
    """|got - ref| / max(|ref|, 1e-290); inf for a NaN or infinite result."""
    if not np.isfinite(got):
        return float("inf")
    return abs(got - ref) / max(abs(ref), FLOOR)


def reference_kind(method: str) -> str:
    return method if method in ("quantile", "montecarlo") else "oracle"


def point_errors(rows: list[dict]) -> list[dict]:
    """One record per (method, activation, alpha, region, point, quantity): its error."""
    records = []
    for row in rows:
        for method in METHODS:
            if reference_kind(method) != row["kind"]:
                continue
            got = method_values(method, row["activation"], row["alpha"], row["m"], row["s"])
            if got is None:
                continue
            for q, value in zip(QUANTITIES, got, strict=True):
                records.append({"method": method, "activation": row["activation"],
                                "alpha": row["alpha"], "region": row["region"],
                                "m": row["m"], "s": row["s"], "quantity": q,
                                "error": relative_error(value, row[q])})
    return records


def cell_key(record: dict) -> tuple:
    return (record["method"], record["activation"], record["alpha"], record["region"],
            record["quantity"])


def summarise(records: list[dict]) -> dict[tuple, tuple[float, float, int]]:
    cells: dict[tuple, list[float]] = {}
    for record in records:
        cells.setdefault(cell_key(record), []).append(record["error"])
    return {key: (max(v), float(np.median(v)), len(v)) for key, v in cells.items()}


def load_table(path: Path = TABLE) -> dict[tuple, tuple[float, float, int]]:
    cells = {}
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            alpha = float(record["alpha"]) if record["alpha"] else None
            key = (record["method"], record["activation"], alpha, record["region"],
                   record["quantity"])
            cells[key] = (float(record["max"]), float(record["median"]), int(record["points"]))
    return cells


def _label(name: str, alpha: float | None) -> str:
    return name if alpha is None else f"{name} (alpha {alpha:g})"


def _fmt(value: float) -> str:
    if value == 0.0:
        return "0"
    if not np.isfinite(value):
        return "inf"
    return f"{value:.0e}"


def write_doc(cells: dict, quick: bool, seconds: float | None) -> None:
    """Write docs/accuracy.md; ``seconds`` None: the methods were re-judged on kept references."""
    regions = list(REGIONS)
    lines = [
        "# Accuracy: each method's error, measured",
        "",
        "Generated by `python scripts/make_accuracy_table.py` (do not edit by hand); the data",
        "behind it is `tests/data/accuracy_table.csv` (every quantity separately) and the",
        "reference values `tests/data/accuracy_reference.csv`. "
        + ("**Quick run (one point per region).** " if quick else "")
        + ("The references were computed by a run of the script with the oracle; the "
           "methods were last re-judged against them with `--reuse-reference`."
           if seconds is None else f"Last run: {seconds:.0f} s on 2 processes."),
        "",
        "Each cell is **max / median** relative error, `|got - ref| / max(|ref|, 1e-290)`, over",
        "the region's grid points, taken over the two values (mean, var) or over the four",
        "derivatives (d/dm and d/ds of the mean and of the variance).",
        "",
        "- `exact` and `quadrature` against the mpmath oracle (`pnref.oracle.moments`, 16",
        "  significant digits with adaptive precision, itself checked against the closed",
        "  forms at 300 digits in `tests/test_oracle.py`).",
        "- `quantile` (n = 200, the official points) and `montecarlo` (n = 1000 draws, seed 0)",
        "  against the same estimator evaluated in exact arithmetic on the same float64",
        "  points (`pnref.oracle.estimator_moments`): their job is to be exactly the",
        "  estimator; their bias against the true moments is a separate matter",
        "  ([Proxy moments](proxy-moments.md)).",
        "",
        "Regions (m = (m/s) s, |m|/s <= 40, s in [1e-8, 1e3]):",
        "",
        "| region | (m/s, s) points |",
        "|---|---|",
    ]
    for region, pairs in REGIONS.items():
        shown = pairs[:1] if quick else pairs
        lines.append(f"| {region} | " + ", ".join(f"({r:g}, {s:g})" for r, s in shown) + " |")
    lines.append("")
    lines.append("`tests/test_accuracy_table.py` recomputes every method at every reference point")
    lines.append("and fails if any cell's maximum gets worse than twice the committed value.")
    lines += [
        "",
        "**Known limits** (beyond this grid: `tests/data/moment_references.csv`",
        "and the stress search of issue 13d, see [Proxy moments](proxy-moments.md)).",
        "Quadrature's error is the rounding of its sums times the cancellation between the",
        "integrand's parts, and",
        "only where a moment changes sign is that cancellation unbounded: GELU's and",
        "tanh-GELU's mean and its derivatives near m = -s^2 for s >= 10 (990-fold at m/s = -30,",
        "s = 30, error 4e-14; at the sign change itself no float64 method keeps relative",
        "accuracy; `exact` GELU's closed form is 2.3e-13 off at m = -900, s = 30, its terms'",
        "rounding times the same cancellation). True zeros are returned exactly (identity,",
        "tanh and sigmoid at m = 0:",
        "d(mean)/ds = d(var)/dm = 0, and the mean of the first two).",
    ]
    for method in METHODS:
        for group, quantities in (("values (mean, var)", QUANTITIES[:2]),
                                  ("derivatives", QUANTITIES[2:])):
            lines += ["", f"## {method}: {group}", "",
                      "| activation | " + " | ".join(regions) + " |",
                      "|---|" + "---|" * len(regions)]
            for name, alpha in ACTIVATIONS:
                row = []
                present = False
                for region in regions:
                    found = [cells[(method, name, alpha, region, q)] for q in quantities
                             if (method, name, alpha, region, q) in cells]
                    if not found:
                        row.append("")
                        continue
                    present = True
                    worst = max(c[0] for c in found)
                    median = max(c[1] for c in found)
                    row.append(f"{_fmt(worst)} / {_fmt(median)}")
                if present:
                    lines.append(f"| {_label(name, alpha)} | " + " | ".join(row) + " |")
    DOC.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one grid point per region")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--reuse-reference", action="store_true",
                        help="keep tests/data/accuracy_reference.csv (no oracle run) and "
                        "re-judge the methods against it")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    if args.reuse_reference:
        quick = len(load_reference()) < 300  # the --quick grid has 210 reference values
        _write_table_and_doc(quick, start, reused=True)
        return 0
    jobs = []
    for name, alpha in ACTIVATIONS:
        for region, m, s in grid(args.quick):
            for kind in reference_kinds(name):
                jobs.append((kind, name, alpha, region, m, s))
    # The slowest (oracle) jobs first, so the two processes finish together.
    jobs.sort(key=lambda job: job[0] != "oracle")
    done = _finished_rows(jobs)
    todo = [job for job in jobs if _job_key(job) not in done]
    print(f"{len(jobs)} reference values ({len(done)} kept from {PARTIAL.name}) on "
          f"{args.processes} processes", flush=True)
    with multiprocessing.Pool(args.processes) as pool, PARTIAL.open("a", newline="") as partial:
        writer = csv.writer(partial, lineterminator="\n")
        for index, row in enumerate(pool.imap_unordered(compute_reference, todo, chunksize=1)):
            writer.writerow(row)  # kept at once: a crash or Ctrl-C loses no finished value
            partial.flush()
            done[_job_key(row)] = row
            if index % 25 == 0:
                print(f"{index}/{len(todo)} {time.perf_counter() - start:.0f} s", flush=True)
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    with REFERENCE.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(REFERENCE_COLUMNS)
        writer.writerows(done[_job_key(job)] for job in jobs)
    PARTIAL.unlink()
    _write_table_and_doc(args.quick, start)
    return 0


def _job_key(job_or_row) -> tuple:
    """(kind, activation, alpha, region, m, s) as text: the identity of a reference value."""
    kind, name, alpha, region, m, s = job_or_row[:6]
    if not isinstance(alpha, str):  # a job: alpha a float or None, m and s floats
        alpha, m, s = "" if alpha is None else repr(alpha), repr(m), repr(s)
    return kind, name, alpha, region, m, s


def _finished_rows(jobs: list[tuple]) -> dict[tuple, list]:
    """Rows of an interrupted run kept in `PARTIAL` that belong to this grid."""
    if not PARTIAL.exists():
        return {}
    wanted = {_job_key(job) for job in jobs}
    with PARTIAL.open(newline="") as handle:
        rows = [row for row in csv.reader(handle) if len(row) == len(REFERENCE_COLUMNS)]
    return {_job_key(row): row for row in rows if _job_key(row) in wanted}


def _write_table_and_doc(quick: bool, start: float, *, reused: bool = False) -> None:
    """Judge every method on the committed references; write the table CSV and the page."""
    cells = summarise(point_errors(load_reference()))
    with TABLE.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(TABLE_COLUMNS)
        for key in sorted(cells, key=lambda k: (k[0], k[1], k[2] or 0.0, k[3], k[4])):
            method, name, alpha, region, q = key
            worst, median, count = cells[key]
            writer.writerow([method, name, "" if alpha is None else repr(alpha), region, q,
                             repr(worst), repr(median), count])
    seconds = time.perf_counter() - start
    write_doc(cells, quick, None if reused else seconds)
    print(f"wrote {TABLE.name}, {DOC.name} in {seconds:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
