"""Every golden op written once more, in HIPS ``autograd.numpy``, with switches for known mistakes.

`pnref.golden.deviations` uses this model to compute what an implementation that makes one
(or two) of the catalogued mistakes returns for a golden case: ``Knobs()`` (every switch off)
reproduces the reference to rounding (``tests/test_golden_deviations.py`` checks that on every
case of the bundled suite), and each switch changes one step. Gradients are those of the
deviant forward, by reverse-mode autodiff, which is what a port built on an autodiff framework
returns.

Layout conventions are those of `pnref.golden.ops`: batch on axis 0, channels on
``attrs["axis"]``; optional inputs are absent from ``inputs``.

The mistakes that are plain parameter changes of the reference (another ``n``, another eps,
the tildes dropped, another momentum convention ...) are not here: the catalogue calls the
reference itself with modified attributes for those.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import autograd
import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive
from autograd.scipy.special import erf as _erf
from autograd.tracer import getval
from scipy.special import erfinv

from pnref.golden.ops import OPS, activation_of
from pnref.moments import proxy_moments, proxy_moments_vjp

__all__ = ["Knobs", "model_outputs", "quantile_points"]

_PN_PARAMS = ("gamma", "beta", "gamma_tilde", "beta_tilde")


@dataclass(frozen=True)
class Knobs:
    """The switches of the deviant model; the defaults are the reference's conventions.

    Attributes
    ----------
    norm_ddof : int
        Variance divisor ``count - norm_ddof`` of the normalizations (1: unbiased).
    norm_eps_outside : bool
        ``(x - mean) / (sqrt(var) + eps)`` in the normalizations.
    norm_variance : str
        ``"two-pass"``; ``"one-pass"`` (``E[x^2] - E[x]^2`` in the case's dtype),
        ``"one-pass-clipped"`` (the same clipped at 0) or ``"float16"`` (two-pass, but
        statistics and eps rounded to float16).
    channel_axis_swapped : bool
        Normalization statistics taken as if channels were on the other axis (1 <-> -1).
    per_group_affine : bool
        Group norm: the first G entries of the per-channel gamma/beta used as one per group.
    quantile_offset : float
        Offset of the quantile levels ``(i + offset) / n`` (official 1/2).
    proxy_ddof : int
        Proxy variance divisor ``n - proxy_ddof``.
    pn_eps_outside : bool
        ``(phi(z) - mean) / (sqrt(var) + eps)`` in PN-Act.
    moments_gradient : bool
        False: the proxy moments are constants in the backward pass (stop-gradient).
    activation_twice : bool
        The activation applied again to PN-Act's output.
    kink_derivative_one : bool
        ReLU / leaky ReLU derivative at exactly 0 taken as 1 (the reference takes the left
        derivative: 0, respectively alpha).
    running_bias_flipped : bool
        Running update: the biased batch variance where the convention wants the unbiased
        one, and the reverse.
    momentum_flipped : bool
        Running update: the momentum weights the other term (m <-> 1 - m).
    """

    norm_ddof: int = 0
    norm_eps_outside: bool = False
    norm_variance: str = "two-pass"
    channel_axis_swapped: bool = False
    per_group_affine: bool = False
    quantile_offset: float = 0.5
    proxy_ddof: int = 0
    pn_eps_outside: bool = False
    moments_gradient: bool = True
    activation_twice: bool = False
    kink_derivative_one: bool = False
    running_bias_flipped: bool = False
    momentum_flipped: bool = False


def quantile_points(n: int, offset: float = 0.5) -> np.ndarray:
    """``sqrt(2) erfinv(2 (i + offset) / n - 1)``, ``i = 0 .. n-1``, in float64."""
    index = np.arange(n, dtype=np.float64)
    return math.sqrt(2.0) * erfinv(2.0 * (index + offset) / n - 1.0)


# --------------------------------------------------------------------------- activations


def _activation(attrs: Mapping[str, Any], knobs: Knobs):
    """``phi`` of the case as an autograd-traceable function."""
    name = attrs["activation"]
    params = dict(attrs.get("activation_params") or {})
    positive = (lambda z: z >= 0.0) if knobs.kink_derivative_one else (lambda z: z > 0.0)
    if name == "identity":
        return lambda z: z
    if name == "relu":
        return lambda z: anp.where(positive(z), z, 0.0 * z)
    if name == "leaky_relu":
        alpha = float(params.get("alpha", 0.01))
        return lambda z: anp.where(positive(z), z, alpha * z)
    if name == "elu":
        alpha = float(params.get("alpha", 1.0))
        return lambda z: anp.where(positive(z), z,
                                   alpha * (anp.exp(anp.minimum(z, 0.0)) - 1.0))
    if name == "gelu":
        return lambda z: 0.5 * z * (1.0 + _erf(z / math.sqrt(2.0)))
    if name == "gelu_tanh":
        c = math.sqrt(2.0 / math.pi)
        return lambda z: 0.5 * z * (1.0 + anp.tanh(c * (z + 0.044715 * z**3)))
    if name == "silu":
        return lambda z: z * 0.5 * (1.0 + anp.tanh(0.5 * z))
    if name == "softplus":
        return lambda z: anp.logaddexp(0.0, z)
    if name == "tanh":
        return anp.tanh
    if name == "sigmoid":
        return lambda z: 0.5 * (1.0 + anp.tanh(0.5 * z))
    raise ValueError(f"the deviant model has no activation {name!r}")


# --------------------------------------------------------------------------- normalizations


def _per_channel(p, ndim: int, axis: int):
    shape = [1] * ndim
    shape[axis] = -1
    return anp.reshape(p, shape)


def _normalize(x, axis: int, kind: str, groups: int | None, eps: float, dtype: np.dtype,
               knobs: Knobs):
    """``(x - mean) / sqrt(var + eps)`` per group of the norm ``kind`` (bn, in, ln, gn)."""
    if knobs.channel_axis_swapped and x.ndim > 2:
        axis = -1 if axis % x.ndim == 1 else 1
    moved = anp.moveaxis(x, axis, 1)
    shape = moved.shape
    batch, channels = shape[0], shape[1]
    spatial = int(np.prod(shape[2:], dtype=np.int64))
    if kind == "bn":
        grouped = anp.reshape(moved, (batch, channels, spatial))
        axes: tuple[int, ...] = (0, 2)
    else:
        count_groups = {"in": channels, "ln": 1}.get(kind, groups)
        if count_groups is None or channels % count_groups:
            raise _NotApplicable(f"{channels} channels cannot form {count_groups} groups")
        grouped = anp.reshape(moved, (batch, count_groups, channels // count_groups * spatial))
        axes = (2,)
    count = int(np.prod([grouped.shape[a] for a in axes]))
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = anp.mean(grouped, axis=axes, keepdims=True)
        var = anp.sum((grouped - mean) ** 2, axis=axes, keepdims=True) / (count - knobs.norm_ddof)
        if knobs.norm_variance != "two-pass":
            mean_error, var_error = _statistics_error(getval(grouped), axes, dtype,
                                                      getval(mean), getval(var), knobs)
            mean, var = mean + mean_error, var + var_error
            if knobs.norm_variance == "float16":
                eps = float(np.float16(eps))
        centered = grouped - mean
        scale = (1.0 / (anp.sqrt(var) + eps) if knobs.norm_eps_outside
                 else 1.0 / anp.sqrt(var + eps))
        normalized = centered * scale
    return anp.moveaxis(anp.reshape(normalized, shape), 1, axis)


def _statistics_error(grouped: np.ndarray, axes, dtype: np.dtype, exact_mean: np.ndarray,
                      var: np.ndarray, knobs: Knobs) -> tuple[np.ndarray, np.ndarray]:
    """What the deviant statistics add to the exact mean and variance (constants).

    The gradient of ``E[x^2] - E[x]^2`` (or of statistics rounded to float16) equals that of
    the exact two-pass form analytically, so only the values differ; they enter as constant
    shifts of the exact mean and variance.
    """
    low = np.asarray(grouped).astype(dtype if knobs.norm_variance != "float16" else np.float16)
    with np.errstate(over="ignore", invalid="ignore"):
        if knobs.norm_variance == "float16":
            mean = low.mean(axis=axes, keepdims=True, dtype=np.float16)
            deviant = np.square(low - mean).mean(axis=axes, keepdims=True, dtype=np.float16)
        else:
            mean = low.mean(axis=axes, keepdims=True, dtype=low.dtype)
            deviant = (low * low).mean(axis=axes, keepdims=True, dtype=low.dtype) - mean * mean
            if knobs.norm_variance == "one-pass-clipped":
                deviant = np.maximum(deviant, 0)
        return mean.astype(np.float64) - exact_mean, deviant.astype(np.float64) - var


class _NotApplicable(Exception):
    """The mistake cannot be made on this case (e.g. the swapped axis has the wrong size)."""


def _grouped_norm(op: str, p, attrs, dtype, knobs: Knobs):
    x = p["x"]
    axis = int(attrs["axis"])
    kind = {"batch_norm": "bn", "instance_norm": "in", "layer_norm": "ln",
            "group_norm": "gn"}[op]
    groups = attrs.get("groups")
    y = _normalize(x, axis, kind, None if groups is None else int(groups), float(attrs["eps"]),
                   dtype, knobs)
    return {"y": _affine(y, p.get("gamma"), p.get("beta"), axis, attrs, knobs,
                         groups=None if op != "group_norm" else int(groups))}


def _affine(y, gamma, beta, axis, attrs, knobs: Knobs, groups: int | None = None):
    channels = y.shape[axis]
    per_group = attrs.get("affine", "per_channel") == "per_group"

    def widen(p):
        if p is None:
            return None
        if per_group:
            return anp.repeat(p, channels // p.shape[0])
        if knobs.per_group_affine and groups is not None:
            return anp.repeat(p[:groups], channels // groups)
        return p

    gamma, beta = widen(gamma), widen(beta)
    if gamma is not None:
        y = y * _per_channel(gamma, y.ndim, axis)
    if beta is not None:
        y = y + _per_channel(beta, y.ndim, axis)
    return y


def _batch_norm_eval(p, attrs, knobs: Knobs):
    axis = int(attrs["axis"])
    eps = float(attrs["eps"])
    x = p["x"]
    mean = _per_channel(p["running_mean"], x.ndim, axis)
    var = _per_channel(p["running_var"], x.ndim, axis)
    scale = 1.0 / (anp.sqrt(var) + eps) if knobs.norm_eps_outside else 1.0 / anp.sqrt(var + eps)
    return {"y": _affine((x - mean) * scale, p.get("gamma"), p.get("beta"), axis, attrs, knobs)}


def _weight_standardization(p, attrs, dtype, knobs: Knobs):
    w = p["w"]
    axis = int(attrs["axis"])
    moved = anp.moveaxis(w, axis, 0)
    as_batch = anp.reshape(moved, (1, moved.shape[0], -1))
    y = _normalize(as_batch, 1, "in", None, float(attrs["eps"]), dtype,
                   Knobs(norm_ddof=knobs.norm_ddof, norm_eps_outside=knobs.norm_eps_outside,
                         norm_variance=knobs.norm_variance))
    return {"w_hat": anp.moveaxis(anp.reshape(y, moved.shape), 0, axis)}


# --------------------------------------------------------------------------- proxy moments


def _reference_moments_primitive():
    """pnref's proxy moments (any method) as an autograd primitive with pnref's VJP."""

    @primitive
    def moments(gamma, beta, gamma_tilde, beta_tilde, act, kwargs):
        mean, var = proxy_moments(act, gamma, beta, gamma_tilde, beta_tilde, **kwargs)
        return np.stack([np.asarray(mean), np.asarray(var)])

    def make_vjp(position):
        def vjp_maker(ans, gamma, beta, gamma_tilde, beta_tilde, act, kwargs):
            def vjp(cotangent):
                kw = {k: v for k, v in kwargs.items() if k != "seed"}
                grads = proxy_moments_vjp(cotangent[0], cotangent[1], act, gamma, beta,
                                          gamma_tilde, beta_tilde, **kw)
                return np.asarray(grads[position])
            return vjp
        return vjp_maker

    defvjp(moments, *(make_vjp(k) for k in range(4)))
    return moments


_REFERENCE_MOMENTS = _reference_moments_primitive()


def _proxy_moments(p, attrs, knobs: Knobs):
    """Proxy mean and variance per channel under ``knobs``."""
    gamma, beta = p["gamma"], p["beta"]
    gamma_tilde = p.get("gamma_tilde", anp.zeros(np.shape(gamma)))
    beta_tilde = p.get("beta_tilde", anp.zeros(np.shape(gamma)))
    if not knobs.moments_gradient:
        gamma, beta, gamma_tilde, beta_tilde = (getval(v) for v in (gamma, beta, gamma_tilde,
                                                                    beta_tilde))
    method = attrs["method"]
    if method != "quantile":
        if knobs.quantile_offset != 0.5 or knobs.proxy_ddof:
            raise _NotApplicable("the mistake concerns the quantile estimator only")
        seed = attrs.get("montecarlo_seed")
        kwargs = {"method": method, "n": attrs.get("n"), "seed": seed}
        act = activation_of(attrs)
        both = _REFERENCE_MOMENTS(gamma, beta, gamma_tilde, beta_tilde, act, kwargs)
        return both[0], both[1]
    n = int(attrs["n"])
    u = quantile_points(n, knobs.quantile_offset)
    phi = _activation(attrs, knobs)
    proxy = (1.0 + gamma_tilde)[:, None] * u[None, :] + beta_tilde[:, None]
    values = phi(gamma[:, None] * proxy + beta[:, None])
    mean = anp.mean(values, axis=1)
    centered = values - mean[:, None]
    var = anp.sum(centered * centered, axis=1) / (n - knobs.proxy_ddof)
    return mean, var


def _pn_act(y, p, attrs, knobs: Knobs):
    axis = int(attrs["axis"])
    eps = float(attrs["eps"])
    phi = _activation(attrs, knobs)
    mean, var = _proxy_moments(p, attrs, knobs)
    activated = phi(y * _per_channel(p["gamma"], y.ndim, axis)
                    + _per_channel(p["beta"], y.ndim, axis))
    scale = 1.0 / (anp.sqrt(var) + eps) if knobs.pn_eps_outside else 1.0 / anp.sqrt(var + eps)
    out = (activated - _per_channel(mean, y.ndim, axis)) * _per_channel(scale, y.ndim, axis)
    return phi(out) if knobs.activation_twice else out


def _block_norm(p, attrs, dtype, knobs: Knobs):
    groups = attrs.get("groups")
    return _normalize(p["x"], int(attrs["axis"]), str(attrs["norm"]),
                      None if groups is None else int(groups), float(attrs["norm_eps"]), dtype,
                      knobs)


def _running_update(p, attrs, knobs: Knobs):
    """New running mean and variance (no gradients: the op has none)."""
    x = np.moveaxis(p["x"], int(attrs["axis"]), -1)
    values = x.reshape(-1, x.shape[-1])
    count = values.shape[0]
    batch_mean = values.mean(axis=0)
    batch_var = np.square(values - batch_mean).mean(axis=0)
    convention = attrs["momentum_convention"]
    torch_style = convention == "torch"
    unbiased = convention in ("torch", "tf_fused")  # see pnref.norms.batch_running
    if unbiased != knobs.running_bias_flipped:
        batch_var = batch_var * count / (count - 1)
    momentum = float(attrs["momentum"])
    on_batch = momentum if torch_style != knobs.momentum_flipped else 1.0 - momentum
    return {"new_running_mean": (1.0 - on_batch) * p["running_mean"] + on_batch * batch_mean,
            "new_running_var": (1.0 - on_batch) * p["running_var"] + on_batch * batch_var}


def _forward(op: str, p, attrs, dtype: np.dtype, knobs: Knobs):
    """Outputs of ``op`` (dict) for differentiable inputs ``p`` under ``knobs``."""
    if op == "batch_norm_running_update":
        return _running_update(p, attrs, knobs)
    if op in ("batch_norm", "instance_norm", "layer_norm", "group_norm"):
        return _grouped_norm(op, p, attrs, dtype, knobs)
    if op == "batch_norm_eval":
        return _batch_norm_eval(p, attrs, knobs)
    if op == "weight_standardization":
        return _weight_standardization(p, attrs, dtype, knobs)
    if op == "proxy_moments":
        mean, var = _proxy_moments(p, attrs, knobs)
        return {"mean": mean, "var": var}
    if op == "pn_act":
        return {"out": _pn_act(p["y"], p, attrs, knobs)}
    if op == "norm_pn_act":
        return {"out": _pn_act(_block_norm(p, attrs, dtype, knobs), p, attrs, knobs)}
    if op == "norm_act":
        y = _block_norm(p, attrs, dtype, knobs)
        groups = attrs.get("groups") if attrs["norm"] == "gn" else None
        z = _affine(y, p.get("gamma"), p.get("beta"), int(attrs["axis"]), attrs, knobs,
                    groups=None if groups is None else int(groups))
        return {"out": _activation(attrs, knobs)(z)}
    raise _NotApplicable(f"the deviant model has no op {op!r}")


def model_outputs(op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
                  cotangents: Mapping[str, np.ndarray] | None, knobs: Knobs
                  ) -> dict[str, np.ndarray] | None:
    """Outputs and gradients of ``op`` on a case under ``knobs``, keyed as in case files.

    Parameters
    ----------
    op : str
        A key of `pnref.golden.ops.OPS`.
    inputs : mapping
        The case's inputs (any float dtype; computed in float64).
    attrs : mapping
        The case's attributes.
    cotangents : mapping or None
        The case's cotangents; gradients are computed only when given and not empty.
    knobs : Knobs
        The mistakes to make.

    Returns
    -------
    dict or None
        ``{"expected.<output>": ..., "expected_grad.<input>": ...}`` in float64, or
        ``None`` if the mistake cannot be made on this case.
    """
    dtype = np.result_type(*inputs.values())
    p = {k: np.asarray(v, dtype=np.float64) for k, v in inputs.items()}
    try:
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"), \
                warnings.catch_warnings():
            # an empty batch's mean is NaN and unused; a mistake that cuts an input off
            # (stop-gradient) makes autograd warn that the loss does not depend on it
            warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
            warnings.filterwarnings("ignore", "invalid value encountered", RuntimeWarning)
            warnings.filterwarnings("ignore", "Output seems independent of input")
            outputs = {f"expected.{k}": np.asarray(v, dtype=np.float64)
                       for k, v in _forward(op, p, attrs, dtype, knobs).items()}
            if cotangents:
                names = [k for k, _ in OPS[op].outputs]
                ct = {k: np.asarray(cotangents[k], dtype=np.float64) for k in names}

                def loss(params):
                    result = _forward(op, params, attrs, dtype, knobs)
                    return sum(anp.sum(ct[k] * result[k]) for k in names)

                grads = autograd.grad(loss)(p)
                outputs.update({f"expected_grad.{k}": np.asarray(v, dtype=np.float64)
                                for k, v in grads.items()})
    except _NotApplicable:
        return None
    return outputs
