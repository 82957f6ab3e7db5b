"""PyTorch implementation of Proxy Normalization: an ``nn.Module`` and a golden-suite adapter.

Install with the extra ``pnref[torch]``. Everything is computed by
`pnref.adapters.torch_ops.TorchOps` with torch ops and torch autograd, independent
of pnref's NumPy code; this module wraps it as

- `ProxyNormAct`, the PN-Act layer (learned gamma, beta, gamma~, beta~);
- `NormProxyNormAct`, the block "norm without affine, then PN-Act";
- `TorchAdapter`, the adapter ``pnref golden verify --impl
  pnref.adapters.torch:TorchAdapter`` calls (protocol in `pnref.verification.adapter`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from pnref.adapters.torch_ops import TorchOps

__all__ = ["ProxyNormAct", "NormProxyNormAct", "TorchAdapter"]


class ProxyNormAct(nn.Module):
    """PN-Act as a layer: ``(phi(gamma y + beta) - mu) / sqrt(var + eps)``.

    Parameters
    ----------
    channels : int
        Number of channels C.
    activation : str
        Activation name (``"relu"``, ``"silu"`` ...).
    activation_params : dict, optional
        E.g. ``{"alpha": 0.2}`` for leaky_relu.
    eps : float
        Added to the proxy variance inside the square root (official 0.03).
    method : str
        Proxy moments: ``"quantile"`` (official, ``n`` points), ``"exact"``,
        ``"quadrature"`` or ``"montecarlo"``.
    n : int
        Points of the quantile estimator (official 200).
    axis : int
        Channel axis (1 channels-first, -1 channels-last).
    ops : TorchOps, optional
        The implementation of the steps (for variants).
    dtype : torch.dtype, optional
        dtype of the parameters (torch's default when absent).
    """

    def __init__(self, channels: int, activation: str = "relu", *,
                 activation_params: dict | None = None, eps: float = 0.03,
                 method: str = "quantile", n: int | None = 200, axis: int = 1,
                 ops: TorchOps | None = None, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if eps <= 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.gamma = nn.Parameter(torch.ones(channels, dtype=dtype))
        self.beta = nn.Parameter(torch.zeros(channels, dtype=dtype))
        self.gamma_tilde = nn.Parameter(torch.zeros(channels, dtype=dtype))
        self.beta_tilde = nn.Parameter(torch.zeros(channels, dtype=dtype))
        self.activation, self.activation_params = activation, dict(activation_params or {})
        self.eps, self.method, self.n, self.axis = eps, method, n, axis
        self.ops = ops or TorchOps()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        """PN-Act of the normalized pre-activation ``y``."""
        return self.ops.pn_act(y, self.gamma, self.beta, self.gamma_tilde, self.beta_tilde,
                               activation=self.activation,
                               activation_params=self.activation_params, eps=self.eps,
                               method=self.method, n=self.n, axis=self.axis)


class NormProxyNormAct(nn.Module):
    """The Proxy Normalization block: ``norm`` (LN or GN, no affine) then `ProxyNormAct`.

    Parameters
    ----------
    channels : int
        Number of channels.
    norm : str
        ``"gn"``, ``"ln"``, ``"in"`` or ``"bn"`` (training statistics).
    groups : int, optional
        Groups for ``"gn"`` (official: 4).
    norm_eps : float
        The norm's eps (official 1e-3).
    **pn_kwargs
        Passed to `ProxyNormAct`.
    """

    def __init__(self, channels: int, norm: str = "gn", groups: int | None = 4,
                 norm_eps: float = 1e-3, **pn_kwargs: Any) -> None:
        super().__init__()
        self.norm, self.groups, self.norm_eps = norm, groups if norm == "gn" else None, norm_eps
        self.pn_act = ProxyNormAct(channels, **pn_kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The block's output for input ``x``."""
        y = self.pn_act.ops.block_norm(x, norm=self.norm, groups=self.groups,
                                       norm_eps=self.norm_eps, axis=self.pn_act.axis)
        return self.pn_act(y)


def _pn_kwargs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "activation": attrs["activation"],
        "activation_params": dict(attrs.get("activation_params") or {}),
        "eps": float(attrs["eps"]),
        "method": attrs["method"],
        "n": attrs.get("n"),
        "axis": int(attrs["axis"]),
    }


def _block_kwargs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    groups = attrs.get("groups")
    return {"norm": attrs["norm"], "groups": None if groups is None else int(groups),
            "norm_eps": float(attrs["norm_eps"])}


