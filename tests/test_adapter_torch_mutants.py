"""The suite has teeth: the torch adapter with one mistake seen in the wild fails, and the report
names failing cases that point at the mistake; a harmless variant passes (no false alarm).

Each mutant is a subclass of :class:`pnref.adapters.torch_ops.TorchOps` that changes one
step. ``docs/verification.md`` walks through the same mutants as a worked example.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch adapter needs the extra pnref[torch]")

from pnref.adapters.torch import TorchAdapter  # noqa: E402
from pnref.adapters.torch_ops import TorchOps  # noqa: E402
from pnref.golden import bundled_suite_dir  # noqa: E402
from pnref.verification.runner import verify_suite  # noqa: E402


class QuantileOffsetByEps(TorchOps):
    """Quantile levels (i + eps) / n instead of (i + 1/2) / n."""

    def quantile_points(self, n, dtype):
        i = torch.arange(n, dtype=torch.float64)
        return (math.sqrt(2.0) * torch.erfinv(2.0 * (i + 1e-5) / n - 1.0)).to(dtype)


class PointsPerChannel(TorchOps):
    """As many proxy points as channels."""

    def proxy_point_count(self, n, channels):
        return channels


class UnbiasedProxyVariance(TorchOps):
    """Proxy variance divided by n - 1."""

    def proxy_variance(self, values, mean):
        return ((values - mean[:, None]) ** 2).sum(dim=1) / (values.shape[1] - 1)


class EpsOutsideSqrt(TorchOps):
    """1 / (sqrt(var) + eps) instead of 1 / sqrt(var + eps)."""

    def pn_scale(self, var, eps):
        return 1.0 / (torch.sqrt(var) + eps)


class NoGradThroughMoments(TorchOps):
    """Proxy moments treated as constants in the backward pass."""

    def proxy_moments(self, *args, **kwargs):
        mean, var = super().proxy_moments(*args, **kwargs)
        return mean.detach(), var.detach()


class TildesIgnored(TorchOps):
    """gamma~ and beta~ never reach the proxy."""

    def proxy_pre_activation(self, points, gamma, beta, gamma_tilde, beta_tilde):
        return super().proxy_pre_activation(points, gamma, beta, None, None)


class ActivationTwice(TorchOps):
    """The activation applied again to PN-Act's output."""

    def pn_act(self, y, *args, activation="relu", activation_params=None, **kwargs):
        out = super().pn_act(y, *args, activation=activation,
                             activation_params=activation_params, **kwargs)
        return self.activation(activation, activation_params)(out)


class OnePassFloat32Variance(TorchOps):
    """Norm statistics as E[x^2] - E[x]^2 in float32."""

    def norm_statistics(self, x, dims):
        x32 = x.float()
        mean = x32.mean(dim=dims, keepdim=True)
        var = (x32 * x32).mean(dim=dims, keepdim=True) - mean * mean
        return mean.to(x.dtype), var.to(x.dtype)


class PerGroupAffine(TorchOps):
    """The first G entries of a per-channel gamma/beta used as one value per group."""

    def group_affine(self, xhat, gamma, beta, per_group):
        groups = xhat.shape[1]
        if not per_group:
            gamma = None if gamma is None else gamma[:groups]
            beta = None if beta is None else beta[:groups]
        return super().group_affine(xhat, gamma, beta, True)


class Float32Erfinv(TorchOps):
    """Harmless: the quantile points from a float32 erfinv (the official code is float32)."""

    def quantile_points(self, n, dtype):
        i = torch.arange(n, dtype=torch.float32)
        return (math.sqrt(2.0) * torch.erfinv((2.0 * i + 1.0 - n) / n)).to(dtype)


_PN_OPS = {"proxy_moments", "pn_act", "norm_pn_act"}
_NORM_OPS = {"batch_norm", "instance_norm", "group_norm", "layer_norm", "weight_standardization",
             "batch_norm_running_update", "batch_norm_eval", "norm_act", "norm_pn_act"}

