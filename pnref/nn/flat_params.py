"""Gradients with respect to a dict of parameter arrays, traced through one flat vector.

autograd can differentiate with respect to a dict directly, but each read ``params[name]``
of a traced dict is then a node whose backward pass builds a whole dict of zero arrays and
adds it to the running gradient: with k parameters, a step costs O(k^2) array operations
in the bookkeeping alone (about a tenth of a training step of the small CNN). Tracing one
flat vector instead, each parameter is a slice of it (its backward pass adds the slice's
gradient into a single vector in place: `parameter_view`), and the dict is rebuilt outside
the trace. The views' backward pass is plain NumPy, so these gradients are first-order
(which is all a training step takes).

A layer whose op is an `pnref.autograd_ops` primitive can go one step further:
`call_with_params` runs the op with its parameters read from the vector *inside* one node
(`TracedParams`, what the traced loss receives), so a block with four parameters is one
node instead of five. autograd's bookkeeping costs tens of microseconds per node, which at
the small batches of `pnref.experiments.batch_size` was a third of a training step.

The gradient is the same function either way; only the order in which autograd adds
the contributions of a parameter used twice could differ, which the models of
`pnref.nn.models` do not do (every parameter is read once per forward pass).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, NamedTuple

import autograd
import numpy as np
from autograd.core import SparseObject, vspace
from autograd.extend import defvjp, defvjp_argnums, primitive

__all__ = ["FlatLayout", "TracedParams", "call_with_params", "parameter_view",
           "value_and_grad_of_params", "value_and_grad_of_vector"]

#: Where one parameter lives in the flat vector: ``vector[start:stop].reshape(shape)``.
Span = tuple[int, int, tuple[int, ...]]


@primitive
def parameter_view(vector: np.ndarray, start: int, stop: int,
                   shape: tuple[int, ...]) -> np.ndarray:
    """``vector[start:stop]`` reshaped to ``shape``: one autograd node per parameter.

    Equations
    ---------
    forward: ``out = reshape(vector[start:stop], shape)``;
    backward: ``dvector[start:stop] += ravel(g)`` (added in place into the one gradient
    vector, the other entries untouched).
    """
    return vector[start:stop].reshape(shape)


def _parameter_view_vjp(ans, vector, start, stop, shape):
    space = vspace(vector)

    def vjp(g):
        def add_into(total: np.ndarray) -> np.ndarray:
            total[start:stop] += np.reshape(g, -1)
            return total

        return SparseObject(space, add_into)  # autograd adds it into the running gradient

    return vjp


defvjp(parameter_view, _parameter_view_vjp)


def _add_slices_into(space, spans: tuple[Span | None, ...], grads: tuple) -> SparseObject:
    """A gradient of the flat vector that is ``grads[k]`` on ``spans[k]`` and zero
    elsewhere, added in place into autograd's running gradient (as `parameter_view`'s)."""
    def add_into(total: np.ndarray) -> np.ndarray:
        for span, grad in zip(spans, grads, strict=True):
            if span is not None:
                total[span[0]:span[1]] += np.reshape(grad, -1)
        return total

    return SparseObject(space, add_into)


class _BoundCall(NamedTuple):
    """An op and where its parameters live: the constant part of a `_bound_op` node."""

    op: Callable[..., Any]  # a primitive of `pnref.autograd_ops` (with its plain functions)
    spans: tuple[Span | None, ...]  # per parameter; None for an absent (None) parameter
    kwargs: dict[str, Any]


class _LastForward(threading.local):
    """The last `_bound_op` forward's output and what its op saved (one slot per thread)."""

    output: object = None
    saved: object = None


_last_forward = _LastForward()


def _read_spans(vector: np.ndarray, spans: tuple[Span | None, ...]) -> tuple:
    return tuple(None if span is None else vector[span[0]:span[1]].reshape(span[2])
                 for span in spans)


@primitive
def _bound_op(vector: np.ndarray, call: _BoundCall, *inputs: Any) -> np.ndarray:
    """``call.op(*inputs, *parameters, **call.kwargs)``, the parameters read from
    ``vector`` at ``call.spans``: one autograd node for the op and all its parameters.

    Equations
    ---------
    forward: ``out = op(inputs, p_1, ..., p_k)``, ``p_j = reshape(vector[span_j])``;
    backward: ``dinputs`` and ``dp_j`` from the op's own VJP, ``dvector[span_j] += dp_j``.
    """
    out, saved = call.op.forward_saving(*inputs, *_read_spans(vector, call.spans),
                                        **call.kwargs)
    _last_forward.output, _last_forward.saved = out, saved
    return out