class TorchAdapter:
    """Golden-suite adapter over `TorchOps` (protocol: `pnref.verification.adapter`).

    float32 and float64 cases are computed in their own dtype; float16 cases in float32
    (float32 statistics, as frameworks do) and rounded back. Proxy moments other than the
    quantile estimator are computed in float64.
    """

    name = "pnref.adapters.torch"

    def __init__(self, ops: TorchOps | None = None) -> None:
        self.ops = ops or TorchOps()

    # the op table: op name -> function(tensors, attrs) -> dict of output tensors
    def _run(self, op: str, t: dict[str, torch.Tensor],
             attrs: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        ops = self.ops
        get = t.get
        if op in ("batch_norm", "instance_norm", "layer_norm", "group_norm"):
            kwargs = {"eps": float(attrs["eps"]), "axis": int(attrs["axis"])}
            if op == "group_norm":
                per_group = attrs.get("affine", "per_channel") == "per_group"
                return {"y": ops.group_norm(t["x"], int(attrs["groups"]), get("gamma"),
                                            get("beta"), per_group=per_group, **kwargs)}
            return {"y": getattr(ops, op)(t["x"], get("gamma"), get("beta"), **kwargs)}
        if op == "batch_norm_running_update":
            mean, var = ops.batch_norm_running_update(
                t["x"], t["running_mean"], t["running_var"], momentum=float(attrs["momentum"]),
                convention=attrs["momentum_convention"], axis=int(attrs["axis"]))
            return {"new_running_mean": mean, "new_running_var": var}
        if op == "batch_norm_eval":
            return {"y": ops.batch_norm_eval(t["x"], t["running_mean"], t["running_var"],
                                             get("gamma"), get("beta"), eps=float(attrs["eps"]),
                                             axis=int(attrs["axis"]))}
        if op == "weight_standardization":
            return {"w_hat": ops.weight_standardization(t["w"], eps=float(attrs["eps"]),
                                                        axis=int(attrs["axis"]))}
        if op == "proxy_moments":
            mean, var = ops.proxy_moments(
                attrs["activation"], attrs.get("activation_params"), t["gamma"], t["beta"],
                get("gamma_tilde"), get("beta_tilde"), method=attrs["method"], n=attrs.get("n"),
                seed=attrs.get("montecarlo_seed"))
            return {"mean": mean, "var": var}
        if op == "pn_act":
            return {"out": ops.pn_act(t["y"], t["gamma"], t["beta"], get("gamma_tilde"),
                                      get("beta_tilde"), **_pn_kwargs(attrs))}
        if op == "norm_pn_act":
            pn = _pn_kwargs(attrs)
            axis = pn.pop("axis")
            return {"out": ops.norm_pn_act(t["x"], t["gamma"], t["beta"], get("gamma_tilde"),
                                           get("beta_tilde"), axis=axis, **_block_kwargs(attrs),
                                           **pn)}
        if op == "norm_act":
            return {"out": ops.norm_act(t["x"], get("gamma"), get("beta"), axis=int(attrs["axis"]),
                                        activation=attrs["activation"],
                                        activation_params=attrs.get("activation_params"),
                                        **_block_kwargs(attrs))}
        raise NotImplementedError(f"op {op!r} is not implemented by the torch adapter")

    @staticmethod
    def _tensors(inputs: Mapping[str, np.ndarray],
                 grad: bool) -> tuple[dict[str, torch.Tensor], np.dtype]:
        dtype = np.result_type(*inputs.values())
        work = np.float32 if dtype == np.float16 else dtype
        tensors = {k: torch.tensor(np.asarray(v, dtype=work), requires_grad=grad)
                   for k, v in inputs.items()}
        return tensors, dtype

    def forward(self, op: str, inputs: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs of ``op`` as NumPy arrays in the inputs' dtype."""
        tensors, dtype = self._tensors(inputs, grad=False)
        with torch.no_grad():
            outputs = self._run(op, tensors, attrs)
        return {k: v.detach().numpy().astype(dtype) for k, v in outputs.items()}

    def vjp(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
            cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients of ``sum(cotangent * output)`` for every input, by torch autograd."""
        tensors, dtype = self._tensors(inputs, grad=True)
        with torch.enable_grad():
            outputs = self._run(op, tensors, attrs)
            names = sorted(outputs)
            grad_outputs = [torch.tensor(np.asarray(cotangents[k]), dtype=outputs[k].dtype)
                            for k in names]
            leaves = list(tensors)
            grads = torch.autograd.grad([outputs[k] for k in names],
                                        [tensors[k] for k in leaves], grad_outputs,
                                        allow_unused=True)
        return {k: (np.zeros(inputs[k].shape) if g is None else g.detach().numpy()).astype(dtype)
                for k, g in zip(leaves, grads, strict=True)}