#: mutant -> (ops allowed to fail, {case: arrays that must fail}, {case: arrays that must pass})
EXPECTATIONS = {
    QuantileOffsetByEps: (_PN_OPS, {
        "proxy_moments.official.relu.f64": {"expected.mean", "expected.var"},
        "pn_act.official.relu.f32": {"expected.out"},
    }, {"proxy_moments.exact.relu.f64": {"expected.mean"}}),
    PointsPerChannel: (_PN_OPS, {
        "proxy_moments.official.silu.f64": {"expected.mean", "expected.var"},
        "norm_pn_act.official.gn-relu.f32": {"expected.out"},
    }, {}),
    UnbiasedProxyVariance: (_PN_OPS, {
        "proxy_moments.official.relu-n16.f64": {"expected.var"},
        "pn_act.official.relu.f32": {"expected.out"},
    }, {"proxy_moments.official.relu-n16.f64": {"expected.mean"}}),
    EpsOutsideSqrt: ({"pn_act", "norm_pn_act"}, {
        "pn_act.official.relu.f64": {"expected.out", "expected_grad.gamma_tilde"},
    }, {"proxy_moments.official.relu.f64": {"expected.mean", "expected.var"}}),
    NoGradThroughMoments: (_PN_OPS, {
        "pn_act.official.relu.f64": {"expected_grad.gamma_tilde", "expected_grad.beta_tilde"},
        "proxy_moments.official.relu.f64": set(),  # its vjp cannot even run: an error
    }, {"pn_act.official.relu.f64": {"expected.out"}}),
    TildesIgnored: (_PN_OPS, {
        "proxy_moments.official.gelu.f64": {"expected.mean"},
        "pn_act.official.silu.f32": {"expected.out", "expected_grad.gamma_tilde"},
    }, {"pn_act.torch.no-tilde.f32": {"expected.out", "expected_grad.gamma"}}),
    ActivationTwice: ({"pn_act", "norm_pn_act"}, {
        "pn_act.official.relu.f64": {"expected.out"},
        "pn_act.exact.silu.f64": {"expected.out"},
    }, {"proxy_moments.official.relu.f64": {"expected.mean"}}),
    OnePassFloat32Variance: (_NORM_OPS, {
        "layer_norm.torch.offset40000.f32": {"expected.y", "expected_grad.x"},
        "group_norm.torch.offset100-spread1e-3.f32": {"expected.y"},
    }, {}),
    PerGroupAffine: ({"group_norm", "layer_norm"}, {
        "group_norm.onnx21.g4.f32": {"expected.y", "expected_grad.gamma"},
        "group_norm.official.g4.f32": {"expected.y"},
    }, {"group_norm.onnx18.g4.f32": {"expected.y", "expected_grad.gamma"}}),
}


@pytest.fixture(scope="module")
def reports():
    cache = {}

    def run(mutant):
        if mutant not in cache:
            cache[mutant] = verify_suite(bundled_suite_dir(), TorchAdapter(mutant()))
        return cache[mutant]

    return run


@pytest.mark.parametrize("mutant", list(EXPECTATIONS), ids=lambda m: m.__name__)
def test_mutant_fails_on_cases_that_point_at_the_mistake(mutant, reports):
    allowed_ops, must_fail, must_pass = EXPECTATIONS[mutant]
    report = reports(mutant)
    failures = {case.case_id: case for case in report.failures()}
    assert failures, f"{mutant.__name__} passed the whole suite"
    # only ops that contain the broken step fail: the failures point at the mistake
    assert {case.op for case in failures.values()} <= allowed_ops
    for case_id, arrays in must_fail.items():
        assert case_id in failures, f"{mutant.__name__} passed {case_id}"
        failed_arrays = {c.array for c in failures[case_id].checks if not c.passed}
        assert arrays <= failed_arrays or (not arrays and failures[case_id].messages)
    by_id = {case.case_id: case for case in report.cases}
    for case_id, arrays in must_pass.items():
        passed_arrays = {c.array for c in by_id[case_id].checks if c.passed}
        assert arrays <= passed_arrays, (case_id, arrays - passed_arrays)


def test_float32_erfinv_quantiles_are_no_false_alarm(reports):
    report = reports(Float32Erfinv)
    assert report.failed == 0, [case.case_id for case in report.failures()]


class Float16Compute(TorchAdapter):
    """float16 cases computed in float16 (eps = 1e-8 becomes 0 there)."""

    @staticmethod
    def _tensors(inputs, grad):
        dtype = np.result_type(*inputs.values())
        return {k: torch.tensor(np.asarray(v), requires_grad=grad)
                for k, v in inputs.items()}, dtype


def test_float16_arithmetic_fails_the_eps_underflow_case():
    report = verify_suite(bundled_suite_dir(), Float16Compute(), select="group_norm.torch.*")
    failures = {case.case_id: case for case in report.failures()}
    assert "group_norm.torch.f16-eps-underflow.f16" in failures
    case = failures["group_norm.torch.f16-eps-underflow.f16"]
    # the constant group's output is inf/NaN: an infinite error, whatever the tolerance
    assert any(c.array == "expected.y" and c.tolerance_ratio == np.inf for c in case.checks)
    assert all(case_id.endswith(".f16") for case_id in failures)  # wider dtypes unaffected
