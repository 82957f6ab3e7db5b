"""Proxy moments: the mean and variance of phi(gamma * Y + beta), Y ~ Normal(beta~, (1 + gamma~)^2).

Every method first reduces the four per-channel parameters to the law Normal(m, s^2) of
the proxy pre-activation Z = gamma * Y + beta,

    m = gamma * beta_tilde + beta,   sigma = gamma * (1 + gamma_tilde),   s = |sigma|,

then asks a method module for E f(Z), Var f(Z) and their derivatives in (m, s). The
chain rule back to the four parameters is done here once, for every method.

Methods (each a module of this package exposing ``moments`` and
``moments_with_derivatives``):

- ``"exact"``: closed forms (`pnref.moments.exact`), for the activations in
  ``exact.SUPPORTED``.
- ``"quadrature"``: split Gauss-Legendre in the standard normal variable
  (`pnref.moments.quadrature`), ``n`` nodes per piece (27 pieces, default 32).
- ``"quantile"``: the official estimator, ``n`` deterministic quantile points
  (default 200) (`pnref.moments.quantile`).
- ``"montecarlo"``: ``n`` seeded normal draws (default 100000, seed default 0)
  (`pnref.moments.montecarlo`).
"""

from __future__ import annotations

import importlib
import numbers

import numpy as np
from numpy.typing import ArrayLike

from pnref._validation import as_float_array, result_dtype
from pnref.activations import Activation
from pnref.activations import activation as make_activation

__all__ = ["METHODS", "DEFAULT_N", "proxy_moments", "proxy_moments_vjp", "reduce_parameters"]

METHODS: tuple[str, ...] = ("exact", "quadrature", "quantile", "montecarlo")

#: Default ``n`` per method (``None``: the method takes no ``n``).
DEFAULT_N: dict[str, int | None] = {
    "exact": None,
    "quadrature": 32,
    "quantile": 200,
    "montecarlo": 100_000,
}

_DEFAULT_MONTECARLO_SEED = 0
# Methods that are sample estimators: with one point their variance would be 0.
_SAMPLE_METHODS = ("quantile", "montecarlo")


# --------------------------------------------------------------------------- checks


def _parameter(value, name: str, *, optional: bool) -> np.ndarray | None:
    """A parameter as float64, or None when an optional one is absent.

    Plain Python numbers (``int`` or ``float``, e.g. the default ``gamma_tilde=0``) are
    accepted and do not take part in choosing the output dtype; NumPy arrays and
    scalars must have a floating dtype (``as_float_array``).
    """
    if value is None:
        if optional:
            return None
        raise TypeError(f"{name} is required, got None")
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.generic)):
        return np.asarray(float(value))
    return as_float_array(value, name)


def _check_method(method) -> str:
    if not isinstance(method, str):
        raise TypeError(f"method must be a str, got {type(method).__name__}")
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known methods: {', '.join(METHODS)}")
    return method


def _check_n(n, method: str) -> int | None:
    if n is None:
        return DEFAULT_N[method]
    if DEFAULT_N[method] is None:
        raise ValueError(f"n must be None for method={method!r} (it has no points), got {n!r}")
    if isinstance(n, bool) or not isinstance(n, (numbers.Integral, np.integer)):
        raise TypeError(f"n must be an int, got {type(n).__name__} ({n!r})")
    if method in _SAMPLE_METHODS and n < 2:
        raise ValueError(
            f"n must be >= 2 for method={method!r} (a sample variance needs two points), "
            f"got n={n}"
        )
    if n < 1:
        raise ValueError(f"n must be a positive integer, got {n}")
    return int(n)


def _check_seed(seed, method: str) -> int | None:
    if method != "montecarlo":
        if seed is not None:
            raise ValueError(
                f"seed is only used by method='montecarlo'; got seed={seed!r} "
                f"with method={method!r}"
            )
        return None
    if seed is None:
        return _DEFAULT_MONTECARLO_SEED
    if isinstance(seed, bool) or not isinstance(seed, (numbers.Integral, np.integer)):
        raise TypeError(f"seed must be a non-negative int, got {type(seed).__name__}")
    if seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed}")
    return int(seed)


