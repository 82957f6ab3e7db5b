r"""The normalization blocks, reference NumPy versions: ``norm -> PN-Act`` and ``norm -> act``.

Two blocks, each a composition of two ops of the math core with its VJP composed by hand:

* `norm_pn_act`: a norm **without** its own affine, then `pnref.pn_act.pn_act`
  (the per-channel affine lives inside PN-Act), as the official Proxy Normalization code
  plugs it.
* `norm_act`: the norm with its affine, then the activation: the baselines BN, LN, IN
  and GN. The norm's affine is exactly the affine of `pnref.pn_act.act`, so the block is
  written as ``act(normalize(x))`` and its backward as ``normalize_vjp(act_vjp(dout))``.

``norm`` is one of ``"bn"`` (training-mode batch statistics), ``"ln"`` (per sample over every
channel and position), ``"in"`` (per sample and channel) and ``"gn"`` (per sample over
``groups`` contiguous blocks of channels). ``groups`` is required for ``"gn"`` and must be
``None`` for the others (``"ln"`` is ``"gn"`` with one group and ``"in"`` is ``"gn"`` with one
group per channel; say so through ``norm`` instead).

The dispatching layer `pnref.blocks` (``backend="numpy" | "numba"``) calls these for
``backend="numpy"``; there is deliberately no ``backend`` keyword here. The composition is
written down in ``docs/proxy-norm.md``.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike

from pnref._validation import as_float_array, check_eps, check_out, result_dtype, write_out
from pnref.activations import Activation
from pnref.norms import (
    batch_norm,
    batch_norm_vjp,
    group_norm,
    group_norm_vjp,
    instance_norm,
    instance_norm_vjp,
    layer_norm,
    layer_norm_vjp,
)
from pnref.pn_act import act, act_vjp, pn_act, pn_act_vjp

__all__ = ["NORMS", "norm_act", "norm_act_vjp", "norm_pn_act", "norm_pn_act_vjp"]

#: The norm names the blocks accept.
NORMS: tuple[str, ...] = ("bn", "ln", "in", "gn")


def _norm_functions(norm: str, groups: int | None) -> tuple[Callable, Callable]:
    """Return ``(forward, vjp)`` of the chosen norm without affine, groups bound.

    ``forward(x, eps, axis) -> xhat`` and ``vjp(dxhat, x, eps, axis) -> dx``.
    """
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(map(repr, NORMS))}, got {norm!r}")
    if norm == "gn":
        if groups is None:
            raise ValueError(
                "groups is required for norm='gn' (a positive divisor of the channel count)"
            )
        if isinstance(groups, bool) or not isinstance(groups, numbers.Integral):
            raise TypeError(f"groups must be an int, got {type(groups).__name__}")

        def forward(x, eps, axis):
            return group_norm(x, groups, eps=eps, axis=axis)

        def vjp(dxhat, x, eps, axis):
            return group_norm_vjp(dxhat, x, groups, eps=eps, axis=axis)[0]

        return forward, vjp
    if groups is not None:
        raise ValueError(
            f"groups is only used by norm='gn', got groups={groups!r} with norm={norm!r} "
            "('ln' is 'gn' with one group, 'in' is 'gn' with one group per channel)"
        )
    op, op_vjp = {
        "bn": (batch_norm, batch_norm_vjp),
        "ln": (layer_norm, layer_norm_vjp),
        "in": (instance_norm, instance_norm_vjp),
    }[norm]

    def forward(x, eps, axis):
        return op(x, eps=eps, axis=axis)

    def vjp(dxhat, x, eps, axis):
        return op_vjp(dxhat, x, eps=eps, axis=axis)[0]

    return forward, vjp


def _prepare(x, norm, groups, norm_eps):
    """Validate the block-level arguments; return x, its float64 copy and the norm's pair."""
    x = as_float_array(x, "x")
    norm_eps = check_eps(norm_eps, "norm_eps")
    forward, vjp = _norm_functions(norm, groups)
    return x, x.astype(np.float64), norm_eps, forward, vjp


def _cast(g: np.ndarray | None, dtype: np.dtype) -> np.ndarray | None:
    return None if g is None else g.astype(dtype, copy=False)


def _block_dtype(**arrays) -> np.dtype:
    """The dtype a block returns: the widest floating dtype of the arguments given."""
    return result_dtype(*(as_float_array(a, name) for name, a in arrays.items() if a is not None))


# ---------------------------------------------------------------------------
# norm -> PN-Act
# ---------------------------------------------------------------------------


