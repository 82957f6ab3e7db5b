"""The ops a golden suite covers: their inputs, outputs, attributes and float64 reference.

Each op is an `OpSpec`. Its ``forward(inputs, attrs)`` and ``vjp(inputs, attrs,
cotangents)`` call pnref's NumPy math core in float64 on the given (already rounded) inputs;
they are what the generator stores as the expected values, and the contract an adapter
implements (``docs/verification.md``). Optional inputs (gamma, beta, gamma_tilde,
beta_tilde) are simply absent from ``inputs`` when a case does not use them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pnref.activations import Activation
from pnref.activations import activation as make_activation
from pnref.blocks_ref import norm_act, norm_act_vjp, norm_pn_act, norm_pn_act_vjp
from pnref.moments import proxy_moments, proxy_moments_vjp
from pnref.norms import (
    batch_norm,
    batch_norm_eval,
    batch_norm_eval_vjp,
    batch_norm_running_update,
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
from pnref.pn_act import pn_act, pn_act_vjp

__all__ = ["OpSpec", "OPS", "activation_of", "expand_group_affine", "reduce_group_affine"]

Arrays = Mapping[str, np.ndarray]
Attrs = Mapping[str, Any]


@dataclass(frozen=True)
class OpSpec:
    """What one op takes and returns.

    Attributes
    ----------
    name : str
        The op name used in manifests and passed to adapters.
    inputs : tuple of str
        Input names in order; the first ``required`` are always present.
    required : int
        Number of leading inputs every case provides.
    outputs : tuple of (str, str)
        Output names with their kind (``"output"`` or ``"statistics"``).
    data_inputs : tuple of str
        Inputs whose gradient is an ``input_grad`` (the others are ``param_grad``).
    differentiable : bool
        Whether the op has a VJP in the suite.
    forward : callable
        ``forward(inputs, attrs) -> dict`` in float64.
    vjp : callable or None
        ``vjp(inputs, attrs, cotangents) -> dict`` of gradients of the present inputs.
    """

    name: str
    inputs: tuple[str, ...]
    required: int
    outputs: tuple[tuple[str, str], ...]
    data_inputs: tuple[str, ...]
    differentiable: bool
    forward: Callable[[Arrays, Attrs], dict[str, np.ndarray]]
    vjp: Callable[[Arrays, Attrs, Arrays], dict[str, np.ndarray]] | None

    def grad_kind(self, input_name: str) -> str:
        """Kind of the gradient of ``input_name``."""
        return "input_grad" if input_name in self.data_inputs else "param_grad"


def activation_of(attrs: Attrs) -> Activation:
    """The `pnref.activations.Activation` named by a case's attributes."""
    return make_activation(attrs["activation"], **dict(attrs.get("activation_params") or {}))


def _get(inputs: Arrays, name: str) -> np.ndarray | None:
    value = inputs.get(name)
    return None if value is None else np.asarray(value, dtype=np.float64)


