"""`pnref check-gradients` checks every op that has a VJP (issue 14, row "check-gradients")."""

from __future__ import annotations

import numpy as np

import pnref
from pnref.cli import main
from pnref.gradient_check import (
    MOMENT_METHODS,
    GradientCase,
    check_case,
    gradient_cases,
)


def test_every_public_vjp_has_a_case():
    # Every `<op>_vjp` of the package front is an op of the check (normalize_vjp_from_stats is
    # the `normalize` op's second case).
    ops = {case.op.split(" [")[0] for case in gradient_cases()}
    vjps = {name[: -len("_vjp")] for name in pnref.__all__ if name.endswith("_vjp")}
    vjps.discard("normalize_vjp_from_stats"[: -len("_vjp")])
    assert vjps <= ops, f"ops with a VJP but no gradient check: {sorted(vjps - ops)}"
    names = {(case.op, case.name) for case in gradient_cases()}
    assert ("normalize", "from saved stats") in names


def test_every_method_and_both_backends_are_covered():
    cases = gradient_cases()
    for op in ("pn_act", "proxy_moments"):
        methods = {case.kwargs.get("method", "quantile") for case in cases if case.op == op}
        assert methods == set(MOMENT_METHODS), (op, methods)
    for block in ("norm_pn_act", "norm_act"):
        backends = {case.kwargs["backend"] for case in cases if case.op.startswith(block + " ")}
        assert backends == {"numpy", "numba"}, (block, backends)
    assert {case.name for case in cases if case.op == "act"} == set(pnref.activations.ACTIVATIONS)


def test_a_wrong_proxy_moments_vjp_fails():
    # A VJP that drops the variance path: its directional derivative misses an O(1) term.
    base = next(c for c in gradient_cases() if c.op == "proxy_moments")

    def wrong_vjp(c, *args, **kwargs):
        return base.vjp((c[0], np.zeros_like(c[1])), *args, **kwargs)

    wrong = GradientCase(base.op, "no variance path", base.forward, wrong_vjp, base.args,
                         base.kwargs)
    assert not check_case(wrong, np.random.default_rng(1)).passed


def test_command_prints_one_row_per_op_and_passes(capsys):
    assert main(["check-gradients"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("pnref check-gradients:")
    assert "pnref demo" not in out
    table = out.split("\n\n")[1].splitlines()
    ops = list(dict.fromkeys(case.op for case in gradient_cases()))
    assert [row.split("  ")[0].strip() for row in table[2:]] == ops
    assert all(row.rstrip().endswith("ok") for row in table[2:])
    assert f"all checks passed: {len(gradient_cases())} cases" in out


def test_command_exit_status_is_1_on_a_failure(monkeypatch, capsys):
    import pnref.gradient_check as module

    def broken_cases():
        case = module.norm_cases()[0]
        return [GradientCase(case.op, "broken", case.forward,
                             lambda dy, *a, **k: tuple(2 * g for g in case.vjp(dy, *a, **k)),
                             case.args, case.kwargs)]

    monkeypatch.setattr(module, "gradient_cases", broken_cases)
    assert main(["check-gradients"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "FAILED 1 of 1: batch_norm (broken)" in out
