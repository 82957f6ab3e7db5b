"""The adapter protocol through which ``pnref golden verify`` calls an implementation.

An adapter is any object with a ``name`` and two methods::

    forward(op, inputs, attrs) -> {output name: array}
    vjp(op, inputs, attrs, cotangents) -> {input name: gradient array}

- ``op`` is one of the op names of `pnref.golden.ops.OPS` (``"group_norm"``,
  ``"pn_act"``, ``"proxy_moments"`` ...).
- ``inputs`` maps input names to NumPy arrays in the case's dtype (float16, float32 or
  float64); optional inputs a case does not use are absent.
- ``attrs`` is a plain dict of the op's attributes (``axis``, ``eps``, ``groups``,
  ``activation`` ...), exactly as listed in ``docs/verification.md``.
- ``cotangents`` maps each output name to its cotangent, in the case's dtype.
- Returned arrays must have the expected shapes and the case's dtype. ``vjp`` returns a
  gradient for every input present in ``inputs``.

Anything the adapter raises becomes a failed case with the exception's message; it never
stops the run. The default adapter, `PnrefAdapter`, is pnref's own fast path.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pnref.golden.ops import OPS

__all__ = ["GoldenAdapter", "PnrefAdapter", "load_adapter", "DEFAULT_ADAPTER"]

#: ``--impl`` value of the default implementation.
DEFAULT_ADAPTER = "pnref.golden.adapter:PnrefAdapter"


@runtime_checkable
class GoldenAdapter(Protocol):
    """What an implementation provides to be verified (see the module docstring)."""

    name: str

    def forward(self, op: str, inputs: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any]) -> Mapping[str, np.ndarray]:
        """Outputs of ``op`` for ``inputs`` and ``attrs``."""
        ...

    def vjp(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
            cotangents: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        """Gradients of ``sum(cotangent * output)`` with respect to every present input."""
        ...


def _fast_blocks():
    """pnref's Numba blocks if that layer is installed, else ``None``."""
    try:
        return importlib.import_module("pnref.blocks")
    except ImportError:
        return None


#: The standalone norms the fast path runs as ``norm_act`` with the identity activation.
_NORM_AS_BLOCK = {"batch_norm": "bn", "instance_norm": "in", "layer_norm": "ln",
                  "group_norm": "gn"}


class PnrefAdapter:
    """pnref itself: the Numba fast path where pnref has one, the NumPy math core elsewhere.

    Inputs are passed in the case's dtype and results come back in it, as any external
    implementation would be called. With `pnref.blocks` available, the blocks run with
    ``backend="numba"``, and so do the four grouped norms (as ``norm_act`` with the identity
    activation; an ONNX-18 per-group affine is expanded to per-channel and its gradient
    summed back). The other ops (running statistics, evaluation-mode BN, weight
    standardization, proxy moments, PN-Act alone) have no separate fast path and run on the
    math core.
    """

    name = "pnref"

    def __init__(self) -> None:
        self._blocks = _fast_blocks()

    def _block(self, op: str, inputs, attrs, cotangents=None):
        from pnref.golden.ops import activation_of

        blocks = self._blocks
        names = OPS[op].inputs
        args = [inputs.get(k) for k in names]
        kwargs: dict[str, Any] = {
            "norm": attrs["norm"], "groups": attrs.get("groups"), "norm_eps": attrs["norm_eps"],
            "activation": activation_of(attrs), "axis": attrs["axis"], "backend": "numba",
        }
        if op == "norm_pn_act":
            kwargs.update(eps=attrs["eps"], method=attrs["method"], n=attrs["n"])
        if cotangents is None:
            return {"out": getattr(blocks, op)(*args, **kwargs)}
        grads = getattr(blocks, f"{op}_vjp")(cotangents["out"], *args, **kwargs)
        return {k: g for k, g in zip(names, grads, strict=True) if k in inputs}

    def _norm(self, op: str, inputs, attrs, cotangents=None):
        from pnref.golden.ops import expand_group_affine, reduce_group_affine

        channels = inputs["x"].shape[attrs["axis"]]
        per_group = attrs.get("affine", "per_channel") == "per_group"
        block_inputs = dict(inputs)
        if per_group:
            for k in ("gamma", "beta"):
                if k in inputs:
                    block_inputs[k] = expand_group_affine(inputs[k], channels)
        block_attrs = {"norm": _NORM_AS_BLOCK[op], "norm_eps": attrs["eps"],
                       "groups": attrs.get("groups") if op == "group_norm" else None,
                       "activation": "identity", "activation_params": {}, "axis": attrs["axis"]}
        if cotangents is None:
            return {"y": self._block("norm_act", block_inputs, block_attrs)["out"]}
        grads = self._block("norm_act", block_inputs, block_attrs, {"out": cotangents["y"]})
        if per_group:
            for k in ("gamma", "beta"):
                if k in grads:
                    grads[k] = reduce_group_affine(grads[k], int(attrs["groups"]))
        return grads

    def _fast(self, op: str):
        if self._blocks is None:
            return None
        if op in ("norm_pn_act", "norm_act"):
            return self._block
        if op in _NORM_AS_BLOCK:
            return self._norm
        return None

    def forward(self, op, inputs, attrs):
        """Outputs of ``op`` (see `GoldenAdapter`)."""
        fast = self._fast(op)
        if fast is not None:
            return fast(op, inputs, attrs)
        return _in_dtype(OPS[op].forward(inputs, attrs), inputs)

    def vjp(self, op, inputs, attrs, cotangents):
        """Gradients for ``op`` (see `GoldenAdapter`)."""
        fast = self._fast(op)
        if fast is not None:
            return fast(op, inputs, attrs, cotangents)
        return _in_dtype(OPS[op].vjp(inputs, attrs, cotangents), inputs)


def _in_dtype(arrays: Mapping[str, np.ndarray], inputs: Mapping[str, np.ndarray]):
    dtype = np.result_type(*inputs.values())
    return {k: np.asarray(v).astype(dtype) for k, v in arrays.items()}


def load_adapter(spec: str) -> GoldenAdapter:
    """Load an adapter from ``"MODULE:OBJECT"``.

    ``OBJECT`` may be an adapter instance, or a class or factory called with no arguments.

    Raises
    ------
    ValueError
        If ``spec`` is not of the form ``MODULE:OBJECT`` or the object is no adapter.
    ImportError, AttributeError
        If the module or the object does not exist (the message names which).
    """
    module_name, sep, object_name = spec.partition(":")
    if not sep or not module_name or not object_name:
        raise ValueError(f"--impl must look like MODULE:OBJECT, got {spec!r}")
    module = importlib.import_module(module_name)
    try:
        obj = getattr(module, object_name)
    except AttributeError:
        raise AttributeError(f"module {module_name!r} has no attribute {object_name!r}") from None
    adapter = obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "forward")) \
        else obj
    if not (hasattr(adapter, "forward") and hasattr(adapter, "vjp")):
        raise ValueError(f"{spec} is not a golden adapter: it needs forward() and vjp() methods")
    if not hasattr(adapter, "name"):
        adapter.name = spec
    return adapter
