"""The gradient of a whole network built from pnref's primitives equals the gradient of the
same network written in plain ``autograd.numpy`` (autograd differentiating elementary NumPy
operations), for every norm the models offer.

The reference below re-derives each layer from its definition, independently of pnref's
forward and backward code: convolution as a sum of shifted slices, the norms from their
statistics, PN-Act from the official quantile estimator (n = 200 points
u_i = sqrt(2) erfinv(2 (i + 0.5) / n - 1), biased variance, eps = 0.03), WS from its
formula.
"""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest
from autograd.scipy.special import logsumexp
from scipy.special import erfinv

from pnref.nn import CNN, MLP, softmax_cross_entropy
from pnref.nn.norm_layer import NORMS

QUANTILES = np.sqrt(2.0) * erfinv(2.0 * (np.arange(200) + 0.5) / 200 - 1.0)
PN_EPS = 0.03
NORM_EPS = 1e-5
WS_EPS = 1e-10
GROUPS = 2

# Both sides are float64 and compute the same quantities in a different order (pnref's
# shifted two-pass statistics and hand-written VJPs against autograd's elementwise chain
# rule): agreement to rounding, amplified by the depth of the network. 1e-7 relative leaves
# a wide margin over the ~1e-12 observed and is far below any real discrepancy (a wrong
# term of a VJP shows up at 1e-2 or more).
RTOL, ATOL = 1e-7, 1e-10


def _bshape(x, channels):
    return (1, channels) + (1,) * (x.ndim - 2)


def _ref_normalize(kind, x, groups):
    """The normalized x (no affine) from its statistics."""
    n, c = x.shape[:2]
    if kind == "bn":
        axes = (0,) + tuple(range(2, x.ndim))
        mean = anp.mean(x, axis=axes, keepdims=True)
        var = anp.mean((x - mean) ** 2, axis=axes, keepdims=True)
        return (x - mean) / anp.sqrt(var + NORM_EPS)
    g = {"ln": 1, "in": c, "gn": groups}[kind]
    grouped = anp.reshape(x, (n, g, -1))
    mean = anp.mean(grouped, axis=2, keepdims=True)
    var = anp.mean((grouped - mean) ** 2, axis=2, keepdims=True)
    return anp.reshape((grouped - mean) / anp.sqrt(var + NORM_EPS), x.shape)


def _relu(z):
    return anp.where(z > 0, z, 0.0)


def _ref_pn_act(y, gamma, beta, gamma_tilde, beta_tilde):
    proxy = (1.0 + gamma_tilde)[:, None] * QUANTILES[None, :] + beta_tilde[:, None]
    z_proxy = _relu(gamma[:, None] * proxy + beta[:, None])
    mean = anp.mean(z_proxy, axis=1)
    var = anp.mean((z_proxy - mean[:, None]) ** 2, axis=1)
    b = _bshape(y, len(gamma))
    z = _relu(anp.reshape(gamma, b) * y + anp.reshape(beta, b))
    return (z - anp.reshape(mean, b)) / anp.sqrt(anp.reshape(var, b) + PN_EPS)


def _ref_norm(kind, proxy, x, p, prefix, activation):
    c = x.shape[1]
    if kind == "none":
        return _relu(x) if activation else x
    y = _ref_normalize(kind, x, GROUPS)
    if proxy and activation:
        return _ref_pn_act(y, p[f"{prefix}.gamma"], p[f"{prefix}.beta"],
                           p[f"{prefix}.gamma_tilde"], p[f"{prefix}.beta_tilde"])
    y = anp.reshape(p[f"{prefix}.gamma"], _bshape(x, c)) * y
    if f"{prefix}.beta" in p:
        y = y + anp.reshape(p[f"{prefix}.beta"], _bshape(x, c))
    return _relu(y) if activation else y


def _ref_ws(w, output_axis):
    axes = tuple(a for a in range(w.ndim) if a != output_axis)
    mean = anp.mean(w, axis=axes, keepdims=True)
    var = anp.mean((w - mean) ** 2, axis=axes, keepdims=True)
    return (w - mean) / anp.sqrt(var + WS_EPS)


