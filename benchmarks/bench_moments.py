"""Cost and accuracy of the proxy-moment methods, and the tables in docs/proxy-moments.md.

Run from the repository root:

    .venv/bin/python benchmarks/bench_moments.py               # cost for 1024 channels
    .venv/bin/python benchmarks/bench_moments.py --convergence # quadrature convergence table
    .venv/bin/python benchmarks/bench_moments.py --bias        # official estimator's bias

Cost: best of several repeats of ``proxy_moments`` (forward) and ``proxy_moments_vjp``
for 1024 channels drawn around the initial parameters, printed as a ratio to the
quantile method (n = 200), with the worst relative error of (mean, var) against
quadrature with 128 nodes per piece (itself within 1e-13 of the mpmath oracle).
"""

from __future__ import annotations

import argparse
import sys
import timeit
from pathlib import Path

import numpy as np

import pnref
from pnref import oracle
from pnref.moments import quadrature

CHANNELS = 1024
TABLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "oracle_moments.csv"


def _parameters(seed: int = 0):
    rng = np.random.default_rng(seed)
    return (rng.normal(1.0, 0.2, CHANNELS), rng.normal(0.0, 0.2, CHANNELS),
            rng.normal(0.0, 0.1, CHANNELS), rng.normal(0.0, 0.1, CHANNELS))


def _relative_error(got, reference) -> float:
    """Mean error relative to max(|mean|, sqrt(var)), variance error relative.

    Points whose reference variance is below 1e-290 (ReLU at m/s < -37: subnormal or
    zero in float64, which has no relative precision left there) are left out.
    """
    mean, var = got
    mean_ref, var_ref = reference
    normal = var_ref >= 1e-290
    mean, var, mean_ref, var_ref = mean[normal], var[normal], mean_ref[normal], var_ref[normal]
    scale = np.maximum(np.abs(mean_ref), np.sqrt(var_ref))
    return float(max(np.max(np.abs(mean - mean_ref) / scale),
                     np.max(np.abs(var - var_ref) / var_ref)))


def _best_time(call, repeats: int = 7) -> float:
    number = 3
    return min(timeit.repeat(call, number=number, repeat=repeats)) / number


def cost() -> None:
    params = _parameters()
    cotangents = (np.ones(CHANNELS), np.ones(CHANNELS))
    configs = [("quantile", 200), ("exact", None), ("quadrature", 16), ("quadrature", 32),
               ("quadrature", 64)]
    for name in ("relu", "gelu"):
        reference = pnref.proxy_moments(name, *params, method="quadrature", n=128)
        base = None
        print(f"\n{name}, {CHANNELS} channels (ratios to quantile n=200)")
        print(f"{'method':<16}{'forward ms':>11}{'ratio':>7}{'vjp ms':>9}{'ratio':>7}"
              f"{'max rel err':>13}")
        for method, n in configs:
            try:
                got = pnref.proxy_moments(name, *params, method=method, n=n)
            except (ImportError, ValueError) as error:  # exact not available
                print(f"{method:<16} unavailable: {error}")
                continue
            forward = _best_time(lambda m=method, k=n, a=name: pnref.proxy_moments(
                a, *params, method=m, n=k))
            backward = _best_time(lambda m=method, k=n, a=name: pnref.proxy_moments_vjp(
                *cotangents, a, *params, method=m, n=k))
            if base is None:
                base = (forward, backward)
            label = method if n is None else f"{method} {n}"
            print(f"{label:<16}{forward * 1e3:>11.3f}{forward / base[0]:>7.2f}"
                  f"{backward * 1e3:>9.3f}{backward / base[1]:>7.2f}"
                  f"{_relative_error(got, reference):>13.1e}")


def convergence() -> None:
    """Worst error of quadrature over m in [-5, 5], s in [0.05, 5], per nodes per piece.

    Two measures: against every row of the committed oracle table inside that domain
    (mean error relative to max(|mean|, sqrt(var)), variance error relative), and
    against quadrature with 160 nodes per piece on a 41 x 31 grid (m linear, s
    geometric) for a dense view.
    """
    rows = [r for r in oracle.load_table(TABLE)
            if abs(r["m"]) <= 5 and 0.05 <= r["s"] <= 5]
    m_grid, s_grid = np.meshgrid(np.linspace(-5, 5, 41), np.geomspace(0.05, 5, 31))
    nodes_list = (8, 16, 24, 32, 48, 64)
    names = ("identity", "relu", "leaky_relu", "elu", "gelu", "gelu_tanh", "silu",
             "softplus", "tanh", "sigmoid")
    header = "| activation | " + " | ".join(f"n = {n}" for n in nodes_list) + " |"
    print(header)
    print("|" + "---|" * (len(nodes_list) + 1))
    for name in names:
        act = pnref.activation(name)
        selected = [r for r in rows if r["activation"] == name and r["alpha"] in (None, 0.2,
                                                                                  1.0)]
        if selected:
            act = pnref.activation(name, **({} if selected[0]["alpha"] is None
                                            else {"alpha": selected[0]["alpha"]}))
            selected = [r for r in selected if r["alpha"] == selected[0]["alpha"]]
        m_rows = np.array([r["m"] for r in selected])
        s_rows = np.array([r["s"] for r in selected])
        oracle_values = (np.array([r["mean"] for r in selected]),
                         np.array([r["var"] for r in selected]))
        dense_reference = quadrature.moments(act, m_grid, s_grid, n=160)
        cells = []
        for n in nodes_list:
            vs_oracle = _relative_error(quadrature.moments(act, m_rows, s_rows, n=n),
                                        oracle_values)
            dense = _relative_error(quadrature.moments(act, m_grid, s_grid, n=n),
                                    dense_reference)
            cells.append(f"{vs_oracle:.0e} / {dense:.0e}")
        print(f"| {name} ({len(selected)} rows) | " + " | ".join(cells) + " |")


def bias() -> None:
    """Relative bias of the official estimator against the exact moments at (m, s) = (0, 1)."""
    sizes = (16, 64, 200, 256, 1024)
    print("| activation, moment | " + " | ".join(f"n = {n}" for n in sizes) + " |")
    print("|" + "---|" * (len(sizes) + 1))
    for name in ("relu", "silu", "gelu"):
        exact = [float(v) for v in oracle.moments(name, 0.0, 1.0)]
        estimates = [pnref.proxy_moments(name, 1.0, 0.0, method="quantile", n=n) for n in sizes]
        for index, moment in enumerate(("mean", "var")):
            cells = [f"{float(e[index]) / exact[index] - 1.0:+.2e}" for e in estimates]
            print(f"| {name} {moment} | " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--convergence", action="store_true")
    parser.add_argument("--bias", action="store_true")
    args = parser.parse_args(argv)
    if args.convergence:
        convergence()
    elif args.bias:
        bias()
    else:
        cost()
    return 0


if __name__ == "__main__":
    sys.exit(main())
