r"""The normalization blocks with a choice of backend: ``backend="numpy" | "numba"``.

Thin dispatch over two implementations with one contract:

* ``"numpy"`` (the default): the reference of `pnref.blocks_ref`, float64 NumPy
  written for readability and checked against the oracle. It is the default because
  this library is a *reference*: its default answer must be the one that is easiest to
  audit, and it needs no compilation.
* ``"numba"``: the fused kernels of `pnref.kernels` (one pass for the statistics,
  one for the output; parallel over independent units; bit-identical for any thread
  count). They agree with the reference to about 1e-15 relative in float64 and are
  tens of times faster, at the price of a one-time compilation (a few tens of seconds,
  cached on disk; run ``pnref warmup`` once after installing). Measurements are in
  ``docs/performance.md``.

Importing this module imports neither Numba nor the kernels: that happens at the first
call with ``backend="numba"``.

Equations
---------
norm -> PN-Act (``norm_pn_act``), with :math:`\hat x` the normalized input (no affine):

.. math::
    \mathrm{out} = \big(\phi(\gamma_c \hat x + \beta_c) - \mu_c\big)/\sqrt{\sigma^2_c + \epsilon}

norm -> affine -> activation (``norm_act``): :math:`\mathrm{out} = \phi(\gamma_c \hat x + \beta_c)`.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np
from numpy.typing import ArrayLike

from pnref import blocks_ref
from pnref.activations import Activation

__all__ = ["BACKENDS", "norm_act", "norm_act_vjp", "norm_pn_act", "norm_pn_act_vjp"]

#: The accepted values of ``backend``.
BACKENDS: tuple[str, ...] = ("numpy", "numba")


def _implementation(backend) -> ModuleType:
    """The module that implements ``backend`` (the kernels are imported on first use)."""
    if isinstance(backend, str):
        backend = backend.strip().lower()  # case-insensitive: "NumPy" is "numpy"
    if backend == "numpy":
        return blocks_ref
    if backend == "numba":
        import pnref.kernels

        return pnref.kernels
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")


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
    backend: str = "numpy",
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""A norm without affine followed by PN-Act (Proxy Normalization block).

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
        Batch on axis 0, channels on ``axis`` (1 channels-first, -1 channels-last).
    gamma, beta : ndarray (C,)
        PN-Act's affine, applied before the activation.
    gamma_tilde, beta_tilde : ndarray (C,) or None
        The proxy's parameters, ``Y_c ~ Normal(beta_tilde_c, (1 + gamma_tilde_c)^2)``.
    norm : {"gn", "ln", "in", "bn"}
        The norm (``"bn"``: training-mode batch statistics).
    groups : int or None
        Groups for ``"gn"`` (required there, ``None`` otherwise).
    norm_eps : float
        The norm's epsilon (inside the square root of the data variance).
    activation : str or Activation
    eps : float
        Added to the proxy variance (official value 0.03).
    method, n : str, int or None
        How the proxy moments are computed (`pnref.moments.proxy_moments`).
    axis : int
        The channel axis.
    backend : {"numpy", "numba"}
        Reference NumPy (default) or fused Numba kernels.
    out : ndarray or None
        Where to write the result, as NumPy's ``out=``: shape of ``x``, the result's dtype
        (the widest floating dtype of the arguments), writable; returned. A caller that
        keeps the buffer skips the allocation and first touch of a new array (for large
        arrays that costs about as much as a copy, docs/performance.md). The result is
        the same bits either way; ``out`` may be ``x`` itself.

    Returns
    -------
    ndarray
        Shape of ``x`` (``out`` when given).

    Equations
    ---------
    .. math::
        \mathrm{out} = \big(\phi(\gamma_c \hat x + \beta_c) - \mu_c\big)
                       / \sqrt{\sigma^2_c + \epsilon}
    """
    return _implementation(backend).norm_pn_act(
        x, gamma, beta, gamma_tilde, beta_tilde, norm=norm, groups=groups, norm_eps=norm_eps,
        activation=activation, eps=eps, method=method, n=n, axis=axis, out=out)


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
    backend: str = "numpy",
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Vector-Jacobian product of `norm_pn_act`.

    Parameters
    ----------
    dout : ndarray
        Cotangent of the output (shape of ``x``).
    x, gamma, beta, gamma_tilde, beta_tilde
        As for `norm_pn_act`.
    norm, groups, norm_eps, activation, eps, method, n, axis, backend
        As for `norm_pn_act`.

    Returns
    -------
    (dx, dgamma, dbeta, dgamma_tilde, dbeta_tilde)
        ``None`` for an absent ``gamma_tilde`` / ``beta_tilde``.

    Equations
    ---------
    With :math:`t = \mathrm{dout}\,\phi'(\gamma_c \hat x + \beta_c)/\sqrt{\sigma^2_c + \epsilon}`:
    :math:`d\gamma_c = \sum t \hat x + \dots`, :math:`d\beta_c = \sum t + \dots` (the dots:
    the path through the proxy moments), and :math:`dx` is the norm's VJP of
    :math:`\gamma_c t`.
    """
    return _implementation(backend).norm_pn_act_vjp(
        dout, x, gamma, beta, gamma_tilde, beta_tilde, norm=norm, groups=groups,
        norm_eps=norm_eps, activation=activation, eps=eps, method=method, n=n, axis=axis)


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
    backend: str = "numpy",
    out: np.ndarray | None = None,
) -> np.ndarray:
    r"""A norm with its per-channel affine followed by an activation (BN/LN/IN/GN baselines).

    Parameters
    ----------
    x : ndarray, shape (N, ..., C, ...)
    gamma, beta : ndarray (C,) or None
        The norm's affine; ``None`` means 1 and 0.
    norm, groups, norm_eps, activation, axis, backend, out
        As for `norm_pn_act`.

    Returns
    -------
    ndarray
        Shape of ``x`` (``out`` when given).

    Equations
    ---------
    .. math:: \mathrm{out} = \phi(\gamma_c \hat x + \beta_c)
    """
    return _implementation(backend).norm_act(
        x, gamma, beta, norm=norm, groups=groups, norm_eps=norm_eps, activation=activation,
        axis=axis, out=out)


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
    backend: str = "numpy",
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    r"""Vector-Jacobian product of `norm_act`: ``(dx, dgamma, dbeta)``.

    Parameters
    ----------
    dout : ndarray
        Cotangent of the output.
    x, gamma, beta, norm, groups, norm_eps, activation, axis, backend
        As for `norm_act`.

    Returns
    -------
    (dx, dgamma, dbeta)
        ``None`` for an absent ``gamma`` / ``beta``.

    Equations
    ---------
    With :math:`t = \mathrm{dout}\,\phi'(\gamma_c \hat x + \beta_c)`:
    :math:`d\gamma_c = \sum t \hat x`, :math:`d\beta_c = \sum t`, and :math:`dx` is the norm's
    VJP of :math:`\gamma_c t`.
    """
    return _implementation(backend).norm_act_vjp(
        dout, x, gamma, beta, norm=norm, groups=groups, norm_eps=norm_eps,
        activation=activation, axis=axis)
