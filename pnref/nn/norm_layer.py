"""The normalization step of a network, chosen by name, with its parameters and state.

Names: ``none``, ``bn``, ``ln``, ``in``, ``gn``, ``ln+pn``, ``gn+pn``, ``ln+ws``, ``gn+ws``.

How each is wired (as in the official Proxy Normalization code):

- ``bn`` / ``ln`` / ``in`` / ``gn``: norm with a per-channel affine (gamma, beta), then the
  activation. Batch norm keeps running statistics (PyTorch convention, momentum 0.1,
  unbiased running variance) and uses them in evaluation mode.
- ``ln+pn`` / ``gn+pn``: the norm has no affine; PN-Act carries gamma, beta, gamma~, beta~
  (the fused block `pnref.autograd_ops.norm_pn_act`).
- ``ln+ws`` / ``gn+ws``: as ``ln`` / ``gn``, and the preceding layer's weights are
  standardized (`pnref.autograd_ops.weight_standardization`).
- ``none``: the preceding layer keeps its bias; just the activation.

A norm that is *not* followed by an activation (the last norm of a residual branch) keeps
its scale and drops its shift under PN (there is no PN-Act to carry them); other norms keep
their full affine there.

Parameter names inside a layer: ``gamma``, ``beta``, ``gamma_tilde``, ``beta_tilde``; BN
state: ``running_mean``, ``running_var``.

Type hints: the input, the parameters and the output of a layer are ``Any`` because autograd
traces them while a gradient is taken (arrays otherwise); the state is never traced.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from autograd.tracer import getval

from pnref import autograd_ops as ops
from pnref.nn.flat_params import call_with_params
from pnref.norms import batch_norm_running_update

__all__ = ["NORMS", "NormSpec", "parse_norm", "init_norm", "apply_norm"]

NORMS = ("none", "bn", "ln", "in", "gn", "ln+pn", "gn+pn", "ln+ws", "gn+ws")
BN_MOMENTUM = 0.1


@dataclass(frozen=True)
class NormSpec:
    """A parsed norm name.

    Attributes
    ----------
    name : str
        One of `NORMS`.
    kind : str
        The statistics: ``none``, ``bn``, ``ln``, ``in`` or ``gn``.
    proxy : bool
        PN-Act replaces the affine + activation step.
    weight_std : bool
        The preceding layer's weights are standardized.
    groups : int
        Groups for ``gn`` (ignored otherwise).
    eps : float
        The norm's eps.
    pn_eps : float
        PN-Act's eps (official 0.03).
    backend : str
        ``"numpy"`` or ``"numba"`` for the fused blocks.
    """

    name: str
    kind: str
    proxy: bool
    weight_std: bool
    groups: int = 4
    eps: float = 1e-5
    pn_eps: float = 0.03
    backend: str = "numpy"


def parse_norm(
    name: str,
    *,
    groups: int = 4,
    eps: float = 1e-5,
    pn_eps: float = 0.03,
    backend: str = "numpy",
) -> NormSpec:
    """Parse a norm name into a `NormSpec`; ValueError naming ``norm`` if unknown."""
    if not isinstance(name, str):
        raise TypeError(f"norm must be a str, got {type(name).__name__}")
    if name not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}; got {name!r}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    if backend not in ("numpy", "numba"):
        raise ValueError(f"backend must be 'numpy' or 'numba', got {backend!r}")
    kind, _, extra = name.partition("+")
    return NormSpec(
        name=name, kind=kind, proxy=extra == "pn", weight_std=extra == "ws",
        groups=groups, eps=eps, pn_eps=pn_eps, backend=backend,
    )


def init_norm(
    spec: NormSpec, channels: int, *, followed_by_activation: bool
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Parameters and state of one norm layer at initialization.

    gamma = 1, beta = 0, gamma~ = beta~ = 0; BN running mean 0 and variance 1.

    Returns
    -------
    (params, state) : tuple of dict
        Either may be empty.
    """
    if spec.kind == "gn" and channels % spec.groups:
        raise ValueError(
            f"groups={spec.groups} must divide the {channels} channels of a gn layer"
        )
    params: dict[str, np.ndarray] = {}
    state: dict[str, np.ndarray] = {}
    if spec.kind == "none":
        return params, state
    params["gamma"] = np.ones(channels)
    if not (spec.proxy and not followed_by_activation):
        params["beta"] = np.zeros(channels)
    if spec.proxy and followed_by_activation:
        params["gamma_tilde"] = np.zeros(channels)
        params["beta_tilde"] = np.zeros(channels)
    if spec.kind == "bn":
        state["running_mean"] = np.zeros(channels)
        state["running_var"] = np.ones(channels)
    return params, state


