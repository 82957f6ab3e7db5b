"""Write tests/data/moment_references.csv: proxy moments over the whole domain, by mpmath.

The values come from `tests/mp_moments.py` (mpmath quadrature at 30+ digits with offsets,
tilted breakpoints and rescaled tolerances; none of pnref's code). Deterministic (seeded);
run from the repository root:

    .venv/bin/python scripts/make_moment_references.py            # 49 minutes, loaded 2 cores
    .venv/bin/python scripts/make_moment_references.py --append   # only rows not yet in the table

Grid, for every activation and parameter (14 variants): five regions,

- centre:    m uniform in [-3, 3], s log-uniform in [0.05, 3]        (3 points)
- far_left:  m/s uniform in [-40, -10], s log-uniform in [0.3, 100]  (3 points)
- far_right: m/s uniform in [10, 40], s log-uniform in [0.3, 100]    (2 points)
- tiny_s:    m uniform in [-3, 3], s log-uniform in [1e-8, 1e-4]     (2 points)
- huge_s:    m/s uniform in [-40, 40], s log-uniform in [30, 1e3]    (3 points)

plus the points named in issue 13 (region "issue"; new points go at the end of
ISSUE_POINTS, so that their rows can be appended to the table without recomputing the
others). Columns: activation, alpha (empty when none), region, m, s, mean, var, dmean_dm,
dmean_ds, dvar_dm, dvar_ds (float repr, the mpmath values rounded once to float64).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from mp_moments import reference_float  # noqa: E402

OUT = ROOT / "tests" / "data" / "moment_references.csv"
COLUMNS = ("activation", "alpha", "region", "m", "s", "mean", "var", "dmean_dm", "dmean_ds",
           "dvar_dm", "dvar_ds")
VARIANTS = (("identity", None), ("relu", None), ("leaky_relu", 0.01), ("leaky_relu", 0.2),
            ("elu", 1.0), ("elu", 0.2), ("elu", 0.5), ("elu", 2.0), ("gelu", None),
            ("gelu_tanh", None), ("silu", None), ("softplus", None), ("tanh", None),
            ("sigmoid", None))
ISSUE_POINTS = (("elu", 1.0, -19.75, 5.0), ("elu", 1.0, -505.9, 13.96),
                ("elu", 0.5, -574.81, 16.02), ("gelu", None, -0.7517915246935645, 1e-8),
                ("relu", None, 2.7533, 0.35608), ("relu", None, 22.0 * 0.5, 0.5),
                ("silu", None, 0.3, 1000.0), ("softplus", None, 0.4, 1000.0),
                ("softplus", None, 0.5, 1e-8), ("tanh", None, -30.0, 3.0),
                ("sigmoid", None, -60.0, 4.0), ("gelu_tanh", None, -45.0, 3.5),
                # gelu_tanh's e^(-0.07 |z|^3) tail peaks (issue 13c), mirrored for f' - 1 at m > 0
                ("gelu_tanh", None, -39.7, 1.0), ("gelu_tanh", None, 39.7, 1.0),
                ("gelu_tanh", None, -31.5, 0.9), ("gelu_tanh", None, -44.4, 1.2),
                ("gelu_tanh", None, 40.8, 1.2), ("gelu_tanh", None, -2.0, 0.1),
                ("gelu_tanh", None, -25000.0, 1e3), ("gelu_tanh", None, -150.0, 10.0),
                ("gelu_tanh", None, -10.6, 0.3),
                # issue 13d: the 90- to 1300-fold cancellation of GELU's and tanh-GELU's mean
                # near m = -s^2; kinks and f'' continuity at tiny s; ELU's kink edge at c
                ("gelu", None, -900.0, 30.0), ("gelu_tanh", None, -900.0, 30.0),
                ("gelu", None, -1216.2397414568318, 34.44393615463328),
                ("gelu_tanh", None, -619.5092780320936, 24.91275398615254),
                ("elu", 1.0, 1.5504641804712452e-06, 6.489285909085737e-07),
                ("elu", 1.0, -6.526155284454083e-05, 3.848719315595664e-05),
                ("tanh", None, -8.787688037175557e-07, 3.477622335125223e-07),
                ("sigmoid", None, 0.00017217872996163887, 6.140909413795478e-05),
                ("silu", None, 2.8049886191589826e-07, 2.416647376138238e-07),
                ("elu", 2.0, -16927.445733717865, 700.8354817212039),
                ("elu", 2.0, 618.9376667894619, 21.817828464913937),
                ("tanh", None, -15879.871615541912, 459.2440183350312),
                ("sigmoid", None, -2.911968473233045e-08, 3.2518427768890215e-08),
                # issue 13e: the mean's O(s) terms at a root of f at tiny s (f(0) = 0), and
                # the odd outputs of tanh and sigmoid at |m| << max(1, s)
                ("silu", None, 0.0, 1e-8), ("gelu_tanh", None, 0.0, 1e-8),
                ("elu", 1.0, 0.0, 1e-8), ("gelu", None, 0.0, 1e-8),
                ("elu", 1.0, 1e-14, 1e-8), ("gelu", None, 1e-14, 1e-8),
                ("tanh", None, 1e-14, 1e-8), ("tanh", None, 1e-6, 1.0),
                ("sigmoid", None, -1e-6, 1.0), ("tanh", None, -1e-3, 1e3),
                ("sigmoid", None, 1e-3, 1e3), ("tanh", None, 1.0, 1e3))


def grid(seed: int = 13) -> list[tuple[str, float | None, str, float, float]]:
    rng = np.random.default_rng(seed)
    rows = []

    def logu(lo, hi):
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))

    for name, alpha in VARIANTS:
        for _ in range(3):
            rows.append((name, alpha, "centre", float(rng.uniform(-3, 3)), logu(0.05, 3)))
        for _ in range(3):
            s = logu(0.3, 100)
            rows.append((name, alpha, "far_left", float(rng.uniform(-40, -10)) * s, s))
        for _ in range(2):
            s = logu(0.3, 100)
            rows.append((name, alpha, "far_right", float(rng.uniform(10, 40)) * s, s))
        for _ in range(2):
            rows.append((name, alpha, "tiny_s", float(rng.uniform(-3, 3)), logu(1e-8, 1e-4)))
        for _ in range(3):
            s = logu(30, 1e3)
            rows.append((name, alpha, "huge_s", float(rng.uniform(-40, 40)) * s, s))
    rows += [(name, alpha, "issue", m, s) for name, alpha, m, s in ISSUE_POINTS]
    return rows


def _key(name, alpha, region, m, s) -> tuple[str, str, str, str, str]:
    return (name, "" if alpha is None else repr(alpha), region, repr(m), repr(s))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--append", action="store_true",
                        help="compute only the grid rows missing from the table and append them")
    args = parser.parse_args(argv)
    rows = grid()
    mode = "w"
    if args.append and OUT.exists():
        with OUT.open() as handle:
            done = {tuple(r[c] for c in COLUMNS[:5]) for r in csv.DictReader(handle)}
        rows = [row for row in rows if _key(*row) not in done]
        mode = "a"
    start = time.time()
    with OUT.open(mode, newline="") as handle:
        writer = csv.writer(handle)
        if mode == "w":
            writer.writerow(COLUMNS)
        for i, (name, alpha, region, m, s) in enumerate(rows):
            values = reference_float(name, alpha, m, s)
            writer.writerow([name, "" if alpha is None else repr(alpha), region, repr(m),
                             repr(s), *(repr(v) for v in values)])
            handle.flush()
            print(f"{i + 1}/{len(rows)} {name} {region} {time.time() - start:.0f}s",
                  file=sys.stderr)


if __name__ == "__main__":
    main()
