"""The adapter protocol through which ``pnref golden verify`` calls an implementation.

An adapter is any object with a ``name`` and two methods, and optionally a third::

    forward(op, inputs, attrs) -> {output name: array}
    vjp(op, inputs, attrs, cotangents) -> {input name: gradient array}
    supports(op, attrs, dtype) -> bool          (optional)

- ``op`` is one of the op names of `pnref.golden.ops.OPS` (``"group_norm"``,
  ``"pn_act"``, ``"proxy_moments"`` ...).
- ``inputs`` maps input names to NumPy arrays in the case's dtype (float16, float32 or
  float64); optional inputs a case does not use are absent.
- ``attrs`` is a plain dict of the op's attributes (``axis``, ``eps``, ``groups``,
  ``activation`` ...), exactly as listed in ``docs/verification.md``.
- ``cotangents`` maps each output name to its cotangent, in the case's dtype.
- Returned arrays must have the expected shapes and the case's dtype. ``vjp`` returns a
  gradient for every input present in ``inputs``.

What the implementation does not support it says by raising ``NotImplementedError`` (from
``forward``: the case is *unsupported*; from ``vjp`` alone: the case's gradients are), or by
answering False from ``supports`` before it is called. Anything else the adapter raises,
``SystemExit`` included, is a failed case with the exception's message; it never stops the
run. The default adapter, `PnrefAdapter`, is pnref's own fast path.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from pnref.golden.ops import OPS

__all__ = ["GoldenAdapter", "PnrefAdapter", "load_adapter", "AdapterLoadError",
           "DEFAULT_ADAPTER", "describe_exception"]

#: ``--impl`` value of the default implementation.
DEFAULT_ADAPTER = "pnref.verification.adapter:PnrefAdapter"

#: Modules that moved; an ``--impl`` naming the old module loads from the new one.
_MOVED = {"pnref.golden.adapter": "pnref.verification.adapter"}


class AdapterLoadError(ValueError):
    """The adapter named by ``--impl`` cannot be imported, found or constructed."""


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

    def _block(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
               cotangents: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
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

    def _norm(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
              cotangents: Mapping[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
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

    def forward(self, op: str, inputs: Mapping[str, np.ndarray],
                attrs: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """Outputs of ``op`` (see `GoldenAdapter`)."""
        fast = self._fast(op)
        if fast is not None:
            return fast(op, inputs, attrs)
        return _in_dtype(OPS[op].forward(inputs, attrs), inputs)

    def vjp(self, op: str, inputs: Mapping[str, np.ndarray], attrs: Mapping[str, Any],
            cotangents: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Gradients for ``op`` (see `GoldenAdapter`)."""
        fast = self._fast(op)
        if fast is not None:
            return fast(op, inputs, attrs, cotangents)
        return _in_dtype(OPS[op].vjp(inputs, attrs, cotangents), inputs)


def _in_dtype(arrays: Mapping[str, np.ndarray],
              inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    dtype = np.result_type(*inputs.values())
    return {k: np.asarray(v).astype(dtype) for k, v in arrays.items()}


def describe_exception(exc: BaseException) -> str:
    """``Type: message (at file.py:line)`` of an exception, where it was raised."""
    import traceback

    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    frames = traceback.extract_tb(exc.__traceback__)
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{text.split(' (', 1)[0]} (at {Path(exc.filename).name}:{exc.lineno})"
    if frames:
        return f"{text} (at {Path(frames[-1].filename).name}:{frames[-1].lineno})"
    return text


def _import_module(module_name: str):
    """Import a module by dotted name or from a ``.py`` path, the current directory first."""
    if module_name.endswith(".py") or os.sep in module_name or "/" in module_name:
        path = Path(module_name).expanduser().resolve()
        if not path.is_file():
            raise AdapterLoadError(f"--impl file {module_name} does not exist")
        name = f"_pnref_adapter_{path.stem}"
        if str(path.parent) not in sys.path:  # its sibling modules import as usual
            sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:  # as ``python -m`` does
        sys.path.insert(0, cwd)
    return importlib.import_module(_MOVED.get(module_name, module_name))


def load_adapter(spec: str) -> GoldenAdapter:
    """Load an adapter from ``"MODULE:OBJECT"`` or ``"path/to/file.py:OBJECT"``.

    ``MODULE`` is found as ``python -m`` would (the current directory first); a path to a
    ``.py`` file is loaded from that file. ``OBJECT`` may be an adapter instance, or a class
    or factory called with no arguments.

    Raises
    ------
    AdapterLoadError
        If ``spec`` is malformed, the module cannot be imported (any exception while
        importing, a ``SyntaxError`` or ``SystemExit`` included), the object does not exist,
        building it raises, or it is no adapter. The message names the cause.
    """
    module_name, sep, object_name = spec.rpartition(":")
    if not sep or not module_name or not object_name:
        raise AdapterLoadError(f"--impl must look like MODULE:OBJECT or path/to/file.py:OBJECT, "
                               f"got {spec!r}")
    try:
        module = _import_module(module_name)
    except AdapterLoadError:
        raise
    except ModuleNotFoundError as exc:
        raise AdapterLoadError(f"cannot import --impl module {module_name!r}: {exc} (searched "
                               "the current directory and the Python path)") from None
    except BaseException as exc:  # noqa: BLE001 - any failure of foreign code, SystemExit too
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AdapterLoadError(f"importing --impl module {module_name!r} raised "
                               f"{describe_exception(exc)}") from None
    try:
        obj = getattr(module, object_name)
    except AttributeError:
        raise AdapterLoadError(f"module {module_name!r} has no attribute {object_name!r}"
                               ) from None
    try:
        factory = isinstance(obj, type) or (callable(obj) and not hasattr(obj, "forward"))
        adapter = obj() if factory else obj
    except BaseException as exc:  # noqa: BLE001
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AdapterLoadError(f"constructing --impl {spec} raised {describe_exception(exc)}"
                               ) from None
    if not all(callable(getattr(adapter, m, None)) for m in ("forward", "vjp")):
        raise AdapterLoadError(f"{spec} is not a golden adapter: it needs forward() and vjp() "
                               "methods")
    if not hasattr(adapter, "name"):
        try:
            adapter.name = spec
        except AttributeError:
            pass
    return adapter
