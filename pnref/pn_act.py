"""PN-Act and the plain affine + activation step, forward and hand-derived backward.

Proxy Normalization (Labatie et al., NeurIPS 2021, arXiv 2106.03743) replaces the
``affine -> activation`` step that follows a normalization by

    z   = phi(gamma * y + beta)                       affine + activation
    out = (z - proxy_mean) / sqrt(proxy_var + eps)    normalized by the proxy's moments

where ``proxy_mean`` and ``proxy_var`` are the mean and variance of
``phi(gamma * Y + beta)`` for the data-independent proxy variable
``Y ~ Normal(beta_tilde, (1 + gamma_tilde)^2)``, one per channel. The moments come from
`pnref.moments.proxy_moments`; every one of its methods is selectable here.

Each op has its forward and its vector-Jacobian product (VJP) side by side. The VJP of
``pn_act`` includes the path through the proxy moments, which it hands to
`pnref.moments.proxy_moments_vjp`. The derivation is in ``docs/proxy-norm.md``.

All computation is in float64 whatever the input dtype; results come back in the
widest floating dtype of the arguments (see ``docs/architecture.md``).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import ArrayLike

from pnref._validation import (
    as_float_array,
    channel_shape,
    check_eps,
    normalize_axis,
    per_channel,
    result_dtype,
)
from pnref.activations import Activation
from pnref.activations import activation as make_activation
from pnref.moments import proxy_moments, proxy_moments_vjp

__all__ = ["act", "act_vjp", "pn_act", "pn_act_vjp", "resolve_activation"]


# ---------------------------------------------------------------------------
# Shared helpers
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def activation_by_name(name: str, params: tuple = ()) -> Activation:
    """`pnref.activation` (``name``, ``**dict(params)``), built once per distinct pair: a
    training step resolves the same names at every layer, forward and backward.

    ``params`` is a sorted tuple of ``(name, value)`` pairs (hashable). The instance is
    shared between callers: treat it as read-only (as `Activation` is frozen).
    """
    return make_activation(name, **dict(params))


def resolve_activation(activation: str | Activation) -> Activation:
    """Return the `pnref.activations.Activation` named by ``activation``.

    A string is looked up with default parameters (``"leaky_relu"`` gets its default
    slope); an ``Activation`` object (e.g. ``pnref.activation("leaky_relu", alpha=0.2)``)
    is used as given.
    """
    if isinstance(activation, Activation):
        return activation
    if isinstance(activation, str):
        return activation_by_name(activation)
    raise TypeError(
        "activation must be an activation name (str) or a pnref.activations.Activation, "
        f"got {type(activation).__name__}"
    )


def _other_axes(ndim: int, axis: int) -> tuple[int, ...]:
    """Every axis but the channel axis: the axes a per-channel gradient sums over."""
    return tuple(i for i in range(ndim) if i != axis)


def _check_data(y, name: str, axis: int) -> tuple[np.ndarray, int, int]:
    """Validate the data array; return it, the normalized channel axis and the channel count."""
    y = as_float_array(y, name)
    if y.ndim < 1:
        raise ValueError(f"{name} must have at least one dimension (the channels), got a scalar")
    channel_axis = normalize_axis(axis, y.ndim)
    return y, channel_axis, y.shape[channel_axis]


def _check_cotangent(dout, out_shape: tuple[int, ...], name: str = "dout") -> np.ndarray:
    dout = as_float_array(dout, name)
    if dout.shape != out_shape:
        raise ValueError(f"{name} must have the output's shape {out_shape}, got {dout.shape}")
    return dout


def _as64(p: np.ndarray | None) -> np.ndarray | None:
    return None if p is None else p.astype(np.float64)


def _cast(g: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if g is None else g.astype(dtype, copy=False)


# ---------------------------------------------------------------------------
# act: the plain affine + activation step (the baseline PN replaces)
# ---------------------------------------------------------------------------


def _check_act_args(y, gamma, beta, activation, axis):
    y, channel_axis, channels = _check_data(y, "y", axis)
    gamma = per_channel(gamma, channels, "gamma")
    beta = per_channel(beta, channels, "beta")
    return y, gamma, beta, resolve_activation(activation), channel_axis, channels


def _affine64(y64, gamma64, beta64, bshape):
    """``gamma * y + beta`` in float64, an absent gamma meaning 1 and an absent beta 0."""
    pre = y64 if gamma64 is None else gamma64.reshape(bshape) * y64
    return pre if beta64 is None else pre + beta64.reshape(bshape)


def act(
    y: ArrayLike,
    gamma: ArrayLike | None = None,
    beta: ArrayLike | None = None,
    *,
    activation: str | Activation = "relu",
    axis: int = 1,
) -> np.ndarray:
    r"""Per-channel affine followed by an activation: the step PN-Act replaces.

    Parameters
    ----------
    y : ndarray
        Input (usually a normalized pre-activation), any floating dtype; channels on ``axis``.
    gamma, beta : ndarray of shape (C,) or None
        Per-channel scale and shift; ``None`` means 1 and 0 (not learned).
    activation : str or Activation
        The activation ``phi`` (see `pnref.activation`).
    axis : int
        The channel axis (1 channels-first, -1 channels-last).

    Returns
    -------
    ndarray
        ``phi(gamma * y + beta)``, in the widest floating dtype of the arguments.

    Equations
    ---------
    .. math:: \mathrm{out}_{\dots c \dots} = \phi(\gamma_c\, y_{\dots c \dots} + \beta_c)

    NaN in ``y`` propagates to the same output element.
    """
    y, gamma, beta, phi, channel_axis, channels = _check_act_args(y, gamma, beta, activation, axis)
    bshape = channel_shape(y.ndim, channel_axis, channels)
    pre_activation = _affine64(y.astype(np.float64), _as64(gamma), _as64(beta), bshape)
    return phi.f(pre_activation).astype(result_dtype(y, gamma, beta), copy=False)


def act_vjp(
    dout: ArrayLike,
    y: ArrayLike,
    gamma: ArrayLike | None = None,
    beta: ArrayLike | None = None,
    *,
    activation: str | Activation = "relu",
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Vector-Jacobian product of `act`.

    Parameters
    ----------
    dout : ndarray
        Cotangent of the output, same shape as ``y``.
    y, gamma, beta, activation, axis
        As for `act`.

    Returns
    -------
    (dy, dgamma, dbeta)
        ``dgamma`` / ``dbeta`` are ``None`` where ``gamma`` / ``beta`` is ``None``.
        At a kink of ``phi`` the left derivative is used (see ``pnref.activations``).

    Equations
    ---------
    With :math:`p = \gamma_c y + \beta_c` and :math:`g = \mathrm{dout}\,\phi'(p)`:

    .. math::
        dy = \gamma_c\, g, \qquad
        d\gamma_c = \sum_{\text{not } c} g\, y, \qquad
        d\beta_c = \sum_{\text{not } c} g
    """
    y, gamma, beta, phi, channel_axis, channels = _check_act_args(y, gamma, beta, activation, axis)
    dout = _check_cotangent(dout, y.shape)
    bshape = channel_shape(y.ndim, channel_axis, channels)
    y64 = y.astype(np.float64)
    gamma64 = _as64(gamma)
    pre_activation = _affine64(y64, gamma64, _as64(beta), bshape)
    dpre = dout.astype(np.float64) * phi.df(pre_activation)

    sum_axes = _other_axes(y.ndim, channel_axis)
    dy = dpre if gamma64 is None else dpre * gamma64.reshape(bshape)
    dgamma = None if gamma is None else np.sum(dpre * y64, axis=sum_axes)
    dbeta = None if beta is None else np.sum(dpre, axis=sum_axes)

    dtype = result_dtype(dout, y, gamma, beta)
    return _cast(dy, dtype), _cast(dgamma, dtype), _cast(dbeta, dtype)


