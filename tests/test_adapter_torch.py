"""The PyTorch implementation passes the golden suite, and its nn.Modules agree with pnref."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the torch adapter needs the extra pnref[torch]")

from pnref.adapters.torch import NormProxyNormAct, ProxyNormAct, TorchAdapter  # noqa: E402
from pnref.adapters.torch_ops import TorchOps, gauss_legendre  # noqa: E402
from pnref.golden import bundled_suite_dir  # noqa: E402
from pnref.pn_act import pn_act, pn_act_vjp  # noqa: E402
from pnref.verification.runner import verify_suite  # noqa: E402


@pytest.fixture(scope="module")
def report():
    return verify_suite(bundled_suite_dir(), TorchAdapter())


def test_torch_adapter_passes_the_bundled_suite(report):
    assert report.failed == 0, [(c.case_id, c.messages, [k.message for k in c.checks if not
                                                      k.passed]) for c in report.failures()]
    dtypes = {case.dtype for case in report.cases}
    assert dtypes == {"float16", "float32", "float64"}
    assert sum(len(case.checks) for case in report.cases) > 3 * len(report.cases)


def test_gauss_legendre_integrates_polynomials_exactly():
    nodes, weights = gauss_legendre(12)
    for degree in range(24):  # exact up to degree 2n - 1 = 23
        exact = 0.0 if degree % 2 else 2.0 / (degree + 1)
        # float64 nodes from an eigen-decomposition: a few ulp of the result
        assert float((weights * nodes**degree).sum()) == pytest.approx(exact, abs=1e-14)


def _module_params(module, rng, channels):
    with torch.no_grad():
        for p, scale, offset in ((module.gamma, 0.3, 1.0), (module.beta, 0.3, 0.0),
                                 (module.gamma_tilde, 0.3, 0.0), (module.beta_tilde, 0.3, 0.0)):
            p.copy_(torch.tensor(offset + scale * rng.standard_normal(channels)))


def test_proxy_norm_act_module_matches_pnref_forward_and_gradients():
    rng = np.random.default_rng(11)
    module = ProxyNormAct(6, "silu", dtype=torch.float64, axis=-1)
    _module_params(module, rng, 6)
    y = rng.standard_normal((2, 4, 6))
    cotangent = rng.standard_normal((2, 4, 6))  # random cotangent
    y_t = torch.tensor(y, requires_grad=True)
    out = module(y_t)
    out.backward(torch.tensor(cotangent))
    params = [p.detach().numpy() for p in (module.gamma, module.beta, module.gamma_tilde,
                                          module.beta_tilde)]
    expected = pn_act(y, *params, activation="silu", axis=-1)
    grads = pn_act_vjp(cotangent, y, *params, activation="silu", axis=-1)
    # two float64 implementations of the same estimator: a few ulp per term
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-12)
    got = [y_t.grad] + [p.grad for p in (module.gamma, module.beta, module.gamma_tilde,
                                         module.beta_tilde)]
    # torch autograd through the estimator against the hand-derived VJP, both float64:
    # summation order only (measured worst 1.3e-15 absolute on gradients of size <= 5).
    for g, e in zip(got, grads, strict=True):
        np.testing.assert_allclose(g.numpy(), e, rtol=1e-12, atol=1e-12)


def test_norm_proxy_norm_act_block_learns_its_parameters():
    torch.manual_seed(0)
    block = NormProxyNormAct(8, norm="gn", groups=4, norm_eps=1e-3, dtype=torch.float64)
    x = torch.randn(3, 8, 4, 4, dtype=torch.float64)
    out = block(x)
    assert out.shape == x.shape
    out.square().mean().backward()
    named = dict(block.named_parameters())
    assert set(named) == {"pn_act.gamma", "pn_act.beta", "pn_act.gamma_tilde",
                          "pn_act.beta_tilde"}
    for name, p in named.items():
        assert p.grad is not None and torch.any(p.grad != 0), name


def test_bad_arguments_raise_clear_errors():
    ops = TorchOps()
    with pytest.raises(ValueError, match="groups=3 must divide the 8 channels"):
        ops.group_norm(torch.zeros(2, 8), 3, eps=1e-5, axis=1)
    with pytest.raises(ValueError, match="unknown activation"):
        ops.activation("swishy")
    with pytest.raises(ValueError, match="eps must be > 0"):
        ProxyNormAct(4, eps=0.0)
    with pytest.raises(NotImplementedError, match="not implemented"):
        TorchAdapter().forward("no_such_op", {"x": np.zeros(2)}, {})