def _bound_op_vjp_maker(argnums, ans, args, kwargs):
    vector, call, *inputs = args
    op = call.op
    # autograd builds the VJP right after the forward, in the same thread: the op's saved
    # residuals are those of this very output (else recomputed from the arguments).
    saved = _last_forward.saved if _last_forward.output is ans else None
    _last_forward.output = _last_forward.saved = None
    first_param = len(inputs)
    # The op's positional arguments whose gradients are wanted: traced inputs, then (if the
    # vector is traced) every parameter present.
    positions = [a - 2 for a in argnums if a >= 2]
    if 0 in argnums:
        positions += [first_param + k for k, span in enumerate(call.spans) if span is not None]
    positions = tuple(positions)
    unknown = [p for p in positions if p not in op.grad_positions]
    if unknown:
        raise NotImplementedError(
            f"{getattr(op, '__name__', op)} has no gradient for positional argument(s) {unknown}")
    space = vspace(vector) if 0 in argnums else None

    def backward(g):
        if saved is not None and op.vjp_saved is not None:
            grads = tuple(op.vjp_saved(g, saved, positions))
        else:
            every = op.vjp(g, *inputs, *_read_spans(vector, call.spans), **call.kwargs)
            slot_of = {p: k for k, p in enumerate(op.grad_positions)}
            grads = tuple(every[slot_of[p]] for p in positions)
        of_position = dict(zip(positions, grads, strict=True))
        result = []
        for a in argnums:
            if a == 0:
                result.append(_add_slices_into(space, call.spans, tuple(
                    None if span is None else of_position[first_param + k]
                    for k, span in enumerate(call.spans))))
            else:
                result.append(of_position[a - 2])
        return tuple(result)

    return backward


defvjp_argnums(_bound_op, _bound_op_vjp_maker)


class FlatLayout:
    """Where each named array lives in one flat vector (names in the dict's order).

    Parameters
    ----------
    params : mapping of str to ndarray
        The arrays; all must share one floating dtype.

    Equations
    ---------
    With sizes n_k and offsets o_k = n_1 + ... + n_{k-1}, entry k is
    ``vector[o_k : o_k + n_k].reshape(shape_k)``.
    """

    def __init__(self, params: Mapping[str, np.ndarray]) -> None:
        if not params:
            raise ValueError("params must hold at least one array")
        dtypes = {np.asarray(v).dtype for v in params.values()}
        if len(dtypes) != 1:
            raise TypeError(f"params must share one dtype, got {sorted(map(str, dtypes))}")
        self.dtype = dtypes.pop()
        self.names = tuple(params)
        self.shapes = tuple(np.shape(params[k]) for k in self.names)
        sizes = [int(np.prod(shape)) for shape in self.shapes]
        self.offsets = tuple(int(o) for o in np.concatenate([[0], np.cumsum(sizes)]))

    def flatten(self, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """One contiguous copy of the arrays, in layout order."""
        return np.concatenate([np.ravel(params[k]) for k in self.names]).astype(
            self.dtype, copy=False)

    def _entries(self):
        """(name, shape, start, stop) of each array, in layout order."""
        return zip(self.names, self.shapes, self.offsets[:-1], self.offsets[1:], strict=True)

    @property
    def spans(self) -> dict[str, Span]:
        """Name -> (start, stop, shape) of each array (a new dict)."""
        return {name: (start, stop, shape) for name, shape, start, stop in self._entries()}

    def unflatten(self, vector: Any) -> dict[str, Any]:
        """The dict of reshaped slices of ``vector`` (traced by autograd when it is)."""
        return {name: parameter_view(vector, start, stop, shape)
                for name, shape, start, stop in self._entries()}

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """The dict of reshaped slices (views) of a plain, untraced ``vector``."""
        return {name: vector[start:stop].reshape(shape)
                for name, shape, start, stop in self._entries()}

    def entry_mask(self, select: Callable[[str], bool]) -> np.ndarray:
        """Boolean vector of the layout: True on the entries of the parameters ``select``
        picks by name."""
        mask = np.zeros(self.offsets[-1], dtype=bool)
        for name, _shape, start, stop in self._entries():
            mask[start:stop] = select(name)
        return mask

    def matches(self, params: Mapping[str, np.ndarray]) -> bool:
        """Whether ``params`` has this layout's names, shapes and dtype."""
        return (tuple(params) == self.names
                and all(np.shape(params[k]) == s for k, s in zip(self.names, self.shapes,
                                                                   strict=True))
                and all(np.asarray(v).dtype == self.dtype for v in params.values()))


class TracedParams(Mapping):
    """A flat vector (traced by autograd) read as the dict of parameters it holds.

    ``params[name]`` is a `parameter_view` node of the vector (made at each read);
    `call_with_params` runs an op with its parameters read inside the op's own node
    instead; ``under(prefix)`` is the entries under ``prefix.`` (renamed without it),
    read from the same vector.

    Parameters
    ----------
    vector : array or autograd box
        The flat vector.
    spans : mapping of str to (start, stop, shape)
        Where each named parameter lives in it (`FlatLayout.spans`).
    """

    def __init__(self, vector: Any, spans: Mapping[str, Span]) -> None:
        self.vector = vector
        self.spans = spans

    def __getitem__(self, name: str) -> Any:
        start, stop, shape = self.spans[name]
        return parameter_view(self.vector, start, stop, shape)

    def __iter__(self) -> Iterator[str]:
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)

    def __contains__(self, name: object) -> bool:
        return name in self.spans

    def under(self, prefix: str) -> TracedParams:
        """The entries named ``prefix.<rest>``, as ``<rest>``, of the same vector."""
        start = prefix + "."
        return TracedParams(self.vector, {k[len(start):]: span for k, span in self.spans.items()
                                          if k.startswith(start)})


