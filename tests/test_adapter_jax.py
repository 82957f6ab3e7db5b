"""The JAX adapter (an implementation independent of pnref's NumPy code) passes the bundled suite.

To keep the test suite fast, one case of every op x dtype family and six edge cases (large
offset, constant group, float16 overflow, exact kink, extreme PN parameters, exact SiLU
moments) are run here (each case costs one XLA compilation per call); ``pnref golden verify --impl
pnref.adapters.jax:JaxAdapter`` runs all of them (every case passes, docs/verification.md).
"""

from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax", reason="the JAX adapter needs the extra pnref[jax]")

from pnref.adapters.jax import JaxAdapter, proxy_moments  # noqa: E402
from pnref.golden import bundled_suite_dir  # noqa: E402
from pnref.golden.format import read_manifest  # noqa: E402
from pnref.verification.runner import verify_suite  # noqa: E402

#: Edge cases run besides one case per op x dtype family.
_EDGE_CASES = {"group_norm.torch.float16-overflow.f16", "group_norm.torch.constant-group.f32",
               "layer_norm.torch.offset40000.f32", "norm_act.torch.gn-relu-zero.f64",
               "pn_act.exact.extreme-params.f64", "proxy_moments.exact.silu.f64"}


def _representatives() -> list[str]:
    chosen, families = [], set()
    for entry in read_manifest(bundled_suite_dir())["cases"]:
        family = (entry["op"], entry["dtype"])
        if family not in families or entry["id"] in _EDGE_CASES:
            families.add(family)
            chosen.append(entry["id"])
    return chosen


def test_jax_adapter_passes_one_case_of_every_family_and_every_edge_case():
    adapter = JaxAdapter()
    failures, run = [], set()
    for case_id in _representatives():
        report = verify_suite(bundled_suite_dir(), adapter, select=case_id)
        run.update(case.case_id for case in report.cases)
        failures += [(case.case_id, case.errors, [c.message for c in case.checks if not
                                                  c.passed]) for case in report.failures()]
    assert not failures
    assert len(run) >= len(_representatives())


def test_x64_is_enabled_and_float64_stays_float64():
    out = JaxAdapter().forward("layer_norm", {"x": np.array([[1.0, 0.0, 0.0, 0.0]])},
                               {"axis": 1, "eps": 1e-12})["y"]
    assert out.dtype == np.float64
    # 0.75 / sqrt(0.1875 + 1e-12) to float64 rounding (float32 would be off by ~1e-7)
    assert abs(out[0, 0] - 0.75 / np.sqrt(0.1875 + 1e-12)) < 1e-14


def test_official_reference_values():
    # shared/README.md: ReLU with n = 200, gamma = 1, beta = beta~ = gamma~ = 0:
    # proxy mean 0.398451, proxy variance 0.338035 (6 digits given)
    one, zero = jax.numpy.ones(1, dtype=np.float64), jax.numpy.zeros(1, dtype=np.float64)
    mean, var = proxy_moments("relu", {}, one, zero, method="quantile", n=200)
    assert abs(float(mean[0]) - 0.398451) < 1e-6 and abs(float(var[0]) - 0.338035) < 1e-6
