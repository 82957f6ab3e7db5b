"""JAX implementation of every golden op, and its golden-suite adapter `JaxAdapter`.

Install with the extra ``pnref[jax]``; run with ``pnref golden verify --impl
pnref.adapters.jax:JaxAdapter``. Everything is ``jax.numpy`` written from the equations of
``docs/verification.md`` (not from pnref's NumPy code), and gradients are ``jax.vjp`` of the
forward. Importing this module enables JAX's 64-bit mode (``jax_enable_x64``), without which
float64 cases would silently run in float32.

Precision: float32 and float64 cases run in their dtype; float16 cases run in float32
(float32 statistics, as the suite expects) and are rounded back. The quantile points are
built in float64 and rounded to the case's dtype; the exact proxy moments are computed in
float64: closed forms for ReLU and leaky ReLU, Gauss-Legendre quadrature split at the kink
for the other activations.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import numpy as np

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp  # noqa: E402
from jax.scipy.special import erf, erfinv, ndtr  # noqa: E402

__all__ = ["JaxAdapter", "activation", "proxy_moments"]

Array = jax.Array

#: Half-width of the standard-normal range integrated by the quadrature (density 1e-31 there).
_RANGE = 12.0
#: Gauss-Legendre nodes per piece; the range is cut into pieces of width at most 6.
_NODES = 64


def activation(name: str, params: Mapping[str, Any] | None = None) -> Callable[[Array], Array]:
    """``phi`` by name; the derivative at a kink is the left one (ReLU'(0) = 0)."""
    params = dict(params or {})
    if name == "identity":
        return lambda z: z
    if name == "relu":
        return lambda z: jnp.where(z > 0, z, jnp.zeros_like(z))
    if name == "leaky_relu":
        alpha = float(params.get("alpha", 0.01))
        return lambda z: jnp.where(z > 0, z, alpha * z)
    if name == "elu":
        alpha = float(params.get("alpha", 1.0))
        return lambda z: jnp.where(z > 0, z, alpha * jnp.expm1(jnp.minimum(z, 0)))
    if name == "gelu":
        return lambda z: 0.5 * z * (1 + erf(z / math.sqrt(2)))
    if name == "gelu_tanh":
        return lambda z: jax.nn.gelu(z, approximate=True)
    if name == "silu":
        return lambda z: z * jax.nn.sigmoid(z)
    if name == "softplus":
        return jax.nn.softplus
    if name == "tanh":
        return jnp.tanh
    if name == "sigmoid":
        return jax.nn.sigmoid
    raise ValueError(f"activation: unknown name {name!r}")


_KINKED = {"relu", "leaky_relu", "elu"}


# --------------------------------------------------------------------------- normalizations


def _standardize(values: Array, axes: tuple[int, ...], eps: float) -> Array:
    """``(v - mean) / sqrt(var + eps)`` over ``axes``, population variance, two passes."""
    mean = jnp.mean(values, axis=axes, keepdims=True)
    centered = values - mean
    var = jnp.mean(centered * centered, axis=axes, keepdims=True)
    return centered / jnp.sqrt(var + eps)


def _broadcast(p: Array, ndim: int, axis: int) -> Array:
    shape = [1] * ndim
    shape[axis] = p.shape[0]
    return p.reshape(shape)


def normalize(x: Array, *, kind: str, groups: int | None, eps: float, axis: int) -> Array:
    """The norm ``kind`` (``bn``, ``in``, ``ln``, ``gn``) of ``x`` without affine."""
    moved = jnp.moveaxis(x, axis, 1)
    n, c = moved.shape[0], moved.shape[1]
    length = math.prod(moved.shape[2:])
    if kind == "bn":
        y = _standardize(moved.reshape(n, c, length), (0, 2), eps)
    else:
        g = {"in": c, "ln": 1, "gn": groups}[kind]
        if g is None or c % g:
            raise ValueError(f"groups={g} must divide the {c} channels")
        y = _standardize(moved.reshape(n, g, (c // g) * length), (2,), eps)
    return jnp.moveaxis(y.reshape(moved.shape), 1, axis)


def _affine(y: Array, gamma: Array | None, beta: Array | None, axis: int) -> Array:
    if gamma is not None:
        y = y * _broadcast(gamma, y.ndim, axis)
    if beta is not None:
        y = y + _broadcast(beta, y.ndim, axis)
    return y


# --------------------------------------------------------------------------- proxy moments


def _normal_moments_relu(m: Array, s: Array) -> tuple[Array, Array]:
    """``E[relu(Z)]`` and ``E[relu(Z)^2]`` for ``Z ~ Normal(m, s^2)``, ``s >= 0``."""
    positive = s > 0
    safe = jnp.where(positive, s, 1.0)
    t = m / safe
    cdf = ndtr(t)
    pdf = jnp.exp(-0.5 * t * t) / math.sqrt(2 * math.pi)
    first = m * cdf + safe * pdf
    second = (m * m + safe * safe) * cdf + m * safe * pdf
    at_zero = jnp.maximum(m, 0.0)
    return jnp.where(positive, first, at_zero), jnp.where(positive, second, at_zero**2)


def _closed_form(name: str, params: Mapping[str, Any], m: Array, s: Array):
    """Mean and variance of ReLU / leaky ReLU of ``Normal(m, s^2)`` in closed form."""
    up1, up2 = _normal_moments_relu(m, s)
    if name == "relu":
        return up1, up2 - up1 * up1
    alpha = float(params.get("alpha", 0.01))
    down1, down2 = _normal_moments_relu(-m, s)  # relu(-Z): Normal(-m, s^2)
    mean = up1 - alpha * down1
    return mean, up2 + alpha * alpha * down2 - mean * mean


def _quadrature(phi, kinked: bool, m: Array, s: Array):
    """Mean and variance of ``phi(m + s u)``, ``u ~ Normal(0, 1)``, by Gauss-Legendre.

    [-R, R] is cut at the kink ``-m / s`` (held constant under differentiation: the integral
    does not depend on where it is cut) and into pieces of width at most 6.
    """
    nodes, weights = (jnp.asarray(a) for a in np.polynomial.legendre.leggauss(_NODES))
    positive = s > 0
    cut = jax.lax.stop_gradient(jnp.where(positive, -m / jnp.where(positive, s, 1.0), 0.0))
    cut = jnp.clip(cut, -_RANGE, _RANGE) if kinked else jnp.zeros_like(m)
    fixed = jnp.linspace(-_RANGE, _RANGE, 5)  # pieces of width 6
    edges = jnp.sort(jnp.concatenate([jnp.broadcast_to(fixed, m.shape + (5,)), cut[..., None]],
                                     axis=-1), axis=-1)
    left, right = edges[..., :-1, None], edges[..., 1:, None]
    half = 0.5 * (right - left)
    u = left + half * (nodes + 1.0)
    w = half * weights * jnp.exp(-0.5 * u * u) / math.sqrt(2 * math.pi)
    u, w = u.reshape(m.shape + (-1,)), w.reshape(m.shape + (-1,))
    values = phi(m[..., None] + s[..., None] * u)
    mean = jnp.sum(w * values, axis=-1)
    var = jnp.sum(w * (values - mean[..., None]) ** 2, axis=-1)
    return mean, var


def proxy_moments(name: str, params: Mapping[str, Any] | None, gamma: Array, beta: Array,
                  gamma_tilde: Array | None = None, beta_tilde: Array | None = None, *,
                  method: str = "quantile", n: int | None = 200, seed: int | None = None
                  ) -> tuple[Array, Array]:
    """Proxy mean and variance of ``phi(gamma Y + beta)``, ``Y ~ Normal(beta~, (1 + gamma~)^2)``.

    ``method``: ``"quantile"`` (the official estimator, ``n`` points, in the parameters'
    dtype), ``"exact"`` / ``"quadrature"`` (float64), ``"montecarlo"`` (``n`` seeded draws,
    float64).
    """
    params = dict(params or {})
    phi = activation(name, params)
    gt = jnp.zeros_like(gamma) if gamma_tilde is None else gamma_tilde
    bt = jnp.zeros_like(gamma) if beta_tilde is None else beta_tilde
    if method == "quantile":
        count = 200 if n is None else int(n)
        levels = (2.0 * np.arange(count) + 1.0 - count) / count
        u = (math.sqrt(2) * erfinv(jnp.asarray(levels, jnp.float64))).astype(gamma.dtype)
        values = phi(gamma[:, None] * ((1 + gt)[:, None] * u + bt[:, None]) + beta[:, None])
        mean = jnp.mean(values, axis=1)
        return mean, jnp.mean((values - mean[:, None]) ** 2, axis=1)
    dtype = gamma.dtype
    g64, b64, gt64, bt64 = (a.astype(jnp.float64) for a in (gamma, beta, gt, bt))
    m = g64 * bt64 + b64
    sigma = g64 * (1 + gt64)
    if method in ("exact", "quadrature"):
        s = jnp.abs(sigma)
        if name in ("relu", "leaky_relu"):
            mean, var = _closed_form(name, params, m, s)
        else:
            mean, var = _quadrature(phi, name in _KINKED, m, s)
        return mean.astype(dtype), var.astype(dtype)
    if method == "montecarlo":
        draws = np.random.default_rng(0 if seed is None else int(seed)).standard_normal(
            100_000 if n is None else int(n))
        values = phi(m[:, None] + sigma[:, None] * jnp.asarray(draws))
        mean = jnp.mean(values, axis=1)
        var = jnp.mean((values - mean[:, None]) ** 2, axis=1)
        return mean.astype(dtype), var.astype(dtype)
    raise ValueError(f"proxy_moments: unknown method {method!r}")


def pn_act(y: Array, p: Mapping[str, Array], attrs: Mapping[str, Any]) -> Array:
    """``(phi(gamma y + beta) - mean) / sqrt(var + eps)`` per channel."""
    axis = int(attrs["axis"])
    mean, var = proxy_moments(attrs["activation"], attrs.get("activation_params"), p["gamma"],
                              p["beta"], p.get("gamma_tilde"), p.get("beta_tilde"),
                              method=attrs["method"], n=attrs.get("n"),
                              seed=attrs.get("montecarlo_seed"))
    phi = activation(attrs["activation"], attrs.get("activation_params"))
    z = phi(_affine(y, p["gamma"], p["beta"], axis))
    return (z - _broadcast(mean, y.ndim, axis)) / jnp.sqrt(_broadcast(var, y.ndim, axis)
                                                           + float(attrs["eps"]))


# --------------------------------------------------------------------------- the op table


def _norm_op(kind: str):
    def run(p, attrs):
        axis = int(attrs["axis"])
        groups = attrs.get("groups")
        y = normalize(p["x"], kind=kind, groups=None if groups is None else int(groups),
                      eps=float(attrs["eps"]), axis=axis)
        gamma, beta = p.get("gamma"), p.get("beta")
        if attrs.get("affine", "per_channel") == "per_group":
            width = y.shape[axis] // int(groups)
            gamma = None if gamma is None else jnp.repeat(gamma, width)
            beta = None if beta is None else jnp.repeat(beta, width)
        return {"y": _affine(y, gamma, beta, axis)}
    return run


def _running_update(p, attrs):
    x = jnp.moveaxis(p["x"], int(attrs["axis"]), -1)
    flat = x.reshape(-1, x.shape[-1])
    count = flat.shape[0]
    mean = jnp.mean(flat, axis=0)
    var = jnp.mean((flat - mean) ** 2, axis=0)
    momentum = float(attrs["momentum"])
    if attrs["momentum_convention"] == "torch":
        if count < 2:
            raise ValueError("the torch convention needs two values per channel")
        batch_weight, var = momentum, var * count / (count - 1)
    elif attrs["momentum_convention"] == "tf":
        batch_weight = 1.0 - momentum
    else:
        raise ValueError(f"unknown momentum convention {attrs['momentum_convention']!r}")
    keep = 1.0 - batch_weight
    return {"new_running_mean": keep * p["running_mean"] + batch_weight * mean,
            "new_running_var": keep * p["running_var"] + batch_weight * var}


def _batch_norm_eval(p, attrs):
    axis = int(attrs["axis"])
    x = p["x"]
    y = (x - _broadcast(p["running_mean"], x.ndim, axis)) / jnp.sqrt(
        _broadcast(p["running_var"], x.ndim, axis) + float(attrs["eps"]))
    return {"y": _affine(y, p.get("gamma"), p.get("beta"), axis)}


def _weight_standardization(p, attrs):
    w = jnp.moveaxis(p["w"], int(attrs["axis"]), 0)
    rows = _standardize(w.reshape(w.shape[0], -1), (1,), float(attrs["eps"]))
    return {"w_hat": jnp.moveaxis(rows.reshape(w.shape), 0, int(attrs["axis"]))}


def _block_norm(p, attrs):
    groups = attrs.get("groups")
    return normalize(p["x"], kind=str(attrs["norm"]),
                     groups=None if groups is None else int(groups),
                     eps=float(attrs["norm_eps"]), axis=int(attrs["axis"]))


def _moments_op(p, attrs):
    mean, var = proxy_moments(attrs["activation"], attrs.get("activation_params"), p["gamma"],
                              p["beta"], p.get("gamma_tilde"), p.get("beta_tilde"),
                              method=attrs["method"], n=attrs.get("n"),
                              seed=attrs.get("montecarlo_seed"))
    return {"mean": mean, "var": var}


_OPS: dict[str, Callable[[dict, Mapping[str, Any]], dict]] = {
    "batch_norm": _norm_op("bn"),
    "instance_norm": _norm_op("in"),
    "layer_norm": _norm_op("ln"),
    "group_norm": _norm_op("gn"),
    "batch_norm_running_update": _running_update,
    "batch_norm_eval": _batch_norm_eval,
    "weight_standardization": _weight_standardization,
    "proxy_moments": _moments_op,
    "pn_act": lambda p, attrs: {"out": pn_act(p["y"], p, attrs)},
    "norm_pn_act": lambda p, attrs: {"out": pn_act(_block_norm(p, attrs), p, attrs)},
    "norm_act": lambda p, attrs: {"out": activation(attrs["activation"],
                                                     attrs.get("activation_params"))(
        _affine(_block_norm(p, attrs), p.get("gamma"), p.get("beta"), int(attrs["axis"])))},
}


class JaxAdapter:
    """Golden-suite adapter over the ``jax.numpy`` ops above.

    Protocol: `pnref.verification.adapter`.
    """

    name = "pnref.adapters.jax"

    @staticmethod
    def _arrays(inputs: Mapping[str, np.ndarray]) -> tuple[dict[str, Array], np.dtype]:
        dtype = np.result_type(*inputs.values())
        work = np.float32 if dtype == np.float16 else dtype
        return {k: jnp.asarray(np.asarray(v, dtype=work)) for k, v in inputs.items()}, dtype

    @staticmethod
    def _op(op: str) -> Callable[[dict, Mapping[str, Any]], dict]:
        if op not in _OPS:
            raise NotImplementedError(f"op {op!r} is not implemented by the JAX adapter")
        return _OPS[op]

    def forward(self, op: str, inputs: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs of ``op`` as NumPy arrays in the inputs' dtype."""
        arrays, dtype = self._arrays(inputs)
        function = self._op(op)
        # one compiled program per call: far cheaper than compiling every primitive eagerly
        outputs = jax.jit(lambda p: function(p, attrs))(arrays)
        return {k: np.asarray(v).astype(dtype) for k, v in outputs.items()}

    def vjp(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
            cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients of ``sum(cotangent * output)`` for every input, by ``jax.vjp``."""
        arrays, dtype = self._arrays(inputs)
        function = self._op(op)
        work = next(iter(arrays.values())).dtype
        seeds = {k: jnp.asarray(np.asarray(v), dtype=work) for k, v in cotangents.items()}

        def pull(p, seeds):
            outputs, pullback = jax.vjp(lambda q: function(q, attrs), p)
            return pullback({k: seeds[k] for k in outputs})[0]

        grads = jax.jit(pull)(arrays, seeds)
        return {k: np.asarray(g).astype(dtype) for k, g in grads.items()}
