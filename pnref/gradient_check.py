"""``pnref check-gradients``: every op that has a VJP against central differences, in float64.

Each case evaluates an op ``f`` at float64 arguments ``p`` (the differentiable ones), draws a
random cotangent ``c`` for every output and a random direction ``t`` for every differentiable
argument, and compares the hand-derived VJP with a central difference of ``<c, f>``:

    fd      = (<c, f(p + h t)> - <c, f(p - h t)>) / (2 h)
    rel_err = |<vjp(c), t> - fd| / |fd|

The ops covered: the six norms (`pnref.norms`), the plain activation step `pnref.act` for
every activation, `pnref.pn_act` and `pnref.proxy_moments` for each of their four methods
(``quantile``, ``exact``, ``quadrature``, ``montecarlo``: each has a VJP, the derivative of
the same estimator), and both norm blocks (`pnref.norm_pn_act`, `pnref.norm_act`) on both
backends (``numpy``, ``numba``).

`run_gradient_check` prints one row per op with its worst relative error and returns 0 when
every case passes, 1 otherwise. New cases are new entries of `gradient_cases`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pnref.activations import ACTIVATIONS
from pnref.blocks import norm_act, norm_act_vjp, norm_pn_act, norm_pn_act_vjp
from pnref.moments import proxy_moments, proxy_moments_vjp
from pnref.norms import (
    batch_norm,
    batch_norm_eval,
    batch_norm_eval_vjp,
    batch_norm_vjp,
    group_norm,
    group_norm_vjp,
    grouped_norm,
    grouped_norm_vjp,
    instance_norm,
    instance_norm_vjp,
    layer_norm,
    layer_norm_vjp,
    normalize,
    normalize_vjp,
    normalize_vjp_from_stats,
    weight_standardization,
    weight_standardization_vjp,
)
from pnref.pn_act import act, act_vjp, pn_act, pn_act_vjp

__all__ = [
    "FD_STEP",
    "FD_TOLERANCE",
    "GradientCase",
    "CaseResult",
    "norm_cases",
    "gradient_cases",
    "check_case",
    "run_gradient_check",
]

FD_STEP = 1e-5
# O(1) float64 data: the central difference is good to ~1e-10 (h^2 truncation plus eps/h
# rounding), so 1e-6 flags any wrong gradient term (an O(1) error) with a wide margin.
FD_TOLERANCE = 1e-6
SEED = 20210607
#: The four ways `proxy_moments` computes the proxy moments; each has a VJP.
MOMENT_METHODS = ("quantile", "exact", "quadrature", "montecarlo")
#: Monte Carlo draws in the check: the VJP is that of the same seeded estimator, so any n is
#: a valid check; 5000 keeps it fast.
MONTECARLO_DRAWS = 5000
#: The smooth activation of the PN-Act and proxy-moment cases: GELU has a closed form for
#: `method="exact"` (ReLU, kinked, is checked beside it).
SMOOTH_ACTIVATION = "gelu"


@dataclass(frozen=True)
class GradientCase:
    """One check: ``forward(*args)`` and ``vjp(cotangent, *args)`` of op ``op``.

    ``args`` are the differentiable arguments (``None`` for an absent optional one). For an op
    with several outputs, ``forward`` returns a tuple and ``cotangent`` is a tuple alike.
    ``kwargs`` are passed to both.
    """

    op: str
    name: str
    forward: Callable[..., np.ndarray | tuple[np.ndarray, ...]]
    vjp: Callable[..., tuple]
    args: Sequence[np.ndarray | None]
    kwargs: dict = field(default_factory=dict)


@dataclass(frozen=True)
class CaseResult:
    """What `check_case` found: the forward output's statistics and the VJP's error."""

    op: str
    name: str
    mean: float
    std: float
    minimum: float
    maximum: float
    fd_relative_error: float
    passed: bool


def _inputs(rng: np.random.Generator, channels: int = 8) -> dict[str, np.ndarray]:
    """Float64 test data: an (N, C, H, W) input and per-channel parameters, all O(1)."""
    x_first = rng.standard_normal((4, channels, 6, 6)) * 1.5 + 0.5
    return {
        "x_first": x_first,
        "x_last": np.moveaxis(x_first, 1, -1),
        "y": rng.standard_normal((4, channels, 6, 6)),
        "gamma": 1.0 + 0.2 * rng.standard_normal(channels),
        "beta": 0.2 * rng.standard_normal(channels),
        "gamma_tilde": 0.1 * rng.standard_normal(channels),
        "beta_tilde": 0.1 * rng.standard_normal(channels),
        "running_mean": 0.5 + 0.1 * rng.standard_normal(channels),
        "running_var": rng.uniform(1.5, 3.0, channels),
        "weight": rng.standard_normal((16, channels, 3, 3)) * np.sqrt(2 / (channels * 9)),
    }


def norm_cases() -> list[GradientCase]:
    """The norms (and the two helpers they share), channels-first and -last, +- affine."""
    d = _inputs(np.random.default_rng(SEED))
    x_first, x_last, gamma, beta = d["x_first"], d["x_last"], d["gamma"], d["beta"]

    def gn_forward(x, g, b, **k):
        return group_norm(x, 4, g, b, **k)

    def gn_vjp(dy, x, g, b, **k):
        return group_norm_vjp(dy, x, 4, g, b, **k)

    def grouped_norm_forward(x, g, b):
        return grouped_norm(x, 2, g, b, over_batch=True)

    def grouped_norm_backward(dy, x, g, b):
        return grouped_norm_vjp(dy, x, 2, g, b, over_batch=True)

    def normalize_forward(x, axes, eps):
        return normalize(x, axes, eps)[0]

    def normalize_backward(dxhat, x, axes, eps):
        return (normalize_vjp(dxhat, x, axes, eps),)

    def normalize_backward_from_stats(dxhat, x, axes, eps):
        xhat, _mean, inv_std = normalize(x, axes, eps)
        return (normalize_vjp_from_stats(dxhat, xhat, inv_std, axes),)

    return [
        GradientCase("batch_norm", "NCHW", batch_norm, batch_norm_vjp, (x_first, gamma, beta)),
        GradientCase("batch_norm", "NHWC", batch_norm, batch_norm_vjp, (x_last, gamma, beta),
                     {"axis": -1}),
        GradientCase("batch_norm_eval", "NCHW", batch_norm_eval, batch_norm_eval_vjp,
                     (x_first, d["running_mean"], d["running_var"], gamma, beta)),
        GradientCase("instance_norm", "NCHW", instance_norm, instance_norm_vjp,
                     (x_first, gamma, beta)),
        GradientCase("group_norm", "G=4 NCHW", gn_forward, gn_vjp, (x_first, gamma, beta)),
        GradientCase("group_norm", "G=4 NHWC", gn_forward, gn_vjp, (x_last, gamma, beta),
                     {"axis": -1}),
        GradientCase("layer_norm", "NCHW", layer_norm, layer_norm_vjp, (x_first, gamma, beta)),
        GradientCase("layer_norm", "no affine", layer_norm, layer_norm_vjp,
                     (x_first, None, None)),
        GradientCase("weight_standardization", "OIHW", weight_standardization,
                     weight_standardization_vjp, (d["weight"],)),
        GradientCase("grouped_norm", "G=2 over batch", grouped_norm_forward,
                     grouped_norm_backward, (x_first, gamma, beta)),
        GradientCase("normalize", "over H, W", normalize_forward, normalize_backward,
                     (x_first,), {"axes": (2, 3), "eps": 1e-5}),
        GradientCase("normalize", "from saved stats", normalize_forward,
                     normalize_backward_from_stats, (x_first,), {"axes": (2, 3), "eps": 1e-5}),
    ]


def _method_options(method: str) -> dict:
    return {"n": MONTECARLO_DRAWS} if method == "montecarlo" else {}


def gradient_cases() -> list[GradientCase]:
    """Every op with a VJP: the norms, the activation step, PN-Act, the proxy moments, blocks."""
    d = _inputs(np.random.default_rng(SEED + 2))
    y, x, gamma, beta = d["y"], d["x_first"], d["gamma"], d["beta"]
    gamma_tilde, beta_tilde = d["gamma_tilde"], d["beta_tilde"]
    cases = norm_cases()

    for name in ACTIVATIONS:
        cases.append(GradientCase(
            "act", name,
            lambda y_, g, b, _a=name: act(y_, g, b, activation=_a),
            lambda c, y_, g, b, _a=name: act_vjp(c, y_, g, b, activation=_a),
            (y, gamma, beta)))

    for method in MOMENT_METHODS:
        options = {"activation": SMOOTH_ACTIVATION, "method": method,
                   **_method_options(method)}
        cases.append(GradientCase(
            "pn_act", f"{options['activation']}, {method}", pn_act, pn_act_vjp,
            (y, gamma, beta, gamma_tilde, beta_tilde), options))
    cases.append(GradientCase(
        "pn_act", "relu, quantile, no tilde", pn_act, pn_act_vjp, (y, gamma, beta, None, None),
        {"activation": "relu"}))

    for method in MOMENT_METHODS:
        for activation in ("relu", SMOOTH_ACTIVATION):
            options = {"method": method, **_method_options(method)}
            cases.append(GradientCase(
                "proxy_moments", f"{activation}, {method}",
                lambda g, b, gt, bt, _a=activation, **k: proxy_moments(_a, g, b, gt, bt, **k),
                lambda c, g, b, gt, bt, _a=activation, **k: proxy_moments_vjp(
                    c[0], c[1], _a, g, b, gt, bt, **k),
                (gamma, beta, gamma_tilde, beta_tilde), options))

    for backend in ("numpy", "numba"):
        for norm, groups in (("bn", None), ("gn", 4)):
            shared = {"norm": norm, "groups": groups, "activation": "silu", "backend": backend}
            cases.append(GradientCase(
                f"norm_pn_act [{backend}]", f"{norm}, silu", norm_pn_act, norm_pn_act_vjp,
                (x, gamma, beta, gamma_tilde, beta_tilde), shared))
            cases.append(GradientCase(
                f"norm_act [{backend}]", f"{norm}, silu", norm_act, norm_act_vjp,
                (x, gamma, beta), shared))
    return cases


def _as_outputs(value: np.ndarray | tuple) -> tuple[np.ndarray, ...]:
    return tuple(np.asarray(v, dtype=np.float64) for v in value) if isinstance(value, tuple) \
        else (np.asarray(value, dtype=np.float64),)


def check_case(case: GradientCase, rng: np.random.Generator) -> CaseResult:
    """Run one case: forward statistics and the VJP against a central difference.

    Equations
    ---------
    With p the differentiable arguments, c random cotangents (one per output) and t random
    directions:

        fd      = (<c, f(p + h t)> - <c, f(p - h t)>) / (2 h)
        rel_err = |<vjp(c), t> - fd| / |fd|,   passed when rel_err <= FD_TOLERANCE
    """
    args = list(case.args)
    value = case.forward(*args, **case.kwargs)
    outputs = _as_outputs(value)
    cotangents = tuple(rng.standard_normal(out.shape) for out in outputs)
    directions = [None if a is None else rng.standard_normal(np.shape(a)) for a in args]
    cotangent = cotangents if isinstance(value, tuple) else cotangents[0]
    grads = case.vjp(cotangent, *args, **case.kwargs)
    analytic = sum(float(np.sum(g * t)) for g, t in zip(grads, directions, strict=True)
                   if t is not None)

    def loss(step: float) -> float:
        moved = [a if t is None else a + step * t for a, t in zip(args, directions, strict=True)]
        moved_outputs = _as_outputs(case.forward(*moved, **case.kwargs))
        return sum(float(np.sum(c * f)) for c, f in zip(cotangents, moved_outputs, strict=True))

    numeric = (loss(FD_STEP) - loss(-FD_STEP)) / (2 * FD_STEP)
    relative_error = abs(analytic - numeric) / max(abs(numeric), np.finfo(float).tiny)
    flat = np.concatenate([out.ravel() for out in outputs])
    passed = bool(np.all(np.isfinite(flat))) and relative_error <= FD_TOLERANCE
    return CaseResult(case.op, case.name, float(np.mean(flat)), float(np.std(flat)),
                      float(np.min(flat)), float(np.max(flat)), relative_error, passed)


def _format_rows(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]

    def line(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:],
                                                             strict=True))])

    return "\n".join([line(header), "-" * len(line(header)), *(line(row) for row in rows)])


def format_by_op(results: Sequence[CaseResult]) -> str:
    """One row per op: its cases, the worst relative error and which case it came from."""
    ops = list(dict.fromkeys(r.op for r in results))
    rows = []
    for op in ops:
        mine = [r for r in results if r.op == op]
        worst = max(mine, key=lambda r: r.fd_relative_error)
        rows.append((op, str(len(mine)), f"{worst.fd_relative_error:.1e}", worst.name,
                     "ok" if all(r.passed for r in mine) else "FAIL"))
    return _format_rows(("op", "cases", "worst rel err", "worst case", "check"), rows)


def run_gradient_check() -> int:
    """Check every case of `gradient_cases`, print one row per op, return 0 if all pass.

    Returns
    -------
    int
        0 when every case passes, 1 otherwise (the failing cases are listed).
    """
    rng = np.random.default_rng(SEED + 1)
    results = [check_case(case, rng) for case in gradient_cases()]
    print("pnref check-gradients: every op's VJP, backward vs central differences (float64)")
    print(f"(random cotangents and directions; relative error of <vjp(c), t> against the "
          f"central difference, h = {FD_STEP:g}; pass <= {FD_TOLERANCE:g})")
    print()
    print(format_by_op(results))
    failed = [f"{r.op} ({r.name})" for r in results if not r.passed]
    print()
    ops = len({r.op for r in results})
    print(f"all checks passed: {len(results)} cases, {ops} ops" if not failed
          else f"FAILED {len(failed)} of {len(results)}: {', '.join(failed)}")
    return 0 if not failed else 1