# ---------------------------------------------------------------------------
# pn_act: affine + activation + normalization by the proxy's moments
# ---------------------------------------------------------------------------


def _check_pn_act_args(y, gamma, beta, gamma_tilde, beta_tilde, activation, eps, method, n, axis):
    y, channel_axis, channels = _check_data(y, "y", axis)
    if gamma is None or beta is None:
        raise TypeError(
            "gamma and beta are required by pn_act (arrays of shape (C,)); "
            "only gamma_tilde and beta_tilde may be None"
        )
    gamma = per_channel(gamma, channels, "gamma")
    beta = per_channel(beta, channels, "beta")
    gamma_tilde = per_channel(gamma_tilde, channels, "gamma_tilde")
    beta_tilde = per_channel(beta_tilde, channels, "beta_tilde")
    eps = check_eps(eps, "eps", positive=True)
    if method == "exact" and n is not None:
        raise ValueError(
            f"method='exact' takes no n (closed forms have no points); pass n=None, got n={n!r} "
            "(n counts the points of the quantile, quadrature and Monte Carlo methods)"
        )
    return (y, gamma, beta, gamma_tilde, beta_tilde, resolve_activation(activation), eps,
            channel_axis, channels)


def _pn_act_forward64(y64, gamma64, beta64, gamma_tilde64, beta_tilde64, phi, eps, method, n,
                      bshape):
    """The float64 forward; returns what the backward reuses."""
    proxy_mean, proxy_var = proxy_moments(
        phi, gamma64, beta64, gamma_tilde64, beta_tilde64, method=method, n=n
    )
    proxy_mean = np.asarray(proxy_mean, dtype=np.float64)
    proxy_var = np.asarray(proxy_var, dtype=np.float64)
    inv_std = 1.0 / np.sqrt(proxy_var + eps)
    pre_activation = _affine64(y64, gamma64, beta64, bshape)
    activated = phi.f(pre_activation)
    out = (activated - proxy_mean.reshape(bshape)) * inv_std.reshape(bshape)
    return out, pre_activation, inv_std


