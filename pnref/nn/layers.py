"""Stateless layers on arrays (autograd-traceable) and He initialization.

Images are channels-first, ``(N, C, H, W)``. Parameters are plain arrays passed in by the
caller; nothing here owns state.

Type hints: a layer's array arguments and result are NumPy arrays, or autograd's traced
stand-ins for them while a gradient is taken, hence ``Any``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import autograd.numpy as anp
import numpy as np
from autograd.extend import defvjp, primitive

from pnref.autograd_ops import make_primitive
from pnref.nn.conv import conv2d

__all__ = [
    "affine",
    "channel_bias",
    "dense",
    "conv2d",
    "avg_pool2d",
    "max_pool2d",
    "global_avg_pool",
    "flatten",
    "he_normal",
    "softmax_cross_entropy",
]


def _affine(x: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x @ weight + bias


def _affine_vjp(g: np.ndarray, x: np.ndarray, weight: np.ndarray,
                bias: np.ndarray) -> tuple[np.ndarray, ...]:
    return g @ weight.T, x.T @ g, g.sum(axis=0)


#: ``x @ weight + bias`` as one primitive (`dense`; the models call it through
#: `pnref.nn.flat_params.call_with_params`).
affine = make_primitive(_affine, _affine_vjp, (0, 1, 2))


def _channel_bias(x: np.ndarray, bias: np.ndarray) -> np.ndarray:
    return x + bias.reshape((1, -1) + (1,) * (x.ndim - 2))


def _channel_bias_vjp(g: np.ndarray, x: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, ...]:
    return g, g.sum(axis=(0, *range(2, g.ndim)))


channel_bias = make_primitive(_channel_bias, _channel_bias_vjp, (0, 1))
channel_bias.__doc__ = """``x + bias`` with ``bias`` (C,) along the channel axis 1 of ``x``.

    Equations
    ---------
    out[n, c, ...] = x[n, c, ...] + bias[c];   dx = g,   dbias[c] = sum over all but c of g
    """


def dense(x: Any, weight: Any, bias: Any | None = None) -> Any:
    """Fully connected layer (with a bias: one autograd primitive, hand VJP).

    Parameters
    ----------
    x : array, shape (N, D_in)
    weight : array, shape (D_in, D_out)
    bias : array of shape (D_out,), optional

    Equations
    ---------
    out = x @ weight + bias;   dx = g @ weight^T,  dweight = x^T @ g,  dbias = sum_n g
    """
    if bias is None:
        return anp.dot(x, weight)
    if np.ndim(x) != 2 or np.ndim(weight) != 2 or np.ndim(bias) != 1:
        raise ValueError(
            "dense expects x (N, D_in), weight (D_in, D_out) and bias (D_out,); got shapes "
            f"{np.shape(x)}, {np.shape(weight)}, {np.shape(bias)}")
    return affine(x, weight, bias)


def _pool_windows(x: Any, size: int) -> Any:
    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    n, c, h, w = x.shape
    if h % size or w % size:
        raise ValueError(f"pooling size {size} must divide the spatial shape {(h, w)}")
    return anp.reshape(x, (n, c, h // size, size, w // size, size))


def avg_pool2d(x: Any, size: int = 2) -> Any:
    """Average over non-overlapping ``size x size`` windows (stride = size).

    Equations
    ---------
    out[n, c, i, j] = mean_{a, b < size} x[n, c, size i + a, size j + b]
    """
    return anp.mean(_pool_windows(x, size), axis=(3, 5))


def _window_max(x: np.ndarray, size: int) -> np.ndarray:
    """Forward of `max_pool2d` on a plain array (the Numba loop `pnref.kernels._pool`)."""
    from pnref.kernels._pool import window_max

    if size < 1:
        raise ValueError(f"size must be >= 1, got {size}")
    n, c, h, w = x.shape
    if h % size or w % size:
        raise ValueError(f"pooling size {size} must divide the spatial shape {(h, w)}")
    out = np.empty((n, c, h // size, w // size), dtype=x.dtype)
    window_max(np.ascontiguousarray(x), size, out)
    return out


_window_max_primitive = primitive(_window_max)


def _window_max_vjp(ans: np.ndarray, x: np.ndarray,
                    size: int) -> Callable[[np.ndarray], np.ndarray]:
    """The gradient goes to the window's maxima, shared equally among ties.

    ``dx = g * [x == max] / #ties`` (autograd's rule for ``numpy.max``, the same operations
    on each element, so both agree bit for bit), by the Numba loop `pnref.kernels._pool`.
    """
    from pnref.kernels._pool import window_max_vjp

    def vjp(g: np.ndarray) -> np.ndarray:
        dx = np.empty(x.shape, dtype=np.result_type(g, x))
        window_max_vjp(np.ascontiguousarray(g, dtype=dx.dtype), np.ascontiguousarray(x),
                       ans, size, dx)
        return dx

    return vjp


defvjp(_window_max_primitive, _window_max_vjp)


def max_pool2d(x: Any, size: int = 2) -> Any:
    """Maximum over non-overlapping ``size x size`` windows (stride = size).

    One autograd primitive with a hand VJP: the gradient goes to the maximum of each window,
    shared equally among ties (as autograd does for ``numpy.max``).

    Equations
    ---------
    out[n, c, i, j] = max_{a, b < size} x[n, c, size i + a, size j + b]
    """
    return _window_max_primitive(x, size)


def _cross_entropy_forward(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return np.mean(log_norm - shifted[np.arange(len(labels)), labels])


def _cross_entropy_vjp(ans: np.ndarray, logits: np.ndarray,
                       labels: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    def vjp(g: np.ndarray) -> np.ndarray:
        shifted = logits - logits.max(axis=1, keepdims=True)
        probabilities = np.exp(shifted)
        probabilities /= probabilities.sum(axis=1, keepdims=True)
        probabilities[np.arange(len(labels)), labels] -= 1.0
        return g * probabilities / len(labels)

    return vjp


_cross_entropy = primitive(_cross_entropy_forward)
defvjp(_cross_entropy, _cross_entropy_vjp)


def softmax_cross_entropy(logits: Any, labels: np.ndarray) -> Any:
    """Mean cross-entropy of integer ``labels`` under ``softmax(logits)``, one primitive.

    The log-sum-exp is taken after subtracting each row's maximum (no overflow).

    Equations
    ---------
    loss = mean_i [ logsumexp(logits_i) - logits_i[labels_i] ]
    dlogits_i = g (softmax(logits_i) - onehot(labels_i)) / N
    """
    labels = np.asarray(labels)
    if labels.ndim != 1 or len(labels) != logits.shape[0]:
        raise ValueError(
            f"labels must have shape ({logits.shape[0]},) to match logits, got {labels.shape}")
    return _cross_entropy(logits, labels)


def _spatial_mean(x: np.ndarray) -> np.ndarray:
    return x.mean(axis=tuple(range(2, x.ndim)))


_spatial_mean_primitive = primitive(_spatial_mean)


def _spatial_mean_vjp(ans: np.ndarray, x: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    positions = int(np.prod(x.shape[2:]))

    def vjp(g: np.ndarray) -> np.ndarray:
        return np.broadcast_to(g.reshape(g.shape + (1,) * (x.ndim - 2)), x.shape) / positions

    return vjp


defvjp(_spatial_mean_primitive, _spatial_mean_vjp)


def global_avg_pool(x: Any) -> Any:
    """Mean over every axis after the channel axis: ``(N, C, ...) -> (N, C)``.

    One autograd primitive: ``dx = g / (number of positions)`` at every position.
    """
    return _spatial_mean_primitive(x)


def flatten(x: Any) -> Any:
    """Reshape ``(N, ...) -> (N, prod(...))``."""
    return anp.reshape(x, (x.shape[0], -1))


def he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    """He (Kaiming) normal initialization for ReLU networks.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
    fan_in : int
        Inputs feeding each output unit (``C * KH * KW`` for a convolution).

    Equations
    ---------
    w ~ Normal(0, 2 / fan_in)
    """
    if fan_in < 1:
        raise ValueError(f"fan_in must be >= 1, got {fan_in}")
    return rng.normal(0.0, np.sqrt(2.0 / fan_in), size=shape)
