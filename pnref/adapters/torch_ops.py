"""Normalizations, proxy moments, PN-Act and the blocks written with PyTorch ops.

An implementation independent of pnref's NumPy code: everything is torch tensor arithmetic
and gradients come from torch autograd. It is written as methods of `TorchOps` so
that a variant can replace one step (the tests' mutants do exactly that).

Conventions match ``docs/architecture.md``: batch on axis 0, channels on ``axis``,
population variance with eps inside the square root, two-pass statistics.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["TorchOps", "ACTIVATIONS", "gauss_legendre"]

Tensor = torch.Tensor

#: Activations by name; ``alpha`` is the parameter of leaky_relu (default 0.01) and elu (1).
ACTIVATIONS: dict[str, Callable[..., Callable[[Tensor], Tensor]]] = {
    "identity": lambda: (lambda z: z),
    "relu": lambda: torch.relu,
    "leaky_relu": lambda alpha=0.01: (lambda z: F.leaky_relu(z, negative_slope=alpha)),
    "elu": lambda alpha=1.0: (lambda z: F.elu(z, alpha=alpha)),
    "gelu": lambda: (lambda z: F.gelu(z, approximate="none")),
    "gelu_tanh": lambda: (lambda z: F.gelu(z, approximate="tanh")),
    "silu": lambda: F.silu,
    "softplus": lambda: F.softplus,
    "tanh": lambda: torch.tanh,
    "sigmoid": lambda: torch.sigmoid,
}

#: Kinks (points where the derivative jumps) of each activation.
_KINKS = {"relu": (0.0,), "leaky_relu": (0.0,), "elu": (0.0,)}

#: Gauss-Legendre nodes per piece of the split quadrature of the exact moments.
QUADRATURE_NODES = 96
#: Half-width of the standard-normal range integrated (the weight is 2e-22 there).
_RANGE = 10.0


@functools.lru_cache(maxsize=8)
def gauss_legendre(n: int) -> tuple[Tensor, Tensor]:
    """Gauss-Legendre nodes and weights on [-1, 1] in float64 (Golub-Welsch, torch.linalg)."""
    k = torch.arange(1, n, dtype=torch.float64)
    off = k / torch.sqrt(4.0 * k * k - 1.0)
    jacobi = torch.diag(off, 1) + torch.diag(off, -1)
    nodes, vectors = torch.linalg.eigh(jacobi)
    weights = 2.0 * vectors[0, :] ** 2
    return nodes, weights


class TorchOps:
    """The ops, each a method so that one step can be overridden."""

    # ------------------------------------------------------------------ activations
    def activation(self, name: str, params: dict | None = None) -> Callable[[Tensor], Tensor]:
        """The activation ``name`` with its parameters (``{"alpha": ...}``)."""
        if name not in ACTIVATIONS:
            raise ValueError(f"unknown activation {name!r}; known: {sorted(ACTIVATIONS)}")
        return ACTIVATIONS[name](**(params or {}))

    # ------------------------------------------------------------------ normalizations
    def norm_statistics(self, x: Tensor, dims: tuple[int, ...]) -> tuple[Tensor, Tensor]:
        """Mean and population variance over ``dims`` (kept), two-pass."""
        mean = x.mean(dim=dims, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
        return mean, var

    def normalize(self, x: Tensor, dims: tuple[int, ...], eps: float) -> Tensor:
        """``(x - mean) / sqrt(var + eps)`` over ``dims``."""
        mean, var = self.norm_statistics(x, dims)
        return (x - mean) * torch.rsqrt(var + eps)

    @staticmethod
    def to_grouped(x: Tensor, axis: int, groups: int) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
        """``x`` as (N, G, C // G, L) and the function that maps such a tensor back."""
        moved = torch.movedim(x, axis, 1)
        moved_shape = moved.shape
        channels = moved_shape[1]
        if groups < 1 or channels % groups:
            raise ValueError(f"groups={groups} must divide the {channels} channels")
        spatial = math.prod(moved_shape[2:])  # explicit: -1 is ambiguous for an empty batch
        grouped = moved.reshape(moved_shape[0], groups, channels // groups, spatial)

        def back(t: Tensor) -> Tensor:
            return torch.movedim(t.reshape(moved_shape), 1, axis)

        return grouped, back

    def group_affine(self, xhat: Tensor, gamma: Tensor | None, beta: Tensor | None,
                     per_group: bool) -> Tensor:
        """Scale and shift a grouped (N, G, K, L) tensor per channel or per group."""
        groups, per = xhat.shape[1], xhat.shape[2]
        if gamma is not None:
            scale = gamma.reshape(groups, 1, 1) if per_group else gamma.reshape(groups, per, 1)
            xhat = xhat * scale
        if beta is not None:
            shift = beta.reshape(groups, 1, 1) if per_group else beta.reshape(groups, per, 1)
            xhat = xhat + shift
        return xhat

    def grouped_norm(self, x: Tensor, groups: int | None, gamma: Tensor | None,
                     beta: Tensor | None, *, eps: float, axis: int, over_batch: bool = False,
                     per_group: bool = False) -> Tensor:
        """GN over ``groups`` (``None``: one group per channel), optionally over the batch."""
        channels = x.shape[axis]
        grouped, back = self.to_grouped(x, axis, channels if groups is None else groups)
        dims = (0, 2, 3) if over_batch else (2, 3)
        return back(self.group_affine(self.normalize(grouped, dims, eps), gamma, beta,
                                      per_group))

    def batch_norm(self, x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, *,
                   eps: float, axis: int) -> Tensor:
        """Training-mode batch normalization."""
        return self.grouped_norm(x, None, gamma, beta, eps=eps, axis=axis, over_batch=True)

    def instance_norm(self, x: Tensor, gamma: Tensor | None = None,
                      beta: Tensor | None = None, *, eps: float, axis: int) -> Tensor:
        """Instance normalization."""
        return self.grouped_norm(x, None, gamma, beta, eps=eps, axis=axis)

    def layer_norm(self, x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, *,
                   eps: float, axis: int) -> Tensor:
        """Layer normalization in the paper's sense (GN with one group, per-channel affine)."""
        return self.grouped_norm(x, 1, gamma, beta, eps=eps, axis=axis)

    def group_norm(self, x: Tensor, groups: int | None, gamma: Tensor | None = None,
                   beta: Tensor | None = None, *, eps: float, axis: int,
                   per_group: bool = False) -> Tensor:
        """Group normalization; ``per_group`` for ONNX-18's (G,) scale and bias."""
        return self.grouped_norm(x, groups, gamma, beta, eps=eps, axis=axis,
                                 per_group=per_group)

    def batch_norm_running_update(self, x: Tensor, running_mean: Tensor, running_var: Tensor,
                                  *, momentum: float, convention: str,
                                  axis: int) -> tuple[Tensor, Tensor]:
        """New running statistics ("torch": momentum on the batch, unbiased variance;
        "tf": momentum on the old value, biased variance; "tf_fused": as "tf", unbiased)."""
        grouped, _ = self.to_grouped(x, axis, x.shape[axis])
        mean, var = self.norm_statistics(grouped, (0, 2, 3))
        mean, var = mean.reshape(-1), var.reshape(-1)
        count = grouped.shape[0] * grouped.shape[3]
        if convention == "torch":
            if count < 2:
                raise ValueError("the torch convention needs two values per channel")
            var = var * (count / (count - 1))
            return ((1 - momentum) * running_mean + momentum * mean,
                    (1 - momentum) * running_var + momentum * var)
        if convention not in ("tf", "tf_fused"):
            raise ValueError(f"unknown momentum convention {convention!r}")
        if convention == "tf_fused":
            if count < 2:
                raise ValueError("the tf_fused convention needs two values per channel")
            var = var * (count / (count - 1))
        return (momentum * running_mean + (1 - momentum) * mean,
                momentum * running_var + (1 - momentum) * var)

    def batch_norm_eval(self, x: Tensor, running_mean: Tensor, running_var: Tensor,
                        gamma: Tensor | None = None, beta: Tensor | None = None, *,
                        eps: float, axis: int) -> Tensor:
        """Evaluation-mode batch normalization with given statistics."""
        shape = [1] * x.ndim
        shape[axis] = -1
        y = (x - running_mean.reshape(shape)) * torch.rsqrt(running_var.reshape(shape) + eps)
        if gamma is not None:
            y = y * gamma.reshape(shape)
        if beta is not None:
            y = y + beta.reshape(shape)
        return y

    def weight_standardization(self, w: Tensor, *, eps: float, axis: int) -> Tensor:
        """Each output filter (``axis``) standardized over its fan-in."""
        moved = torch.movedim(w, axis, 0)
        rows = self.normalize(moved.reshape(moved.shape[0], -1), (1,), eps)
        return torch.movedim(rows.reshape(moved.shape), 0, axis)

    # ------------------------------------------------------------------ proxy moments
    def quantile_points(self, n: int, dtype: torch.dtype) -> Tensor:
        """The official points ``sqrt(2) erfinv(2 (i + 1/2) / n - 1)``, built in float64."""
        i = torch.arange(n, dtype=torch.float64)
        return (math.sqrt(2.0) * torch.erfinv((2.0 * i + 1.0 - n) / n)).to(dtype)

    def proxy_point_count(self, n: int, channels: int) -> int:
        """How many proxy points to use (the official code: ``n``, whatever the channels)."""
        return n

    def proxy_pre_activation(self, points: Tensor, gamma: Tensor, beta: Tensor,
                             gamma_tilde: Tensor | None, beta_tilde: Tensor | None) -> Tensor:
        """``gamma * Y + beta`` with ``Y = (1 + gamma~) u + beta~``, shape (C, n)."""
        proxy = points[None, :]
        if gamma_tilde is not None:
            proxy = (1.0 + gamma_tilde)[:, None] * proxy
        if beta_tilde is not None:
            proxy = proxy + beta_tilde[:, None]
        return gamma[:, None] * proxy + beta[:, None]

    def proxy_variance(self, values: Tensor, mean: Tensor) -> Tensor:
        """Population variance over the points (two-pass)."""
        return ((values - mean[:, None]) ** 2).mean(dim=1)

    def quantile_moments(self, act: Callable[[Tensor], Tensor], gamma: Tensor, beta: Tensor,
                         gamma_tilde: Tensor | None, beta_tilde: Tensor | None,
                         n: int) -> tuple[Tensor, Tensor]:
        """The official estimator: mean and biased variance over ``n`` quantile points."""
        count = self.proxy_point_count(n, gamma.shape[0])
        points = self.quantile_points(count, gamma.dtype)
        values = act(self.proxy_pre_activation(points, gamma, beta, gamma_tilde, beta_tilde))
        mean = values.mean(dim=1)
        return mean, self.proxy_variance(values, mean)

    def exact_moments(self, act: Callable[[Tensor], Tensor], kinks: Sequence[float],
                      gamma: Tensor, beta: Tensor, gamma_tilde: Tensor | None,
                      beta_tilde: Tensor | None) -> tuple[Tensor, Tensor]:
        """Exact moments by split Gauss-Legendre quadrature in float64 (``n`` not used).

        The standard normal variable is integrated over [-10, 10], split at 0 and at the
        kink ``c = (k - m) / s`` of the activation (at ``-m / s`` for a smooth one), with
        `QUADRATURE_NODES` nodes per piece; the breakpoint is held constant under
        differentiation (the integral does not depend on it).
        """
        dtype = gamma.dtype
        g = gamma.double()
        m = g * (0.0 if beta_tilde is None else beta_tilde.double()) + beta.double()
        s = torch.abs(g * (1.0 + (0.0 if gamma_tilde is None else gamma_tilde.double())))
        kink = kinks[0] if kinks else 0.0
        safe_s = torch.where(s > 0, s, torch.ones_like(s)).detach()
        cut = torch.where(s > 0, (kink - m.detach()) / safe_s, torch.zeros_like(s))
        cut = cut.clamp(-_RANGE, _RANGE)
        low = torch.minimum(cut, torch.zeros_like(cut))
        high = torch.maximum(cut, torch.zeros_like(cut))
        edges = torch.stack([torch.full_like(cut, -_RANGE), low, high,
                             torch.full_like(cut, _RANGE)], dim=1)  # (C, 4)
        nodes, weights = gauss_legendre(QUADRATURE_NODES)
        left, right = edges[:, :-1, None], edges[:, 1:, None]  # (C, 3, 1)
        half = (right - left) / 2
        x = left + half * (nodes + 1.0)  # (C, 3, nodes)
        w = half * weights * torch.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        x, w = x.reshape(x.shape[0], -1), w.reshape(w.shape[0], -1)
        values = act(m[:, None] + s[:, None] * x)
        mean = (w * values).sum(dim=1)
        var = (w * (values - mean[:, None]) ** 2).sum(dim=1)
        return mean.to(dtype), var.to(dtype)

    def montecarlo_moments(self, act: Callable[[Tensor], Tensor], gamma: Tensor, beta: Tensor,
                           gamma_tilde: Tensor | None, beta_tilde: Tensor | None, n: int,
                           seed: int) -> tuple[Tensor, Tensor]:
        """Mean and biased variance over ``n`` seeded standard normal draws (float64)."""
        generator = torch.Generator().manual_seed(int(seed))
        draws = torch.randn(n, generator=generator, dtype=torch.float64)
        params = [None if p is None else p.double()
                  for p in (gamma, beta, gamma_tilde, beta_tilde)]
        values = act(self.proxy_pre_activation(draws, *params))
        mean = values.mean(dim=1)
        var = self.proxy_variance(values, mean)
        return mean.to(gamma.dtype), var.to(gamma.dtype)

    def proxy_moments(self, activation: str, params: dict | None, gamma: Tensor, beta: Tensor,
                      gamma_tilde: Tensor | None = None, beta_tilde: Tensor | None = None, *,
                      method: str = "quantile",
                      n: int | None = None, seed: int | None = None) -> tuple[Tensor, Tensor]:
        """Proxy mean and variance per channel by ``method``."""
        act = self.activation(activation, params)
        if method == "quantile":
            return self.quantile_moments(act, gamma, beta, gamma_tilde, beta_tilde,
                                         200 if n is None else n)
        if method in ("exact", "quadrature"):
            return self.exact_moments(act, _KINKS.get(activation, ()), gamma, beta,
                                      gamma_tilde, beta_tilde)
        if method == "montecarlo":
            return self.montecarlo_moments(act, gamma, beta, gamma_tilde, beta_tilde,
                                           100_000 if n is None else n,
                                           0 if seed is None else seed)
        raise ValueError(f"unknown proxy-moment method {method!r}")

    # ------------------------------------------------------------------ PN-Act and blocks
    def pn_scale(self, var: Tensor, eps: float) -> Tensor:
        """``1 / sqrt(var + eps)``: eps inside the square root."""
        return torch.rsqrt(var + eps)

    def pn_act(self, y: Tensor, gamma: Tensor, beta: Tensor, gamma_tilde: Tensor | None = None,
               beta_tilde: Tensor | None = None, *, activation: str = "relu",
               activation_params: dict | None = None, eps: float = 0.03,
               method: str = "quantile", n: int | None = 200, seed: int | None = None,
               axis: int = 1) -> Tensor:
        """PN-Act: ``(phi(gamma y + beta) - mu) / sqrt(var + eps)`` with the proxy moments."""
        act = self.activation(activation, activation_params)
        mean, var = self.proxy_moments(activation, activation_params, gamma, beta, gamma_tilde,
                                       beta_tilde, method=method, n=n, seed=seed)
        shape = [1] * y.ndim
        shape[axis] = -1
        activated = act(gamma.reshape(shape) * y + beta.reshape(shape))
        return (activated - mean.reshape(shape)) * self.pn_scale(var, eps).reshape(shape)

    def block_norm(self, x: Tensor, *, norm: str, groups: int | None, norm_eps: float,
                   axis: int) -> Tensor:
        """The norm of a block, without affine."""
        if norm == "gn":
            return self.group_norm(x, groups, eps=norm_eps, axis=axis)
        if groups is not None:
            raise ValueError(f"groups is only for norm='gn', got groups={groups}")
        table = {"bn": self.batch_norm, "ln": self.layer_norm, "in": self.instance_norm}
        if norm not in table:
            raise ValueError(f"unknown norm {norm!r}")
        return table[norm](x, eps=norm_eps, axis=axis)

    def norm_pn_act(self, x: Tensor, gamma: Tensor, beta: Tensor,
                    gamma_tilde: Tensor | None = None, beta_tilde: Tensor | None = None, *,
                    norm: str = "gn", groups: int | None = None, norm_eps: float = 1e-5,
                    axis: int = 1, **pn_kwargs: Any) -> Tensor:
        """A norm without affine, then PN-Act (``pn_kwargs``: the keywords of `pn_act`)."""
        y = self.block_norm(x, norm=norm, groups=groups, norm_eps=norm_eps, axis=axis)
        return self.pn_act(y, gamma, beta, gamma_tilde, beta_tilde, axis=axis, **pn_kwargs)

    def norm_act(self, x: Tensor, gamma: Tensor | None = None, beta: Tensor | None = None, *,
                 norm: str = "gn", groups: int | None = None, norm_eps: float = 1e-5,
                 activation: str = "relu", activation_params: dict | None = None,
                 axis: int = 1) -> Tensor:
        """A norm with its per-channel affine, then the activation."""
        y = self.block_norm(x, norm=norm, groups=groups, norm_eps=norm_eps, axis=axis)
        shape = [1] * y.ndim
        shape[axis] = -1
        if gamma is not None:
            y = y * gamma.reshape(shape)
        if beta is not None:
            y = y + beta.reshape(shape)
        return self.activation(activation, activation_params)(y)
