"""Layer-1/2 ops registered as autograd primitives with their hand-derived VJPs.

``autograd.grad`` of a loss built from these functions calls pnref's own backward passes:
each primitive here wraps one forward function and its ``<op>_vjp``, which is computed once
per backward pass and shared among every argument autograd asks a gradient for.

Differentiable arguments are the array arguments (data, gamma, beta, gamma~, beta~,
running statistics); integers (``groups``) and keyword options (``eps``, ``axis``,
``activation``, ``method``, ``n``, ``backend``) are constants. An argument passed as
``None`` (an absent gamma/beta) is never traced.

Example
-------
>>> import autograd, numpy as np
>>> from pnref import autograd_ops as ops
>>> x = np.random.default_rng(0).normal(size=(4, 3, 5))
>>> g = autograd.grad(lambda gamma: ops.layer_norm(x, gamma).sum() ** 2)(np.ones(3))
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np
from autograd.extend import defvjp_argnums, primitive

from pnref import norms as _norms
from pnref.activations import Activation
from pnref.activations import activation as _make_activation
from pnref.blocks import norm_act as _norm_act
from pnref.blocks import norm_act_vjp as _norm_act_vjp
from pnref.blocks import norm_pn_act as _norm_pn_act
from pnref.blocks import norm_pn_act_vjp as _norm_pn_act_vjp
from pnref.pn_act import act as _act
from pnref.pn_act import act_vjp as _act_vjp
from pnref.pn_act import activation_by_name as _activation_by_name
from pnref.pn_act import pn_act as _pn_act
from pnref.pn_act import pn_act_vjp as _pn_act_vjp

__all__ = [
    "batch_norm",
    "batch_norm_eval",
    "instance_norm",
    "group_norm",
    "layer_norm",
    "weight_standardization",
    "activation",
    "act",
    "pn_act",
    "norm_act",
    "norm_pn_act",
    "make_primitive",
    "make_primitive_with_residuals",
]


def make_primitive(
    forward: Callable[..., np.ndarray],
    vjp: Callable[..., tuple],
    grad_positions: tuple[int, ...],
) -> Callable[..., np.ndarray]:
    """Wrap ``forward`` as an autograd primitive whose backward pass is ``vjp``.

    Parameters
    ----------
    forward : callable
        ``forward(*args, **kwargs) -> ndarray``.
    vjp : callable
        ``vjp(g, *args, **kwargs) -> tuple``: one gradient per entry of ``grad_positions``,
        in that order (the layer-1 VJP contract).
    grad_positions : tuple of int
        The positional indices of ``forward``'s differentiable arguments, in the order
        ``vjp`` returns their gradients.

    Returns
    -------
    callable
        Same signature as ``forward``, traceable by autograd.
    """
    prim = primitive(forward)
    slot_of = {position: slot for slot, position in enumerate(grad_positions)}

    def vjp_maker(argnums, ans, args, kwargs):
        unknown = [a for a in argnums if a not in slot_of]
        if unknown:
            raise NotImplementedError(
                f"{forward.__name__} has no gradient for positional argument(s) {unknown}"
            )

        def backward(g):
            grads = vjp(g, *args, **kwargs)
            return tuple(grads[slot_of[a]] for a in argnums)

        return backward

    defvjp_argnums(prim, vjp_maker)
    _describe(prim, lambda *args, **kwargs: (forward(*args, **kwargs), None), None, vjp,
              grad_positions)
    return prim


def _describe(prim, forward_saving, vjp_saved, vjp, grad_positions) -> None:
    """Keep a primitive's plain functions on it, for callers that run the same forward and
    VJP inside a node of their own (`pnref.nn.flat_params.call_with_params`).

    ``prim.forward_saving(*args, **kwargs) -> (out, saved)``; ``prim.vjp_saved(g, saved,
    positions)`` (None when nothing is saved); ``prim.vjp(g, *args, **kwargs)``;
    ``prim.grad_positions``.
    """
    prim.forward_saving = forward_saving
    prim.vjp_saved = vjp_saved
    prim.vjp = vjp
    prim.grad_positions = tuple(grad_positions)


class _Residuals(threading.local):
    """The last traced forward's output and what its VJP may reuse (one slot per thread)."""

    output: object = None
    saved: object = None


_residuals = _Residuals()