def norm_pn_act(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    eps: float = 0.03,
    method: str = "quantile",
    n: int | None = None,
    axis: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""A norm without affine followed by PN-Act: the Proxy Normalization block.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Pre-activation (e.g. a convolution's output); batch on axis 0, channels on ``axis``.
    gamma, beta, gamma_tilde, beta_tilde
        PN-Act's per-channel parameters, shape (C,); see `pnref.pn_act.pn_act`.
    norm : {"gn", "ln", "in", "bn"}
        The norm; ``"bn"`` uses training-mode batch statistics.
    groups : int or None
        Number of groups, required for ``"gn"``, must be ``None`` otherwise.
    norm_eps : float
        The norm's epsilon (inside the square root of the data variance), >= 0.
    activation, eps, method, n, axis
        As for `pnref.pn_act.pn_act`.
    out : ndarray or None
        Where to write the result (shape of ``x``, the result's dtype, writable);
        returned. See `pnref.blocks.norm_pn_act`.

    Returns
    -------
    ndarray
        Shape of ``x``, widest floating dtype of the arguments (computed in float64).

    Equations
    ---------
    With :math:`\hat x = \mathrm{norm}(x)` (no affine):

    .. math::
        \mathrm{out} = \big(\phi(\gamma_c \hat x + \beta_c) - \mu_c\big)
                       / \sqrt{v_c + \epsilon}
    """
    x, x64, norm_eps, normalize, _ = _prepare(x, norm, groups, norm_eps)
    dtype = _block_dtype(x=x, gamma=gamma, beta=beta, gamma_tilde=gamma_tilde,
                         beta_tilde=beta_tilde)
    out = check_out(out, x.shape, dtype)
    xhat = normalize(x64, norm_eps, axis)
    result = pn_act(
        xhat, gamma, beta, gamma_tilde, beta_tilde,
        activation=activation, eps=eps, method=method, n=n, axis=axis,
    )
    return write_out(result.astype(dtype, copy=False), out)


def norm_pn_act_vjp(
    dout: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    gamma_tilde: ArrayLike | None = None,
    beta_tilde: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    eps: float = 0.03,
    method: str = "quantile",
    n: int | None = None,
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Vector-Jacobian product of `norm_pn_act`.

    Returns
    -------
    (dx, dgamma, dbeta, dgamma_tilde, dbeta_tilde)
        ``None`` for an absent ``gamma_tilde`` / ``beta_tilde``.

    Equations
    ---------
    The chain rule through the two stages (the norm's statistics are recomputed):

    .. math::
        (d\hat x, d\gamma, d\beta, d\tilde\gamma, d\tilde\beta)
            = \mathrm{pn\_act\_vjp}(\mathrm{dout}, \hat x, \dots), \qquad
        dx = \mathrm{norm\_vjp}(d\hat x, x)

    with, for the reduction set :math:`S` of the norm and :math:`r = (v_S + \epsilon_n)^{-1/2}`,
    :math:`dx = r\,(d\hat x - \mathrm{mean}_S\, d\hat x
    - \hat x\, \mathrm{mean}_S(d\hat x\, \hat x))`.
    """
    x, x64, norm_eps, normalize, normalize_vjp = _prepare(x, norm, groups, norm_eps)
    xhat = normalize(x64, norm_eps, axis)
    dout = as_float_array(dout, "dout")
    dxhat, dgamma, dbeta, dgamma_tilde, dbeta_tilde = pn_act_vjp(
        dout.astype(np.float64), xhat, gamma, beta, gamma_tilde, beta_tilde,
        activation=activation, eps=eps, method=method, n=n, axis=axis,
    )
    dx = normalize_vjp(dxhat.astype(np.float64), x64, norm_eps, axis)
    dtype = _block_dtype(dout=dout, x=x, gamma=gamma, beta=beta, gamma_tilde=gamma_tilde,
                         beta_tilde=beta_tilde)
    return (_cast(dx, dtype), _cast(dgamma, dtype), _cast(dbeta, dtype),
            _cast(dgamma_tilde, dtype), _cast(dbeta_tilde, dtype))


# ---------------------------------------------------------------------------
# norm (with affine) -> activation: the baselines
# ---------------------------------------------------------------------------


def norm_act(
    x: ArrayLike,
    gamma: ArrayLike | None = None,
    beta: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    axis: int = 1,
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""A norm with its per-channel affine followed by an activation: BN, LN, IN, GN baselines.

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Pre-activation; batch on axis 0, channels on ``axis``.
    gamma, beta : ndarray of shape (C,) or None
        The norm's per-channel scale and shift; ``None`` means 1 and 0 (not learned).
    norm, groups, norm_eps, axis
        As for `norm_pn_act`.
    activation : str or Activation
        The activation ``phi``.
    out : ndarray or None
        As for `norm_pn_act`.

    Returns
    -------
    ndarray
        Shape of ``x``, widest floating dtype of the arguments (computed in float64).

    Equations
    ---------
    .. math::
        \mathrm{out} = \phi(\gamma_c\, \hat x + \beta_c), \qquad \hat x = \mathrm{norm}(x)
    """
    x, x64, norm_eps, normalize, _ = _prepare(x, norm, groups, norm_eps)
    dtype = _block_dtype(x=x, gamma=gamma, beta=beta)
    out = check_out(out, x.shape, dtype)
    xhat = normalize(x64, norm_eps, axis)
    result = act(xhat, gamma, beta, activation=activation, axis=axis)
    return write_out(result.astype(dtype, copy=False), out)


def norm_act_vjp(
    dout: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike | None = None,
    beta: ArrayLike | None = None,
    *,
    norm: str = "gn",
    groups: int | None = None,
    norm_eps: float = 1e-5,
    activation: str | Activation = "relu",
    axis: int = 1,
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Vector-Jacobian product of `norm_act`.

    Returns
    -------
    (dx, dgamma, dbeta)
        ``None`` for an absent ``gamma`` / ``beta``.

    Equations
    ---------
    .. math::
        (d\hat x, d\gamma, d\beta) = \mathrm{act\_vjp}(\mathrm{dout}, \hat x, \gamma, \beta),
        \qquad dx = \mathrm{norm\_vjp}(d\hat x, x)
    """
    x, x64, norm_eps, normalize, normalize_vjp = _prepare(x, norm, groups, norm_eps)
    xhat = normalize(x64, norm_eps, axis)
    dout = as_float_array(dout, "dout")
    dxhat, dgamma, dbeta = act_vjp(
        dout.astype(np.float64), xhat, gamma, beta, activation=activation, axis=axis
    )
    dx = normalize_vjp(dxhat.astype(np.float64), x64, norm_eps, axis)
    dtype = _block_dtype(dout=dout, x=x, gamma=gamma, beta=beta)
    return _cast(dx, dtype), _cast(dgamma, dtype), _cast(dbeta, dtype)