def call_with_params(op: Callable[..., Any], inputs: tuple, params: Mapping[str, Any],
                     names: tuple[str, ...], **kwargs: Any) -> Any:
    """``op(*inputs, *(params.get(name) for name in names), **kwargs)``, as one node.

    ``op`` is a primitive of `pnref.autograd_ops` (or made by its ``make_primitive*``);
    a name missing from ``params`` passes None. When ``params`` is a `TracedParams`, the
    parameters are read from its vector inside a single autograd node, whose backward
    pass is the op's own VJP with each parameter's gradient added into its slice of the
    vector's gradient: the same numbers as the plain call, with one node instead of one
    per parameter plus one for the op.
    """
    if isinstance(params, TracedParams):
        spans = tuple(params.spans.get(name) for name in names)
        return _bound_op(params.vector, _BoundCall(op, spans, kwargs), *inputs)
    return op(*inputs, *(params.get(name) for name in names), **kwargs)


def value_and_grad_of_params(
    fun: Callable[..., Any],
) -> Callable[..., tuple[Any, dict[str, np.ndarray]]]:
    """``autograd.value_and_grad(fun)`` for ``fun(params, *args)`` with ``params`` a dict.

    Returns a function ``(params, *args) -> (fun(params, *args), grads)`` where ``grads``
    has the keys and shapes of ``params``; the trace runs through one flat vector
    (`FlatLayout`), which ``fun`` receives as a `TracedParams` mapping. Parameter dicts of
    mixed dtypes are differentiated as a dict directly.
    """
    layout: list[FlatLayout] = []  # the last layout used, rebuilt when params change shape

    def value_and_grad(params: Mapping[str, np.ndarray], *args: Any):
        try:
            if not (layout and layout[0].matches(params)):
                layout[:] = [FlatLayout(params)]
        except TypeError:  # mixed dtypes: one vector cannot hold them exactly
            return autograd.value_and_grad(fun)(dict(params), *args)
        current = layout[0]
        spans = current.spans
        value, grad = autograd.value_and_grad(
            lambda vector: fun(TracedParams(vector, spans), *args))(current.flatten(params))
        return value, current.split(grad)

    return value_and_grad


def value_and_grad_of_vector(
    fun: Callable[..., Any], layout: FlatLayout,
) -> Callable[..., tuple[Any, np.ndarray]]:
    """``(vector, *args) -> (fun(params, *args), gradient vector)``, ``params`` the dict
    ``vector`` holds (a `TracedParams`): `value_and_grad_of_params` for a training loop
    that keeps its parameters (and its optimizer's state) as one vector between steps, so
    that no step flattens or splits them."""
    spans = layout.spans

    def value_and_grad(vector: np.ndarray, *args: Any):
        return autograd.value_and_grad(lambda v: fun(TracedParams(v, spans), *args))(vector)

    return value_and_grad