def pn_act(
    y: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
    *,
    activation: str | Activation = "relu",
    eps: float = 0.03,
    method: str = "quantile",
    n: int | None = None,
    axis: int = 1,
) -> np.ndarray:
    r"""Proxy-normalized activation (PN-Act).

    Parameters
    ----------
    y : ndarray
        Normalized pre-activation (the output of a norm without affine), any floating
        dtype; channels on ``axis``.
    gamma, beta : ndarray of shape (C,)
        Per-channel affine applied before the activation (required).
    gamma_tilde, beta_tilde : ndarray of shape (C,) or None
        Parameters of the proxy ``Y_c ~ Normal(beta_tilde_c, (1 + gamma_tilde_c)^2)``;
        ``None`` means zeros that are not learned.
    activation : str or Activation
        The activation ``phi``. With ``method="exact"`` it must have closed-form moments.
    eps : float
        Added to the proxy variance inside the square root; must be > 0 (official: 0.03).
    method : str
        How `pnref.moments.proxy_moments` computes the proxy moments:
        ``"quantile"`` (the official estimator, default), ``"exact"`` (the mathematical
        definition, closed forms), ``"quadrature"``, ``"montecarlo"`` (proxy_moments'
        default seed 0, so the forward and the VJP see the same draws).
    n : int or None
        Passed to the method (points, nodes or draws); ``None`` (the default) gives the
        method's own default: 200 points for ``"quantile"`` (the official profile), the
        documented node and draw counts for the others. ``"exact"`` has no points, so an
        explicit ``n`` with it is an error rather than silently ignored.
    axis : int
        The channel axis (1 channels-first, -1 channels-last; the official code is
        channels-last).

    Returns
    -------
    ndarray
        Same shape as ``y``, in the widest floating dtype of the arguments. Computed in
        float64 internally. NaN in ``y`` propagates to the same output element.

    Raises
    ------
    TypeError
        Integer or complex data or parameters, ``gamma`` or ``beta`` missing, an
        ``activation`` that is neither a name nor an Activation.
    ValueError
        A parameter whose shape is not ``(C,)``, ``eps <= 0``, an unknown activation or
        method, ``"exact"`` with ``n`` given or with an activation it has no closed form
        for, an out-of-range ``axis``.

    Equations
    ---------
    .. math::
        \mu_c, v_c = \mathrm{E}, \mathrm{Var}\big[\phi(\gamma_c Y_c + \beta_c)\big],
        \quad Y_c \sim \mathcal N(\tilde\beta_c, (1 + \tilde\gamma_c)^2)

        \mathrm{out} = \big(\phi(\gamma_c\, y + \beta_c) - \mu_c\big)
                        / \sqrt{v_c + \epsilon}
    """
    (y, gamma, beta, gamma_tilde, beta_tilde, phi, eps, channel_axis,
     channels) = _check_pn_act_args(
        y, gamma, beta, gamma_tilde, beta_tilde, activation, eps, method, n, axis
    )
    bshape = channel_shape(y.ndim, channel_axis, channels)
    out, _, _ = _pn_act_forward64(
        y.astype(np.float64), _as64(gamma), _as64(beta), _as64(gamma_tilde), _as64(beta_tilde),
        phi, eps, method, n, bshape,
    )
    return out.astype(result_dtype(y, gamma, beta, gamma_tilde, beta_tilde), copy=False)


