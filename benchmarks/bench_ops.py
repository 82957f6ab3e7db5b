"""Time each normalization op's forward and backward pass (NumPy reference, not a fast kernel).

    python benchmarks/bench_ops.py            # (32, 64, 32, 32) float32, median of 7 repeats
    python benchmarks/bench_ops.py --quick    # (8, 64, 16, 16) float32, median of 3 repeats

Each timing is the median of ``repeats`` calls measured with ``time.perf_counter`` after one
warm-up call. Weight standardization runs on a (64, 64, 3, 3) convolution weight, the weight a
layer with 64 channels would use. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np

import pnref

FULL_SHAPE = (32, 64, 32, 32)
QUICK_SHAPE = (8, 64, 16, 16)
GROUPS = 8


def median_seconds(function: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``function`` after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def benchmark_cases(shape: tuple[int, ...], dtype: np.dtype):
    """(name, number of elements, forward thunk, backward thunk) for each op."""
    rng = np.random.default_rng(0)
    channels = shape[1]
    x = rng.standard_normal(shape).astype(dtype)
    dy = rng.standard_normal(shape).astype(dtype)
    gamma = (1 + 0.1 * rng.standard_normal(channels)).astype(dtype)
    beta = (0.1 * rng.standard_normal(channels)).astype(dtype)
    running_mean = (0.1 * rng.standard_normal(channels)).astype(dtype)
    running_var = rng.uniform(0.5, 2.0, channels).astype(dtype)
    w = rng.standard_normal((channels, channels, 3, 3)).astype(dtype)
    dw = rng.standard_normal(w.shape).astype(dtype)
    eval_args = (x, running_mean, running_var, gamma, beta)
    return [
        ("batch_norm", x.size, lambda: pnref.batch_norm(x, gamma, beta),
         lambda: pnref.batch_norm_vjp(dy, x, gamma, beta)),
        ("batch_norm_eval", x.size, lambda: pnref.batch_norm_eval(*eval_args),
         lambda: pnref.batch_norm_eval_vjp(dy, *eval_args)),
        ("instance_norm", x.size, lambda: pnref.instance_norm(x, gamma, beta),
         lambda: pnref.instance_norm_vjp(dy, x, gamma, beta)),
        (f"group_norm G={GROUPS}", x.size, lambda: pnref.group_norm(x, GROUPS, gamma, beta),
         lambda: pnref.group_norm_vjp(dy, x, GROUPS, gamma, beta)),
        ("layer_norm", x.size, lambda: pnref.layer_norm(x, gamma, beta),
         lambda: pnref.layer_norm_vjp(dy, x, gamma, beta)),
        ("weight_standardization", w.size, lambda: pnref.weight_standardization(w),
         lambda: pnref.weight_standardization_vjp(dw, w)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller input, 3 repeats")
    parser.add_argument("--repeats", type=int, default=None, help="override the repeat count")
    args = parser.parse_args(argv)
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    repeats = args.repeats or (3 if args.quick else 7)
    dtype = np.dtype(np.float32)

    print(f"pnref norms on {shape} {dtype}, median of {repeats} repeats (time.perf_counter)")
    header = ("op", "elements", "forward ms", "backward ms", "fwd Melem/s")
    rows = []
    for name, size, forward, backward in benchmark_cases(shape, dtype):
        t_forward = median_seconds(forward, repeats)
        t_backward = median_seconds(backward, repeats)
        rows.append((name, str(size), f"{1e3 * t_forward:.2f}", f"{1e3 * t_backward:.2f}",
                     f"{size / t_forward / 1e6:.1f}"))
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(len(header))]
    for row in (header, None, *rows):
        if row is None:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
            continue
        numbers = [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        cells = [row[0].ljust(widths[0]), *numbers]
        print("  ".join(cells))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