def expand_group_affine(p: np.ndarray | None, channels: int) -> np.ndarray | None:
    """A per-group parameter of shape (G,) as the equal per-channel one of shape (C,)."""
    if p is None:
        return None
    return np.repeat(p, channels // p.shape[0])


def reduce_group_affine(dp: np.ndarray | None, groups: int) -> np.ndarray | None:
    """Sum a per-channel gradient of shape (C,) back to its (G,) per-group parameter."""
    if dp is None:
        return None
    return dp.reshape(groups, -1).sum(axis=1)


# --------------------------------------------------------------------------- norms


def _channels(x: np.ndarray, axis: int) -> int:
    return x.shape[axis]


def _norm_call(name: str, inputs: Arrays, attrs: Attrs, dy: np.ndarray | None = None):
    """Forward (``dy is None``) or VJP of the four grouped norms, with ONNX-18 affine."""
    x = _get(inputs, "x")
    gamma, beta = _get(inputs, "gamma"), _get(inputs, "beta")
    axis = int(attrs["axis"])
    per_group = attrs.get("affine", "per_channel") == "per_group"
    if per_group:
        channels = _channels(x, axis)
        gamma = expand_group_affine(gamma, channels)
        beta = expand_group_affine(beta, channels)
    kwargs = {"eps": float(attrs["eps"]), "axis": axis}
    if name == "group_norm":
        groups = int(attrs["groups"])
        if dy is None:
            return group_norm(x, groups, gamma, beta, **kwargs)
        result = group_norm_vjp(dy, x, groups, gamma, beta, **kwargs)
    else:
        forward, backward = {
            "batch_norm": (batch_norm, batch_norm_vjp),
            "instance_norm": (instance_norm, instance_norm_vjp),
            "layer_norm": (layer_norm, layer_norm_vjp),
        }[name]
        if dy is None:
            return forward(x, gamma, beta, **kwargs)
        result = backward(dy, x, gamma, beta, **kwargs)
    dx, dgamma, dbeta = result
    if per_group:
        dgamma = reduce_group_affine(dgamma, int(attrs["groups"]))
        dbeta = reduce_group_affine(dbeta, int(attrs["groups"]))
    return _present({"x": dx, "gamma": dgamma, "beta": dbeta}, inputs)


def _present(grads: dict[str, np.ndarray | None], inputs: Arrays) -> dict[str, np.ndarray]:
    return {k: np.asarray(v) for k, v in grads.items() if k in inputs and v is not None}


def _norm_spec(name: str) -> OpSpec:
    def forward(inputs, attrs):
        return {"y": _norm_call(name, inputs, attrs)}

    def vjp(inputs, attrs, cotangents):
        return _norm_call(name, inputs, attrs, np.asarray(cotangents["y"], dtype=np.float64))

    return OpSpec(name, ("x", "gamma", "beta"), 1, (("y", "output"),), ("x",), True, forward, vjp)


def _running_forward(inputs, attrs):
    new_mean, new_var = batch_norm_running_update(
        _get(inputs, "x"),
        _get(inputs, "running_mean"),
        _get(inputs, "running_var"),
        momentum=float(attrs["momentum"]),
        convention=str(attrs["momentum_convention"]),
        axis=int(attrs["axis"]),
    )
    return {"new_running_mean": new_mean, "new_running_var": new_var}


def _eval_args(inputs):
    return tuple(_get(inputs, k) for k in ("x", "running_mean", "running_var", "gamma", "beta"))


def _eval_forward(inputs, attrs):
    y = batch_norm_eval(*_eval_args(inputs), eps=float(attrs["eps"]), axis=int(attrs["axis"]))
    return {"y": y}


def _eval_vjp(inputs, attrs, cotangents):
    grads = batch_norm_eval_vjp(
        np.asarray(cotangents["y"], dtype=np.float64),
        *_eval_args(inputs),
        eps=float(attrs["eps"]),
        axis=int(attrs["axis"]),
    )
    names = ("x", "running_mean", "running_var", "gamma", "beta")
    return _present(dict(zip(names, grads, strict=True)), inputs)


def _ws_forward(inputs, attrs):
    w_hat = weight_standardization(
        _get(inputs, "w"), eps=float(attrs["eps"]), axis=int(attrs["axis"])
    )
    return {"w_hat": w_hat}


def _ws_vjp(inputs, attrs, cotangents):
    (dw,) = weight_standardization_vjp(
        np.asarray(cotangents["w_hat"], dtype=np.float64),
        _get(inputs, "w"),
        eps=float(attrs["eps"]),
        axis=int(attrs["axis"]),
    )
    return {"w": dw}


# --------------------------------------------------------------------------- proxy moments

_PN_INPUTS = ("gamma", "beta", "gamma_tilde", "beta_tilde")


def _moment_kwargs(attrs: Attrs) -> dict[str, Any]:
    n = attrs.get("n")
    seed = attrs.get("montecarlo_seed")
    return {
        "method": str(attrs["method"]),
        "n": None if n is None else int(n),
        "seed": None if seed is None else int(seed),
    }


def _moments_forward(inputs, attrs):
    mean, var = proxy_moments(
        activation_of(attrs),
        *(_get(inputs, k) for k in _PN_INPUTS),
        **_moment_kwargs(attrs),
    )
    return {"mean": np.asarray(mean), "var": np.asarray(var)}


def _moments_vjp(inputs, attrs, cotangents):
    grads = proxy_moments_vjp(
        np.asarray(cotangents["mean"], dtype=np.float64),
        np.asarray(cotangents["var"], dtype=np.float64),
        activation_of(attrs),
        *(_get(inputs, k) for k in _PN_INPUTS),
        **_moment_kwargs(attrs),
    )
    return _present(dict(zip(_PN_INPUTS, grads, strict=True)), inputs)


# --------------------------------------------------------------------------- PN-Act and blocks


def _pn_kwargs(attrs: Attrs) -> dict[str, Any]:
    kwargs = _moment_kwargs(attrs)
    kwargs.pop("seed")
    return {
        "activation": activation_of(attrs),
        "eps": float(attrs["eps"]),
        "axis": int(attrs["axis"]),
        **kwargs,
    }


def _block_kwargs(attrs: Attrs) -> dict[str, Any]:
    groups = attrs.get("groups")
    return {
        "norm": str(attrs["norm"]),
        "groups": None if groups is None else int(groups),
        "norm_eps": float(attrs["norm_eps"]),
    }


def _pn_forward(inputs, attrs):
    args = (_get(inputs, "y"), *(_get(inputs, k) for k in _PN_INPUTS))
    return {"out": pn_act(*args, **_pn_kwargs(attrs))}


def _pn_vjp(inputs, attrs, cotangents):
    args = (_get(inputs, "y"), *(_get(inputs, k) for k in _PN_INPUTS))
    grads = pn_act_vjp(np.asarray(cotangents["out"], np.float64), *args, **_pn_kwargs(attrs))
    return _present(dict(zip(("y", *_PN_INPUTS), grads, strict=True)), inputs)


def _norm_pn_forward(inputs, attrs):
    args = (_get(inputs, "x"), *(_get(inputs, k) for k in _PN_INPUTS))
    return {"out": norm_pn_act(*args, **_pn_kwargs(attrs), **_block_kwargs(attrs))}


def _norm_pn_vjp(inputs, attrs, cotangents):
    args = (_get(inputs, "x"), *(_get(inputs, k) for k in _PN_INPUTS))
    grads = norm_pn_act_vjp(
        np.asarray(cotangents["out"], np.float64),
        *args,
        **_pn_kwargs(attrs),
        **_block_kwargs(attrs),
    )
    return _present(dict(zip(("x", *_PN_INPUTS), grads, strict=True)), inputs)


def _norm_act_kwargs(attrs: Attrs) -> dict[str, Any]:
    return {"activation": activation_of(attrs), "axis": int(attrs["axis"]), **_block_kwargs(attrs)}


def _norm_act_forward(inputs, attrs):
    args = tuple(_get(inputs, k) for k in ("x", "gamma", "beta"))
    return {"out": norm_act(*args, **_norm_act_kwargs(attrs))}


def _norm_act_vjp(inputs, attrs, cotangents):
    args = tuple(_get(inputs, k) for k in ("x", "gamma", "beta"))
    grads = norm_act_vjp(np.asarray(cotangents["out"], np.float64), *args,
                         **_norm_act_kwargs(attrs))
    return _present(dict(zip(("x", "gamma", "beta"), grads, strict=True)), inputs)


#: Every op a suite may contain, by name.
OPS: dict[str, OpSpec] = {
    **{name: _norm_spec(name) for name in ("batch_norm", "instance_norm", "group_norm",
                                           "layer_norm")},
    "batch_norm_running_update": OpSpec(
        "batch_norm_running_update",
        ("x", "running_mean", "running_var"),
        3,
        (("new_running_mean", "statistics"), ("new_running_var", "statistics")),
        ("x",),
        False,
        _running_forward,
        None,
    ),
    "batch_norm_eval": OpSpec(
        "batch_norm_eval",
        ("x", "running_mean", "running_var", "gamma", "beta"),
        3,
        (("y", "output"),),
        ("x",),
        True,
        _eval_forward,
        _eval_vjp,
    ),
    "weight_standardization": OpSpec(
        "weight_standardization", ("w",), 1, (("w_hat", "output"),), ("w",), True,
        _ws_forward, _ws_vjp,
    ),
    "proxy_moments": OpSpec(
        "proxy_moments", _PN_INPUTS, 2, (("mean", "statistics"), ("var", "statistics")), (),
        True, _moments_forward, _moments_vjp,
    ),
    "pn_act": OpSpec(
        "pn_act", ("y", *_PN_INPUTS), 3, (("out", "output"),), ("y",), True,
        _pn_forward, _pn_vjp,
    ),
    "norm_pn_act": OpSpec(
        "norm_pn_act", ("x", *_PN_INPUTS), 3, (("out", "output"),), ("x",), True,
        _norm_pn_forward, _norm_pn_vjp,
    ),
    "norm_act": OpSpec(
        "norm_act", ("x", "gamma", "beta"), 1, (("out", "output"),), ("x",), True,
        _norm_act_forward, _norm_act_vjp,
    ),
}
