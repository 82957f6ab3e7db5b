"""Gradients with respect to a dict of parameter arrays, traced through one flat vector.

autograd can differentiate with respect to a dict directly, but each read ``params[name]``
of a traced dict is then a node whose backward pass builds a whole dict of zero arrays and
adds it to the running gradient: with k parameters, a step costs O(k^2) array operations
in the bookkeeping alone (about a tenth of a training step of the small CNN). Tracing one
flat vector instead, each parameter is a slice of it (its backward pass adds the slice's
gradient into a single vector in place: `parameter_view`), and the dict is rebuilt outside
the trace. The views' backward pass is plain NumPy, so these gradients are first-order
(which is all a training step takes).

The gradient is the same function either way; only the order in which autograd adds
the contributions of a parameter used twice could differ, which the models of
`pnref.nn.models` do not do (every parameter is read once per forward pass).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import autograd
import numpy as np
from autograd.core import SparseObject, vspace
from autograd.extend import defvjp, primitive

__all__ = ["FlatLayout", "parameter_view", "value_and_grad_of_params",
           "value_and_grad_of_vector"]


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


def value_and_grad_of_params(
    fun: Callable[..., Any],
) -> Callable[..., tuple[Any, dict[str, np.ndarray]]]:
    """``autograd.value_and_grad(fun)`` for ``fun(params, *args)`` with ``params`` a dict.

    Returns a function ``(params, *args) -> (fun(params, *args), grads)`` where ``grads``
    has the keys and shapes of ``params``; the trace runs through one flat vector
    (`FlatLayout`). Parameter dicts of mixed dtypes are differentiated as a dict directly.
    """
    layout: list[FlatLayout] = []  # the last layout used, rebuilt when params change shape

    def value_and_grad(params: Mapping[str, np.ndarray], *args: Any):
        try:
            if not (layout and layout[0].matches(params)):
                layout[:] = [FlatLayout(params)]
        except TypeError:  # mixed dtypes: one vector cannot hold them exactly
            return autograd.value_and_grad(fun)(dict(params), *args)
        current = layout[0]
        value, grad = autograd.value_and_grad(
            lambda vector: fun(current.unflatten(vector), *args))(current.flatten(params))
        return value, current.split(grad)

    return value_and_grad


def value_and_grad_of_vector(
    fun: Callable[..., Any], layout: FlatLayout,
) -> Callable[..., tuple[Any, np.ndarray]]:
    """``(vector, *args) -> (fun(params, *args), gradient vector)``, ``params`` the dict
    `FlatLayout.unflatten` makes of ``vector``: `value_and_grad_of_params` for a training
    loop that keeps its parameters (and its optimizer's state) as one vector between
    steps, so that no step flattens or splits them."""
    def value_and_grad(vector: np.ndarray, *args: Any):
        return autograd.value_and_grad(lambda v: fun(layout.unflatten(v), *args))(vector)

    return value_and_grad
