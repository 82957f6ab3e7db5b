"""``pnref demo``: the golden verification of the bundled suite, then a gradient self-check.

`run_demo` (what ``make demo`` runs) first verifies pnref's default implementation (its
fast path) against the golden suite bundled with the package and prints that table
(``pnref golden verify``, see ``docs/verification.md``), then runs the gradient check below
(also available alone as ``pnref check-gradients``, `run_gradient_check`).

For each named case the gradient check prints the forward output's statistics (mean, std,
min, max) and the agreement of the hand-derived backward pass with central finite differences:
for random cotangent c and random direction t on every differentiable argument,

    rel_err = |<vjp(c), t> - (<c, f(p + h t)> - <c, f(p - h t)>) / (2 h)| / |fd|

It returns 0 when every case passes and 1 otherwise. New rows are new entries of
``demo_cases()``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pnref.norms import (
    batch_norm,
    batch_norm_eval,
    batch_norm_eval_vjp,
    batch_norm_vjp,
    group_norm,
    group_norm_vjp,
    instance_norm,
    instance_norm_vjp,
    layer_norm,
    layer_norm_vjp,
    weight_standardization,
    weight_standardization_vjp,
)

__all__ = ["DemoCase", "CaseResult", "demo_cases", "check_case", "run_demo",
           "run_gradient_check"]

FD_STEP = 1e-5
# O(1) float64 data: the central difference is good to ~1e-10 (h^2 truncation plus eps/h
# rounding), so 1e-6 flags any wrong gradient term (an O(1) error) with a wide margin.
FD_TOLERANCE = 1e-6
SEED = 20210607


@dataclass(frozen=True)
class DemoCase:
    """One row: ``forward(*args, **kwargs)`` and ``vjp(dy, *args, **kwargs)``.

    ``args`` are the differentiable arguments (``None`` for an absent optional one).
    """

    name: str
    forward: Callable[..., np.ndarray]
    vjp: Callable[..., tuple]
    args: Sequence[np.ndarray | None]
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CaseResult:
    name: str
    mean: float
    std: float
    minimum: float
    maximum: float
    fd_relative_error: float
    passed: bool


def demo_cases() -> list[DemoCase]:
    """The named cases, one table row each (add a row by adding an entry)."""
    rng = np.random.default_rng(SEED)
    channels = 8
    x_first = rng.standard_normal((4, channels, 6, 6)) * 1.5 + 0.5
    x_last = np.moveaxis(x_first, 1, -1)
    gamma = 1.0 + 0.2 * rng.standard_normal(channels)
    beta = 0.2 * rng.standard_normal(channels)
    running_mean = 0.5 + 0.1 * rng.standard_normal(channels)
    running_var = rng.uniform(1.5, 3.0, channels)
    weight = rng.standard_normal((16, channels, 3, 3)) * np.sqrt(2 / (channels * 9))

    def gn_forward(x, g, b, **k):
        return group_norm(x, 4, g, b, **k)

    def gn_vjp(dy, x, g, b, **k):
        return group_norm_vjp(dy, x, 4, g, b, **k)

    return [
        DemoCase("batch_norm NCHW", batch_norm, batch_norm_vjp, (x_first, gamma, beta)),
        DemoCase("batch_norm NHWC", batch_norm, batch_norm_vjp, (x_last, gamma, beta),
                 {"axis": -1}),
        DemoCase("batch_norm_eval", batch_norm_eval, batch_norm_eval_vjp,
                 (x_first, running_mean, running_var, gamma, beta)),
        DemoCase("instance_norm", instance_norm, instance_norm_vjp, (x_first, gamma, beta)),
        DemoCase("group_norm G=4", gn_forward, gn_vjp, (x_first, gamma, beta)),
        DemoCase("group_norm G=4 NHWC", gn_forward, gn_vjp, (x_last, gamma, beta), {"axis": -1}),
        DemoCase("layer_norm", layer_norm, layer_norm_vjp, (x_first, gamma, beta)),
        DemoCase("layer_norm no affine", layer_norm, layer_norm_vjp, (x_first, None, None)),
        DemoCase("weight_standardization", weight_standardization, weight_standardization_vjp,
                 (weight,)),
    ]


def check_case(case: DemoCase, rng: np.random.Generator) -> CaseResult:
    """Run one case: forward statistics and the VJP against a central difference.

    Equations
    ---------
    With p the differentiable arguments, c a random cotangent and t random directions:

        fd      = (<c, f(p + h t)> - <c, f(p - h t)>) / (2 h)
        rel_err = |<vjp(c), t> - fd| / |fd|,   passed when rel_err <= FD_TOLERANCE
    """
    args = list(case.args)
    y = case.forward(*args, **case.kwargs)
    cotangent = rng.standard_normal(y.shape)
    directions = [None if a is None else rng.standard_normal(a.shape) for a in args]
    grads = case.vjp(cotangent, *args, **case.kwargs)
    analytic = sum(float(np.sum(g * t)) for g, t in zip(grads, directions, strict=True)
                   if t is not None)

    def loss(step: float) -> float:
        moved = [a if t is None else a + step * t for a, t in zip(args, directions, strict=True)]
        return float(np.sum(cotangent * case.forward(*moved, **case.kwargs)))

    numeric = (loss(FD_STEP) - loss(-FD_STEP)) / (2 * FD_STEP)
    relative_error = abs(analytic - numeric) / max(abs(numeric), np.finfo(float).tiny)
    passed = bool(np.all(np.isfinite(y))) and relative_error <= FD_TOLERANCE
    return CaseResult(case.name, float(np.mean(y)), float(np.std(y)), float(np.min(y)),
                      float(np.max(y)), relative_error, passed)


def _format_table(results: Sequence[CaseResult]) -> str:
    """The results as an aligned text table."""
    header = ("case", "mean", "std", "min", "max", "vjp vs fd", "check")
    rows = [
        (r.name, f"{r.mean:+.3e}", f"{r.std:.4f}", f"{r.minimum:+.4f}", f"{r.maximum:+.4f}",
         f"{r.fd_relative_error:.1e}", "ok" if r.passed else "FAIL")
        for r in results
    ]
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells):
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True))])

    rule = "-" * len(line(header))
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def run_demo() -> int:
    """Golden verification of the bundled suite, then `run_gradient_check`.

    Returns
    -------
    int
        0 when every golden case and every gradient check passes, 1 otherwise.
    """
    from pnref.verification.cli import run_verify

    golden_status = run_verify()
    print()
    return max(golden_status, run_gradient_check())


def run_gradient_check() -> int:
    """Check every case, print the table, return 0 if all pass and 1 otherwise.

    Equations
    ---------
    Each row: mean, std, min, max of y = f(p), and rel_err of `check_case`.
    """
    rng = np.random.default_rng(SEED + 1)
    results = [check_case(case, rng) for case in demo_cases()]
    print("pnref demo: forward statistics and backward vs central differences (float64)")
    print(f"(relative error of <vjp(c), t> against the central difference, h = {FD_STEP:g};"
          f" pass <= {FD_TOLERANCE:g})")
    print()
    print(_format_table(results))
    failed = [r.name for r in results if not r.passed]
    print()
    print("all checks passed" if not failed else f"FAILED: {', '.join(failed)}")
    return 0 if not failed else 1