def make_primitive_with_residuals(
    forward_saving: Callable[..., tuple[np.ndarray, object]],
    vjp_saved: Callable[[np.ndarray, object, tuple[int, ...]], tuple],
    vjp: Callable[..., tuple],
    grad_positions: tuple[int, ...],
) -> Callable[..., np.ndarray]:
    """Like `make_primitive`, but the backward pass reuses what the forward computed.

    Parameters
    ----------
    forward_saving : callable
        ``forward_saving(*args, **kwargs) -> (out, saved)``; ``saved`` (or ``None``) holds
        what the VJP would otherwise recompute.
    vjp_saved : callable
        ``vjp_saved(g, saved, positions) -> tuple``: the gradients with respect to the
        positional arguments ``positions`` (in that order) from ``saved``; it may skip the
        others (the input images of a network need no gradient).
    vjp : callable
        ``vjp(g, *args, **kwargs) -> tuple``: the same gradients from the arguments, used
        when nothing was saved.
    grad_positions : tuple of int
        As for `make_primitive`.

    Notes
    -----
    autograd builds a node's VJP right after running its forward, in the same thread
    (``autograd.tracer``). The forward leaves ``(out, saved)`` in a thread-local slot;
    the VJP maker takes it if its ``ans`` is that very ``out`` object, and falls back to
    ``vjp`` otherwise. Both paths return the same numbers: ``saved`` is exactly what
    ``vjp`` would recompute.
    """
    slot_of = {position: slot for slot, position in enumerate(grad_positions)}

    def forward(*args, **kwargs):
        out, saved = forward_saving(*args, **kwargs)
        _residuals.output, _residuals.saved = out, saved
        return out

    forward.__name__ = getattr(forward_saving, "__name__", "forward")
    forward.__doc__ = forward_saving.__doc__
    prim = primitive(forward)

    def vjp_maker(argnums, ans, args, kwargs):
        unknown = [a for a in argnums if a not in slot_of]
        if unknown:
            raise NotImplementedError(
                f"{forward.__name__} has no gradient for positional argument(s) {unknown}"
            )
        saved = _residuals.saved if _residuals.output is ans else None
        _residuals.output = _residuals.saved = None

        def backward(g):
            if saved is not None:
                return tuple(vjp_saved(g, saved, tuple(argnums)))
            grads = vjp(g, *args, **kwargs)
            return tuple(grads[slot_of[a]] for a in argnums)

        return backward

    defvjp_argnums(prim, vjp_maker)
    _describe(prim, forward_saving, vjp_saved, vjp, grad_positions)
    return prim


# --- normalizations -------------------------------------------------------------------------
batch_norm = make_primitive(_norms.batch_norm, _norms.batch_norm_vjp, (0, 1, 2))
instance_norm = make_primitive(_norms.instance_norm, _norms.instance_norm_vjp, (0, 1, 2))
layer_norm = make_primitive(_norms.layer_norm, _norms.layer_norm_vjp, (0, 1, 2))
group_norm = make_primitive(_norms.group_norm, _norms.group_norm_vjp, (0, 2, 3))
batch_norm_eval = make_primitive(
    _norms.batch_norm_eval, _norms.batch_norm_eval_vjp, (0, 1, 2, 3, 4)
)


def _weight_standardization_vjp_saved(g, saved, positions):
    """The gradient with respect to ``w`` (the only differentiable argument) from ``saved``."""
    return _norms.weight_standardization_vjp_saved(g, saved)


# The VJP reuses the forward's statistics: a training step standardizes every convolution
# weight once per step, and recomputing the statistics doubled the cost.
weight_standardization = make_primitive_with_residuals(
    _norms.weight_standardization_saving, _weight_standardization_vjp_saved,
    _norms.weight_standardization_vjp, (0,),
)

# --- activation steps -----------------------------------------------------------------------
act = make_primitive(_act, _act_vjp, (0, 1, 2))
pn_act = make_primitive(_pn_act, _pn_act_vjp, (0, 1, 2, 3, 4))


def _activation_of(name, params: dict) -> Activation:
    """The activation by name, built once per distinct call (`pnref.pn_act.activation_by_name`)."""
    try:
        return _activation_by_name(name, tuple(sorted(params.items())))
    except TypeError:  # an unhashable argument: let `pnref.activation` judge it
        return _make_activation(name, **params)


def _activation_forward(z: np.ndarray, name: str = "relu", **params) -> np.ndarray:
    return _activation_of(name, params).f(z)


def _activation_vjp(g: np.ndarray, z: np.ndarray, name: str = "relu", **params) -> tuple:
    return (g * _activation_of(name, params).df(z),)


activation = make_primitive(_activation_forward, _activation_vjp, (0,))
activation.__doc__ = """Elementwise activation ``phi(z)`` by name (see `pnref.activation`).

    Equations
    ---------
    out = phi(z);   dz = g * phi'(z)   (the left derivative at a kink)
    """

# --- fused blocks (``backend="numpy"`` or ``"numba"``) -------------------------------------


def _fused_block(reference, reference_vjp, kernel_saving: str, kernel_vjp_saved: str,
                 grad_positions: tuple[int, ...]):
    """The primitive of a block of `pnref.blocks` (``reference``, by ``backend``) whose
    backward reuses what the forward saved: with ``backend="numba"``, the kernels'
    validated set-up and norm statistics (`pnref.kernels.fused_blocks.<kernel_saving>` and
    ``<kernel_vjp_saved>``, imported on first use so that Numba loads only when asked);
    with the NumPy reference nothing is saved and ``reference_vjp`` runs."""
    def saving(*args, backend: str = "numpy", **kwargs):
        if backend == "numba":
            from pnref.kernels import fused_blocks

            return getattr(fused_blocks, kernel_saving)(*args, **kwargs)
        return reference(*args, backend=backend, **kwargs), None

    def vjp_saved(g, saved, positions):
        from pnref.kernels import fused_blocks

        grads = getattr(fused_blocks, kernel_vjp_saved)(g, saved)
        return tuple(grads[p] for p in positions)

    saving.__name__ = saving.__qualname__ = f"_{kernel_saving}"
    saving.__doc__ = reference.__doc__
    return make_primitive_with_residuals(saving, vjp_saved, reference_vjp, grad_positions)


norm_act = _fused_block(_norm_act, _norm_act_vjp, "norm_act_saving", "norm_act_vjp_saved",
                        (0, 1, 2))
norm_pn_act = _fused_block(_norm_pn_act, _norm_pn_act_vjp, "norm_pn_act_saving",
                           "norm_pn_act_vjp_saved", (0, 1, 2, 3, 4))
