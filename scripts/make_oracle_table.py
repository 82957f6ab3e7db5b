"""Write tests/data/oracle_moments.csv: proxy moments and derivatives from the mpmath oracle.

Deterministic (seeded grid); run from the repository root:

    .venv/bin/python scripts/make_oracle_table.py            # 5.4 minutes, one process

Columns: activation, alpha (empty when the activation has none), m, s, mean, var,
dmean_dm, dmean_ds, dvar_dm, dvar_ds, every number written with Python's float repr
(shortest string that reads back to the same float64). The values are the oracle's
30-digit results rounded once to float64.

The grid (40 points per activation with closed forms, 15 for the second alpha of
leaky_relu and elu, 20 for the others):

- identity, relu, leaky_relu, elu, gelu: extremes first (|m|/s up to 40, s from 1e-8 to
  1e3, tiny variances near GELU's minimum and in the tails), then random points with
  log-uniform s in [1e-2, 1e2] and m/s uniform in [-8, 8];
- gelu_tanh, silu, softplus, tanh, sigmoid: random points over the quadrature target
  domain m in [-5, 5], s in [0.05, 5] (s log-uniform), and its corners.
"""

from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

import numpy as np

from pnref import oracle

OUTPUT = Path(__file__).resolve().parents[1] / "tests" / "data" / "oracle_moments.csv"
COLUMNS = ("activation", "alpha", "m", "s", "mean", "var",
           "dmean_dm", "dmean_ds", "dvar_dm", "dvar_ds")
SEED = 20210607
EXACT = (("identity", None), ("relu", None), ("leaky_relu", 0.2), ("leaky_relu", 0.01),
         ("elu", 1.0), ("elu", 0.5), ("gelu", None))
OTHERS = ("gelu_tanh", "silu", "softplus", "tanh", "sigmoid")


def extreme_points(name: str) -> list[tuple[float, float]]:
    """Hand-picked (m, s): far tails, tiny and huge s, tiny variances."""
    points = [(0.0, 1.0), (-40.0, 1.0), (40.0, 1.0), (-35.0, 1.0), (35.0, 1.0),
              (-30.0, 1.0), (30.0, 1.0), (-10.0, 1.0), (10.0, 1.0),
              (0.0, 1e-8), (1.0, 1e-8), (-1.0, 1e-8), (-5.0, 1e-8), (1e-8, 1e-8),
              (-0.7518, 1e-8), (-0.7518, 1e-4), (-0.7518, 0.1), (-5.0, 1e-6),
              (0.0, 1e3), (-4e4, 1e3), (4e4, 1e3), (-5e3, 1e3), (5e3, 1e3),
              (-3.3e-7, 1e-8), (2.0, 3e-3)]
    if name == "identity":
        points += [(1e6, 1.0), (-1e-300, 1e-8)]
    return points


def random_points(rng: np.random.Generator, count: int, ratio_bound: float,
                  s_range: tuple[float, float]) -> list[tuple[float, float]]:
    log_s = rng.uniform(np.log10(s_range[0]), np.log10(s_range[1]), size=count)
    s = 10.0**log_s
    ratio = rng.uniform(-ratio_bound, ratio_bound, size=count)
    return [(float(r * si), float(si)) for r, si in zip(ratio, s, strict=True)]


def domain_points(rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
    corners = [(-5.0, 0.05), (5.0, 0.05), (-5.0, 5.0), (5.0, 5.0), (0.0, 0.05), (0.0, 5.0)]
    m = rng.uniform(-5.0, 5.0, size=count - len(corners))
    s = 10.0 ** rng.uniform(np.log10(0.05), np.log10(5.0), size=count - len(corners))
    return corners + [(float(a), float(b)) for a, b in zip(m, s, strict=True)]


def main() -> int:
    rng = np.random.default_rng(SEED)
    jobs: list[tuple[str, float | None, float, float]] = []
    for name, alpha in EXACT:
        if alpha in (0.01, 0.5):  # second parameter value: a lighter grid
            grid = [(0.0, 1.0), (-30.0, 1.0), (30.0, 1.0), (0.5, 1e-8), (-5e3, 1e3)]
            grid += random_points(rng, 10, 8.0, (1e-2, 1e2))
        else:
            grid = extreme_points(name) + random_points(rng, 15, 8.0, (1e-2, 1e2))
        jobs += [(name, alpha, m, s) for m, s in grid]
    for name in OTHERS:
        jobs += [(name, None, m, s) for m, s in domain_points(rng, 20)]
    start = time.perf_counter()
    rows = []
    for index, (name, alpha, m, s) in enumerate(jobs):
        kwargs = {} if alpha is None else {"alpha": alpha}
        values = oracle.moments_float(name, m, s, derivatives=True, dps=30, **kwargs)
        rows.append([name, "" if alpha is None else repr(alpha), repr(m), repr(s),
                     *(repr(v) for v in values)])
        if index % 20 == 0:
            print(f"{index}/{len(jobs)} {time.perf_counter() - start:.0f} s", flush=True)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    with OUTPUT.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {OUTPUT} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
