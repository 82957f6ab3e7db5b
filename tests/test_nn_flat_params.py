"""Gradients through one flat parameter vector equal autograd's gradients over the dict."""

from __future__ import annotations

import autograd
import autograd.numpy as anp
import numpy as np
import pytest

from pnref import autograd_ops as ops
from pnref.nn import CNN, layers, softmax_cross_entropy
from pnref.nn.flat_params import (
    FlatLayout,
    TracedParams,
    call_with_params,
    parameter_view,
    value_and_grad_of_params,
)


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
                                                ("bn", "numpy"), ("gn+ws", "numpy"),
                                                ("ln+ws", "numba"), ("none", "numpy"),
                                                ("in", "numba")])
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


def test_flat_sgd_steps_equal_the_dict_steps_bit_for_bit():
    """The training loop steps one flat vector (`SGD.step_flat`); every entry goes through
    the same operations as `SGD.step` on the dict, decayed or not, so the parameters after
    several steps of random gradients (and the velocities) are the same bits."""
    from pnref.nn.optim import SGD, decay_mask

    _, params = _cnn_loss("gn+pn", "numba")
    layout = FlatLayout(params)
    decayed = layout.entry_mask(lambda name: decay_mask(name, decay_proxy=True))
    assert decayed.any() and not decayed.all()  # both kinds of entry are exercised
    rng = np.random.default_rng(5)
    by_dict, by_vector = SGD(), SGD()
    dict_params, vector = dict(params), layout.flatten(params)
    for lr in (0.1, 0.05, 0.01):
        grads = {k: rng.normal(size=v.shape) for k, v in params.items()}
        dict_params = by_dict.step(dict_params, grads, lr)
        vector = by_vector.step_flat(vector, layout.flatten(grads), lr, decayed)
    for name, value in layout.split(vector).items():
        np.testing.assert_array_equal(value, dict_params[name])
        np.testing.assert_array_equal(layout.split(by_vector.flat_velocity)[name],
                                      by_dict.velocity[name])


# One op, its parameters read inside its own node (`call_with_params` on a `TracedParams`),
# against the plain call on parameter views: (op, input shapes, parameter shapes, kwargs).
# A None shape is a parameter left out (passed as None), as a PN block without beta.
_BOUND_CASES = {
    "conv2d": (layers.conv2d, [(2, 3, 5, 4)], [(4, 3, 3, 3)], {}),
    "affine": (layers.affine, [(5, 3)], [(3, 4), (4,)], {}),
    "channel_bias": (layers.channel_bias, [(2, 3, 4, 2)], [(3,)], {}),
    "weight_standardization": (ops.weight_standardization, [], [(4, 3, 3, 3)], {"axis": 0}),
    "norm_act gn numba": (ops.norm_act, [(3, 4, 5)], [(4,), (4,)],
                          {"norm": "gn", "groups": 2, "activation": "silu",
                           "backend": "numba"}),
    "norm_act bn, no beta": (ops.norm_act, [(6, 3, 2)], [(3,), None],
                             {"norm": "bn", "activation": "tanh", "backend": "numpy"}),
    "norm_pn_act ln numba": (ops.norm_pn_act, [(3, 4, 5)], [(4,), (4,), (4,), (4,)],
                             {"norm": "ln", "activation": "relu", "eps": 0.03,
                              "backend": "numba"}),
}


@pytest.mark.parametrize("case", list(_BOUND_CASES))
def test_call_with_params_equals_the_plain_call_bit_for_bit(case):
    """Same value and same gradients (inputs and every parameter slice), to the last bit:
    the node runs the op's own forward and VJP; the vector's other entries get zero."""
    op, input_shapes, param_shapes, kwargs = _BOUND_CASES[case]
    rng = np.random.default_rng(7)
    inputs = [rng.normal(size=shape) for shape in input_shapes]
    spans, offset = {}, 3  # three leading entries no parameter uses
    names = tuple(f"p{k}" for k in range(len(param_shapes)))
    for name, shape in zip(names, param_shapes, strict=True):
        if shape is not None:
            size = int(np.prod(shape))
            spans[name] = (offset, offset + size, shape)
            offset += size
    vector = rng.normal(size=offset + 2) * 0.5 + 1.0  # and two trailing ones
    out_shape = np.shape(op(*inputs, *(None if s is None else rng.normal(size=s)
                                       for s in param_shapes), **kwargs))
    cotangent = rng.normal(size=out_shape)  # random, never all-ones

    def bound(v, *xs):
        return anp.sum(call_with_params(op, tuple(xs), TracedParams(v, spans), names,
                                        **kwargs) * cotangent)

    def plain(v, *xs):
        views = {name: parameter_view(v, *span) for name, span in spans.items()}
        return anp.sum(op(*xs, *(views.get(name) for name in names), **kwargs) * cotangent)

    argnums = tuple(range(1 + len(inputs)))
    got = autograd.grad(bound, argnums)(vector, *inputs)
    want = autograd.grad(plain, argnums)(vector, *inputs)
    assert bound(vector, *inputs) == plain(vector, *inputs)
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        np.testing.assert_array_equal(g, w, err_msg=f"argument {k}")
    assert not got[0][:3].any() and not got[0][offset:].any()
    assert all(got[0][start:stop].any() for start, stop, _ in spans.values())


def test_traced_params_read_like_the_dict_they_hold():
    rng = np.random.default_rng(8)
    params = {"a.w": rng.normal(size=(2, 3)), "a.b": rng.normal(size=3), "c": rng.normal(size=2)}
    layout = FlatLayout(params)
    traced = TracedParams(layout.flatten(params), layout.spans)
    assert list(traced) == list(params) and len(traced) == 3 and "c" in traced
    np.testing.assert_array_equal(traced["a.w"], params["a.w"])
    under = traced.under("a")
    assert list(under) == ["w", "b"] and "c" not in under and under.get("x") is None
    np.testing.assert_array_equal(under["b"], params["a.b"])


def test_call_with_params_names_an_argument_the_op_has_no_gradient_for():
    """An op whose VJP covers only ``x``: reading its second argument from the traced vector
    is refused when the gradient is taken, naming the op and the position."""
    def scaled(x, w):
        return x * w

    op = ops.make_primitive(scaled, lambda g, x, w: (g * w,), (0,))
    x = np.random.default_rng(9).normal(size=3)
    spans = {"w": (0, 3, (3,))}

    def loss(v):
        return anp.sum(call_with_params(op, (x,), TracedParams(v, spans), ("w",)))

    assert loss(np.arange(3.0)) == np.sum(x * np.arange(3.0))
    with pytest.raises(NotImplementedError, match=r"scaled has no gradient for .*\[1\]"):
        autograd.grad(loss)(np.arange(3.0))
