"""Gradients through one flat parameter vector equal autograd's gradients over the dict."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from pnref.nn import CNN, softmax_cross_entropy
from pnref.nn.flat_params import FlatLayout, parameter_view, value_and_grad_of_params


def _cnn_loss(norm: str, backend: str):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 1, 8, 8))
    y = rng.integers(0, 10, size=6)
    model = CNN(in_channels=1, num_classes=10, widths=(4, 8), norm=norm, backend=backend)
    params, state = model.init(np.random.default_rng(1))
    # perturb the identity-initialized norm parameters so that every gradient is non-trivial
    params = {k: v + 0.1 * rng.normal(size=v.shape) for k, v in params.items()}

    def loss(p):
        return softmax_cross_entropy(model.apply(p, state, x, training=True)[0], y)

    return loss, params


@pytest.mark.parametrize(("norm", "backend"), [("gn+pn", "numba"), ("ln+pn", "numpy"),
                                                ("bn", "numpy"), ("gn+ws", "numpy")])
def test_flat_gradient_equals_the_dict_gradient_bit_for_bit(norm, backend):
    loss, params = _cnn_loss(norm, backend)
    value, grads = value_and_grad_of_params(loss)(params)
    want_value, want = autograd.value_and_grad(loss)(params)
    assert value == want_value
    assert list(grads) == list(params)
    for name in params:
        # every parameter is read once per forward pass, so autograd adds the same terms in
        # the same order either way: equal to the last bit
        np.testing.assert_array_equal(grads[name], want[name], err_msg=name)


def test_layout_round_trip_and_views():
    rng = np.random.default_rng(2)
    params = {"a": rng.normal(size=(2, 3)), "b": rng.normal(size=4), "c": rng.normal(size=())}
    layout = FlatLayout(params)
    vector = layout.flatten(params)
    assert vector.shape == (11,) and layout.offsets == (0, 6, 10, 11)
    back = layout.unflatten(vector)
    for name in params:
        np.testing.assert_array_equal(back[name], params[name])
    assert layout.matches(params) and not layout.matches({"a": params["a"], "b": params["b"]})


def test_parameter_view_gradient_lands_in_its_slice_only():
    rng = np.random.default_rng(3)
    vector = rng.normal(size=10)
    cotangent = rng.normal(size=(2, 2))  # random, never all-ones

    def scalar(v):
        return anp.sum(parameter_view(v, 3, 7, (2, 2)) * cotangent) + 2.0 * anp.sum(v[:3])

    grad = autograd.grad(scalar)(vector)
    want = np.zeros(10)
    want[:3] = 2.0
    want[3:7] = cotangent.ravel()
    np.testing.assert_array_equal(grad, want)


def test_mixed_dtypes_fall_back_to_the_dict_gradient():
    params = {"w": np.array([1.0, 2.0]), "v": np.array([3.0], dtype=np.float32)}

    def loss(p):
        return anp.sum(p["w"] ** 2) + anp.sum(p["v"] ** 3)

    value, grads = value_and_grad_of_params(loss)(params)
    assert value == pytest.approx(1.0 + 4.0 + 27.0)
    np.testing.assert_array_equal(grads["w"], [2.0, 4.0])
    np.testing.assert_array_equal(grads["v"], np.array([27.0], dtype=np.float32))
    with pytest.raises(TypeError, match="share one dtype"):
        FlatLayout(params)