def _ref_conv(x, w):
    h, wd = x.shape[2:]
    padded = anp.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="constant")
    out = 0.0
    for a in range(3):
        for b in range(3):
            out = out + anp.einsum("nchw,oc->nohw", padded[:, :, a:a + h, b:b + wd], w[:, :, a, b])
    return out


def _ref_cnn(p, x, norm, widths, residual):
    kind, _, extra = norm.partition("+")
    proxy, ws = extra == "pn", extra == "ws"

    def conv(name, h):
        w = p[f"{name}.weight"]
        out = _ref_conv(h, _ref_ws(w, 0) if ws else w)
        if f"{name}.bias" in p:
            out = out + anp.reshape(p[f"{name}.bias"], (1, -1, 1, 1))
        return out

    h = x
    for s in range(len(widths)):
        if s > 0:
            n, c, hh, ww = h.shape
            h = anp.max(anp.reshape(h, (n, c, hh // 2, 2, ww // 2, 2)), axis=(3, 5))
        h = _ref_norm(kind, proxy, conv(f"stage{s}.conv", h), p, f"stage{s}.norm", True)
        if residual:
            r = _ref_norm(kind, proxy, conv(f"stage{s}.res.conv1", h), p,
                          f"stage{s}.res.norm1", True)
            r = _ref_norm(kind, proxy, conv(f"stage{s}.res.conv2", r), p,
                          f"stage{s}.res.norm2", False)
            h = _relu(h + r)
    pooled = anp.mean(h, axis=(2, 3))
    return anp.dot(pooled, p["head.weight"]) + p["head.bias"]


def _ref_loss(logits, labels):
    picked = logits[np.arange(len(labels)), labels]
    return anp.mean(logsumexp(logits, axis=1) - picked)


def _perturbed(params, rng):
    """Move every parameter off its initialization so gamma~, beta~, beta matter."""
    return {k: v + 0.2 * rng.normal(size=v.shape) for k, v in params.items()}


def _assert_same_gradients(got, want):
    assert set(got) == set(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=RTOL, atol=ATOL, err_msg=name)
        assert np.any(want[name] != 0), f"{name}: zero gradient makes the comparison vacuous"


@pytest.mark.parametrize(
    ("norm", "backend"),
    [(norm, "numpy") for norm in NORMS] + [("bn", "numba"), ("gn", "numba"), ("ln+pn", "numba")],
)
def test_cnn_gradient_matches_plain_autograd(norm, backend):
    rng = np.random.default_rng(0)
    widths = (4, 4)
    model = CNN(in_channels=2, num_classes=3, widths=widths, norm=norm, groups=GROUPS,
                residual=True, backend=backend)
    params, state = model.init(rng)
    params = _perturbed(params, rng)
    x = rng.normal(size=(3, 2, 4, 4))
    labels = np.array([0, 2, 1])

    def loss(p):
        logits, _ = model.apply(p, state, x, training=True)
        return softmax_cross_entropy(logits, labels)

    def ref_loss(p):
        return _ref_loss(_ref_cnn(p, x, norm, widths, residual=True), labels)

    np.testing.assert_allclose(loss(params), ref_loss(params), rtol=1e-12)  # rounding only
    _assert_same_gradients(autograd.grad(loss)(params), autograd.grad(ref_loss)(params))


@pytest.mark.parametrize("norm", ["bn", "ln", "gn+pn", "ln+ws"])
def test_mlp_gradient_matches_plain_autograd(norm):
    rng = np.random.default_rng(1)
    model = MLP(in_features=6, num_classes=3, hidden=(4, 4), norm=norm, groups=GROUPS)
    params, state = model.init(rng)
    params = _perturbed(params, rng)
    x = rng.normal(size=(5, 6))
    labels = np.array([0, 2, 1, 1, 0])
    kind, _, extra = norm.partition("+")

    def ref_loss(p):
        h = x
        for i in range(2):
            w = p[f"dense{i}.weight"]
            h = anp.dot(h, _ref_ws(w, 1) if extra == "ws" else w)
            h = _ref_norm(kind, extra == "pn", h, p, f"norm{i}", True)
        return _ref_loss(anp.dot(h, p["head.weight"]) + p["head.bias"], labels)

    def loss(p):
        return softmax_cross_entropy(model.apply(p, state, x, training=True)[0], labels)

    _assert_same_gradients(autograd.grad(loss)(params), autograd.grad(ref_loss)(params))
