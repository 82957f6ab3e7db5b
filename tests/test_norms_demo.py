"""The demo runs in-process, prints the gradient check's rows and returns 0; a wrong VJP fails."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

import pnref
from pnref.demo import run_demo
from pnref.gradient_check import GradientCase, check_case, gradient_cases


def test_run_demo_returns_zero_and_prints_every_case(capsys):
    assert run_demo() == 0
    out = capsys.readouterr().out
    for case in gradient_cases():
        assert case.op in out
    assert "FAIL" not in out
    assert f"all checks passed: {len(gradient_cases())} cases" in out


def test_check_case_flags_a_wrong_gradient():
    # A VJP with a spurious 0.1 * dy added to dx: its directional derivative is off by O(0.1).
    def wrong_vjp(dy, x, gamma, beta):
        dx, dgamma, dbeta = pnref.layer_norm_vjp(dy, x, gamma, beta)
        return dx + 0.1 * dy, dgamma, dbeta

    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4))
    case = GradientCase("layer_norm", "wrong", pnref.layer_norm, wrong_vjp,
                        (x, np.ones(3), np.zeros(3)))
    result = check_case(case, np.random.default_rng(1))
    assert not result.passed
    assert result.fd_relative_error > 1e-3


def test_readme_use_example_runs_and_is_consistent():
    # The README's "Use" snippet is executed as written; its gradient must agree with a central
    # difference along a random direction (same bound and reason as the demo's: 1e-6).
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    use = readme[readme.index("## Use"):]
    code = re.search(r"```python\n(.*?)```", use, re.S).group(1)
    names: dict = {}
    exec(code, names)
    x, dy, dx = names["x"], names["dy"], names["dx"]
    assert not np.allclose(dy, dy.flat[0])  # the cotangent is random, not all-ones
    t = np.random.default_rng(3).standard_normal(x.shape)
    h = 1e-5

    def loss(a):
        return float(np.sum(dy * pnref.group_norm(a, 4, names["gamma"], names["beta"])))

    numeric = (loss(x + h * t) - loss(x - h * t)) / (2 * h)
    assert abs(float(np.sum(dx * t)) - numeric) <= 1e-6 * abs(numeric)