def _resolve_activation(activation) -> Activation:
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        try:
            return make_activation(activation)
        except ValueError as error:
            raise ValueError(f"activation: {error}") from None
    raise TypeError(
        "activation must be a name (str) or a pnref.Activation, "
        f"got {type(activation).__name__}"
    )


def _method_module(method: str, act: Activation):
    module = importlib.import_module(f"pnref.moments.{method}")
    if method == "exact" and act.name not in module.SUPPORTED:
        raise ValueError(
            f"method='exact' has no closed form for activation {act.name!r}; supported: "
            f"{', '.join(sorted(module.SUPPORTED))} (use method='quadrature')"
        )
    return module


def _broadcast_shape(named: dict[str, np.ndarray | None]) -> tuple[int, ...]:
    present = {k: v for k, v in named.items() if v is not None}
    try:
        return np.broadcast_shapes(*(v.shape for v in present.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {v.shape}" for k, v in present.items())
        raise ValueError(f"parameter shapes do not broadcast together: {shapes}") from None


def _prepare(activation, gamma, beta, gamma_tilde, beta_tilde, method, n, seed):
    act = _resolve_activation(activation)
    method = _check_method(method)
    n = _check_n(n, method)
    seed = _check_seed(seed, method)
    params = {
        "gamma": _parameter(gamma, "gamma", optional=False),
        "beta": _parameter(beta, "beta", optional=False),
        "gamma_tilde": _parameter(gamma_tilde, "gamma_tilde", optional=True),
        "beta_tilde": _parameter(beta_tilde, "beta_tilde", optional=True),
    }
    shape = _broadcast_shape(params)
    # Python numbers were turned into 0-d float64 arrays; only genuine arrays count.
    originals = (gamma, beta, gamma_tilde, beta_tilde)
    dtype = result_dtype(
        *(
            p
            for p, original in zip(params.values(), originals, strict=True)
            if p is not None and isinstance(original, (np.ndarray, np.generic))
        )
    )
    module = _method_module(method, act)
    return act, module, n, seed, params, shape, dtype


def reduce_parameters(
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The Normal(m, sigma^2) law of the proxy pre-activation, in float64.

    Parameters
    ----------
    gamma, beta, gamma_tilde, beta_tilde : array_like
        Per-channel parameters (``None`` for an absent tilde parameter means 0).

    Returns
    -------
    m, sigma : ndarray
        Broadcast float64 arrays; ``s = |sigma|`` is the standard deviation.

    Equations
    ---------
    .. math::

        m = \\gamma \\tilde\\beta + \\beta, \\qquad
        \\sigma = \\gamma (1 + \\tilde\\gamma), \\qquad s = |\\sigma| .
    """
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    m = beta + (0.0 if beta_tilde is None else gamma * np.asarray(beta_tilde, np.float64))
    sigma = gamma * (1.0 if gamma_tilde is None else 1.0 + np.asarray(gamma_tilde, np.float64))
    m, sigma = np.broadcast_arrays(m, sigma)
    return np.array(m, dtype=np.float64), np.array(sigma, dtype=np.float64)


def _reduce_checked(params: dict[str, np.ndarray | None], method: str):
    """`reduce_parameters`, with an error naming the arguments where "exact" cannot go."""
    m, sigma = reduce_parameters(*params.values())
    if method == "exact" and (np.any(np.isinf(m)) or np.any(np.isinf(sigma))):
        infinite = [k for k, v in params.items() if v is not None and np.any(np.isinf(v))]
        cause = (f"{', '.join(infinite)} has an infinite entry" if infinite
                 else "the parameters overflow")
        raise ValueError(
            "method='exact' needs finite parameters (NaN propagates, +-inf is rejected): "
            f"{cause}, so the proxy mean m = gamma * beta_tilde + beta or scale "
            "sigma = gamma * (1 + gamma_tilde) is infinite"
        )
    return m, sigma


# --------------------------------------------------------------------------- public API


def proxy_moments(
    activation: str | Activation,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = 0,
    beta_tilde: ArrayLike | None = 0,
    *,
    method: str = "quantile",
    n: int | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Proxy mean and population variance of ``activation(gamma * Y + beta)`` per channel.

    Parameters
    ----------
    activation : str or Activation
        A name (``"relu"``) or an object from `pnref.activation`
        (``pnref.activation("leaky_relu", alpha=0.2)``).
    gamma, beta : array_like
        Affine scale and shift (floating arrays or Python numbers).
    gamma_tilde, beta_tilde : array_like, optional
        The proxy's scale offset and shift: Y ~ Normal(beta_tilde, (1 + gamma_tilde)^2).
        ``None`` is the same as 0.
    method : {"quantile", "exact", "quadrature", "montecarlo"}
        How the expectation is computed (see the module docstring); ``"quantile"`` is
        the official estimator.
    n : int, optional
        Points (quantile), nodes per piece (quadrature) or draws (montecarlo); ``None``
        takes the method's default (200, 32, 100000). Must be ``None`` for ``"exact"``.
    seed : int, optional
        Monte Carlo seed (default 0, so that the forward and the VJP use the same
        draws). Must be ``None`` for the other methods.

    Returns
    -------
    mean, var : ndarray
        Broadcast shape of the parameters, in the widest floating dtype of the array
        arguments (float64 when all are Python numbers); computed in float64.

    Raises
    ------
    TypeError
        Integer/complex arrays, a non-integer ``n`` or ``seed``, an ``activation`` that
        is neither a name nor an Activation.
    ValueError
        Unknown method or activation, ``n < 1`` (``n < 2`` for ``"quantile"`` and
        ``"montecarlo"``), shapes that do not broadcast, ``n`` or
        ``seed`` given to a method that does not use it, ``"exact"`` for an activation
        without closed forms.

    Notes
    -----
    NaN in a parameter gives NaN in that channel's outputs (NumPy arithmetic).

    Equations
    ---------
    .. math::

        Z = \\gamma Y + \\beta \\sim \\mathcal N(m, s^2), \\quad
        m = \\gamma \\tilde\\beta + \\beta, \\quad s = |\\gamma (1 + \\tilde\\gamma)|,

        \\mu = \\mathbb E\\, \\phi(Z), \\qquad v = \\operatorname{Var} \\phi(Z)
        = \\mathbb E\\, (\\phi(Z) - \\mu)^2 .
    """
    act, module, n, seed, params, shape, dtype = _prepare(
        activation, gamma, beta, gamma_tilde, beta_tilde, method, n, seed
    )
    m, sigma = _reduce_checked(params, method)
    mean, var = module.moments(act, m, np.abs(sigma), n=n, seed=seed)
    return (
        np.asarray(mean, dtype=np.float64).reshape(shape).astype(dtype),
        np.asarray(var, dtype=np.float64).reshape(shape).astype(dtype),
    )


def _sum_to_shape(gradient: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a broadcast gradient back to the shape of the argument it belongs to."""
    extra = gradient.ndim - len(shape)
    if extra:
        gradient = gradient.sum(axis=tuple(range(extra)))
    axes = tuple(i for i, size in enumerate(shape) if size == 1 and gradient.shape[i] != 1)
    if axes:
        gradient = gradient.sum(axis=axes, keepdims=True)
    return np.asarray(gradient).reshape(shape)


def _cotangent(value, name: str, shape: tuple[int, ...]) -> np.ndarray:
    if value is None:
        return np.zeros(shape)
    arr = _parameter(value, name, optional=False).astype(np.float64)
    try:
        return np.broadcast_to(arr, shape)
    except ValueError:
        raise ValueError(
            f"{name} must broadcast to the moments' shape {shape}, got shape {arr.shape}"
        ) from None


def proxy_moments_vjp(
    dmean: ArrayLike | None,
    dvar: ArrayLike | None,
    activation: str | Activation,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = 0,
    beta_tilde: ArrayLike | None = 0,
    *,
    method: str = "quantile",
    n: int | None = None,
    seed: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Vector-Jacobian product of `proxy_moments`.

    Parameters
    ----------
    dmean, dvar : array_like or None
        Cotangents of the proxy mean and variance (broadcast to their shape; ``None``
        means zero).
    activation, gamma, beta, gamma_tilde, beta_tilde, method, n, seed
        As for `proxy_moments`; the derivative is that of the same method (for
        ``"quantile"`` and ``"montecarlo"`` the exact derivative of the discrete
        estimator with the same points).

    Returns
    -------
    dgamma, dbeta, dgamma_tilde, dbeta_tilde : ndarray or None
        Each with its argument's shape (0-d for a Python number), in the output
        dtype; ``None`` for a tilde parameter given as ``None``.

    Equations
    ---------
    With :math:`\\bar\\mu, \\bar v` the cotangents and the method's derivatives in
    :math:`(m, s)`:

    .. math::

        \\bar m = \\bar\\mu\\, \\partial_m\\mu + \\bar v\\, \\partial_m v, \\qquad
        \\bar\\sigma = \\operatorname{sign}(\\sigma)\\,
            (\\bar\\mu\\, \\partial_s\\mu + \\bar v\\, \\partial_s v),

        \\bar\\gamma = \\bar m\\, \\tilde\\beta + \\bar\\sigma\\, (1 + \\tilde\\gamma), \\quad
        \\bar\\beta = \\bar m, \\quad
        \\bar{\\tilde\\gamma} = \\bar\\sigma\\, \\gamma, \\quad
        \\bar{\\tilde\\beta} = \\bar m\\, \\gamma,

    with :math:`\\operatorname{sign}(0) = 0` (the average of the two one-sided
    derivatives of :math:`|\\sigma|` at 0).
    """
    act, module, n, seed, params, shape, dtype = _prepare(
        activation, gamma, beta, gamma_tilde, beta_tilde, method, n, seed
    )
    dmean = _cotangent(dmean, "dmean", shape)
    dvar = _cotangent(dvar, "dvar", shape)
    m, sigma = _reduce_checked(params, method)
    _, _, dmean_dm, dmean_ds, dvar_dm, dvar_ds = (
        np.asarray(a, dtype=np.float64).reshape(shape)
        for a in module.moments_with_derivatives(act, m, np.abs(sigma), n=n, seed=seed)
    )
    grad_m = dmean * dmean_dm + dvar * dvar_dm
    grad_sigma = np.sign(sigma) * (dmean * dmean_ds + dvar * dvar_ds)

    gamma64 = params["gamma"].astype(np.float64)
    gamma_tilde64 = params["gamma_tilde"]
    beta_tilde64 = params["beta_tilde"]
    one_plus_gamma_tilde = 1.0 if gamma_tilde64 is None else 1.0 + gamma_tilde64
    grad_gamma = grad_sigma * one_plus_gamma_tilde
    if beta_tilde64 is not None:
        grad_gamma = grad_gamma + grad_m * beta_tilde64
    grads = {
        "gamma": grad_gamma,
        "beta": grad_m,
        "gamma_tilde": None if gamma_tilde64 is None else grad_sigma * gamma64,
        "beta_tilde": None if beta_tilde64 is None else grad_m * gamma64,
    }
    return tuple(
        None
        if grads[name] is None
        else _sum_to_shape(np.broadcast_to(grads[name], shape), params[name].shape).astype(dtype)
        for name in ("gamma", "beta", "gamma_tilde", "beta_tilde")
    )