def _running_update(x: Any, state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """BN's new running statistics from the batch ``x`` (outside autograd's trace)."""
    mean, var = batch_norm_running_update(
        getval(x), state["running_mean"], state["running_var"], momentum=BN_MOMENTUM
    )
    return {"running_mean": mean, "running_var": var}


def _normalize(
    spec: NormSpec, x: Any, gamma: Any, beta: Any | None, state: Mapping[str, np.ndarray],
    training: bool,
) -> tuple[Any, Mapping[str, np.ndarray]]:
    """The norm with its affine (``gamma``/``beta`` may be None); returns (y, new_state)."""
    if spec.kind == "bn":
        if not training:
            y = ops.batch_norm_eval(
                x, state["running_mean"], state["running_var"], gamma, beta, eps=spec.eps
            )
            return y, state
        y = ops.batch_norm(x, gamma, beta, eps=spec.eps)
        return y, _running_update(x, state)
    if spec.kind == "ln":
        return ops.layer_norm(x, gamma, beta, eps=spec.eps), state
    if spec.kind == "in":
        return ops.instance_norm(x, gamma, beta, eps=spec.eps), state
    if spec.kind == "gn":
        return ops.group_norm(x, spec.groups, gamma, beta, eps=spec.eps), state
    raise AssertionError(f"unhandled norm kind {spec.kind!r}")  # pragma: no cover


def apply_norm(
    spec: NormSpec,
    x: Any,
    params: Mapping[str, Any],
    state: Mapping[str, np.ndarray],
    *,
    activation: str | None,
    training: bool,
) -> tuple[Any, Mapping[str, np.ndarray]]:
    """Norm, affine and (optionally) activation of one layer.

    Parameters
    ----------
    spec : NormSpec
    x : array, channels on axis 1
        The output of a dense or convolution layer (traced by autograd when a gradient is
        taken, hence ``Any``).
    params, state : mapping of str to array
        From `init_norm`; the values of ``params`` may be traced like ``x`` (a
        `pnref.nn.flat_params.TracedParams`: the block and its parameters are then one
        autograd node).
    activation : str or None
        The activation that follows, or None for a norm not followed by one.
    training : bool
        Batch statistics (and a running-statistics update) for BN when True.

    Returns
    -------
    (out, new_state)
    """
    if spec.kind == "none":
        return (x if activation is None else ops.activation(x, activation)), state
    if spec.proxy and activation is not None:
        groups = spec.groups if spec.kind == "gn" else None
        out = call_with_params(
            ops.norm_pn_act, (x,), params, ("gamma", "beta", "gamma_tilde", "beta_tilde"),
            norm=spec.kind, groups=groups, norm_eps=spec.eps, activation=activation,
            eps=spec.pn_eps, backend=spec.backend,
        )
        return out, state
    if activation is None or (spec.kind == "bn" and not training):
        y, new_state = _normalize(spec, x, params["gamma"], params.get("beta"), state,
                                  training)
        return (y if activation is None else ops.activation(y, activation)), new_state
    new_state = _running_update(x, state) if spec.kind == "bn" else state
    out = call_with_params(
        ops.norm_act, (x,), params, ("gamma", "beta"), norm=spec.kind,
        groups=spec.groups if spec.kind == "gn" else None, norm_eps=spec.eps,
        activation=activation, backend=spec.backend,
    )
    return out, new_state