def pn_act_vjp(
    dout: ArrayLike,
    y: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
    *,
    activation: str | Activation = "relu",
    eps: float = 0.03,
    method: str = "quantile",
    n: int | None = None,
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Vector-Jacobian product of `pn_act`, including the path through the proxy moments.

    Parameters
    ----------
    dout : ndarray
        Cotangent of the output, same shape as ``y``.
    y, gamma, beta, gamma_tilde, beta_tilde, activation, eps, method, n, axis
        As for `pn_act`.

    Returns
    -------
    (dy, dgamma, dbeta, dgamma_tilde, dbeta_tilde)
        ``dgamma_tilde`` / ``dbeta_tilde`` are ``None`` where the argument is ``None``.
        The moments path is the exact derivative of the chosen estimator (for
        ``"quantile"`` with fixed points, ``"montecarlo"`` with its fixed draws), as
        computed by `pnref.moments.proxy_moments_vjp`.

    Equations
    ---------
    With :math:`p = \gamma_c y + \beta_c`, :math:`r_c = (v_c + \epsilon)^{-1/2}`,
    and sums over every axis but the channel axis:

    .. math::
        g = \mathrm{dout}\; r_c\, \phi'(p), \qquad dy = \gamma_c\, g

        \bar\mu_c = -r_c \sum \mathrm{dout}, \qquad
        \bar v_c = -\tfrac12 r_c^2 \sum \mathrm{dout}\cdot\mathrm{out}

        d\gamma_c = \sum g\, y + \bar\mu_c \partial_{\gamma}\mu_c
                     + \bar v_c\, \partial_{\gamma}v_c, \qquad
        d\beta_c = \sum g + \bar\mu_c \partial_{\beta}\mu_c
                    + \bar v_c\, \partial_{\beta}v_c

        d\tilde\gamma_c = \bar\mu_c \partial_{\tilde\gamma}\mu_c
                            + \bar v_c\, \partial_{\tilde\gamma}v_c, \qquad
        d\tilde\beta_c = \bar\mu_c \partial_{\tilde\beta}\mu_c
                           + \bar v_c\, \partial_{\tilde\beta}v_c

    the moment terms being what ``proxy_moments_vjp`` returns for the cotangents
    :math:`(\bar\mu, \bar v)`.
    """
    (y, gamma, beta, gamma_tilde, beta_tilde, phi, eps, channel_axis,
     channels) = _check_pn_act_args(
        y, gamma, beta, gamma_tilde, beta_tilde, activation, eps, method, n, axis
    )
    dout = _check_cotangent(dout, y.shape)
    bshape = channel_shape(y.ndim, channel_axis, channels)
    sum_axes = _other_axes(y.ndim, channel_axis)

    y64, dout64 = y.astype(np.float64), dout.astype(np.float64)
    gamma64, beta64 = gamma.astype(np.float64), beta.astype(np.float64)
    gamma_tilde64, beta_tilde64 = _as64(gamma_tilde), _as64(beta_tilde)
    out, pre_activation, inv_std = _pn_act_forward64(
        y64, gamma64, beta64, gamma_tilde64, beta_tilde64, phi, eps, method, n, bshape
    )

    # Direct path: through phi(gamma * y + beta), scaled by the inverse proxy std.
    dpre = dout64 * inv_std.reshape(bshape) * phi.df(pre_activation)
    dy = dpre * gamma64.reshape(bshape)
    dgamma = np.sum(dpre * y64, axis=sum_axes)
    dbeta = np.sum(dpre, axis=sum_axes)

    # Moments path: out depends on proxy_mean with slope -inv_std and on proxy_var
    # through inv_std = (var + eps)^(-1/2), d inv_std / d var = -inv_std^3 / 2, and
    # (activated - mean) * inv_std^3 = out * inv_std^2.
    dproxy_mean = -inv_std * np.sum(dout64, axis=sum_axes)
    dproxy_var = -0.5 * inv_std**2 * np.sum(dout64 * out, axis=sum_axes)
    moment_grads = proxy_moments_vjp(
        dproxy_mean, dproxy_var, phi, gamma64, beta64, gamma_tilde64, beta_tilde64,
        method=method, n=n,
    )
    dgamma_moments, dbeta_moments, dgamma_tilde, dbeta_tilde = moment_grads
    dgamma = dgamma + dgamma_moments
    dbeta = dbeta + dbeta_moments

    dtype = result_dtype(dout, y, gamma, beta, gamma_tilde, beta_tilde)
    return (
        _cast(dy, dtype),
        _cast(dgamma, dtype),
        _cast(dbeta, dtype),
        None if gamma_tilde is None else _cast(np.asarray(dgamma_tilde), dtype),
        None if beta_tilde is None else _cast(np.asarray(dbeta_tilde), dtype),
    )
