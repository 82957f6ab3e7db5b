"""Two small networks, an MLP and a CNN, with a selectable normalization.

Parameters and state are flat dicts of arrays with dotted names (``"stage1.conv.weight"``,
``"stage1.norm.gamma"``, ``"stage1.norm.running_mean"``). A model is a pair of functions::

    params, state = model.init(rng)
    logits, new_state = model.apply(params, state, x, training=True)

``apply`` is traceable by autograd with respect to ``params``; ``state`` (batch-norm running
statistics) is updated outside the traced graph. Hence the type hints: ``params`` as ``apply``
receives it, and the activations and logits computed from it, are ``Any`` (a dict of arrays,
or autograd's traced stand-in for one while a gradient is taken).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pnref import autograd_ops as ops
from pnref.nn import layers
from pnref.nn.flat_params import TracedParams, call_with_params
from pnref.nn.norm_layer import NormSpec, apply_norm, init_norm, parse_norm

__all__ = ["CNN", "MLP", "build_model"]

Params = dict[str, np.ndarray]


def _sub(tree: Mapping[str, Any], prefix: str) -> Mapping[str, Any]:
    """Entries of ``tree`` under ``prefix.``, with the prefix removed.

    Only the matching entries are read: under autograd every read of a traced dict is a
    node of the graph (a `TracedParams` is not read at all: the same vector, renamed).
    """
    if isinstance(tree, TracedParams):
        return tree.under(prefix)
    start = prefix + "."
    return {k[len(start):]: tree[k] for k in list(tree) if k.startswith(start)}


def _merge(into: dict, prefix: str, entries: Mapping[str, Any]) -> None:
    for k, v in entries.items():
        into[f"{prefix}.{k}"] = v


def _check_positive_ints(values: Iterable[Any], name: str) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in values):
        raise ValueError(f"{name} must be a non-empty sequence of positive ints, got {values}")
    return values


class _Network:
    """Shared plumbing: the norm spec, and norm + activation of one named layer."""

    spec: NormSpec
    activation: str

    def _add_norm(self, params: dict, state: dict, prefix: str, channels: int, *,
                  followed_by_activation: bool) -> None:
        p, s = init_norm(self.spec, channels, followed_by_activation=followed_by_activation)
        _merge(params, prefix, p)
        _merge(state, prefix, s)

    def _norm(self, params: Any, state: Mapping[str, np.ndarray], new_state: Params,
              prefix: str, x: Any, *, activation: str | None, training: bool) -> Any:
        out, s = apply_norm(
            self.spec, x, _sub(params, prefix), _sub(state, prefix),
            activation=activation, training=training,
        )
        _merge(new_state, prefix, s)
        return out

    def _weight(self, params: Any, name: str, output_axis: int) -> Any:
        """``params[name]``, standardized with a ``ws`` norm (the read and the
        standardization one node, `call_with_params`)."""
        if self.spec.weight_std:
            return call_with_params(ops.weight_standardization, (), params, (name,),
                                    axis=output_axis)
        return params[name]


@dataclass
class MLP(_Network):
    """Multi-layer perceptron: ``[dense -> norm -> activation] * len(hidden) -> dense``.

    Parameters
    ----------
    in_features : int
        Input size (images are flattened).
    num_classes : int
    hidden : tuple of int
    norm : str
        See `pnref.nn.norm_layer`; ``in`` is rejected (one value per channel).
    groups : int
        Groups for ``gn``.
    activation : str
    backend : str
        ``"numpy"`` or ``"numba"`` for the fused PN blocks.
    """

    in_features: int
    num_classes: int
    hidden: tuple[int, ...] = (64, 64)
    norm: str = "none"
    groups: int = 4
    activation: str = "relu"
    backend: str = "numpy"

    def __post_init__(self) -> None:
        _check_positive_ints((self.in_features, self.num_classes), "in_features/num_classes")
        self.hidden = _check_positive_ints(self.hidden, "hidden")
        self.spec = parse_norm(self.norm, groups=self.groups, backend=self.backend)
        if self.spec.kind == "in":
            raise ValueError("norm='in' is meaningless for an MLP (one value per channel)")

    def init(self, rng: np.random.Generator) -> tuple[Params, Params]:
        """He-initialized weights, zero biases, norms at their identity initialization."""
        params: Params = {}
        state: Params = {}
        fan_in = self.in_features
        for i, width in enumerate(self.hidden):
            params[f"dense{i}.weight"] = layers.he_normal(rng, (fan_in, width), fan_in)
            if self.spec.kind == "none":
                params[f"dense{i}.bias"] = np.zeros(width)
            self._add_norm(params, state, f"norm{i}", width, followed_by_activation=True)
            fan_in = width
        params["head.weight"] = layers.he_normal(rng, (fan_in, self.num_classes), fan_in)
        params["head.bias"] = np.zeros(self.num_classes)
        return params, state

    def apply(self, params: Any, state: Mapping[str, np.ndarray], x: np.ndarray, *,
              training: bool) -> tuple[Any, Params]:
        """Logits of shape (N, num_classes) and the new state.

        ``params`` and the logits are ``Any``: traced by autograd when a gradient is taken.
        """
        h = layers.flatten(x)
        new_state: Params = {}
        for i in range(len(self.hidden)):
            if f"dense{i}.bias" in params:  # no norm: x @ weight + bias, one node
                h = call_with_params(layers.affine, (h,), params,
                                     (f"dense{i}.weight", f"dense{i}.bias"))
            else:
                h = layers.dense(h, self._weight(params, f"dense{i}.weight", output_axis=1))
            h = self._norm(params, state, new_state, f"norm{i}", h,
                           activation=self.activation, training=training)
        logits = call_with_params(layers.affine, (h,), params, ("head.weight", "head.bias"))
        return logits, new_state


@dataclass
class CNN(_Network):
    """Small channels-first CNN.

    Stage ``s``: (a 2x2 pooling when ``s > 0``) -> conv 3x3 -> norm -> activation, then, with
    ``residual``, one block ``activation(h + norm(conv(norm_act(conv(h)))))`` whose second norm
    is not followed by an activation. Then global average pooling and a dense head.

    Parameters
    ----------
    in_channels, num_classes : int
    widths : tuple of int
        Channels of each stage.
    norm : str
        See `pnref.nn.norm_layer`.
    groups : int
        Groups for ``gn`` (must divide every width).
    residual : bool
    pool : str
        ``"max"`` or ``"avg"``.
    activation : str
    backend : str
        ``"numpy"`` or ``"numba"`` for the fused PN blocks.
    """

    in_channels: int
    num_classes: int
    widths: tuple[int, ...] = (16, 32)
    norm: str = "none"
    groups: int = 4
    residual: bool = False
    pool: str = "max"
    activation: str = "relu"
    backend: str = "numpy"

    def __post_init__(self) -> None:
        _check_positive_ints((self.in_channels, self.num_classes), "in_channels/num_classes")
        self.widths = _check_positive_ints(self.widths, "widths")
        if self.pool not in ("max", "avg"):
            raise ValueError(f"pool must be 'max' or 'avg', got {self.pool!r}")
        self.spec = parse_norm(self.norm, groups=self.groups, backend=self.backend)

    def _add_conv(self, params: Params, rng: np.random.Generator, name: str, c_in: int,
                  c_out: int) -> None:
        params[f"{name}.weight"] = layers.he_normal(rng, (c_out, c_in, 3, 3), c_in * 9)
        if self.spec.kind == "none":
            params[f"{name}.bias"] = np.zeros(c_out)

    def _conv(self, params: Any, name: str, x: Any) -> Any:
        """Convolution (weight read inside its node) and, without a norm, the bias."""
        if self.spec.weight_std:
            out = layers.conv2d(x, self._weight(params, f"{name}.weight", output_axis=0))
        else:
            out = call_with_params(layers.conv2d, (x,), params, (f"{name}.weight",))
        if f"{name}.bias" in params:
            out = call_with_params(layers.channel_bias, (out,), params, (f"{name}.bias",))
        return out

    def init(self, rng: np.random.Generator) -> tuple[Params, Params]:
        """He-initialized weights, zero biases, norms at their identity initialization."""
        params: Params = {}
        state: Params = {}
        c_in = self.in_channels
        for s, width in enumerate(self.widths):
            self._add_conv(params, rng, f"stage{s}.conv", c_in, width)
            self._add_norm(params, state, f"stage{s}.norm", width, followed_by_activation=True)
            if self.residual:
                self._add_conv(params, rng, f"stage{s}.res.conv1", width, width)
                self._add_norm(params, state, f"stage{s}.res.norm1", width,
                               followed_by_activation=True)
                self._add_conv(params, rng, f"stage{s}.res.conv2", width, width)
                self._add_norm(params, state, f"stage{s}.res.norm2", width,
                               followed_by_activation=False)
            c_in = width
        params["head.weight"] = layers.he_normal(rng, (c_in, self.num_classes), c_in)
        params["head.bias"] = np.zeros(self.num_classes)
        return params, state

    def apply(self, params: Any, state: Mapping[str, np.ndarray], x: np.ndarray, *,
              training: bool) -> tuple[Any, Params]:
        """Logits of shape (N, num_classes) and the new state.

        ``params`` and the logits are ``Any``: traced by autograd when a gradient is taken.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must have shape (N, {self.in_channels}, H, W), got {x.shape}")
        pool = layers.max_pool2d if self.pool == "max" else layers.avg_pool2d
        new_state: Params = {}
        h = x
        for s in range(len(self.widths)):
            if s > 0:
                h = pool(h, 2)
            h = self._conv(params, f"stage{s}.conv", h)
            h = self._norm(params, state, new_state, f"stage{s}.norm", h,
                           activation=self.activation, training=training)
            if self.residual:
                r = self._conv(params, f"stage{s}.res.conv1", h)
                r = self._norm(params, state, new_state, f"stage{s}.res.norm1", r,
                               activation=self.activation, training=training)
                r = self._conv(params, f"stage{s}.res.conv2", r)
                r = self._norm(params, state, new_state, f"stage{s}.res.norm2", r,
                               activation=None, training=training)
                h = ops.activation(h + r, self.activation)
        logits = call_with_params(layers.affine, (layers.global_avg_pool(h),), params,
                                  ("head.weight", "head.bias"))
        return logits, new_state


def build_model(name: str, *, in_shape: tuple[int, ...], num_classes: int, norm: str,
                **options: Any) -> MLP | CNN:
    """Build ``"mlp"`` or ``"cnn"`` for inputs of shape ``in_shape`` (without the batch axis).

    ``options`` go to the model's constructor (``widths``, ``hidden``, ``groups``, ...).
    """
    if name == "mlp":
        return MLP(in_features=int(np.prod(in_shape)), num_classes=num_classes, norm=norm,
                   **options)
    if name == "cnn":
        if len(in_shape) != 3:
            raise ValueError(f"in_shape must be (C, H, W) for the cnn, got {in_shape}")
        return CNN(in_channels=in_shape[0], num_classes=num_classes, norm=norm, **options)
    raise ValueError(f"model must be 'mlp' or 'cnn', got {name!r}")
